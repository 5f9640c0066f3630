"""Transaction indexes written with each block, and their reads.

The daemon puts `index_writes(block, result)` into the block's commit batch
(`BlockStore.commit_block(..., extra=index_writes(block, result))`), so a block
and its index entries land together or not at all. Keys come from storage.keys:

    tx_key(hash)                        -> tx_location(height, index)
    sender_tx_key(sender, height, index) -> tx hash
    kind_tx_key(kind, height, index)     -> tx hash      (Generic transactions, by kind)
    index_key("tx_result", hash)         -> pack([lane, lane_index, gas_used])

`index` is the transaction's position in the whole block (lanes in the order
cards, seeders, keys, txs); the tx_result entry adds its lane and position in
the lane (the leaf index under the header's lane root) and the VM gas it used.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import msgpack

from chain import tx as txm
from chain.encoding import pack_trusted
from chain.state import BlockResult
from chain.types import Block
from node.view import TxLocation
from storage import keys
from storage.blocks import BlockStore
from storage.kv import KV, WriteBatch

TX_RESULT_INDEX = b"tx_result"
MAX_COUNT = 100_000
"""Most index entries counted for a total (beyond it the total is reported as capped)."""


@dataclass(frozen=True, slots=True)
class IndexedTx:
    """A committed transaction as the indexes know it."""

    location: TxLocation
    block_index: int
    """Position in the whole block (lanes in order)."""
    gas_used: int | None
    """VM gas the transaction used (None when the node did not index results)."""


def index_writes(block: Block, result: BlockResult) -> WriteBatch:
    """The index entries of a committed block, for its commit batch."""
    batch = WriteBatch()
    height = block.header.height
    txs_lane = block.lane("txs")
    for block_index, r in enumerate(result.tx_results):
        batch.put(keys.tx_key(r.tx_hash), keys.tx_location(height, block_index))
        batch.put(keys.sender_tx_key(r.sender, height, block_index), r.tx_hash)
        lane_no = txm.LANE_NAMES.index(r.lane)
        batch.put(keys.index_key(TX_RESULT_INDEX, r.tx_hash), pack_trusted([lane_no, r.index, r.gas_used]))
        if r.kind == "Generic":
            # the block was applied, so its bytes decode
            body = txm.Tx.decode_untrusted(txs_lane[r.index]).body
            if isinstance(body, txm.Generic):
                batch.put(keys.kind_tx_key(body.kind, height, block_index), r.tx_hash)
    return batch


def get_tx(kv: KV, tx_hash: bytes) -> IndexedTx | None:
    """Where a committed transaction is, or None if the index does not know it."""
    raw = kv.get(keys.tx_key(tx_hash))
    if raw is None:
        return None
    height, block_index = keys.decode_tx_location(raw)
    res = kv.get(keys.index_key(TX_RESULT_INDEX, tx_hash))
    if res is not None:
        lane_no, lane_index, gas = msgpack.unpackb(res)
        return IndexedTx(TxLocation(tx_hash, height, txm.LANE_NAMES[lane_no], lane_index), block_index, gas)
    # no result entry: the lane follows from the block's lane sizes
    data = BlockStore(kv).get_block(height)
    if data is None:
        return IndexedTx(TxLocation(tx_hash, height, "", block_index), block_index, None)
    block = Block.decode_untrusted(data)
    rest = block_index
    for lane in txm.LANE_NAMES:
        n = len(block.lane(lane))
        if rest < n:
            return IndexedTx(TxLocation(tx_hash, height, lane, rest), block_index, None)
        rest -= n
    return None


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of an index scan, oldest first unless reversed."""

    hits: tuple[tuple[int, int, bytes], ...]
    """(height, block index, tx hash)."""
    total: int
    total_capped: bool
    """True if more than MAX_COUNT entries exist (total is then MAX_COUNT)."""


def _scan(kv: KV, prefix: bytes, offset: int, limit: int, reverse: bool) -> SearchPage:
    hits: list[tuple[int, int, bytes]] = []
    total = 0
    it: Iterator[tuple[bytes, bytes]] = kv.iterate(prefix, reverse=reverse)
    for key, value in it:
        if total >= MAX_COUNT:
            return SearchPage(tuple(hits), total, True)
        if offset <= total < offset + limit:
            height, index = keys.height_index_of(key)
            hits.append((height, index, value))
        total += 1
    return SearchPage(tuple(hits), total, False)


def search_by_sender(kv: KV, sender: bytes, *, offset: int = 0, limit: int = 30, reverse: bool = False) -> SearchPage:
    """Committed transactions of `sender`, in height order (newest first with reverse)."""
    return _scan(kv, keys.sender_tx_prefix(sender), offset, limit, reverse)


def search_by_kind(kv: KV, kind: bytes, *, offset: int = 0, limit: int = 30, reverse: bool = False) -> SearchPage:
    """Committed Generic transactions of `kind`, in height order."""
    return _scan(kv, keys.kind_tx_prefix(kind), offset, limit, reverse)
