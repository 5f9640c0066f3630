"""State tree behaviour beyond the properties: versions, errors, pruning, deep
paths, the cache, and the same scenarios on a real LevelDB directory."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from blake3 import blake3

from storage import keys
from storage.errors import DatabaseIOError, StateKeyError, VersionError
from storage.kv import KV, LevelKV, MemoryKV, WriteBatch
from storage.proof import EMPTY_ROOT, verify_proof
from storage.state import StateTree


@pytest.fixture(params=["memory", "leveldb"])
def kv(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KV]:
    store: KV = MemoryKV() if request.param == "memory" else LevelKV.open(tmp_path / "db", create=True)
    yield store
    store.close()


def scratch_root(model: dict[bytes, bytes]) -> bytes:
    return StateTree(MemoryKV()).apply(0, model, [])


def keys_sharing_prefix(nibbles: int, count: int) -> list[bytes]:
    """Keys whose BLAKE3 hashes share their first `nibbles` nibbles (brute force)."""
    by_prefix: dict[str, list[bytes]] = {}
    for i in itertools.count():
        key = b"deep/%d" % i
        group = by_prefix.setdefault(blake3(key).hexdigest()[:nibbles], [])
        group.append(key)
        if len(group) == count:
            return group
    raise AssertionError("unreachable")


def test_versions_and_reads(kv: KV) -> None:
    tree = StateTree(kv)
    assert tree.latest_version is None
    assert tree.get(b"a") is None
    r5 = tree.apply(5, {b"a": b"1", b"b": b"2"}, [])
    assert tree.latest_version == 5 and tree.oldest_version == 5
    r6 = tree.apply(6, {b"a": b"3"}, [b"b", b"never-there"])
    assert tree.root(5) == r5 and tree.root(6) == r6 and tree.root() == r6
    assert tree.get(b"a", 5) == b"1" and tree.get(b"a") == b"3"
    assert tree.get(b"b", 5) == b"2" and tree.get(b"b", 6) is None
    r7 = tree.apply(7, {}, [])
    assert r7 == r6, "an empty version keeps the root"
    assert r6 == scratch_root({b"a": b"3"})


def test_stage_writes_nothing_and_apply_checks_versions(kv: KV) -> None:
    tree = StateTree(kv)
    tree.apply(0, {b"a": b"1"}, [])
    staged = tree.stage(1, {b"b": b"2"}, [])
    assert staged.version == 1 and staged.root == scratch_root({b"a": b"1", b"b": b"2"})
    assert tree.latest_version == 0 and tree.get(b"b") is None
    # staging again (e.g. another round's block) simply replaces the staged one
    staged = tree.stage(1, {b"c": b"3"}, [])
    batch = WriteBatch()
    staged.write_into(batch)
    kv.write(batch, sync=True)
    assert tree.latest_version == 1 and tree.get(b"c") == b"3" and tree.get(b"b") is None
    with pytest.raises(VersionError):
        tree.stage(1, {}, [])
    with pytest.raises(VersionError):
        tree.stage(3, {}, [])
    with pytest.raises(VersionError):
        tree.apply(-1, {}, [])


def test_put_wins_over_delete_of_same_key(kv: KV) -> None:
    tree = StateTree(kv)
    tree.apply(0, {b"a": b"1"}, [b"a"])
    assert tree.get(b"a") == b"1"


def test_bad_versions_and_keys_are_typed(kv: KV) -> None:
    tree = StateTree(kv)
    with pytest.raises(VersionError):
        tree.get(b"a", 0)
    tree.apply(0, {b"a": b"1"}, [])
    for bad in (1, -1):
        with pytest.raises(VersionError):
            tree.get(b"a", bad)
        with pytest.raises(VersionError):
            tree.root(bad)
        with pytest.raises(VersionError):
            tree.get_with_proof(b"a", bad)
    with pytest.raises(StateKeyError):
        tree.get("a")  # type: ignore[arg-type]
    with pytest.raises(StateKeyError):
        tree.stage(1, {b"a": "x"}, [])  # type: ignore[dict-item]
    with pytest.raises(StateKeyError):
        tree.stage(1, {b"k" * 70000: b"x"}, [])
    with pytest.raises(VersionError):
        tree.prune(5)


def test_deep_paths_and_collapse(kv: KV) -> None:
    """Keys sharing 4 nibbles build a chain of one-child nodes; deleting all but one
    collapses it back into a single leaf at the top."""
    deep = keys_sharing_prefix(4, 3)
    tree = StateTree(kv)
    model = {k: k[::-1] for k in deep}
    model[b"other"] = b"x"
    tree.apply(0, model, [])
    for k in [*deep, b"other", b"absent"]:
        value, proof = tree.get_with_proof(k)
        assert value == model.get(k)
        assert verify_proof(tree.root(), k, value, proof)
    assert len(tree.get_with_proof(deep[0])[1].levels) >= 5
    tree.apply(1, {}, deep[1:])
    assert tree.root() == scratch_root({deep[0]: model[deep[0]], b"other": b"x"})
    tree.apply(2, {}, [b"other"])
    value, proof = tree.get_with_proof(deep[0])
    assert proof.levels == () and value == model[deep[0]]
    tree.apply(3, {}, [deep[0]])
    assert tree.root() == EMPTY_ROOT
    assert tree.get_with_proof(deep[0])[0] is None
    assert tree.get(deep[0], 0) == model[deep[0]]


def test_prune_keeps_retained_versions_and_frees_space(kv: KV) -> None:
    rng = random.Random(3)
    tree = StateTree(kv)
    history = []
    model: dict[bytes, bytes] = {}
    for v in range(30):
        puts = {b"k%d" % rng.randrange(200): rng.randbytes(20) for _ in range(30)}
        dels = [b"k%d" % rng.randrange(200) for _ in range(5)]
        for k in dels:
            model.pop(k, None)
        model.update(puts)
        tree.apply(v, puts, dels)
        history.append(dict(model))
    before = sum(1 for _ in kv.iterate(b"S"))
    tree.prune(25)
    after = sum(1 for _ in kv.iterate(b"S"))
    assert after < before / 2
    assert tree.oldest_version == 25
    for v in (10, 24):
        with pytest.raises(VersionError):
            tree.get(b"k1", v)
    for v in range(25, 30):
        root = tree.root(v)
        assert root == scratch_root(history[v])
        for i in range(200):
            key = b"k%d" % i
            value, proof = tree.get_with_proof(key, v)
            assert value == history[v].get(key) == tree.get(key, v)
            assert verify_proof(root, key, value, proof)
    # Pruning to the latest version leaves exactly what a fresh tree would hold
    # (plus tombstones only if still needed: none are).
    tree.prune(29)
    nodes = sum(1 for _ in kv.iterate(keys.STATE_NODE))
    values = sum(1 for _ in kv.iterate(keys.STATE_VALUE))
    fresh = MemoryKV()
    StateTree(fresh).apply(0, history[29], [])
    assert values == len(history[29])
    assert nodes == sum(1 for _ in fresh.iterate(keys.STATE_NODE))
    assert dict(tree.iter_items()) == history[29]


def test_cache_does_not_change_results(tmp_path: Path) -> None:
    """Same updates with a big cache, a tiny cache and a tree reopened every block."""
    rng = random.Random(11)
    blocks = [
        ({rng.randbytes(8): rng.randbytes(10) for _ in range(60)}, []) for _ in range(15)
    ]
    all_keys = [k for puts, _ in blocks for k in puts]
    for i, (_puts, dels) in enumerate(blocks):
        dels.extend(rng.sample(all_keys[: 60 * (i + 1)], 10))
    roots = []
    for cache_bytes in (1 << 30, 2000):
        tree = StateTree(MemoryKV(), cache_bytes=cache_bytes)
        roots.append([tree.apply(v, p, d) for v, (p, d) in enumerate(blocks)])
    kv = LevelKV.open(tmp_path / "db", create=True)
    reopened = []
    for v, (p, d) in enumerate(blocks):
        reopened.append(StateTree(kv).apply(v, p, d))
    kv.close()
    assert roots[0] == roots[1] == reopened


def test_staged_version_committed_elsewhere_is_promoted(kv: KV) -> None:
    """Write staged versions through another batch (as BlockStore does) and keep
    staging: results must match a tree that applies directly."""
    rng = random.Random(5)
    tree = StateTree(kv)
    ref = StateTree(MemoryKV())
    for v in range(12):
        puts = {b"k%d" % rng.randrange(100): rng.randbytes(4) for _ in range(20)}
        staged = tree.stage(v, puts, [])
        if v % 4 == 3:
            staged = tree.stage(v, puts, [])  # restaged before committing
        batch = WriteBatch()
        batch.put(b"other", b"%d" % v)
        staged.write_into(batch)
        kv.write(batch, sync=True)
        assert staged.root == ref.apply(v, puts, [])
        assert tree.root() == staged.root


def test_leveldb_reopen_keeps_every_version(tmp_path: Path) -> None:
    path = tmp_path / "db"
    kv = LevelKV.open(path, create=True)
    tree = StateTree(kv)
    roots = [tree.apply(v, {b"k%d" % v: b"v"}, []) for v in range(10)]
    kv.close()
    kv = LevelKV.open(path)
    tree = StateTree(kv)
    assert tree.latest_version == 9
    assert [tree.root(v) for v in range(10)] == roots
    assert tree.apply(10, {b"k0": b"w"}, []) == scratch_root(
        {**{b"k%d" % v: b"v" for v in range(10)}, b"k0": b"w"}
    )
    kv.close()


def test_bad_arguments_to_stage_are_typed(kv: KV) -> None:
    tree = StateTree(kv)
    with pytest.raises(StateKeyError):
        tree.stage(0, [(b"a", b"1")], [])  # type: ignore[arg-type]
    with pytest.raises(StateKeyError):
        tree.stage(0, {}, b"abc")
    with pytest.raises(StateKeyError):
        tree.stage(0, {}, 5)  # type: ignore[arg-type]
    with pytest.raises(StateKeyError):
        tree.stage(0, {}, [b"ok", "not bytes"])  # type: ignore[list-item]
    assert not verify_proof(EMPTY_ROOT, b"a", None, "proof")  # type: ignore[arg-type]


def test_prune_by_another_handle_is_seen_by_readers(kv: KV) -> None:
    writer = StateTree(kv)
    for v in range(6):
        writer.apply(v, {b"k": b"%d" % v}, [])
    reader = StateTree(kv)
    assert reader.get(b"k", 1) == b"1"
    writer.prune(4)
    with pytest.raises(VersionError):
        reader.get(b"k", 1)
    with pytest.raises(VersionError):
        reader.get_with_proof(b"k", 2)
    assert reader.get(b"k", 4) == b"4"
    assert reader.oldest_version == 4


def test_latest_version_follows_other_writers(kv: KV) -> None:
    """latest_version probes upward from the last version it saw; versions written
    by another handle (or through another batch) must still be seen, also from an
    empty start and after the other handle pruned."""
    reader = StateTree(kv)
    writer = StateTree(kv)
    assert reader.latest_version is None
    writer.apply(3, {b"a": b"1"}, [])
    assert reader.latest_version == 3
    for v in range(4, 9):
        writer.apply(v, {b"a": b"%d" % v}, [])
    assert reader.latest_version == 8 and reader.root() == writer.root()
    writer.prune(8)
    assert reader.latest_version == 8 and reader.oldest_version == 8
    assert reader.get(b"a") == b"8"
    staged = reader.stage(9, {b"b": b"2"}, [])
    assert staged.root == scratch_root({b"a": b"8", b"b": b"2"})


class LostWriteKV(MemoryKV):
    """Runs a batch's callbacks, then fails without writing (a disk error)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next = False

    def write(self, batch: WriteBatch, *, sync: bool = False) -> None:
        if self.fail_next:
            self.fail_next = False
            for callback in batch.meanwhile:
                callback()
            raise DatabaseIOError("memory", "injected write failure")
        super().write(batch, sync=sync)


