"""Block sync: catching up by downloading committed blocks instead of voting.

Theory of operation
-------------------
A node that is far behind does not need consensus: every block it misses is
already decided, and the decision is proven by the block's commit (+2/3 of the
validator set's power signed precommits for it). :class:`BlockSync` is the pure
logic of downloading and checking them; the driver owns the network and the
block store.

* Peers report their latest stored height (:meth:`BlockSync.on_status`).
* Up to ``window`` heights above the last applied block are requested at once,
  each from one peer that has it (least loaded first, ties by peer id), at most
  ``max_in_flight_per_peer`` per peer. The driver calls
  :meth:`~BlockSync.on_request_timeout` when a request is not answered in time.
* Each response is checked before anything is applied: the block's height and
  ``validators_hash`` must match, it must link to the previously applied block,
  and the commit must verify in full against the validator set of that height
  (``ValidatorSet.verify_commit``). A peer that sends a bad block or commit is
  dropped (:class:`DropPeer`) and the height requested elsewhere.
* Blocks are handed out strictly in height order (:class:`ApplyBlock`); the
  driver applies one, then calls :meth:`~BlockSync.on_applied` with the
  validator set of the next height (known once the block is applied: set
  changes take effect two heights later).
* Hand-over: when the next height is above every peer's height the driver gets
  :class:`SwitchToConsensus` and starts the consensus core at that height.
* Fall-back (:func:`should_fall_back`): a node in consensus that sees peers more
  than ``FALL_BACK_HEIGHTS`` heights above its last stored block switches to
  block sync instead of fetching one commit per height through consensus (the
  long-standing CometBFT complaint: a node that once fell behind never left
  consensus and never caught up).

Peers' claims cost at most time: a peer that lies about its height gets
requests it cannot answer, times out and is dropped; nothing unverified is
ever applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from chain.errors import InvalidCommit
from chain.types import Block, Commit, ValidatorSet
from consensus.errors import UsageError

PeerId = bytes | int | str
"""Whatever the driver uses to name a peer (the node public key in the node)."""

FALL_BACK_HEIGHTS = 3
"""Fall back to block sync when peers are more than this many heights ahead."""


def should_fall_back(last_stored: int, peer_heights: Mapping[PeerId, int],
                     gap: int = FALL_BACK_HEIGHTS) -> bool:
    """True when some peer's stored height is more than ``gap`` above ours."""
    best = max(peer_heights.values(), default=0)
    return best - last_stored > gap


@dataclass(frozen=True, slots=True)
class SendRequest:
    """Ask ``peer`` for the block and commit of ``height``."""

    peer: PeerId
    """Who to ask."""
    height: int
    """Which height."""


@dataclass(frozen=True, slots=True)
class ApplyBlock:
    """Apply and store this verified block with its commit, then call ``on_applied``."""

    height: int
    """Its height (always the next one)."""
    block: Block
    """The block."""
    commit: Commit
    """Its verified commit."""


@dataclass(frozen=True, slots=True)
class DropPeer:
    """Disconnect or stop trusting ``peer``: it sent something that does not verify."""

    peer: PeerId
    """The misbehaving peer."""
    reason: str
    """What was wrong."""


@dataclass(frozen=True, slots=True)
class SwitchToConsensus:
    """Caught up: start the consensus core at ``height``."""

    height: int
    """The first height consensus must decide."""


SyncAction = SendRequest | ApplyBlock | DropPeer | SwitchToConsensus


