"""Deterministic simulator of the consensus engine (``make sim``).

Each seed builds a scenario from ``random.Random(seed)``: 4..10 validators with
random voting power, Byzantine validators holding less than 1/3 of the power
(silent, double voter, equivocating proposer, invalid-block proposer), a lossy
in-memory network (drop, duplicate, random delay - hence reorder -, partitions
that heal) and crashes of
honest validators that restart from their WAL and sign-state files (real files
in a temporary directory, /dev/shm when available, with torn or corrupted WAL
tails injected). Every
honest validator runs the real :class:`consensus.replica.Replica` (core + WAL +
sign guard) with real Ed25519 keys and signatures.

Time is virtual (integer milliseconds) and advanced by one event queue ordered
by (time, sequence number); :meth:`Simulation.run` pops events directly and
:meth:`Simulation.run_trio` sleeps until each event under trio's
``MockClock(autojump_threshold=0)`` - both give the same trace for a seed.

After every run: agreement, validity, no honest double-sign, every equivocation
seen is committed as evidence, and liveness (every honest validator reaches the
target height within a virtual-time bound after the last heal/restart).

    python -m tools.sim --seeds 10000            # summary line, non-zero exit on failure
    python -m tools.sim --seed 1234 --verbose    # replay one seed
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import functools
import heapq
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3

from chain import crypto
from chain.crypto import PrivateKey
from chain.encoding import pack
from chain.params import ConsensusParams
from chain.types import (
    Block,
    Commit,
    DuplicateVoteEvidence,
    Header,
    Proposal,
    Validator,
    ValidatorSet,
    Vote,
    VoteType,
    commit_hash,
    compute_block_time,
    compute_evidence_hash,
    compute_lane_root,
    decode_evidence_untrusted,
)
from consensus import blocksync as bs
from consensus import core as c
from consensus.errors import ConsensusError, DoubleSignRefused
from consensus.evidence import EvidencePool
from consensus.replica import HostAction, Replica
from consensus.signguard import SignGuard
from consensus.wal import WAL

CHAIN_ID = "sim-chain"
GENESIS_TIME_MS = 1_700_000_000_000
LIVENESS_BOUND_MS = 120_000
GOSSIP_INTERVAL_MS = 300
EMPTY_LANE = compute_lane_root(())

PARAMS = ConsensusParams(
    timeout_propose_ms=400,
    timeout_propose_delta_ms=100,
    timeout_prevote_ms=200,
    timeout_prevote_delta_ms=100,
    timeout_precommit_ms=200,
    timeout_precommit_delta_ms=100,
    timeout_commit_ms=50,
    max_clock_drift_ms=5_000,
)

SILENT = "silent"
DOUBLE_VOTE = "double_vote"
EQUIVOCATE = "equivocate"
INVALID_BLOCK = "invalid_block"

log = logging.getLogger("tools.sim")


# --- scenario ---------------------------------------------------------------------


@dataclass(frozen=True)
class Partition:
    start_ms: int
    end_ms: int
    group: frozenset[int]
    """One side; everyone else is the other side."""


@dataclass(frozen=True)
class Crash:
    node: int
    at_ms: int
    restart_ms: int
    wal_damage: str
    """none | truncate | bitflip | chop (random cut anywhere in the file)."""


@dataclass(frozen=True)
class Scenario:
    seed: int
    n: int
    powers: tuple[int, ...]
    byzantine: dict[int, str]
    drop: float
    duplicate: float
    delay_ms: tuple[int, int]
    partitions: tuple[Partition, ...]
    crashes: tuple[Crash, ...]
    skew_ms: tuple[int, ...]
    target_height: int

    @property
    def heal_ms(self) -> int:
        ends = [p.end_ms for p in self.partitions] + [cr.restart_ms for cr in self.crashes]
        return max(ends, default=0)

    def describe(self) -> str:
        byz = ",".join(f"{i}:{k}" for i, k in sorted(self.byzantine.items())) or "none"
        return (
            f"seed={self.seed} n={self.n} powers={list(self.powers)} byzantine={byz} "
            f"drop={self.drop:.2f} dup={self.duplicate:.2f} delay={self.delay_ms} "
            f"partitions={len(self.partitions)} crashes="
            f"{[(cr.node, cr.at_ms, cr.restart_ms, cr.wal_damage) for cr in self.crashes]} "
            f"target={self.target_height}"
        )


def make_scenario(seed: int, validators: int | None = None) -> Scenario:
    """The scenario of ``seed`` (everything drawn from one seeded RNG)."""
    rng = random.Random(seed)
    n = validators if validators is not None else rng.randint(4, 10)
    if not 1 <= n <= 64:
        raise ValueError("--validators must be in 1..64")
    powers = tuple(rng.randint(1, 10) for _ in range(n))
    total = sum(powers)
    byzantine: dict[int, str] = {}
    order = list(range(n))
    rng.shuffle(order)
    byz_power = 0
    for i in order[: rng.randint(0, max(0, (n - 1) // 3))]:
        if 3 * (byz_power + powers[i]) < total:
            byz_power += powers[i]
            byzantine[i] = rng.choice((SILENT, DOUBLE_VOTE, EQUIVOCATE, DOUBLE_VOTE + "+" + EQUIVOCATE,
                                       INVALID_BLOCK))
    honest = [i for i in range(n) if i not in byzantine]
    partitions: list[Partition] = []
    for _ in range(rng.choice((0, 0, 1, 2))):
        start = rng.randint(0, 3000)
        side = frozenset(rng.sample(range(n), rng.randint(1, n - 1)))
        partitions.append(Partition(start, start + rng.randint(300, 3000), side))
    crashes: list[Crash] = []
    for node in rng.sample(honest, min(len(honest), rng.choice((0, 0, 1, 1, 2)))):
        at = rng.randint(0, 3000)
        damage = rng.choice(("none", "truncate", "truncate", "bitflip", "bitflip", "chop"))
        crashes.append(Crash(node, at, at + rng.randint(50, 2500), damage))
    lo = rng.randint(1, 30)
    return Scenario(
        seed=seed,
        n=n,
        powers=powers,
        byzantine=byzantine,
        drop=rng.choice((0.0, 0.02, 0.05, 0.1, 0.2)),
        duplicate=rng.choice((0.0, 0.02, 0.1)),
        delay_ms=(lo, lo + rng.randint(0, 80)),
        partitions=tuple(partitions),
        crashes=tuple(crashes),
        skew_ms=tuple(rng.randint(-500, 500) for _ in range(n)),
        target_height=rng.randint(3, 5),
    )


# --- results ----------------------------------------------------------------------


@dataclass
class SeedResult:
    seed: int
    safety: list[str] = field(default_factory=list)
    liveness: str | None = None
    heights: int = 0
    end_ms: int = 0
    messages: int = 0
    trace_hash: str = ""
    evidence_seen: int = 0
    evidence_committed: int = 0
    sign_refusals: int = 0
    wal_repairs: int = 0
    block_syncs: int = 0
    jail_checks: int = 0

    @property
    def ok(self) -> bool:
        return not self.safety and self.liveness is None


# --- the simulated validator --------------------------------------------------------


class SimNode:
    """One validator: durable files, block store, evidence pool, the replica."""

    def __init__(self, sim: Simulation, idx: int, key: PrivateKey, workdir: Path) -> None:
        self.sim = sim
        self.idx = idx
        self.key = key
        self.pubkey = key.public_key.raw
        self.kind = sim.sc.byzantine.get(idx)
        self.dir = workdir / f"node{idx}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.store: dict[int, tuple[Block, Commit]] = {}
        self.app_hash: dict[int, bytes] = {0: bytes(32)}
        self.replica: Replica | None = None
        self.incarnation = 0
        self.pool = EvidencePool(CHAIN_ID, PARAMS.evidence_max_age_heights)
        self.valsets: dict[int, ValidatorSet] = {}
        self._catchup_sent: dict[tuple[int, int], int] = {}
        self.signed: list[Vote] = []
        self.signed_proposals: list[Proposal] = []
        self.peer_heights: dict[int, int] = {}
        self.sync: bs.BlockSync | None = None

    @property
    def honest(self) -> bool:
        return self.kind is None

    @property
    def up(self) -> bool:
        return self.replica is not None

    def clock(self) -> int:
        return GENESIS_TIME_MS + self.sim.now + self.sim.sc.skew_ms[self.idx]

    def height(self) -> int:
        return max(self.store, default=0)

    # -- validator sets: genesis for heights 1 and 2, then jailing two heights later

    def valset(self, h: int) -> ValidatorSet:
        vs = self.valsets.get(h)
        if vs is not None:
            return vs
        if h <= 2:
            vs = self.sim.genesis_set
        else:
            prev = self.valset(h - 1)
            jailed: set[bytes] = set()
            blk = self.store.get(h - 2)
            if blk is None:
                raise ConsensusError(f"node {self.idx}: no block {h - 2} to derive set {h}")
            for raw in blk[0].evidence:
                ev = decode_evidence_untrusted(raw)
                member = self.sim.valset_at(ev.height).get(ev.validator_index)
                if member is not None:
                    jailed.add(member.pubkey)
            kept = tuple(v for v in prev.validators if v.pubkey not in jailed)
            vs = ValidatorSet(kept) if kept else prev
        self.valsets[h] = vs
        return vs

    # -- lifecycle

    def boot(self) -> None:
        if self.kind == SILENT:
            return
        self.incarnation += 1
        self.sync = None
        self.peer_heights = {}
        wal = WAL.open(self.dir / "cs.wal", rotate_bytes=64 * 1024)
        if wal.repair is not None:
            self.sim.result.wal_repairs += 1
        guard = SignGuard.open(self.dir / "sign_state", create=True)
        self.replica = Replica(
            CHAIN_ID, PARAMS, wal, guard, self.key.sign, self.pubkey,
            verify=self.sim.verify, on_sign_refused=self._refused,
        )
        self.pool = EvidencePool(CHAIN_ID, PARAMS.evidence_max_age_heights)
        for h, (blk, _cm) in self.store.items():
            self.pool.mark_committed([decode_evidence_untrusted(e) for e in blk.evidence])
            del h
        h = self.height() + 1
        self.perform(self.replica.start(h, self.valset(h), now_ms=self.clock()))
        self.sim.schedule(GOSSIP_INTERVAL_MS, ("gossip", self.idx, self.incarnation))

    def crash(self, damage: str) -> None:
        if self.replica is None:
            return
        self.record_signed()
        self.replica.wal.close()
        self.replica = None
        self.sync = None
        path = self.dir / "cs.wal"
        rng = self.sim.rng
        data = path.read_bytes()
        if damage == "truncate" and len(data) > 8:
            data = data[: len(data) - rng.randint(1, min(len(data), 300))]
        elif damage == "bitflip" and len(data) > 8:
            pos = rng.randint(max(0, len(data) - 400), len(data) - 1)
            data = data[:pos] + bytes([data[pos] ^ (1 << rng.randint(0, 7))]) + data[pos + 1 :]
        elif damage == "chop" and data:
            data = data[: rng.randint(0, len(data))]
        path.write_bytes(data)

    def _refused(self, exc: DoubleSignRefused) -> None:
        self.sim.result.sign_refusals += 1

    def record_signed(self) -> None:
        if self.replica is not None:
            self.signed.extend(self.replica.signed_votes)
            self.replica.signed_votes.clear()
            self.signed_proposals.extend(self.replica.signed_proposals)
            self.replica.signed_proposals.clear()

    # -- actions of the replica

    def perform(self, actions: list[HostAction]) -> None:
        for a in actions:
            if self.replica is None:
                return
            if isinstance(a, c.Broadcast):
                self.broadcast(a)
            elif isinstance(a, c.ScheduleTimeout):
                self.sim.schedule(a.delay_ms, ("timeout", self.idx, self.incarnation, a))
            elif isinstance(a, c.ValidateBlock):
                ok = self.validate(a.block)
                self.perform(self.replica.on_block_verdict(a.block.hash(), ok, now_ms=self.clock()))
            elif isinstance(a, c.CreateBlock):
                blk = self.build_block(a.height, a.round, variant=0)
                if blk is not None:
                    self.perform(self.replica.on_own_block(blk, a.round, now_ms=self.clock()))
            elif isinstance(a, c.Decide):
                self.on_decide(a)
            elif isinstance(a, c.RequestBlock):
                for peer in range(self.sim.sc.n):
                    if peer != self.idx:
                        self.sim.send(self.idx, peer, ("block_req", a.height, a.block_hash))
            elif isinstance(a, c.ReportEvidence):
                self.sim.note_evidence_seen(a.evidence)
                self.add_evidence(a.evidence)
                for peer in range(self.sim.sc.n):
                    if peer != self.idx:
                        self.sim.send(self.idx, peer, ("evidence", a.evidence))

    def add_evidence(self, ev: DuplicateVoteEvidence) -> None:
        with contextlib.suppress(ConsensusError):
            self.pool.add(ev, self.sim.valset_at(ev.height), self.height() + 1)

    def broadcast(self, a: c.Broadcast) -> None:
        msg = a.message
        peers = [p for p in range(self.sim.sc.n) if p != self.idx]
        kind = self.kind or ""
        if isinstance(msg, Vote):
            self.sim.record_vote(self, msg)
            if DOUBLE_VOTE in kind:
                self.sim.rng.shuffle(peers)
                half = len(peers) // 2
                alt_hash = b"" if msg.block_hash else blake3.blake3(b"fake" + msg.encode()).digest()
                alt = dataclasses.replace(msg, block_hash=alt_hash).signed(self.key, CHAIN_ID)
                for p in peers[:half]:
                    self.sim.send(self.idx, p, ("vote", alt))
                peers = peers[half:]
            for p in peers:
                self.sim.send(self.idx, p, ("vote", msg))
        else:
            if INVALID_BLOCK in kind and msg.pol_round == -1 and a.block is not None:
                # a block the chain rejects (wrong app hash): honest nodes prevote nil
                bad = dataclasses.replace(
                    a.block, header=dataclasses.replace(a.block.header, app_hash=bytes(32))
                )
                msg = dataclasses.replace(msg, block_hash=bad.hash()).signed(self.key, CHAIN_ID)
                a = c.Broadcast(msg, bad)
            if EQUIVOCATE in kind and msg.pol_round == -1 and a.block is not None:
                other = self.build_block(msg.height, msg.round, variant=1)
                if other is not None:
                    alt = dataclasses.replace(msg, block_hash=other.hash()).signed(self.key, CHAIN_ID)
                    self.sim.rng.shuffle(peers)
                    half = len(peers) // 2
                    for p in peers[:half]:
                        self.sim.send(self.idx, p, ("proposal", alt, other))
                    peers = peers[half:]
            for p in peers:
                self.sim.send(self.idx, p, ("proposal", msg, a.block))

    # -- the application model (a stand-in for chain.state's checks)

    def compute_app_hash(self, h: int, header_txs_root: bytes, evidence_hash: bytes) -> bytes:
        prev = self.app_hash.get(h - 1, bytes(32))
        return blake3.blake3(prev + header_txs_root + evidence_hash + h.to_bytes(8, "big")).digest()

    def build_block(self, h: int, r: int, *, variant: int) -> Block | None:
        if h != self.height() + 1 or self.replica is None:
            return None
        if h == 1:
            last: Commit | None = None
            t = GENESIS_TIME_MS
            prev_hash = b""
        else:
            prev_blk, stored_commit = self.store[h - 1]
            last = self.replica.core.last_commit() or stored_commit
            if last.height != h - 1:
                last = stored_commit
            t = compute_block_time(last, self.valset(h - 1), prev_blk.header.time_ms)
            prev_hash = prev_blk.hash()
        txs = (pack([b"tx", self.idx, h, r, variant]),)
        chain_committed = self.sim.committed_keys_of(self)
        evidence = tuple(
            p.encoded for p in self.pool.pending(PARAMS.max_evidence_per_block, h)
            if p.evidence.height < h and self.sim.evidence_key(p.evidence) not in chain_committed
        )
        txs_root = compute_lane_root(txs)
        ev_hash = compute_evidence_hash(evidence)
        header = Header(
            CHAIN_ID, h, t, prev_hash, commit_hash(last), EMPTY_LANE, EMPTY_LANE, EMPTY_LANE,
            txs_root, ev_hash, self.valset(h).hash(), self.valset(h + 1).hash(),
            self.compute_app_hash(h, txs_root, ev_hash), self.pubkey,
        )
        return Block(header, (), (), (), txs, last, evidence)

    def validate(self, blk: Block) -> bool:
        try:
            self._validate(blk)
        except Exception as exc:  # any failure is an invalid verdict, as in the chain
            log.debug("node %d: block invalid: %s", self.idx, exc)
            return False
        return True

    def _validate(self, blk: Block) -> None:
        hd = blk.header
        h = self.height() + 1
        if hd.chain_id != CHAIN_ID or hd.height != h:
            raise ValueError("wrong chain or height")
        blk.verify_roots()
        if h == 1:
            if hd.time_ms != GENESIS_TIME_MS or hd.prev_block_hash or blk.last_commit is not None:
                raise ValueError("bad first block")
        else:
            prev_blk, _ = self.store[h - 1]
            if hd.prev_block_hash != prev_blk.hash() or blk.last_commit is None:
                raise ValueError("bad link")
            self.valset(h - 1).verify_commit(
                CHAIN_ID, blk.last_commit, height=h - 1, block_hash=prev_blk.hash()
            )
            if hd.time_ms != compute_block_time(blk.last_commit, self.valset(h - 1),
                                                prev_blk.header.time_ms):
                raise ValueError("bad block time")
        if hd.validators_hash != self.valset(h).hash():
            raise ValueError("bad validators hash")
        if hd.next_validators_hash != self.valset(h + 1).hash():
            raise ValueError("bad next validators hash")
        if self.valset(h).index_of(hd.proposer) is None:
            raise ValueError("proposer not a validator")
        committed = self.sim.committed_keys_of(self)
        seen: set[tuple[bytes, int, int, int]] = set()
        for raw in blk.evidence:
            ev = decode_evidence_untrusted(raw)
            if ev.height >= h:
                raise ValueError("evidence from the future")
            ev.verify(CHAIN_ID, self.sim.valset_at(ev.height))
            k = self.sim.evidence_key(ev)
            if k in committed or k in seen:
                raise ValueError("duplicate evidence")
            seen.add(k)
        if hd.app_hash != self.compute_app_hash(h, hd.txs_root, hd.evidence_hash):
            raise ValueError("bad app hash")

    def on_decide(self, a: c.Decide) -> None:
        if self.replica is None:
            return
        h = a.height
        if h not in self.store:
            if h != self.height() + 1:
                return
            self.store[h] = (a.block, a.commit)
            hd = a.block.header
            self.app_hash[h] = hd.app_hash
            self.sim.on_decided(self, a.block, a.commit)
            evs = [decode_evidence_untrusted(e) for e in a.block.evidence]
            self.pool.mark_committed(evs)
        self.replica.decided(h)
        self.perform(self.replica.set_next_validators(h + 1, self.valset(h + 1), now_ms=self.clock()))

    # -- network input

    def deliver(self, src: int, msg: tuple[Any, ...]) -> None:
        rep = self.replica
        if rep is None:
            return
        now = self.clock()
        kind = msg[0]
        syncing = self.sync is not None
        try:
            if kind == "status":
                self.peer_heights[src] = max(msg[1], self.peer_heights.get(src, 0))
                self.maybe_catch_up(src, msg[1] + 1)
                if self.sync is not None:
                    self.perform_sync(self.sync.on_status(src, msg[1]))
                elif bs.should_fall_back(self.height(), self.peer_heights):
                    self.enter_sync()
                elif len(msg) > 2:
                    self.send_missing(src, msg)
            elif kind == "sync_req":
                entry = self.store.get(msg[1])
                blk, cm = (None, None) if entry is None else entry
                self.sim.send(self.idx, src, ("sync_resp", msg[1], blk, cm))
            elif kind == "sync_resp":
                if self.sync is not None:
                    self.perform_sync(self.sync.on_response(src, msg[1], msg[2], msg[3]))
            elif syncing:
                return  # consensus messages wait until block sync hands over
            elif kind == "vote":
                v: Vote = msg[1]
                self.maybe_catch_up(src, v.height)
                self.perform(rep.on_vote(v, now_ms=now))
            elif kind == "proposal":
                p: Proposal = msg[1]
                self.maybe_catch_up(src, p.height)
                self.perform(rep.on_proposal(p, msg[2], now_ms=now))
            elif kind == "commit":
                cm: Commit = msg[1]
                if cm.height == rep.core.height and rep.core.decision is None:
                    self.perform(rep.on_commit(cm, msg[2], now_ms=now))
            elif kind == "block_req":
                h, bh = msg[1], msg[2]
                blk = self.store.get(h, (None, None))[0]
                if blk is None or blk.hash() != bh:
                    blk = rep.core.known_block(bh) if rep.core.height == h else None
                if blk is not None:
                    self.sim.send(self.idx, src, ("block", blk))
            elif kind == "block":
                self.perform(rep.on_block(msg[1], now_ms=now))
            elif kind == "evidence":
                self.add_evidence(msg[1])
        except ConsensusError as exc:
            log.debug("node %d dropped a %s from %d: %s", self.idx, kind, src, exc)

    def send_missing(self, peer: int, status: tuple[Any, ...]) -> None:
        """Vote-set gossip: send ``peer`` the votes (and proposal) of its round it lacks."""
        rep = self.replica
        if rep is None:
            return
        _, _stored, h, r, prevotes, precommits, has_prop, pol = status
        core = rep.core
        if core.height != h or r > core.round:
            return
        wants = [(r, VoteType.PREVOTE, prevotes), (r, VoteType.PRECOMMIT, precommits)]
        prop = core.proposal_in(r)
        if not has_prop and prop is not None and prop[1] is not None:
            self.sim.send(self.idx, peer, ("proposal", prop[0], prop[1]))
            pol = prop[0].pol_round
        for rnd, vt, have in wants:
            for v in core.votes_in(rnd, vt):
                if v.validator_index not in have:
                    self.sim.send(self.idx, peer, ("vote", v))
        if pol >= 0 and prop is not None:
            # the proof-of-lock prevotes a re-proposal needs (line 28): all of them for
            # the block, an equivocator's other vote included (CometBFT's VoteSetMaj23)
            for v in core.votes_for_block(pol, VoteType.PREVOTE, prop[0].block_hash):
                self.sim.send(self.idx, peer, ("vote", v))

    # -- block sync

    def enter_sync(self) -> None:
        h = self.height()
        prev = self.store[h][0].hash() if h else b""
        self.sync = bs.BlockSync(CHAIN_ID, h + 1, self.valset(h + 1), prev, window=8)
        self.sim.result.block_syncs += 1
        for peer, ph in sorted(self.peer_heights.items()):
            if self.sync is None:
                return
            self.perform_sync(self.sync.on_status(peer, ph))

    def perform_sync(self, actions: list[bs.SyncAction]) -> None:
        for a in actions:
            sync = self.sync
            if sync is None or self.replica is None:
                return
            if isinstance(a, bs.SendRequest):
                peer = int(a.peer)
                self.sim.send(self.idx, peer, ("sync_req", a.height))
                self.sim.schedule(1000, ("sync_timeout", self.idx, self.incarnation, peer, a.height))
            elif isinstance(a, bs.ApplyBlock):
                if a.height not in self.store:
                    self.store[a.height] = (a.block, a.commit)
                    self.app_hash[a.height] = a.block.header.app_hash
                    self.sim.on_decided(self, a.block, a.commit)
                    self.pool.mark_committed(
                        [decode_evidence_untrusted(e) for e in a.block.evidence]
                    )
                self.perform_sync(sync.on_applied(a.height, self.valset(a.height + 1)))
            elif isinstance(a, bs.DropPeer):
                log.debug("node %d: block sync drops %s: %s", self.idx, a.peer, a.reason)
            elif isinstance(a, bs.SwitchToConsensus):
                self.sync = None
                self.perform(self.replica.start(a.height, self.valset(a.height), now_ms=self.clock()))

    def maybe_catch_up(self, peer: int, peer_height: int) -> None:
        """A peer working on a height we have stored gets that height's commit."""
        entry = self.store.get(peer_height)
        if entry is None:
            return
        last = self._catchup_sent.get((peer, peer_height))
        if last is not None and self.sim.now - last < 200:
            return
        self._catchup_sent[(peer, peer_height)] = self.sim.now
        self.sim.send(self.idx, peer, ("commit", entry[1], entry[0]))

    def gossip(self) -> None:
        rep = self.replica
        if rep is None:
            return
        core = rep.core
        status: tuple[Any, ...] = ("status", self.height())
        if self.sync is None and core.decision is None:
            prop = core.proposal_in(core.round)
            # a re-proposal waiting for its proof of lock (line 28) asks for it
            pol = -1 if prop is None or core.step != c.Step.PROPOSE else prop[0].pol_round
            status = (
                "status", self.height(), core.height, core.round,
                core.vote_indices(core.round, VoteType.PREVOTE),
                core.vote_indices(core.round, VoteType.PRECOMMIT),
                prop is not None,
                pol,
            )
        for peer in range(self.sim.sc.n):
            if peer != self.idx:
                self.sim.send(self.idx, peer, status)
        if self.sync is not None:
            return
        for b in rep.core.own_messages():
            self.broadcast(b)
        for p in self.pool.pending(20, self.height() + 1):
            for peer in range(self.sim.sc.n):
                if peer != self.idx:
                    self.sim.send(self.idx, peer, ("evidence", p.evidence))