def test_cache_updated_during_a_failed_write_is_dropped() -> None:
    """The tree moves a version into its cache while the batch is written; when
    that write fails, later versions and proofs must still match a fresh tree."""
    rng = random.Random(3)
    kv = LostWriteKV()
    tree = StateTree(kv)
    model: dict[bytes, bytes] = {}
    for v in range(8):
        puts = {b"k%d" % rng.randrange(200): rng.randbytes(6) for _ in range(40)}
        if v in (3, 6):
            kv.fail_next = True
            with pytest.raises(DatabaseIOError):
                tree.apply(v, {k: b"lost" for k in puts}, [])
            assert tree.latest_version == v - 1
        model.update(puts)
        assert tree.apply(v, puts, []) == scratch_root(model)
        for key in rng.sample(sorted(model), 5):
            value, proof = tree.get_with_proof(key)
            assert value == model[key] and verify_proof(tree.root(), key, value, proof)


def test_cache_update_rides_on_the_batch(tmp_path: Path) -> None:
    """When a BlockStore-style batch lands, the tree's cache already holds the new
    version (its update ran while LevelDB wrote): nothing waits for the next pass."""
    kv = LevelKV.open(tmp_path / "db", create=True)
    tree = StateTree(kv)
    rng = random.Random(9)
    entries = 0
    for v in range(6):
        staged = tree.stage(v, {rng.randbytes(8): b"x" for _ in range(300)}, [])
        assert tree.cache_size[0] == entries  # staging alone changes nothing
        batch = WriteBatch()
        batch.put(b"block", b"%d" % v)
        staged.write_into(batch)
        kv.write(batch, sync=True)
        assert tree.cache_size[0] > entries
        entries = tree.cache_size[0]
    assert tree.cache_misses == 0
    kv.close()


