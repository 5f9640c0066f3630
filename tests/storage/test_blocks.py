"""Block store: one synced batch per block, lookups by height and hash, pruning."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import keys
from storage.blocks import BlockStore
from storage.errors import BlockStoreError, KeyLayoutError
from storage.kv import KV, LevelKV, MemoryKV, WriteBatch
from storage.state import StagedVersion, StateTree


@pytest.fixture(params=["memory", "leveldb"])
def kv(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KV]:
    store: KV = MemoryKV() if request.param == "memory" else LevelKV.open(tmp_path / "db", create=True)
    yield store
    store.close()


def bh(h: int) -> bytes:
    return h.to_bytes(32, "big")


class CountingKV(MemoryKV):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[int, bool]] = []

    def write(self, batch: WriteBatch, *, sync: bool = False) -> None:
        self.writes.append((len(batch), sync))
        super().write(batch, sync=sync)


def test_commit_and_lookups(kv: KV) -> None:
    store = BlockStore(kv)
    assert store.latest_height is None
    for h in range(1, 5):
        store.commit_block(h, bh(h), b"block%d" % h, b"seen%d" % h, None)
    assert store.latest_height == 4 and store.base_height == 1
    assert store.get_block(2) == b"block2"
    assert store.get_block_by_hash(bh(3)) == b"block3"
    assert store.get_height_by_hash(bh(3)) == 3
    assert store.get_block_hash(4) == bh(4)
    assert store.get_commit(2) == b"seen2"
    store.set_commit(2, b"canonical2")
    assert store.get_commit(2) == b"canonical2"
    assert store.get_block(9) is None and store.get_block_by_hash(bh(9)) is None
    assert store.get_commit(9) is None


def test_one_synced_batch_with_state_and_extra() -> None:
    kv = CountingKV()
    tree = StateTree(kv)
    store = BlockStore(kv)
    staged = tree.stage(1, {b"a": b"1"}, [])
    extra = WriteBatch()
    extra.put(keys.tx_key(bh(77)), keys.tx_location(1, 0))
    store.commit_block(1, bh(1), b"b1", b"c1", staged, extra)
    assert len(kv.writes) == 1 and kv.writes[0][1] is True
    assert tree.latest_version == 1 and tree.get(b"a") == b"1"
    assert keys.decode_tx_location(kv.get(keys.tx_key(bh(77))) or b"") == (1, 0)
    # the next block stages from the version the block store committed
    staged = tree.stage(2, {b"b": b"2"}, [])
    store.commit_block(2, bh(2), b"b2", None, staged)
    assert tree.get(b"a") == b"1" and tree.get(b"b") == b"2"
    assert store.get_commit(2) is None


def test_order_is_enforced(kv: KV) -> None:
    store = BlockStore(kv)
    tree = StateTree(kv)
    store.commit_block(10, bh(10), b"b", b"c", tree.stage(10, {}, []))
    with pytest.raises(BlockStoreError):
        store.commit_block(12, bh(12), b"b", b"c", None)
    with pytest.raises(BlockStoreError):
        store.commit_block(10, bh(10), b"b", b"c", None)
    with pytest.raises(BlockStoreError):
        store.commit_block(11, bh(11), b"b", b"c", StagedVersion(12, b"", ([], [])))
    with pytest.raises(BlockStoreError):
        store.set_commit(99, b"c")
    with pytest.raises(BlockStoreError):
        store.commit_block(11, bh(11), "b", b"c", None)  # type: ignore[arg-type]
    with pytest.raises(KeyLayoutError):
        store.commit_block(11, b"short", b"b", b"c", None)
    assert store.latest_height == 10


def test_prune_blocks(kv: KV) -> None:
    store = BlockStore(kv)
    for h in range(20):
        store.commit_block(h, bh(h), b"b%d" % h, b"c", None)
    assert store.prune_blocks(15) == 15
    assert store.base_height == 15 and store.latest_height == 19
    assert store.get_block(14) is None and store.get_block_by_hash(bh(14)) is None
    assert store.get_commit(3) is None and store.get_block_hash(3) is None
    assert store.get_block(15) == b"b15"
    assert store.prune_blocks(100) == 4  # the latest block always stays
    assert store.latest_height == 19
