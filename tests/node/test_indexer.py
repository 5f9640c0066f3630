"""node.indexer: the index entries of a committed block and their lookups, on LevelDB."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from chain import tx as txm
from node import indexer
from storage import keys
from storage.kv import WriteBatch
from tests.chain.helpers import publish_body
from tests.node.chainfixture import ChainFixture, FixtureView
from tests.node.test_rpc_methods import err, start


@pytest.fixture
def fx(tmp_path: Path) -> Iterator[ChainFixture]:
    f = ChainFixture(tmp_path / "db")
    yield f
    f.close()


def test_index_writes_cover_hash_sender_kind_and_result(fx: ChainFixture) -> None:
    card = fx.tx("alice", publish_body())
    note = fx.tx("bob", txm.Generic(b"note", b"x"))
    pay = fx.tx("alice", txm.Transfer(fx.addr("bob"), 3), nonce=1)
    block, result = fx.commit([note, pay, card])  # lanes: cards [card], txs [note, pay]
    batch = indexer.index_writes(block, result)
    puts = {k: v for k, v in batch.ops if v is not None}
    assert puts[keys.tx_key(txm.tx_hash(card))] == keys.tx_location(1, 0)
    assert puts[keys.tx_key(txm.tx_hash(pay))] == keys.tx_location(1, 2)
    assert puts[keys.sender_tx_key(fx.addr("alice"), 1, 2)] == txm.tx_hash(pay)
    assert puts[keys.kind_tx_key(b"note", 1, 1)] == txm.tx_hash(note)
    assert not any(k.startswith(keys.TX_BY_KIND) and v != txm.tx_hash(note) for k, v in puts.items())
    found = indexer.get_tx(fx.kv, txm.tx_hash(pay))
    assert found is not None and found.block_index == 2 and found.gas_used == 0
    assert (found.location.height, found.location.lane, found.location.index) == (1, "txs", 1)
    assert indexer.get_tx(fx.kv, bytes(32)) is None


def test_lookup_works_without_result_entries(fx: ChainFixture) -> None:
    """A node that writes only storage.keys' tx indexes still answers lane and index."""
    card = fx.tx("alice", publish_body())
    pay = fx.tx("bob", txm.Transfer(fx.addr("alice"), 3))
    fx.commit([pay, card])
    drop = WriteBatch()
    for raw in (card, pay):
        drop.delete(keys.index_key(indexer.TX_RESULT_INDEX, txm.tx_hash(raw)))
    fx.kv.write(drop)
    found = indexer.get_tx(fx.kv, txm.tx_hash(pay))
    assert found is not None and found.gas_used is None
    assert (found.location.lane, found.location.index, found.block_index) == ("txs", 0, 1)
    fx.commit([])
    fx.blocks.prune_blocks(2)
    pruned = indexer.get_tx(fx.kv, txm.tx_hash(card))
    assert pruned is not None and pruned.location.lane == "" and pruned.location.height == 1


def test_search_pages_orders_and_caps(fx: ChainFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(3):
        fx.commit([fx.tx("alice", txm.Transfer(fx.addr("bob"), 1)), fx.tx("carol", txm.Generic(b"k", b""))])
    alice = fx.addr("alice")
    page = indexer.search_by_sender(fx.kv, alice, offset=1, limit=1)
    assert [h for h, _, _ in page.hits] == [2] and (page.total, page.total_capped) == (3, False)
    rev = indexer.search_by_sender(fx.kv, alice, limit=2, reverse=True)
    assert [h for h, _, _ in rev.hits] == [3, 2]
    assert indexer.search_by_kind(fx.kv, b"k").total == 3
    assert indexer.search_by_kind(fx.kv, b"kk").total == 0
    monkeypatch.setattr(indexer, "MAX_COUNT", 2)
    capped = indexer.search_by_sender(fx.kv, alice)
    assert (capped.total, capped.total_capped, len(capped.hits)) == (2, True, 2)


@pytest.mark.trio
async def test_pruned_blocks_and_state_are_unavailable(nursery: trio.Nursery, tmp_path: Path) -> None:
    fx = ChainFixture(tmp_path / "db")
    try:
        view = FixtureView(fx, tmp_path)
        raw = fx.tx("alice", txm.Transfer(fx.addr("bob"), 1))
        fx.commit([raw])
        for _ in range(3):
            fx.commit([])
        fx.blocks.prune_blocks(3)
        fx.tree.prune(3)
        port = await start(nursery, view)
        for method, params in [
            ("block", {"height": 1}),
            ("header", {"height": 2}),
            ("tx", {"hash": txm.tx_hash(raw).hex()}),
            ("account", {"address": fx.addr("alice").hex(), "height": 1}),
            ("query", {"key": "01" + fx.addr("alice").hex(), "height": 2, "prove": True}),
        ]:
            e = await err(port, method, params)
            assert e["code"] == -32002, (method, e)
            assert "pruned" in e["message"] or "not available" in e["message"], (method, e)
    finally:
        fx.close()