# --- the simulation -----------------------------------------------------------------


class Simulation:
    """One seed: network, validators, event queue and the checks."""

    def __init__(self, sc: Scenario, workdir: Path, *, cache_verify: bool = True) -> None:
        self.sc = sc
        self.rng = random.Random(sc.seed ^ 0x5EED)
        self.now = 0
        self._seq = 0
        self._events: list[tuple[int, int, tuple[Any, ...]]] = []
        self.result = SeedResult(sc.seed)
        self._trace = blake3.blake3()
        keys = [PrivateKey(blake3.blake3(b"sim-key" + sc.seed.to_bytes(8, "big") + bytes([i])).digest())
                for i in range(sc.n)]
        self.genesis_set = ValidatorSet.from_unsorted(
            Validator(k.public_key.raw, p) for k, p in zip(keys, sc.powers, strict=True)
        )
        self._verify_cache: dict[tuple[bytes, bytes, bytes], bool] = {}
        self.verify: Callable[[bytes, bytes, bytes], bool] = (
            self._cached_verify if cache_verify else crypto.verify
        )
        self.nodes = [SimNode(self, i, k, workdir) for i, k in enumerate(keys)]
        self.by_pubkey = {n.pubkey: n for n in self.nodes}
        self.decided: dict[int, tuple[bytes, int]] = {}
        self.canonical: dict[int, tuple[Block, Commit]] = {}
        self._valset_at: dict[int, ValidatorSet] = {}
        self.votes_by_hrs: dict[tuple[bytes, int, int, int], bytes] = {}
        self.evidence_seen: dict[tuple[bytes, int, int, int], DuplicateVoteEvidence] = {}
        self.goal: int | None = None

    # -- infrastructure

    def _cached_verify(self, pub: bytes, sig: bytes, dg: bytes) -> bool:
        k = (pub, sig, dg)
        r = self._verify_cache.get(k)
        if r is None:
            r = self._verify_cache[k] = crypto.verify(pub, sig, dg)
        return r

    def schedule(self, delay_ms: int, event: tuple[Any, ...]) -> None:
        self._seq += 1
        heapq.heappush(self._events, (self.now + max(0, delay_ms), self._seq, event))

    def partitioned(self, a: int, b: int) -> bool:
        for p in self.sc.partitions:
            if p.start_ms <= self.now < p.end_ms and ((a in p.group) != (b in p.group)):
                return True
        return False

    def send(self, src: int, dst: int, msg: tuple[Any, ...]) -> None:
        if self.partitioned(src, dst) or self.rng.random() < self.sc.drop:
            return
        copies = 2 if self.rng.random() < self.sc.duplicate else 1
        for _ in range(copies):
            self.result.messages += 1
            self.schedule(self.rng.randint(*self.sc.delay_ms), ("deliver", src, dst, msg))

    def valset_at(self, h: int) -> ValidatorSet:
        """The validator set of height ``h`` on the canonical chain."""
        vs = self._valset_at.get(h)
        if vs is None:
            for n in self.nodes:
                if n.honest and (h <= 2 or h - 2 in n.store):
                    vs = n.valset(h)
                    break
            if vs is None:
                raise ConsensusError(f"no honest node knows the set of height {h}")
            self._valset_at[h] = vs
        return vs

    def evidence_key(self, ev: DuplicateVoteEvidence) -> tuple[bytes, int, int, int]:
        a = ev.vote_a
        member = self.valset_at(a.height).get(a.validator_index)
        pub = member.pubkey if member is not None else b""
        return (pub, a.height, a.round, int(a.type))

    def committed_keys_of(self, node: SimNode) -> set[tuple[bytes, int, int, int]]:
        out: set[tuple[bytes, int, int, int]] = set()
        for blk, _ in node.store.values():
            for raw in blk.evidence:
                out.add(self.evidence_key(decode_evidence_untrusted(raw)))
        return out

    # -- bookkeeping for the checks

    def record_vote(self, node: SimNode, v: Vote) -> None:
        if not node.honest:
            return
        pub = node.pubkey
        key = (pub, v.height, v.round, int(v.type))
        dg = v.signing_digest(CHAIN_ID)
        prior = self.votes_by_hrs.get(key)
        if prior is None:
            self.votes_by_hrs[key] = dg
        elif prior != dg:
            self.result.safety.append(
                f"honest validator {node.idx} double-signed at height={v.height} "
                f"round={v.round} type={v.type.name}"
            )

    def note_evidence_seen(self, ev: DuplicateVoteEvidence) -> None:
        self.evidence_seen.setdefault(self.evidence_key(ev), ev)

    def on_decided(self, node: SimNode, blk: Block, cm: Commit) -> None:
        h = blk.header.height
        self._trace.update(pack([node.idx, h, blk.hash(), self.now]))
        if not node.honest:
            return
        prior = self.decided.get(h)
        if prior is None:
            self.decided[h] = (blk.hash(), node.idx)
            self.canonical[h] = (blk, cm)
        elif prior[0] != blk.hash():
            self.result.safety.append(
                f"agreement violated at height {h}: node {prior[1]} decided "
                f"{prior[0].hex()[:16]}, node {node.idx} decided {blk.hash().hex()[:16]}"
            )

    # -- running

    def _start(self) -> None:
        for n in self.nodes:
            n.boot()
        for cr in self.sc.crashes:
            self._schedule_at(cr.at_ms, ("crash", cr.node, cr.wal_damage))
            self._schedule_at(cr.restart_ms, ("restart", cr.node))

    def _schedule_at(self, t: int, event: tuple[Any, ...]) -> None:
        self._seq += 1
        heapq.heappush(self._events, (t, self._seq, event))

    def _done(self) -> bool:
        if self.now < self.sc.heal_ms:
            return False
        if self.goal is None:
            # Liveness is judged after the last heal/restart: two more heights at least.
            top = max((n.height() for n in self.nodes if n.honest), default=0)
            self.goal = max(self.sc.target_height, top + 2)
        for n in self.nodes:
            if n.honest and (not n.up or n.height() < self.goal):
                return False
        committed = {self.evidence_key(decode_evidence_untrusted(raw))
                     for blk, _ in self.canonical.values() for raw in blk.evidence}
        return all(k in committed for k in self.evidence_seen)

    def _bound(self) -> int:
        return self.sc.heal_ms + LIVENESS_BOUND_MS

    def _handle(self, ev: tuple[Any, ...]) -> None:
        kind = ev[0]
        if kind == "deliver":
            _, src, dst, msg = ev
            self.nodes[dst].deliver(src, msg)
        elif kind == "timeout":
            _, idx, inc, a = ev
            node = self.nodes[idx]
            if node.replica is not None and node.incarnation == inc:
                node.perform(node.replica.on_timeout(a.step, a.height, a.round, now_ms=node.clock()))
        elif kind == "gossip":
            _, idx, inc = ev
            node = self.nodes[idx]
            if node.replica is not None and node.incarnation == inc:
                node.gossip()
                self.schedule(GOSSIP_INTERVAL_MS, ("gossip", idx, inc))
        elif kind == "sync_timeout":
            _, idx, inc, peer, h = ev
            node = self.nodes[idx]
            if node.sync is not None and node.incarnation == inc:
                node.perform_sync(node.sync.on_request_timeout(peer, h))
        elif kind == "crash":
            self.nodes[ev[1]].crash(ev[2])
        elif kind == "restart":
            self.nodes[ev[1]].boot()

    def run(self) -> SeedResult:
        """Run to completion with the plain virtual-time event queue."""
        self._start()
        bound = self._bound()
        steps = 0
        while self._events and not self._done():
            t, _seq, ev = heapq.heappop(self._events)
            if t > bound:
                break
            self.now = t
            self._handle(ev)
            steps += 1
            if steps > 5_000_000:
                break
        return self._finish()

    async def run_trio(self) -> SeedResult:
        """The same run, each event awaited with ``trio.sleep_until`` (use under
        ``MockClock(autojump_threshold=0)``: virtual seconds = ms / 1000)."""
        import trio

        base = trio.current_time()
        self._start()
        bound = self._bound()
        steps = 0
        while self._events and not self._done():
            t, _seq, ev = heapq.heappop(self._events)
            if t > bound:
                break
            await trio.sleep_until(base + t / 1000.0)
            self.now = t
            if round((trio.current_time() - base) * 1000) != t:
                raise ConsensusError("trio's clock and the event queue disagree")
            self._handle(ev)
            steps += 1
            if steps > 5_000_000:
                break
        return self._finish()

    def _finish(self) -> SeedResult:
        res = self.result
        res.end_ms = self.now
        for n in self.nodes:
            n.record_signed()
            if n.replica is not None:
                n.replica.wal.close()
        # validity: every decided block is linked, carries a valid commit and valid evidence
        heights = sorted(self.canonical)
        for h in heights:
            blk, cm = self.canonical[h]
            try:
                self.valset_at(h).verify_commit(CHAIN_ID, cm, height=h, block_hash=blk.hash())
            except Exception as exc:
                res.safety.append(f"validity: commit of height {h} does not verify: {exc}")
            if h > 1 and h - 1 in self.canonical:
                if blk.header.prev_block_hash != self.canonical[h - 1][0].hash():
                    res.safety.append(f"validity: block {h} does not link to block {h - 1}")
                if blk.header.time_ms <= self.canonical[h - 1][0].header.time_ms:
                    res.safety.append(f"validity: block time of {h} not monotonic")
        # jailing: a validator with committed evidence in block h is out of the set at h + 2
        for h in heights:
            if h + 2 not in self.canonical:
                continue
            for raw in self.canonical[h][0].evidence:
                ev = decode_evidence_untrusted(raw)
                member = self.valset_at(ev.height).get(ev.validator_index)
                if member is not None and self.valset_at(h + 2).index_of(member.pubkey) is not None:
                    res.safety.append(f"jailing: validator with evidence in block {h} still in set {h + 2}")
                res.jail_checks += 1
        # no honest double-sign of proposals either
        seen_p: dict[tuple[bytes, int, int], bytes] = {}
        for n in self.nodes:
            if not n.honest:
                continue
            for p in n.signed_proposals:
                k = (n.pubkey, p.height, p.round)
                dg = p.signing_digest(CHAIN_ID)
                if seen_p.setdefault(k, dg) != dg:
                    res.safety.append(f"honest validator {n.idx} signed two proposals at {k[1:]}")
        committed = {self.evidence_key(decode_evidence_untrusted(raw))
                     for blk, _ in self.canonical.values() for raw in blk.evidence}
        res.evidence_seen = len(self.evidence_seen)
        res.evidence_committed = len(committed)
        honest_heights = [n.height() for n in self.nodes if n.honest]
        res.heights = min(honest_heights, default=0)
        if not self._done():
            missing = [k for k in self.evidence_seen if k not in committed]
            res.liveness = (
                f"liveness: honest heights {honest_heights} (target {self.goal}), "
                f"{len(missing)} equivocations not committed, at {self.now} ms "
                f"(bound {self._bound()} ms)"
            )
        self._trace.update(pack([sorted((h, b.hash()) for h, (b, _) in self.canonical.items())]))
        res.trace_hash = self._trace.hexdigest()
        return res


