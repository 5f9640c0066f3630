"""The trio task that owns the consensus Replica.

Theory of operation. Every input of consensus (peers' proposals, votes,
commits and blocks, our own built blocks, the chain's verdicts) arrives through
ONE memory channel; timers live in a heap keyed by ``trio.current_time()``
deadlines and are never cancelled (the core ignores stale ones by height, round
and step). The loop waits for the next input or the earliest deadline, then,
outside that wait, feeds the replica and performs the actions it returns in
order (docs/consensus.md, section 6):

* ``Broadcast`` -> gossip on the consensus channel (p2p forwards it on);
* ``ScheduleTimeout`` -> a timer;
* ``CreateBlock`` -> a task: mempool reap + evidence + ``finish_block`` on a
  worker thread; the finished block comes back as an input. When we propose
  round 0 of the next height, that block is built right after the commit,
  during timeout_commit, and used as soon as the round starts;
* ``ValidateBlock`` -> a task: ``apply_block`` on a worker thread; the verdict
  comes back as an input and the result is kept by hash for the commit;
* ``Decide`` -> inline: commit (block, commit, staged state, tx indexes in one
  synced batch), ``replica.decided``, ``replica.set_next_validators(h + 1)``;
* ``RequestBlock`` -> ask every peer on the blocks channel;
* ``ReportEvidence`` -> the evidence pool, gossip, a warning in the log.

The replica itself does the WAL and the sign guard (sign, fsync, then the
signed message is returned for broadcast). The wall clock is read only for
``now_ms`` (vote timestamps, the block-time drift check); timers use trio's
clock, so tests may run under a MockClock.

Block sync pauses the driver (:meth:`pause`) before it applies a block and
restarts it at a higher height (:meth:`start`); while paused, inputs and timers
are dropped.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import trio

from chain import crypto
from chain import statekeys as sk
from chain.errors import ChainError
from chain.state import LANES, draft_block
from chain.types import (
    Block,
    Commit,
    DuplicateVoteEvidence,
    Proposal,
    VoteType,
)
from consensus import core as c
from consensus.errors import ConsensusError, DoubleSignRefused, InvalidMessage
from consensus.replica import HostAction, Replica
from node import wire
from node.log import get_logger
from node.node import ConsensusFailure, Node
from p2p import BLOCKS, CONSENSUS, NotConnected
from p2p.gossip import message_id

log = get_logger("consensus")

PARKED_MAX = 10_000
"""Peers' consensus messages kept while block sync runs."""

STEP_NAMES = {c.Step.PROPOSE: "propose", c.Step.PREVOTE: "prevote",
              c.Step.PRECOMMIT: "precommit", c.Step.COMMIT: "commit"}


