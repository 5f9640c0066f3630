"""The driver contract end to end: four replicas with real files decide heights,
end them in the WAL, restart, and refuse to double-sign across restarts."""

from __future__ import annotations

from collections import deque
from pathlib import Path

from chain.types import Block, VoteType
from consensus import core as c
from consensus.replica import Replica
from consensus.signguard import SignGuard
from consensus.wal import WAL, EntryKind

from .helpers import CHAIN_ID, PARAMS, T0, make_block, make_keys, make_valset


class Net:
    def __init__(self, d: Path) -> None:
        self.keys = make_keys(4)
        self.vs = make_valset(self.keys)
        self.d = d
        self.reps: list[Replica | None] = [None] * 4
        self.decided: dict[int, dict[int, bytes]] = {i: {} for i in range(4)}
        self.queue: deque[tuple[int, object, Block | None]] = deque()
        self.now = T0
        for i in range(4):
            self.boot(i)

    def boot(self, i: int, height: int | None = None) -> None:
        wal = WAL.open(self.d / f"wal{i}")
        guard = SignGuard.open(self.d / f"ss{i}", create=True)
        rep = Replica(CHAIN_ID, PARAMS, wal, guard, self.keys[i].sign, self.keys[i].public_key.raw)
        self.reps[i] = rep
        h = height if height is not None else max(self.decided[i], default=0) + 1
        self.perform(i, rep.start(h, self.vs, now_ms=self.now))

    def perform(self, i: int, actions: list) -> None:
        rep = self.reps[i]
        assert rep is not None
        for a in actions:
            if isinstance(a, c.Broadcast):
                for j in range(4):
                    if j != i:
                        self.queue.append((j, a.message, a.block))
            elif isinstance(a, c.CreateBlock):
                blk = make_block(a.height, f"h{a.height}r{a.round}p{i}")
                self.perform(i, rep.on_own_block(blk, a.round, now_ms=self.now))
            elif isinstance(a, c.ValidateBlock):
                self.perform(i, rep.on_block_verdict(a.block.hash(), True, now_ms=self.now))
            elif isinstance(a, c.Decide):
                self.decided[i][a.height] = a.block.hash()
                rep.decided(a.height)
                self.perform(i, rep.set_next_validators(a.height + 1, self.vs, now_ms=self.now))
                self.perform(i, rep.on_timeout(c.Step.COMMIT, a.height, a.round, now_ms=self.now))

    def run(self, until_height: int, steps: int = 20_000) -> None:
        for _ in range(steps):
            if all(max(self.decided[i], default=0) >= until_height for i in range(4)):
                return
            if not self.queue:
                # nothing in flight: fire everyone's propose timeout of its round
                for i, rep in enumerate(self.reps):
                    if rep is not None:
                        core = rep.core
                        self.perform(i, rep.on_timeout(c.Step.PROPOSE, core.height, core.round,
                                                       now_ms=self.now))
                continue
            j, msg, blk = self.queue.popleft()
            rep = self.reps[j]
            if rep is None:
                continue
            if hasattr(msg, "pol_round"):
                self.perform(j, rep.on_proposal(msg, blk, now_ms=self.now))  # type: ignore[arg-type]
            else:
                self.perform(j, rep.on_vote(msg, now_ms=self.now))  # type: ignore[arg-type]
        raise AssertionError("network did not reach the height")


def test_replicas_decide_end_heights_and_restart(tmp_path: Path) -> None:
    net = Net(tmp_path)
    net.run(3)
    for h in (1, 2, 3):
        assert len({net.decided[i][h] for i in range(4)}) == 1
    rep0 = net.reps[0]
    assert rep0 is not None
    assert rep0.wal.last_ended_height() is not None and rep0.wal.last_ended_height() >= 3
    signed_before = {(v.height, v.round, int(v.type)): v for v in rep0.signed_votes}
    rep0.wal.close()
    # restart validator 0 from its files at the height after its last decision
    net.boot(0)
    rep0 = net.reps[0]
    assert rep0 is not None
    assert rep0.core.height == max(net.decided[0]) + 1
    net.run(5)
    assert len({net.decided[i][5] for i in range(4)}) == 1
    for v in rep0.signed_votes:
        k = (v.height, v.round, int(v.type))
        if k in signed_before:
            assert signed_before[k] == v


def test_restart_into_an_old_height_cannot_double_sign(tmp_path: Path) -> None:
    """An operator restores an old WAL (or none) and restarts a validator into a
    height it already voted on: the guard refuses every conflicting vote."""
    net = Net(tmp_path)
    net.run(2)
    rep0 = net.reps[0]
    assert rep0 is not None
    first = {(v.height, v.round, int(v.type)): v.signing_digest(CHAIN_ID) for v in rep0.signed_votes}
    rep0.wal.close()
    (tmp_path / "wal0").unlink()
    refused: list[object] = []
    wal = WAL.open(tmp_path / "wal0")
    guard = SignGuard.open(tmp_path / "ss0")
    rep = Replica(CHAIN_ID, PARAMS, wal, guard, net.keys[0].sign, net.keys[0].public_key.raw,
                  on_sign_refused=refused.append)
    rep.start(2, net.vs, now_ms=T0)
    other = make_block(2, "other")
    i = rep.core.proposer_index(2, 0)
    from .helpers import proposal, vote

    rep.on_proposal(proposal(net.keys[i], i, 2, 0, other), other, now_ms=T0)
    rep.on_block_verdict(other.hash(), True, now_ms=T0)
    for j in (1, 2, 3):
        rep.on_vote(vote(net.keys[j], j, VoteType.PREVOTE, 2, 0, other), now_ms=T0)
    for v in rep.signed_votes:
        k = (v.height, v.round, int(v.type))
        if k in first:
            assert first[k] == v.signing_digest(CHAIN_ID)
    assert refused, "the guard should have refused the conflicting votes"
    assert all(e.kind != EntryKind.END_HEIGHT for e in rep.wal.entries)
    rep.wal.close()


def test_restart_without_wal_resends_the_last_signed_vote(tmp_path: Path) -> None:
    """The WAL is gone and the vote never reached anyone: the sign state still
    holds it, and the restarted replica tallies and re-broadcasts it."""
    keys = make_keys(4)
    vs = make_valset(keys)
    wal = WAL.open(tmp_path / "wal")
    guard = SignGuard.open(tmp_path / "ss", create=True)
    rep = Replica(CHAIN_ID, PARAMS, wal, guard, keys[0].sign, keys[0].public_key.raw)
    rep.start(1, vs, now_ms=T0)
    rep.on_timeout(c.Step.PROPOSE, 1, 0, now_ms=T0)  # prevote nil
    (prevote,) = rep.signed_votes
    wal.close()
    (tmp_path / "wal").unlink()
    rep2 = Replica(CHAIN_ID, PARAMS, WAL.open(tmp_path / "wal"), SignGuard.open(tmp_path / "ss"),
                   keys[0].sign, keys[0].public_key.raw)
    out = rep2.start(1, vs, now_ms=T0 + 10)
    assert c.Broadcast(prevote) in out
    assert rep2.core.vote_indices(0, VoteType.PREVOTE) == frozenset({0})
    rep2.wal.close()
