"""The KV protocol, on both implementations (LevelKV on a real LevelDB directory)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.errors import DatabaseClosedError, StorageError
from storage.keys import STORE_MARKER_KEY
from storage.kv import KV, LevelKV, MemoryKV, WriteBatch


@pytest.fixture(params=["memory", "leveldb"])
def kv(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KV]:
    store: KV = MemoryKV() if request.param == "memory" else LevelKV.open(tmp_path / "db", create=True)
    yield store
    store.close()


def put_all(kv: KV, items: dict[bytes, bytes]) -> None:
    batch = WriteBatch()
    for k, v in items.items():
        batch.put(k, v)
    kv.write(batch, sync=True)


def test_get_put_delete(kv: KV) -> None:
    assert kv.get(b"a") is None
    put_all(kv, {b"a": b"1", b"b": b""})
    assert kv.get(b"a") == b"1"
    assert kv.get(b"b") == b""
    batch = WriteBatch()
    batch.delete(b"a")
    batch.delete(b"missing")
    kv.write(batch)
    assert kv.get(b"a") is None


def test_batch_later_op_wins(kv: KV) -> None:
    batch = WriteBatch()
    batch.put(b"k", b"1")
    batch.delete(b"k")
    batch.put(b"k", b"2")
    batch.put(b"j", b"1")
    batch.delete(b"j")
    assert len(batch) == 5
    kv.write(batch)
    assert kv.get(b"k") == b"2"
    assert kv.get(b"j") is None


def test_iterate_prefix_bounds_reverse(kv: KV) -> None:
    items = {bytes([p]) + bytes([i]): bytes([i]) for p in (1, 2, 0xFF) for i in (0, 5, 9, 0xFF)}
    put_all(kv, items)
    # LevelKV holds its store marker (under b"Mm") beside our items
    assert [k for k, _ in kv.iterate() if k != STORE_MARKER_KEY] == sorted(items)
    assert [k for k, _ in kv.iterate(b"\x02")] == [b"\x02\x00", b"\x02\x05", b"\x02\x09", b"\x02\xff"]
    assert [k for k, _ in kv.iterate(b"\xff")] == [b"\xff\x00", b"\xff\x05", b"\xff\x09", b"\xff\xff"]
    got = list(kv.iterate(b"\x02", start=b"\x02\x05", stop=b"\x02\xff"))
    assert got == [(b"\x02\x05", b"\x05"), (b"\x02\x09", b"\x09")]
    assert next(k for k, _ in kv.iterate(b"\x02", reverse=True)) == b"\x02\xff"
    assert [k for k, _ in kv.iterate(b"\xff", reverse=True)][:2] == [b"\xff\xff", b"\xff\x09"]
    assert [k for k, _ in kv.iterate(b"\x01", start=b"\x01\x05", reverse=True)] == [
        b"\x01\xff", b"\x01\x09", b"\x01\x05"
    ]
    rev = [k for k, _ in kv.iterate(b"\x02", stop=b"\x02\x09", reverse=True)]
    assert rev == [b"\x02\x05", b"\x02\x00"]
    # start and stop outside the prefix are clamped to it
    assert len(list(kv.iterate(b"\x02", start=b"\x01", stop=b"\x03"))) == 4
    assert list(kv.iterate(b"\x03")) == []


def test_batch_rejects_non_bytes() -> None:
    batch = WriteBatch()
    with pytest.raises(StorageError):
        batch.put("a", b"1")  # type: ignore[arg-type]
    with pytest.raises(StorageError):
        batch.put(b"a", None)  # type: ignore[arg-type]
    with pytest.raises(StorageError):
        batch.delete(1)  # type: ignore[arg-type]


def test_closed_store_raises_typed_error(kv: KV) -> None:
    kv.close()
    with pytest.raises(DatabaseClosedError):
        kv.get(b"a")
    with pytest.raises(DatabaseClosedError):
        kv.write(WriteBatch())
    with pytest.raises(DatabaseClosedError):
        list(kv.iterate())


def test_leveldb_survives_reopen(tmp_path: Path) -> None:
    kv = LevelKV.open(tmp_path / "db", create=True)
    put_all(kv, {b"x": b"y"})
    kv.close()
    kv = LevelKV.open(tmp_path / "db")
    assert kv.get(b"x") == b"y"
    assert kv.verify() == 2  # with the store marker
    kv.close()


def test_meanwhile_callbacks_run_once_per_written_batch(kv: KV) -> None:
    """A batch's callbacks run once when it is written (LevelKV: while LevelDB
    writes it in another thread), also when merged into another batch."""
    ran: list[str] = []
    inner = WriteBatch()
    inner.put(b"a", b"1")
    inner.meanwhile.append(lambda: ran.append("inner"))
    outer = WriteBatch()
    outer.put(b"b", b"2")
    outer.meanwhile.append(lambda: ran.append("outer"))
    outer.extend(inner)
    assert ran == []
    kv.write(outer, sync=True)
    assert sorted(ran) == ["inner", "outer"]
    assert kv.get(b"a") == b"1" and kv.get(b"b") == b"2"


def test_meanwhile_error_reaches_caller_after_the_write(kv: KV) -> None:
    batch = WriteBatch()
    batch.put(b"k", b"v")

    def boom() -> None:
        raise ValueError("callback failed")

    batch.meanwhile.append(boom)
    with pytest.raises(ValueError, match="callback failed"):
        kv.write(batch, sync=True)
    assert kv.get(b"k") == b"v"  # the write itself was not abandoned


def test_write_to_closed_store_runs_no_callback(tmp_path: Path) -> None:
    kv = LevelKV.open(tmp_path / "db", create=True)
    kv.close()
    ran: list[int] = []
    batch = WriteBatch()
    batch.put(b"k", b"v")
    batch.meanwhile.append(lambda: ran.append(1))
    with pytest.raises(DatabaseClosedError):
        kv.write(batch)
    assert ran == []