def wall_ms() -> int:
    """The wall clock in ms (block time and vote timestamps only)."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class _PeerMsg:
    peer: bytes
    msg: (wire.ProposalMessage | wire.VoteMessage | wire.CommitMessage | wire.EvidenceMessage
          | wire.CompactProposal)
    frame: bytes
    frame_id: bytes


@dataclass(frozen=True, slots=True)
class _BlockIn:
    peer: bytes | None
    block: Block


@dataclass(frozen=True, slots=True)
class _Verdict:
    height: int
    block_hash: bytes
    valid: bool


@dataclass(frozen=True, slots=True)
class _OwnBlock:
    height: int
    round: int
    block: Block


@dataclass(frozen=True, slots=True)
class _Wake:
    """No input: the loop re-reads its earliest timer (armed from outside the loop)."""


_Input = _PeerMsg | _BlockIn | _Verdict | _OwnBlock | _Wake


class ConsensusDriver:
    """Drives one node's Replica; see the module docstring."""

    def __init__(self, node: Node, host: Any) -> None:
        self.node = node
        self.host = host
        g = node.genesis
        key = node.validator_key
        self.replica = Replica(
            g.chain_id, g.consensus_params, _require(node.wal), node.guard,
            None if key is None else key.sign, node.validator_pubkey,
            on_sign_refused=self._on_sign_refused,
        )
        self.running = False
        self.started = False
        self._send, self._recv = trio.open_memory_channel[_Input](math.inf)
        self._timers: list[tuple[float, int, c.Step, int, int]] = []
        self._seq = 0
        self._lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self.evidence_seen: list[DuplicateVoteEvidence] = []
        self.sign_refusals = 0
        self._sent_commit: dict[bytes, int] = {}
        self._parked: deque[_PeerMsg] = deque(maxlen=PARKED_MAX)
        self._unrelayed: dict[bytes, tuple[Proposal, bytes]] = {}
        """Block hash -> (proposal, compact frame id) of compact proposals we accepted but
        could not rebuild: relayed in full once the block arrives."""
        self._prebuilt: dict[int, Block | None] = {}
        self._prebuilding: dict[int, trio.Event] = {}
        self.prebuilt_used = 0
        """Proposals whose block was built during timeout_commit (a counter)."""
        self.compact_rebuilt = 0
        self.compact_missing = 0
        """Compact proposals rebuilt from local transactions / that needed the block fetched."""
        self._validating: dict[int, int] = {}
        """Height -> blocks of that height being validated (ValidateBlock asked, no verdict yet)."""
        self._held: dict[tuple[int, int], bool] = {}
        """(height, round) of propose timeouts held for a validation -> released yet."""
        self.propose_timeouts_held = 0
        """Propose timeouts that fell due while a proposed block was being validated (a counter)."""

    # --- public ----------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """The driver loop (runs until cancelled)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                deadline = self._timers[0][0] if self._timers else math.inf
                item: _Input | None = None
                with trio.move_on_at(deadline):
                    item = await self._recv.receive()
                async with self._lock:
                    if item is not None:
                        await self._handle(item)
                    await self._fire_due_timers()

    def submit(self, item: _Input) -> None:
        """Queue an input (never blocks)."""
        self._send.send_nowait(item)

    def on_peer_message(self, peer: bytes, msg: Any, frame: bytes, frame_id: bytes) -> None:
        self.submit(_PeerMsg(peer, msg, frame, frame_id))

    def on_block(self, peer: bytes | None, block: Block) -> None:
        self.submit(_BlockIn(peer, block))

    async def start(self, height: int) -> None:
        """(Re)start consensus at ``height`` (the height after the last stored block)."""
        async with self._lock:
            if self.started and height <= self.replica.core.height:
                self.running = True
                log.info("consensus resumed", height=self.replica.core.height)
                return
            valset = self.node.state.validator_set(height)
            if not self.started:
                self._check_recent_signatures(height)
            self._timers.clear()
            self._held.clear()
            self.running = True
            self.started = True
            self.node.catching_up = False
            self.node.metrics.consensus_fast_syncing.set(0)
            log.info("consensus started", height=height, validators=len(valset.validators),
                     validator=self.replica.core.own_pubkey is not None
                     and valset.index_of(self.node.validator_pubkey or b"") is not None)
            actions = self.replica.start(height, valset, now_ms=wall_ms())
            await self._perform(actions)
            parked, self._parked = list(self._parked), deque(maxlen=PARKED_MAX)
            for item in parked:
                if self._message_height(item.msg) >= height:
                    await self._handle(item)
            # the loop may be waiting with no deadline: make it see the new timers
            self.submit(_Wake())

    def _check_recent_signatures(self, height: int) -> None:
        """[consensus] double_sign_check_height: refuse to vote if our key signed one of
        the last N stored blocks' commits (another instance with this key may be running)."""
        node = self.node
        depth = node.config.consensus.double_sign_check_height
        if not depth or node.validator_pubkey is None:
            return
        for h in range(max(node.genesis.initial_height, height - depth), height):
            raw = node.blocks.get_commit(h)
            if raw is None:
                continue
            index = node.state.validator_set(h).index_of(node.validator_pubkey) \
                if h >= (node.tree.oldest_version or 0) else None
            if index is not None and any(s.validator_index == index
                                         for s in Commit.decode_untrusted(raw).signatures):
                raise DoubleSignRisk(
                    f"this validator's key signed the commit of height {h}, within "
                    f"double_sign_check_height={depth} of {height}: another instance may be "
                    "running; wait, or set consensus.double_sign_check_height = 0")

    @staticmethod
    def _message_height(msg: Any) -> int:
        if isinstance(msg, wire.ProposalMessage | wire.CompactProposal):
            return int(msg.proposal.height)
        if isinstance(msg, wire.VoteMessage):
            return int(msg.vote.height)
        if isinstance(msg, wire.CommitMessage):
            return int(msg.commit.height)
        return -1

    async def pause(self) -> None:
        """Stop acting (block sync takes over); waits for a half-done step to finish."""
        async with self._lock:
            if self.running:
                log.info("consensus paused for block sync", height=self.replica.core.height)
            self.running = False
            self._timers.clear()

    def info(self) -> dict[str, Any]:
        core = self.replica.core
        if not self.started:
            return {"height": self.node.state.height + 1, "round": 0, "step": "sync"}
        st = core.state()
        proposer = core.valset.get(core.proposer_index(core.height, core.round))
        return {"height": core.height, "round": core.round,
                "step": STEP_NAMES.get(core.step, str(core.step)) if self.running else "sync",
                "locked_round": st.locked_round, "valid_round": st.valid_round,
                "proposer": "" if proposer is None else proposer.pubkey.hex(),
                "sign_refusals": self.sign_refusals,
                "evidence_seen": len(self.evidence_seen)}

    def on_peer_connected(self, peer: bytes) -> None:
        """Send a new peer what it may lack of the current height."""
        if not self.running:
            return
        core = self.replica.core
        frames: list[bytes] = []
        for r in range(max(0, core.round - 2), core.round + 1):
            prop = core.proposal_in(r)
            if prop is not None and prop[1] is not None:
                frames.append(wire.encode(wire.ProposalMessage(prop[0], prop[1].encode())))
            for vt in (VoteType.PREVOTE, VoteType.PRECOMMIT):
                frames.extend(wire.encode(wire.VoteMessage(v)) for v in core.votes_in(r, vt))
        for frame in frames:
            self._send_to(peer, CONSENSUS, frame)

    def on_peer_status(self, peer: bytes, height: int) -> None:
        """A peer stored ``height``; if it works on a height we stored, send its commit."""
        target = height + 1
        if self._sent_commit.get(peer) == target or target > self.node.state.height:
            return
        block = self.node.blocks.get_block(target)
        commit = self.node.blocks.get_commit(target)
        if block is None or commit is None:
            return
        try:
            cm = Commit.decode_untrusted(commit)
        except ChainError:
            return
        self._sent_commit[peer] = target
        self._send_to(peer, CONSENSUS, wire.encode(wire.CommitMessage(cm, block)))

    def on_peer_gone(self, peer: bytes) -> None:
        self._sent_commit.pop(peer, None)

    def known_block(self, block_hash: bytes) -> Block | None:
        if not self.started:
            return None
        return self.replica.core.known_block(block_hash)

    # --- inputs ----------------------------------------------------------------------

    async def _handle(self, item: _Input) -> None:
        left = 0
        if isinstance(item, _Verdict):
            left = self._validating.get(item.height, 0) - 1
            if left > 0:
                self._validating[item.height] = left
            else:
                self._validating.pop(item.height, None)
        if not self.running:
            # kept for when consensus (re)starts: p2p de-duplicates gossip, so a vote
            # dropped now would not be delivered again when its sender re-sends it
            if isinstance(item, _PeerMsg):
                self._parked.append(item)
            return
        now = wall_ms()
        r = self.replica
        actions: list[HostAction] = []
        if isinstance(item, _PeerMsg):
            msg = item.msg
            relay = False
            try:
                if isinstance(msg, wire.ProposalMessage):
                    block = wire.decode_block(msg.block_bytes, self.node.limits)
                    actions = r.on_proposal(msg.proposal, block, now_ms=now)
                    # checked by the core (signature, proposer) only at its own height
                    relay = msg.proposal.height == r.core.height
                elif isinstance(msg, wire.CompactProposal):
                    block_or_none = self._expand(msg)
                    log.debug("compact proposal", height=msg.proposal.height, round=msg.proposal.round,
                              rebuilt=block_or_none is not None)
                    actions = r.on_proposal(msg.proposal, block_or_none, now_ms=now)
                    # a compact proposal is relayed only once rebuilt and checked against
                    # the header, so a relayer is never blamed for a bad proposer's hashes
                    relay = msg.proposal.height == r.core.height and block_or_none is not None
                    if block_or_none is None and msg.proposal.height == r.core.height:
                        self._remember_unrelayed(msg.proposal, item.frame_id)
                elif isinstance(msg, wire.VoteMessage):
                    relay = msg.vote.height == r.core.height
                    actions = r.on_vote(msg.vote, now_ms=now)
                elif isinstance(msg, wire.CommitMessage):
                    block_opt = (wire.decode_block(msg.block_bytes, self.node.limits)
                                 if msg.block_bytes else None)
                    actions = r.on_commit(msg.commit, block_opt, now_ms=now)
                elif isinstance(msg, wire.EvidenceMessage):
                    relay = self._add_evidence(msg.evidence, gossip=False)
            except (InvalidMessage, wire.WireError) as exc:
                if _is_peer_fault(exc):
                    self.host.report_violation(item.peer, f"consensus: {exc}")
                    log.warning("peer sent an invalid consensus message", peer=item.peer.hex()[:16],
                                error=str(exc))
                return
            if relay:
                self.node.relay(CONSENSUS, item.frame, item.frame_id)
        elif isinstance(item, _BlockIn):
            if item.block.header.height != r.core.height:
                return
            actions = r.on_block(item.block, now_ms=now)
            self._relay_fetched(item.block)
        elif isinstance(item, _Verdict):
            if item.height != r.core.height:
                return
            actions = r.on_block_verdict(item.block_hash, item.valid, now_ms=now)
            await self._perform(actions)
            if left <= 0:
                await self._release_held(item.height)
            return
        elif isinstance(item, _OwnBlock):
            if item.height != r.core.height:
                return
            actions = r.on_own_block(item.block, item.round, now_ms=now)
        else:
            return
        await self._perform(actions)

    async def _fire_due_timers(self) -> None:
        now = trio.current_time()
        while self._timers and self._timers[0][0] <= now:
            _, _, step, h, rnd = heapq.heappop(self._timers)
            if not self.running:
                continue
            if step == c.Step.PROPOSE and self._validating.get(h) and (h, rnd) not in self._held:
                # A proposal of this height arrived and its block is being validated (on a
                # worker thread, which takes hundreds of ms for a large block on a busy
                # machine). As in CometBFT, where the complete proposal is validated
                # before the state machine looks at the next timeout, the proposal counts
                # as received in time: the timeout waits for the verdict (at most one more
                # timeout_propose, should the verdict never come) instead of making us
                # prevote nil for a block that arrived before it.
                self._held[(h, rnd)] = False
                self.propose_timeouts_held += 1
                self._push_timer(self.node.genesis.consensus_params.timeout_ms("propose", rnd) / 1000,
                                 step, h, rnd)
                log.debug("propose timeout held for a validation", height=h, round=rnd)
                continue
            if step == c.Step.PROPOSE:
                self._held[(h, rnd)] = True
            actions = self.replica.on_timeout(step, h, rnd, now_ms=wall_ms())
            if actions and step != c.Step.COMMIT:
                # a propose, prevote or precommit timeout that moved the core: the round
                # did not get what it waited for in time (the usual cause of a slow height)
                log.info("consensus timeout", step=STEP_NAMES.get(step, str(step)), height=h, round=rnd)
            await self._perform(actions)

    # --- actions ---------------------------------------------------------------------

    async def _perform(self, actions: list[HostAction]) -> None:
        pending = list(actions)
        while pending:
            a = pending.pop(0)
            if isinstance(a, c.Broadcast):
                self._broadcast(a)
            elif isinstance(a, c.ScheduleTimeout):
                self._push_timer(a.delay_ms / 1000, a.step, a.height, a.round)
            elif isinstance(a, c.CreateBlock):
                self._spawn(self._create_block, a.height, a.round)
            elif isinstance(a, c.ValidateBlock):
                self._validating[a.height] = self._validating.get(a.height, 0) + 1
                self._spawn(self._validate_block, a.height, a.block)
            elif isinstance(a, c.Decide):
                pending = await self._decide(a) + pending
            elif isinstance(a, c.RequestBlock):
                frame = wire.encode(wire.CandidateRequest(a.height, a.block_hash))
                for peer in list(self.node.peers):
                    self._send_to(peer, BLOCKS, frame)
            elif isinstance(a, c.ReportEvidence):
                self._add_evidence(a.evidence, gossip=True)

    def _push_timer(self, delay_s: float, step: c.Step, height: int, round_: int) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (trio.current_time() + delay_s, self._seq, step, height, round_))

    async def _release_held(self, height: int) -> None:
        """The last validation of ``height`` answered: fire the propose timeouts held for
        it (the core ignores them if the verdict already moved it past the propose step)."""
        for key in [k for k, released in self._held.items() if k[0] == height and not released]:
            self._held[key] = True
            if self.running:
                actions = self.replica.on_timeout(c.Step.PROPOSE, height, key[1], now_ms=wall_ms())
                if actions:
                    log.info("consensus timeout", step="propose", height=height, round=key[1],
                             held=True)
                await self._perform(actions)

    def _expand(self, msg: wire.CompactProposal) -> Block | None:
        """The block of a compact proposal from our mempool and recent gossip, or None
        if a transaction is missing (the core then asks peers for the block)."""
        block, missing = wire.expand_compact(msg, self.node.limits, self.node.lookup_tx)
        if missing:
            self.compact_missing += 1
            log.debug("compact proposal: transactions missing, fetching the block",
                      height=msg.proposal.height, missing=missing)
            return None
        self.compact_rebuilt += 1
        return block

    def _remember_unrelayed(self, proposal: Proposal, frame_id: bytes) -> None:
        """Keep a compact proposal until its block arrives; entries of past heights
        (their block never came) are dropped so the map stays small."""
        height = self.replica.core.height
        for block_hash in [h for h, (p, _) in self._unrelayed.items() if p.height < height]:
            del self._unrelayed[block_hash]
        self._unrelayed[proposal.block_hash] = (proposal, frame_id)

    def _relay_fetched(self, block: Block) -> None:
        """A fetched block completes a compact proposal we could not rebuild: relay the
        proposal in full to the peers that did not send it to us."""
        pending = self._unrelayed.pop(block.hash(), None)
        if pending is None:
            return
        proposal, compact_id = pending
        if proposal.height != self.replica.core.height:
            return
        frame = wire.encode(wire.ProposalMessage(proposal, block.encode()))
        frame_id = message_id(frame)
        self.node.observe(frame_id, None)
        senders = self.node.seen.senders(compact_id) | self.node.seen.senders(frame_id)
        for peer in list(self.node.peers):
            if peer not in senders:
                self._send_to(peer, CONSENSUS, frame)

    def _broadcast(self, a: c.Broadcast) -> None:
        msg = a.message
        if isinstance(msg, Proposal):
            if a.block is None:
                return
            txs = sum(len(a.block.lane(lane)) for lane in LANES)
            if txs:
                frame = wire.encode(wire.CompactProposal.from_block(msg, a.block))
            else:
                frame = wire.encode(wire.ProposalMessage(msg, a.block.encode()))
            log.debug("proposing", height=msg.height, round=msg.round, txs=txs)
        else:
            frame = wire.encode(wire.VoteMessage(msg))
        self.node.gossip(CONSENSUS, frame)

    def _send_to(self, peer: bytes, channel: int, frame: bytes) -> None:
        with contextlib.suppress(NotConnected):
            self.host.send(peer, channel, frame)

    def _spawn(self, fn: Any, *args: Any) -> None:
        if self._nursery is None:
            raise ConsensusFailure("the consensus driver is not running")
        self._nursery.start_soon(fn, *args)

    def _add_evidence(self, ev: DuplicateVoteEvidence, *, gossip: bool) -> bool:
        """Pool new, valid evidence; True if it was new (a peer's is then relayed)."""
        node = self.node
        try:
            valset = node.state.validator_set(ev.height)
        except ChainError:
            return False  # a height whose set we no longer keep
        try:
            added = node.evidence.add(ev, valset, node.state.height + 1)
        except ConsensusError as exc:
            log.warning("dropped invalid evidence", error=str(exc))
            return False
        if added:
            self.evidence_seen.append(ev)
            v = ev.vote_a
            log.warning("evidence of double signing", height=v.height, round=v.round,
                        type=int(v.type), validator_index=v.validator_index)
            if gossip:
                self.node.gossip(CONSENSUS, wire.encode(wire.EvidenceMessage(ev)))
        return added

    def _on_sign_refused(self, exc: DoubleSignRefused) -> None:
        self.sign_refusals += 1

    async def _create_block(self, height: int, round_: int) -> None:
        block: Block | None = None
        ready = self._prebuilding.get(height) if round_ == 0 else None
        if ready is not None:
            await ready.wait()
            block = self._prebuilt.pop(height, None)
            if block is not None and self.node.state.height + 1 == height:
                self.prebuilt_used += 1
            else:
                block = None
        if block is None:
            try:
                block = await self._build_block(height)
            except ChainError as exc:
                log.error("could not build a block", height=height, round=round_, error=str(exc))
                return
        if block is not None:
            self.submit(_OwnBlock(height, round_, block))

    def _maybe_prebuild(self, height: int) -> None:
        """If we propose round 0 of ``height``, build its block now, during
        timeout_commit, so the proposal leaves as soon as the round starts (the block
        holds what the mempool had at the commit; later transactions wait a height)."""
        node = self.node
        self._prebuilt.clear()
        self._prebuilding.clear()
        if node.validator_pubkey is None:
            return
        valset = node.state.validator_set(height)
        own = valset.index_of(node.validator_pubkey)
        if own is None or self.replica.core.proposer_index(height, 0, valset) != own:
            return
        done = trio.Event()
        self._prebuilding[height] = done
        self._spawn(self._prebuild, height, done)

    async def _prebuild(self, height: int, done: trio.Event) -> None:
        block: Block | None = None
        try:
            block = await self._build_block(height)
        except ChainError as exc:
            log.warning("could not build the next block early", height=height, error=str(exc))
        finally:
            if self._prebuilding.get(height) is done:
                self._prebuilt[height] = block
            done.set()

    async def _build_block(self, height: int) -> Block | None:
        node = self.node
        state = node.state
        if state.height + 1 != height:
            return None
        params = node.genesis.consensus_params
        g = node.genesis
        if height == g.initial_height:
            last_commit: Commit | None = None
        else:
            last_commit = self.replica.core.last_commit()
            if last_commit is None or last_commit.height != height - 1:
                raw = node.blocks.get_commit(height - 1)
                if raw is None:
                    raise ConsensusFailure(f"no commit stored for height {height - 1}")
                last_commit = Commit.decode_untrusted(raw)
        pending = node.evidence.pending(params.max_evidence_per_block, height)
        # evidence the chain already handled (a SubmitEvidence tx, a restart) would make the
        # block invalid: it leaves the pool instead
        handled = [p.evidence for p in pending if node.state.get(sk.evidence_seen(p.evidence.hash()))]
        node.evidence.mark_committed(handled)
        evidence = tuple(p.encoded for p in pending if p.evidence not in handled)
        reserved = 4096 + (0 if last_commit is None else len(last_commit.encode())) \
            + sum(len(e) for e in evidence)
        started = time.monotonic()
        lanes = node.mempool.reap(params, reserved_bytes=reserved)
        reaped = time.monotonic()
        for _ in range(8):
            block = draft_block(state, lanes, last_commit=last_commit, evidence=evidence,
                                proposer=node.validator_pubkey or b"")
            try:
                result = await node.apply(block, finish=True)
            except ChainError as exc:
                # the mempool promised a valid sequence; drop what the chain refuses
                lane = getattr(exc, "lane", None)
                index = getattr(exc, "index", None)
                log.warning("proposal candidate refused; retrying", height=height, error=str(exc))
                if isinstance(lane, str) and isinstance(index, int) and lane in lanes:
                    bad = lanes[lane][index]
                    node.mempool.remove(crypto.hash_bytes(bad))
                    lanes = {k: [t for t in v if t != bad] for k, v in lanes.items()}
                else:
                    lanes = {k: [] for k in LANES}
                continue
            log.debug("built a block", height=height, txs=sum(len(v) for v in lanes.values()),
                      pool=node.mempool.size, reap_ms=round((reaped - started) * 1000),
                      build_ms=round((time.monotonic() - reaped) * 1000))
            return node.finished_blocks.get(result.block_hash)
        return None

    async def _validate_block(self, height: int, block: Block) -> None:
        node = self.node
        valid = False
        started = time.monotonic()
        if node.state.height + 1 == height and len(block.encode()) <= node.limits.max_block_bytes:
            try:
                await node.apply(block)
                valid = True
            except ChainError as exc:
                log.warning("invalid block proposed", height=height, error=str(exc))
        log.debug("validated a proposed block", height=height, valid=valid,
                  txs=sum(len(block.lane(lane)) for lane in LANES),
                  ms=round((time.monotonic() - started) * 1000))
        self.submit(_Verdict(height, block.hash(), valid))

    async def _decide(self, d: c.Decide) -> list[HostAction]:
        node = self.node
        h = d.height
        try:
            await node.apply_and_commit(d.block, d.commit)
        except ChainError as exc:
            raise ConsensusFailure(
                f"block {h} decided by the validators does not apply here: {exc}") from exc
        self.replica.decided(h)
        self._unrelayed.clear()
        for key in [k for k in self._held if k[0] <= h]:
            del self._held[key]
        for height in [k for k in self._validating if k <= h]:
            del self._validating[height]
        self._maybe_prebuild(h + 1)
        return self.replica.set_next_validators(h + 1, node.state.validator_set(h + 1),
                                                now_ms=wall_ms())


class DoubleSignRisk(ConsensusFailure):
    """Our key signed a recent block: starting to vote might double-sign (operator's call)."""


def _is_peer_fault(exc: Exception) -> bool:
    """Decode and signature failures are the sender's; a message of a height or round
    we cannot judge (another set, far ahead) is not."""
    if isinstance(exc, wire.WireError):
        return True
    text = str(exc)
    return "signature" in text or "does not match" in text


def _require(wal: Any) -> Any:
    if wal is None:
        raise ConsensusFailure("the node has no WAL open")
    return wal
