"""The compiled staging kernel against the plain Python one, and how storage.accel
chooses between them.

`make test` builds the compiled copy first (tools/accel.py). Where no C compiler or
mypyc is available the build is skipped and so is the comparison here; a build that
exists but does not load or is stale fails the test, because then the node would be
running something other than what was tested.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import storage.state as default_state
from storage import accel, treekernel
from storage.kv import MemoryKV, WriteBatch
from storage.proof import verify_proof

STORAGE = Path(treekernel.__file__).parent


def compiled_files() -> list[Path]:
    return sorted(STORAGE.glob("_treekernel_c*.so"))


def state_module(pure: bool, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A private copy of storage.state bound to the pure or the default kernel."""
    if pure:
        monkeypatch.setenv(accel.PURE_ENV, "1")
    else:
        monkeypatch.delenv(accel.PURE_ENV, raising=False)
    name = "storage_state_" + ("pure" if pure else "default")
    spec = importlib.util.spec_from_file_location(name, default_state.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def kernels() -> tuple[ModuleType, ModuleType]:
    if not compiled_files():
        pytest.skip("no compiled build of storage.treekernel (make accel needs mypyc and a C compiler)")
    mp = pytest.MonkeyPatch()
    try:
        pure = state_module(True, mp)
        fast = state_module(False, mp)
    finally:
        mp.undo()
    assert pure.KERNEL == "pure"
    assert fast.KERNEL == "compiled", "a compiled build exists but is stale or does not load"
    return pure, fast


KEYS = [b"k%d" % i for i in range(64)]
op_st = st.tuples(st.sampled_from(KEYS), st.one_of(st.none(), st.binary(max_size=10)))


def split(ops: list[tuple[bytes, bytes | None]]) -> tuple[dict[bytes, bytes], list[bytes]]:
    last = dict(ops)
    return {k: v for k, v in last.items() if v is not None}, [k for k, v in last.items() if v is None]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.lists(op_st, max_size=30), min_size=1, max_size=8),
    st.sampled_from([0, 2048, 1 << 20]),
)
def test_compiled_and_pure_write_the_same_bytes(
    kernels: tuple[ModuleType, ModuleType],
    blocks: list[list[tuple[bytes, bytes | None]]],
    cache_bytes: int,
) -> None:
    pure, fast = kernels
    trees = [mod.StateTree(MemoryKV(), cache_bytes=cache_bytes) for mod in (pure, fast)]
    for version, ops in enumerate(blocks):
        puts, dels = split(ops)
        writes = []
        for tree in trees:
            staged = tree.stage(version, puts, dels)
            batch = WriteBatch()
            staged.write_into(batch)
            writes.append(list(batch.ops))
            tree.kv.write(batch, sync=True)
        assert writes[0] == writes[1]
        assert trees[0].root() == trees[1].root()
    root = trees[1].root()
    for key in KEYS[:16]:
        answers = [tree.get_with_proof(key) for tree in trees]
        assert answers[0][0] == answers[1][0]
        assert answers[0][1].encode() == answers[1][1].encode()
        assert verify_proof(root, key, answers[1][0], answers[1][1])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(op_st, max_size=40), min_size=1, max_size=5))
def test_writes_come_out_sorted(blocks: list[list[tuple[bytes, bytes | None]]]) -> None:
    """The node writes are in key order without a sort (per-depth buckets of a
    depth-first pass), and so is the whole batch: LevelDB takes sorted batches
    faster."""
    tree = default_state.StateTree(MemoryKV())
    for version, ops in enumerate(blocks):
        puts, dels = split(ops)
        batch = WriteBatch()
        tree.stage(version, puts, dels).write_into(batch)
        written = [k for k, _ in batch.ops]
        assert written == sorted(written)
        tree.kv.write(batch, sync=True)


def test_compiled_kernel_rejects_bad_updates_like_pure(kernels: tuple[ModuleType, ModuleType]) -> None:
    from storage.errors import StateKeyError

    for mod in kernels:
        tree = mod.StateTree(MemoryKV())
        with pytest.raises(StateKeyError, match="state key must be bytes"):
            tree.stage(0, {"k": b"v"})
        with pytest.raises(StateKeyError, match="state value must be bytes"):
            tree.stage(0, {b"k": 5})
        with pytest.raises(StateKeyError, match="exceeds"):
            tree.stage(0, {b"k" * 70_000: b""})