@pytest.mark.parametrize("cache_bytes", [1 << 30, 30_000, 2_000])
def test_cache_accounting_stays_exact(cache_bytes: int) -> None:
    """The cache's accounted bytes equal its entries' sizes after every commit,
    whether a rewrite replaces a record the pass found cached, one it loaded from
    the store, or a path the cache had no room for; and every cached record is the
    node the latest version has at that path."""
    from storage.state import CACHE_ENTRY_OVERHEAD

    rng = random.Random(cache_bytes)
    kv = MemoryKV()
    tree = StateTree(kv, cache_bytes=cache_bytes)
    present: list[bytes] = []
    for v in range(25):
        puts = {rng.randbytes(rng.choice((2, 8))): rng.randbytes(5) for _ in range(rng.randrange(1, 80))}
        dels = rng.sample(present, min(len(present), rng.randrange(0, 20)))
        staged = tree.stage(v, puts, dels)
        if v % 5 == 4:
            staged = tree.stage(v, puts, dels)  # restaged: only the last one counts
        batch = WriteBatch()
        staged.write_into(batch)
        kv.write(batch, sync=True)
        present = sorted((set(present) - set(dels)) | set(puts))
        cache = tree._cache
        assert tree.cache_size[1] == sum(
            len(rec) + len(path) + CACHE_ENTRY_OVERHEAD for path, rec in cache.items()
        )
        latest = latest_nodes(kv, tree)
        for path, rec in cache.items():
            assert latest[path] == rec


