"""Transaction gossip, coalesced per peer.

Theory of operation. A transaction the mempool accepted (from RPC, or from a
peer once checked) is queued for every connected peer that has not sent it to
us; nothing is written at once. The daemon's flusher wakes shortly after the
first queued transaction (``FLUSH_DELAY``), takes everything queued and sends
each peer its transactions as a few ``TxBatchMessage`` frames
(:func:`node.wire.pack_tx_batches`): one frame per peer per wake-up instead of
one frame per transaction per peer, which is what made gossip cost more than
checking the transactions (frame ids, seen-cache entries, decodes, QUIC stream
writes and router events per frame).

Who has a transaction is tracked by transaction hash in a seen-cache of its
own (``TxGossip.seen``), not in the consensus frames' cache: a peer could
otherwise send "transaction" bytes equal to a future vote frame and make us
drop the vote as already seen.

Gossip is best effort, like the mempool channel (DROP on overflow): past
``max_pending_bytes`` queued for one peer, further transactions for it are
dropped and counted. Pure: no trio, no clock (times are passed in).
"""

from __future__ import annotations

from collections.abc import Iterable

from node.bounded import BoundedMap
from node.wire import Limits, pack_tx_batches
from p2p.gossip import SeenCache

FLUSH_DELAY = 0.01
"""Seconds the flusher waits after the first queued transaction, so that what
arrives meanwhile leaves in the same frame (10 ms at 1,000 tx/s: ~10 txs a frame)."""
MAX_PENDING_BYTES = 4 * 1024 * 1024
"""Bytes of transactions queued for one peer at most (the channel's queue size)."""
RECENT_TXS = 50_000
"""Transactions first seen lately kept by hash (a compact proposal is rebuilt from the
mempool and these: a transaction may still wait in the intake queue, or have failed
here for a reason the proposer's state did not share)."""


class TxGossip:
    """Outgoing transactions per peer and the seen-cache of transaction hashes."""

    def __init__(self, limits: Limits, *, max_pending_bytes: int = MAX_PENDING_BYTES,
                 seen_capacity: int = 200_000, seen_ttl: float = 120.0,
                 recent_capacity: int = RECENT_TXS) -> None:
        self.limits = limits
        self.max_pending_bytes = max_pending_bytes
        self.seen = SeenCache(capacity=seen_capacity, ttl=seen_ttl)
        """Transaction hash -> the peers that sent it to us."""
        self._pending: dict[bytes, list[bytes]] = {}
        self._pending_bytes: dict[bytes, int] = {}
        self.dropped = 0
        """Transactions not queued because a peer's queue was full (a counter)."""
        self.frames_built = 0
        self.txs_queued = 0
        self._recent: BoundedMap[bytes, bytes] = BoundedMap(recent_capacity)

    def remember(self, tx_hash: bytes, tx_bytes: bytes) -> None:
        """Keep a transaction seen for the first time (bounded, oldest forgotten first)."""
        self._recent.put(tx_hash, tx_bytes)

    def recent(self, tx_hash: bytes) -> bytes | None:
        """A transaction kept by :meth:`remember`, if still there."""
        return self._recent.get(tx_hash)

    def observe(self, tx_hash: bytes, sender: bytes | None, now: float) -> bool:
        """Record that ``sender`` (None: ourselves) has ``tx_hash``; True the first time."""
        return self.seen.observe(tx_hash, sender, now)

    def queue(self, tx_bytes: bytes, tx_hash: bytes, peers: Iterable[bytes]) -> int:
        """Queue a transaction for each of ``peers`` that has not sent it to us; returns
        for how many peers it was queued."""
        senders = self.seen.senders(tx_hash)
        size = len(tx_bytes)
        queued = 0
        for peer in peers:
            if peer in senders:
                continue
            used = self._pending_bytes.get(peer, 0)
            if used + size > self.max_pending_bytes:
                self.dropped += 1
                continue
            self._pending.setdefault(peer, []).append(tx_bytes)
            self._pending_bytes[peer] = used + size
            queued += 1
        if queued:
            self.txs_queued += 1
        return queued

    @property
    def pending(self) -> bool:
        """Something is queued for some peer."""
        return bool(self._pending)

    def forget_peer(self, peer: bytes) -> None:
        """Drop what was queued for a peer that left."""
        self._pending.pop(peer, None)
        self._pending_bytes.pop(peer, None)

    def take_frames(self) -> list[tuple[bytes, bytes]]:
        """Everything queued, as (peer, TxBatchMessage frame) pairs; the queues empty."""
        pending, self._pending, self._pending_bytes = self._pending, {}, {}
        out: list[tuple[bytes, bytes]] = []
        for peer, txs in pending.items():
            for frame in pack_tx_batches(txs, self.limits):
                out.append((peer, frame))
        self.frames_built += len(out)
        return out