def test_cache_follows_another_writer() -> None:
    """Two handles on one store take turns: each must notice the other's versions
    (its node cache, keyed by path, describes only the version it last saw)."""
    kv = MemoryKV()
    a, b = default_state.StateTree(kv), default_state.StateTree(kv)
    model: dict[bytes, bytes] = {}
    for version in range(12):
        tree = a if version % 3 else b
        puts = {b"key%d" % ((version * 7 + i) % 40): b"v%d" % version for i in range(9)}
        model.update(puts)
        root = tree.apply(version, puts)
        assert root == default_state.StateTree(MemoryKV()).apply(0, model)
        for k, v in model.items():
            value, proof = (b if tree is a else a).get_with_proof(k)
            assert value == v and verify_proof(root, k, v, proof)


def test_a_stale_build_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pkg = tmp_path / "accelpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "thing.py").write_text("VALUE = 'pure'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(accel.PURE_ENV, raising=False)
    import accelpkg.thing as pure  # type: ignore[import-not-found]

    # No build at all: the pure module.
    assert accel.load(pure) is pure
    # A build made from this exact source: used.
    (pkg / "_thing_c.py").write_text(f"VALUE = 'built'\nSOURCE_BLAKE3 = {accel.source_digest(pure)!r}\n")
    assert accel.load(pure).VALUE == "built"
    # BLACKHOLE_PURE=1 forces the pure module.
    monkeypatch.setenv(accel.PURE_ENV, "1")
    assert accel.load(pure) is pure
    monkeypatch.delenv(accel.PURE_ENV)
    # The source changed after the build: the pure module, and one note on stderr.
    (pkg / "thing.py").write_text("VALUE = 'pure, edited'\n")
    sys.modules.pop("accelpkg._thing_c", None)
    assert accel.load(pure) is pure
    assert "older than its source" in capsys.readouterr().err


def test_the_build_exists_wherever_it_can() -> None:
    """make test (and tests/conftest.py) build the kernel first; with mypyc and a C
    compiler present, a missing build is a broken build step, not a fallback."""
    import shutil
    import sysconfig

    pytest.importorskip("mypyc", reason="mypyc (the accel extra) is not installed")
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler ({cc}): the kernel runs as plain Python")
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        pytest.skip("no Python headers (Python.h): the kernel runs as plain Python")
    assert compiled_files(), "mypyc and a C compiler are here but no build: run python -m tools.accel --strict"
    assert default_state.KERNEL == "compiled" or accel.os.environ.get(accel.PURE_ENV)


def test_kernel_in_use_is_reported() -> None:
    assert default_state.KERNEL in ("compiled", "pure")
    if compiled_files() and not accel.os.environ.get(accel.PURE_ENV):
        assert default_state.KERNEL == "compiled"


def test_accel_tool_falls_back_when_the_build_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No compiler (or mypyc): `make accel` says so, leaves no build behind and
    succeeds, so the node runs plain Python; --strict makes it fail."""
    from tools import accel as tool

    pkg = tmp_path / "fakepkg"
    pkg.mkdir()
    (pkg / "thing.py").write_text("VALUE = 1\n")
    stale = pkg / "_thing_c.cpython-311-x86_64-linux-gnu.so"
    stale.write_bytes(b"an old build")
    monkeypatch.setattr(tool, "ROOT", tmp_path)
    monkeypatch.setattr(tool, "BUILD_DIR", tmp_path / "build")
    monkeypatch.setattr(tool, "MODULES", ("fakepkg.thing",))

    def no_compiler(module: str) -> None:
        raise RuntimeError("error: command 'gcc' failed: No such file or directory")

    monkeypatch.setattr(tool, "build", no_compiler)
    monkeypatch.setattr(sys, "argv", ["accel"])
    assert tool.main() == 0
    assert "could not compile fakepkg.thing" in capsys.readouterr().err
    assert not stale.exists()
    monkeypatch.setattr(sys, "argv", ["accel", "--strict"])
    assert tool.main() == 1

