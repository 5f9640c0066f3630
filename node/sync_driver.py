"""Block sync: the trio side of ``consensus.blocksync``.

Theory of operation. Peers tell each other what they stored with ``Status``
on the blocks channel: when they connect and every ``STATUS_INTERVAL``
seconds. The driver answers ``BlockRequest`` from the store (``BlockResponse``
or ``NoBlock``) and ``CandidateRequest`` (consensus wants a block of the
height being decided) from the consensus core or the store.

A catch-up episode runs a pure :class:`consensus.blocksync.BlockSync` in one
task fed through a memory channel (statuses, responses, departures, a tick
for request timeouts). Every block it hands out has been checked (height,
validators hash, link to its parent, the commit in full); the task pauses
consensus, applies the block on a worker thread (``apply_block`` also checks
the app hash), commits it like consensus does and moves on. When the next
height is above every peer's, ``SwitchToConsensus`` starts the consensus
driver there.

The node starts in an episode: a fresh full node syncs from genesis, a
restarted validator fetches what it missed before it votes again. With no peer
status within ``STARTUP_WAIT`` seconds (a lone validator) consensus starts
anyway. A node in consensus that sees a peer more than
``consensus.blocksync.FALL_BACK_HEIGHTS`` heights above its store starts a new
episode (consensus keeps running until the first block is applied).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import trio

from chain.errors import ChainError
from consensus import blocksync as bs
from node import wire
from node.consensus_driver import ConsensusDriver
from node.log import get_logger
from node.node import ConsensusFailure, Node
from p2p import BLOCKS, NotConnected

log = get_logger("blocksync")

STATUS_INTERVAL = 1.0
"""Seconds between Status broadcasts."""
REQUEST_TIMEOUT = 10.0
"""A block request not answered in this many seconds goes to another peer."""
STARTUP_WAIT = 3.0
"""With no peer status after this long, consensus starts on its own."""
TICK = 0.25


@dataclass(frozen=True, slots=True)
class _Status:
    peer: bytes
    height: int


@dataclass(frozen=True, slots=True)
class _Response:
    peer: bytes
    height: int
    block_bytes: bytes | None
    commit_bytes: bytes | None


@dataclass(frozen=True, slots=True)
class _Gone:
    peer: bytes


_Event = _Status | _Response | _Gone


class SyncDriver:
    """Status exchange, serving blocks, and catch-up episodes."""

    def __init__(self, node: Node, host: Any, consensus: ConsensusDriver) -> None:
        self.node = node
        self.host = host
        self.consensus = consensus
        self._send, self._recv = trio.open_memory_channel[_Event](math.inf)
        self._want_sync = trio.Event()
        self._want_sync.set()
        self.syncing = False
        self.episodes = 0
        self.blocks_synced = 0

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._status_loop)
            task_status.started()
            while True:
                await self._want_sync.wait()
                self._want_sync = trio.Event()
                await self._episode()

    # --- messages from the router --------------------------------------------------------

    def status(self) -> wire.Status:
        stored = self.node.blocks.latest_height
        if stored is None:
            return wire.Status(0, 0)
        return wire.Status(stored, self.node.blocks.base_height or stored)

    def on_peer_connected(self, peer: bytes) -> None:
        self._send_to(peer, wire.encode(self.status()))

    def on_peer_gone(self, peer: bytes) -> None:
        self._send.send_nowait(_Gone(peer))

    def on_message(self, peer: bytes, msg: Any) -> None:
        node = self.node
        if isinstance(msg, wire.Status):
            ps = node.peers.get(peer)
            if ps is not None:
                ps.height, ps.base = msg.height, msg.base
            if self.syncing:
                self._send.send_nowait(_Status(peer, msg.height))
            elif self.consensus.running:
                heights: dict[bs.PeerId, int] = {p: s.height for p, s in node.peers.items()}
                if bs.should_fall_back(node.state.height, heights):
                    log.info("peers are ahead: falling back to block sync",
                             height=node.state.height, best=max(heights.values(), default=0))
                    self._want_sync.set()
                else:
                    self.consensus.on_peer_status(peer, msg.height)
        elif isinstance(msg, wire.BlockRequest):
            block = node.blocks.get_block(msg.height)
            commit = node.blocks.get_commit(msg.height)
            if block is None or commit is None:
                self._send_to(peer, wire.encode(wire.NoBlock(msg.height)))
            else:
                self._send_to(peer, wire.encode(wire.BlockResponse(block, commit)))
        elif isinstance(msg, wire.BlockResponse):
            if not self.syncing:
                return
            try:
                got = wire.decode_block(msg.block_bytes, node.limits)
            except wire.WireError as exc:
                self.host.report_violation(peer, f"blocks: {exc}")
                return
            self._send.send_nowait(_Response(peer, got.header.height, msg.block_bytes,
                                             msg.commit_bytes))
        elif isinstance(msg, wire.NoBlock):
            if self.syncing:
                self._send.send_nowait(_Response(peer, msg.height, None, None))
        elif isinstance(msg, wire.CandidateRequest):
            found = self.consensus.known_block(msg.block_hash)
            raw = found.encode() if found is not None else node.blocks.get_block_by_hash(msg.block_hash)
            if raw is not None:
                self._send_to(peer, wire.encode(wire.CandidateBlock(raw)))
        elif isinstance(msg, wire.CandidateBlock):
            try:
                candidate = wire.decode_block(msg.block_bytes, node.limits)
            except wire.WireError as exc:
                self.host.report_violation(peer, f"blocks: {exc}")
                return
            self.consensus.on_block(peer, candidate)

    def _send_to(self, peer: bytes, frame: bytes) -> None:
        with contextlib.suppress(NotConnected):
            self.host.send(peer, BLOCKS, frame)

    async def _status_loop(self) -> None:
        while True:
            self.host.broadcast(BLOCKS, wire.encode(self.status()))
            await trio.sleep(STATUS_INTERVAL)

    # --- an episode ----------------------------------------------------------------------

    async def _episode(self) -> None:
        node = self.node
        self.syncing = True
        self.episodes += 1
        node.catching_up = True
        node.metrics.consensus_fast_syncing.set(1)
        # drop what queued up while no episode ran
        while True:
            try:
                self._recv.receive_nowait()
            except trio.WouldBlock:
                break
        h = node.state.height + 1
        sync = bs.BlockSync(node.genesis.chain_id, h, node.state.validator_set(h),
                            node.state.last_block_hash)
        log.info("block sync started", next_height=h)
        actions: list[bs.SyncAction] = []
        for peer, ps in list(node.peers.items()):
            actions.extend(sync.on_status(peer, ps.height))
        requested: dict[int, tuple[bytes, float]] = {}
        started = trio.current_time()
        paused = False
        try:
            while True:
                switch = None
                while actions:
                    a = actions.pop(0)
                    if isinstance(a, bs.SendRequest):
                        peer = a.peer if isinstance(a.peer, bytes) else b""
                        requested[a.height] = (peer, trio.current_time())
                        self._send_to(peer, wire.encode(wire.BlockRequest(a.height)))
                    elif isinstance(a, bs.DropPeer):
                        if isinstance(a.peer, bytes):
                            log.warning("peer sent a block that does not verify",
                                        peer=a.peer.hex()[:16], reason=a.reason)
                            self.host.report_violation(a.peer, f"block sync: {a.reason}")
                    elif isinstance(a, bs.ApplyBlock):
                        if not paused:
                            await self.consensus.pause()
                            paused = True
                        requested.pop(a.height, None)
                        await self._apply(a)
                        actions.extend(sync.on_applied(
                            a.height, node.state.validator_set(a.height + 1)))
                    elif isinstance(a, bs.SwitchToConsensus):
                        switch = a.height
                if switch is not None:
                    break
                if not sync.peers and trio.current_time() - started > STARTUP_WAIT \
                        and node.state.height + 1 == sync.next_height and not paused \
                        and (not self.consensus.started or self.consensus.running):
                    switch = node.state.height + 1
                    log.info("no peer status: starting consensus alone")
                    break
                ev: _Event | None = None
                with trio.move_on_after(TICK):
                    ev = await self._recv.receive()
                now = trio.current_time()
                if isinstance(ev, _Status):
                    actions.extend(sync.on_status(ev.peer, ev.height))
                elif isinstance(ev, _Gone):
                    actions.extend(sync.on_peer_gone(ev.peer))
                elif isinstance(ev, _Response):
                    actions.extend(self._on_response(sync, ev))
                for height, (peer, at) in list(requested.items()):
                    if now - at > REQUEST_TIMEOUT:
                        del requested[height]
                        actions.extend(sync.on_request_timeout(peer, height))
        finally:
            self.syncing = False
        log.info("block sync done", height=node.state.height, consensus_from=switch)
        node.catching_up = False
        node.metrics.consensus_fast_syncing.set(0)
        await self.consensus.start(max(switch, node.state.height + 1))

    def _on_response(self, sync: bs.BlockSync, ev: _Response) -> list[bs.SyncAction]:
        if ev.block_bytes is None or ev.commit_bytes is None:
            return sync.on_response(ev.peer, ev.height, None, None)
        try:
            block = wire.decode_block(ev.block_bytes, self.node.limits)
            commit = wire.decode_commit(ev.commit_bytes, self.node.limits)
        except wire.WireError as exc:
            self.host.report_violation(ev.peer, f"block sync: {exc}")
            return sync.on_peer_gone(ev.peer)
        return sync.on_response(ev.peer, ev.height, block, commit)

    async def _apply(self, a: bs.ApplyBlock) -> None:
        # a height consensus committed meanwhile is skipped: both carry +2/3 commits
        try:
            done = await self.node.apply_and_commit(a.block, a.commit)
        except ChainError as exc:
            raise ConsensusFailure(
                f"block {a.height} with a valid commit does not apply here: {exc}") from exc
        if done:
            self.blocks_synced += 1