def default_workdir() -> str | None:
    """A memory-backed directory when there is one: the simulator models process
    crashes (files survive, the process does not), not power loss, so fsync
    latency would only slow it down; the files are still real files."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return str(shm)
    return None


def run_seed(seed: int, *, validators: int | None = None, use_trio: bool = False,
             workdir: str | os.PathLike[str] | None = None, cache_verify: bool = True) -> SeedResult:
    """Run one seed in a fresh temporary directory; any seed replays exactly."""
    sc = make_scenario(seed, validators)
    tmp = Path(tempfile.mkdtemp(prefix=f"bh-sim-{seed}-", dir=workdir or default_workdir()))
    try:
        sim = Simulation(sc, tmp, cache_verify=cache_verify)
        if use_trio:
            import trio
            import trio.testing

            return trio.run(sim.run_trio, clock=trio.testing.MockClock(autojump_threshold=0))
        return sim.run()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run_seed_for_pool(seed: int, *, validators: int | None, use_trio: bool) -> SeedResult:
    return run_seed(seed, validators=validators, use_trio=use_trio)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.sim", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=100, help="run seeds 0..N-1")
    ap.add_argument("--start", type=int, default=0, help="first seed of the range")
    ap.add_argument("--seed", type=int, default=None, help="replay one seed")
    ap.add_argument("--validators", type=int, default=None, help="fix N (default 4..10 by seed)")
    ap.add_argument("--trio", action="store_true", help="drive under trio's MockClock")
    ap.add_argument("--jobs", type=int, default=1,
                    help="worker processes (seeds are independent; output stays in seed order)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error("--jobs must be at least 1")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.ERROR,
                        format="%(name)s %(levelname)s %(message)s")
    seeds = [args.seed] if args.seed is not None else range(args.start, args.start + args.seeds)
    safety = liveness = 0
    t0 = time.perf_counter()
    run = functools.partial(_run_seed_for_pool, validators=args.validators, use_trio=args.trio)
    with contextlib.ExitStack() as stack:
        if args.jobs > 1 and len(seeds) > 1:
            pool = stack.enter_context(concurrent.futures.ProcessPoolExecutor(args.jobs))
            results: Iterable[SeedResult] = pool.map(run, seeds, chunksize=8)
        else:
            results = map(run, seeds)
        outcomes = list(zip(seeds, results, strict=True))
    for s, res in outcomes:
        if res.safety:
            safety += 1
        if res.liveness is not None:
            liveness += 1
        if not res.ok or args.seed is not None:
            print(make_scenario(s, args.validators).describe())
            for line in res.safety:
                print(f"  seed={s} SAFETY {line}")
            if res.liveness:
                print(f"  seed={s} {res.liveness}")
            print(f"  seed={s} heights={res.heights} end_ms={res.end_ms} messages={res.messages} "
                  f"evidence={res.evidence_committed}/{res.evidence_seen} "
                  f"refusals={res.sign_refusals} wal_repairs={res.wal_repairs} "
                  f"block_syncs={res.block_syncs} jail_checks={res.jail_checks} "
                  f"trace={res.trace_hash[:16]}")
            if not res.ok:
                print(f"  replay: python -m tools.sim --seed {s}"
                      + (f" --validators {args.validators}" if args.validators else ""))
    elapsed = time.perf_counter() - t0
    print(f"seeds={len(seeds)} safety_violations={safety} liveness_failures={liveness}"
          f" elapsed_s={elapsed:.1f}", file=sys.stderr)
    print(f"seeds={len(seeds)} safety_violations={safety} liveness_failures={liveness}")
    return 1 if safety or liveness else 0


if __name__ == "__main__":
    sys.exit(main())