class BlockSync:
    """Pure block-sync state machine for one catch-up episode."""

    def __init__(self, chain_id: str, next_height: int, valset: ValidatorSet,
                 prev_block_hash: bytes, *, window: int = 16,
                 max_in_flight_per_peer: int = 4) -> None:
        """``next_height`` is the first height to fetch, ``valset`` its validator set,
        ``prev_block_hash`` the hash of the last stored block (b"" at genesis)."""
        if next_height < 1 or window < 1 or max_in_flight_per_peer < 1:
            raise UsageError("block sync needs next_height >= 1 and positive limits")
        self.chain_id = chain_id
        self.next_height = next_height
        self._valset = valset
        self._prev_hash = prev_block_hash
        self.window = window
        self.max_in_flight = max_in_flight_per_peer
        self.peers: dict[PeerId, int] = {}
        self._in_flight: dict[int, PeerId] = {}
        self._received: dict[int, tuple[Block, Commit, PeerId]] = {}
        self._waiting_apply = False
        self._switched = False

    # --- inputs ------------------------------------------------------------------

    def on_status(self, peer: PeerId, height: int) -> list[SyncAction]:
        """``peer`` has stored blocks up to ``height``."""
        if height < 0:
            return [DropPeer(peer, "negative height")]
        self.peers[peer] = max(height, self.peers.get(peer, 0))
        return self._progress()

    def on_peer_gone(self, peer: PeerId) -> list[SyncAction]:
        """``peer`` disconnected: its requests go elsewhere."""
        self.peers.pop(peer, None)
        for h in [h for h, p in self._in_flight.items() if p == peer]:
            del self._in_flight[h]
        return self._progress()

    def on_request_timeout(self, peer: PeerId, height: int) -> list[SyncAction]:
        """The request for ``height`` to ``peer`` was not answered in time."""
        if self._in_flight.get(height) != peer:
            return []
        del self._in_flight[height]
        self.peers.pop(peer, None)  # try others first; a fresh status brings it back
        return self._progress()

    def on_response(self, peer: PeerId, height: int, block: Block | None,
                    commit: Commit | None) -> list[SyncAction]:
        """``peer`` answered the request for ``height`` (None: it does not have it)."""
        if self._in_flight.get(height) != peer:
            return []  # unsolicited or late: ignore
        del self._in_flight[height]
        if block is None or commit is None:
            self.peers[peer] = min(self.peers.get(peer, 0), height - 1)
            return self._progress()
        if block.header.height != height or commit.height != height:
            return [DropPeer(peer, f"sent height {block.header.height} for {height}"),
                    *self._drop(peer)]
        if commit.block_hash != block.hash():
            return [DropPeer(peer, "commit is for another block"), *self._drop(peer)]
        self._received[height] = (block, commit, peer)
        return self._progress()

    def on_applied(self, height: int, next_valset: ValidatorSet) -> list[SyncAction]:
        """The driver applied ``height``; ``next_valset`` is the set of ``height + 1``."""
        if height != self.next_height or not self._waiting_apply:
            raise UsageError(f"on_applied({height}) but block sync waits for {self.next_height}")
        entry = self._received.pop(height)
        self._prev_hash = entry[0].hash()
        self._waiting_apply = False
        self.next_height = height + 1
        self._valset = next_valset
        return self._progress()

    # --- queries -----------------------------------------------------------------

    @property
    def best_peer_height(self) -> int:
        return max(self.peers.values(), default=0)

    def is_caught_up(self) -> bool:
        """Every peer's blocks are applied (and at least one peer is known)."""
        return bool(self.peers) and self.next_height > self.best_peer_height

    # --- internals ---------------------------------------------------------------

    def _drop(self, peer: PeerId) -> list[SyncAction]:
        self.peers.pop(peer, None)
        for h in [h for h, p in self._in_flight.items() if p == peer]:
            del self._in_flight[h]
        for h in [h for h, e in self._received.items() if e[2] == peer]:
            del self._received[h]
        return self._progress()

    def _progress(self) -> list[SyncAction]:
        out: list[SyncAction] = []
        if self._switched:
            return out
        if not self._waiting_apply:
            entry = self._received.get(self.next_height)
            if entry is not None:
                block, commit, peer = entry
                problem = self._check(block, commit)
                if problem is not None:
                    del self._received[self.next_height]
                    out.append(DropPeer(peer, problem))
                    out.extend(self._drop(peer))
                    return out
                self._waiting_apply = True
                out.append(ApplyBlock(self.next_height, block, commit))
        if not self._waiting_apply and self.is_caught_up():
            self._switched = True
            out.append(SwitchToConsensus(self.next_height))
            return out
        out.extend(self._request_more())
        return out

    def _check(self, block: Block, commit: Commit) -> str | None:
        h = self.next_height
        if block.header.validators_hash != self._valset.hash():
            return f"block {h} names another validator set"
        if block.header.prev_block_hash != self._prev_hash:
            return f"block {h} does not link to block {h - 1}"
        try:
            self._valset.verify_commit(self.chain_id, commit, height=h, block_hash=block.hash())
        except InvalidCommit as exc:
            return f"commit of block {h} does not verify: {exc}"
        return None

    def _request_more(self) -> list[SyncAction]:
        out: list[SyncAction] = []
        load: dict[PeerId, int] = {p: 0 for p in self.peers}
        for p in self._in_flight.values():
            if p in load:
                load[p] += 1
        top = min(self.next_height + self.window - 1, self.best_peer_height)
        for h in range(self.next_height, top + 1):
            if h in self._in_flight or h in self._received:
                continue
            candidates = [
                p for p, ph in self.peers.items() if ph >= h and load[p] < self.max_in_flight
            ]
            if not candidates:
                continue
            peer = min(candidates, key=lambda p: (load[p], repr(p)))
            load[peer] += 1
            self._in_flight[h] = peer
            out.append(SendRequest(peer, h))
        return out