def latest_nodes(kv: KV, tree: StateTree) -> dict[bytes, bytes]:
    """Path -> record of every internal node of the latest version, read from the
    store (not the cache) by walking down from the root pointer."""
    from storage.state import INTERNAL_SLOT, encode_path, node_child

    out: dict[bytes, bytes] = {}

    def walk(slot: bytes, prefix: bytes, depth: int) -> None:
        if len(slot) != INTERNAL_SLOT:
            return
        # encode_path reads the nibbles of a key hash; pad the prefix to one.
        path = encode_path(prefix + bytes(32 - len(prefix)), depth)
        rec = kv.get(keys.STATE_NODE + slot[32:40] + path)
        assert rec is not None
        out[path] = rec
        for nib in range(16):
            child = node_child(rec, nib)
            if child:
                nibbles = bytes(prefix_nibbles(prefix, depth)) + bytes([nib])
                walk(child, pack_nibbles(nibbles), depth + 1)

    version = tree.latest_version
    assert version is not None
    root_slot = kv.get(keys.STATE_ROOT + version.to_bytes(8, "big"))
    assert root_slot is not None
    walk(root_slot, b"", 0)
    return out


def prefix_nibbles(packed: bytes, count: int) -> list[int]:
    return [(packed[i >> 1] >> 4) if i % 2 == 0 else (packed[i >> 1] & 0x0F) for i in range(count)]


def pack_nibbles(nibbles: bytes) -> bytes:
    padded = nibbles + (b"\x00" if len(nibbles) % 2 else b"")
    return bytes((padded[i] << 4) | padded[i + 1] for i in range(0, len(padded), 2))
