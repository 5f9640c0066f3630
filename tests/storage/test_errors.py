"""Opening missing, locked, truncated and corrupt databases: one typed line naming
the path. The damage is done for real to files of a real LevelDB directory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from storage.blocks import BlockStore
from storage.errors import (
    CorruptDatabaseError,
    DatabaseError,
    DatabaseLockedError,
    MissingDatabaseError,
    StorageError,
    TruncatedDatabaseError,
    UnsupportedLayoutError,
)
from storage.keys import STORE_MARKER, STORE_MARKER_KEY
from storage.kv import LevelKV, WriteBatch
from storage.state import StateTree

ROOT = Path(__file__).resolve().parents[2]


def make_db(path: Path, n: int = 3000) -> Path:
    """A real store with state versions and blocks, flushed into table files."""
    kv = LevelKV.open(path, create=True)
    tree = StateTree(kv)
    blocks = BlockStore(kv)
    for v in range(3):
        staged = tree.stage(v, {b"key%d" % i: os.urandom(60) for i in range(v, n, 3)}, [])
        blocks.commit_block(v, bytes([v]) * 32, b"block%d" % v, b"commit", staged)
    kv.compact()
    kv.close()
    assert list(path.glob("*.ldb")), "expected table files after compaction"
    return path


def one_line(exc: BaseException, must_name: Path | str) -> None:
    text = str(exc)
    assert "\n" not in text
    assert str(must_name) in text
    assert not text.startswith("b'")


def open_and_read(path: Path) -> None:
    kv = LevelKV.open(path)
    try:
        kv.verify()
        tree = StateTree(kv)
        tree.root()
    finally:
        kv.close()


def test_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "nope"
    with pytest.raises(MissingDatabaseError) as info:
        LevelKV.open(path)
    one_line(info.value, path)
    assert not path.exists(), "opening without create must not create anything"


def test_empty_directory_is_missing_not_empty_store(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.mkdir()
    with pytest.raises(MissingDatabaseError) as info:
        LevelKV.open(path)
    one_line(info.value, path)


def test_path_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"x")
    with pytest.raises(DatabaseError) as info:
        LevelKV.open(path, create=True)
    one_line(info.value, path)


def test_locked_in_process(tmp_path: Path) -> None:
    path = make_db(tmp_path / "db")
    kv = LevelKV.open(path)
    try:
        with pytest.raises(DatabaseLockedError) as info:
            LevelKV.open(path)
        one_line(info.value, path)
    finally:
        kv.close()
    LevelKV.open(path).close()  # released on close


def test_locked_by_another_process(tmp_path: Path) -> None:
    path = make_db(tmp_path / "db")
    code = (
        "import sys; from storage.kv import LevelKV; kv = LevelKV.open(sys.argv[1]); "
        "print('ready', flush=True); sys.stdin.read()"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(path)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(DatabaseLockedError) as info:
            LevelKV.open(path)
        one_line(info.value, path)
    finally:
        child.kill()
        child.wait(timeout=30)
    # The kernel drops the lock with the process: poll briefly, with a deadline.
    deadline = time.monotonic() + 10
    while True:
        try:
            LevelKV.open(path).close()
            break
        except DatabaseLockedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def truncate_half(f: Path) -> None:
    os.truncate(f, f.stat().st_size // 2)


def table(path: Path) -> Path:
    return max(path.glob("*.ldb"), key=lambda f: f.stat().st_size)


def manifest(path: Path) -> Path:
    return next(path.glob("MANIFEST-*"))


@pytest.mark.parametrize(
    ("damage", "expected", "names_file"),
    [
        (lambda p: truncate_half(table(p)), TruncatedDatabaseError, table),
        (lambda p: os.truncate(table(p), 20), TruncatedDatabaseError, table),
        (lambda p: os.truncate(manifest(p), manifest(p).stat().st_size - 5), TruncatedDatabaseError, manifest),
        (lambda p: os.truncate(manifest(p), 0), TruncatedDatabaseError, manifest),
        (lambda p: os.truncate(p / "CURRENT", 0), TruncatedDatabaseError, lambda p: p / "CURRENT"),
    ],
    ids=["table-half", "table-20-bytes", "manifest-tail", "manifest-empty", "current-empty"],
)
def test_truncated(
    tmp_path: Path,
    damage: Callable[[Path], None],
    expected: type[StorageError],
    names_file: Callable[[Path], Path],
) -> None:
    path = make_db(tmp_path / "db")
    target = names_file(path)
    damage(path)
    with pytest.raises(expected) as info:
        open_and_read(path)
    one_line(info.value, target)


def flip_byte(f: Path, at: int) -> None:
    data = bytearray(f.read_bytes())
    data[at] ^= 0xFF
    f.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: flip_byte(table(p), table(p).stat().st_size // 3),
        lambda p: flip_byte(table(p), 10),
        lambda p: flip_byte(manifest(p), 10),
        lambda p: os.remove(table(p)),
        lambda p: os.remove(p / "CURRENT"),
        lambda p: (p / "CURRENT").write_text("MANIFEST-999999\n"),
    ],
    ids=["table-middle", "table-start", "manifest", "table-removed", "current-removed", "current-wrong"],
)
def test_corrupt(tmp_path: Path, damage: Callable[[Path], None]) -> None:
    path = make_db(tmp_path / "db")
    damage(path)
    with pytest.raises(CorruptDatabaseError) as info:
        open_and_read(path)
    one_line(info.value, path)


def test_lost_tables_are_not_an_empty_store(tmp_path: Path) -> None:
    """A LevelDB directory whose data LevelDB no longer sees must not open empty."""
    path = make_db(tmp_path / "db")
    for f in path.iterdir():
        f.unlink()
    import plyvel

    plyvel.DB(str(path), create_if_missing=True).close()  # what LevelDB would recreate
    with pytest.raises(CorruptDatabaseError) as info:
        LevelKV.open(path)
    one_line(info.value, path)
    assert "marker" in str(info.value)


def test_store_of_another_layout_is_refused(tmp_path: Path) -> None:
    """A store written with another layout version (here a v2 that stored the tree
    two levels to a record) must not be read as this one: opening it names the
    path and both layouts."""
    path = make_db(tmp_path / "db", n=300)
    import plyvel

    db = plyvel.DB(str(path))
    db.put(STORE_MARKER_KEY, b"blackhole-store-v2")
    db.close()
    for create in (False, True):
        with pytest.raises(UnsupportedLayoutError) as info:
            LevelKV.open(path, create=create)
        one_line(info.value, path)
        assert "blackhole-store-v2" in str(info.value) and STORE_MARKER.decode() in str(info.value)
    assert issubclass(UnsupportedLayoutError, DatabaseError)


def test_foreign_leveldb_is_refused(tmp_path: Path) -> None:
    import plyvel

    db = plyvel.DB(str(tmp_path / "other"), create_if_missing=True)
    db.put(b"their", b"data")
    db.close()
    for create in (False, True):
        with pytest.raises(CorruptDatabaseError):
            LevelKV.open(tmp_path / "other", create=create)


def test_create_on_damaged_store_still_refuses(tmp_path: Path) -> None:
    path = make_db(tmp_path / "db")
    truncate_half(table(path))
    with pytest.raises(TruncatedDatabaseError):
        LevelKV.open(path, create=True)


def test_undamaged_store_reopens_with_its_data(tmp_path: Path) -> None:
    path = make_db(tmp_path / "db")
    kv = LevelKV.open(path)
    tree = StateTree(kv)
    assert tree.latest_version == 2
    assert BlockStore(kv).latest_height == 2
    assert tree.get(b"key2") is not None
    kv.close()


def test_read_corruption_after_open_is_typed(tmp_path: Path) -> None:
    """Damage done while the store is open surfaces on the read as a typed error."""
    path = make_db(tmp_path / "db")
    kv = LevelKV.open(path, cache_mb=0)
    try:
        victim = table(path)
        data = bytearray(victim.read_bytes())
        for at in range(0, len(data) - 100, 997):
            data[at] ^= 0x55
        victim.write_bytes(bytes(data))
        with pytest.raises(CorruptDatabaseError) as info:
            for _ in kv.iterate():
                pass
        one_line(info.value, path)
    finally:
        kv.close()


def test_batch_write_of_wrong_types_is_typed(tmp_path: Path) -> None:
    kv = LevelKV.open(tmp_path / "db", create=True)
    try:
        batch = WriteBatch()
        batch.keys.append("str")  # type: ignore[arg-type]
        batch.values.append(b"x")
        with pytest.raises(StorageError):
            kv.write(batch)
    finally:
        kv.close()
