"""Step tables: every rule of Algorithm 1 (arXiv 1807.04938), one row each or more.

Each row is (description, setup, input, expected actions, expected state). The
setup drives the core into a state (our own signed votes are fed back, as the
driver does); the input's actions are compared exactly, then the state.

Four validators of power 1 (total 4: +2/3 is 3, f+1 is 2); we are validator 0.
At height 1 the proposer of round r is validator (1 + r) mod 4, so we propose in
round 3; at height 4 we propose in round 0.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from chain.types import Block, VoteType
from consensus import core as c
from consensus.core import ConsensusCore, Step
from consensus.errors import InvalidProposal, InvalidVote, UsageError

from .helpers import (
    CHAIN_ID,
    PARAMS,
    T0,
    make_block,
    make_keys,
    make_valset,
    proposal,
    summarize,
    vote,
)

PV, PC = VoteType.PREVOTE, VoteType.PRECOMMIT
TO_PROPOSE = PARAMS.timeout_propose_ms
TO_PREVOTE = PARAMS.timeout_prevote_ms
TO_PRECOMMIT = PARAMS.timeout_precommit_ms


class Harness:
    def __init__(self, height: int = 1) -> None:
        self.keys = make_keys(4)
        self.vs = make_valset(self.keys)
        self.core = ConsensusCore(CHAIN_ID, PARAMS, self.keys[0].public_key.raw)
        self.h = height
        self.now = T0
        self.A = make_block(height, "A")
        self.B = make_block(height, "B")
        drift = PARAMS.max_clock_drift_ms
        self.F = make_block(height, "F", time_ms=T0 + drift + 1)  # just beyond the drift bound
        self.G = make_block(height, "G", time_ms=T0 + drift)  # exactly at it
        self.names = {self.A.hash(): "A", self.B.hash(): "B", self.F.hash(): "F", self.G.hash(): "G"}

    # --- inputs (return the core's raw actions) ---

    def start(self) -> list[c.Action]:
        return self.core.start_height(self.h, self.vs, now_ms=self.now)

    def propose(self, r: int, blk: Block, pol: int = -1, verdict: bool | None = True) -> list[c.Action]:
        i = self.core.proposer_index(self.h, r)
        acts = self.core.on_proposal(proposal(self.keys[i], i, self.h, r, blk, pol), blk, now_ms=self.now)
        if verdict is not None:
            acts += self.core.on_block_verdict(blk.hash(), verdict, now_ms=self.now)
        return acts

    def votes(self, t: VoteType, r: int, idxs: list[int], blk: Block | None) -> list[c.Action]:
        acts: list[c.Action] = []
        for i in idxs:
            acts += self.core.on_vote(vote(self.keys[i], i, t, self.h, r, blk), now_ms=self.now)
        return acts

    def timeout(self, step: Step, r: int, h: int | None = None) -> list[c.Action]:
        return self.core.on_timeout(step, self.h if h is None else h, r, now_ms=self.now)

    # --- setup helper: sign our own votes and proposals and feed them back ---

    def drive(self, acts: list[c.Action], *, answer_validate: bool = False) -> list[c.Action]:
        queue = list(acts)
        seen: list[c.Action] = []
        while queue:
            a = queue.pop(0)
            seen.append(a)
            if isinstance(a, c.SignVote):
                queue += self.core.on_vote(a.vote.signed(self.keys[0], CHAIN_ID), now_ms=self.now)
            elif isinstance(a, c.SignProposal):
                p = a.proposal.signed(self.keys[0], CHAIN_ID)
                queue += self.core.on_proposal(p, a.block, now_ms=self.now)
            elif isinstance(a, c.ValidateBlock) and answer_validate:
                queue += self.core.on_block_verdict(a.block.hash(), True, now_ms=self.now)
        return seen

    def lock_on(self, r: int, blk: Block) -> None:
        """Round r: blk proposed and prevoted by all: we prevote and precommit it."""
        self.drive(self.propose(r, blk))
        self.drive(self.votes(PV, r, [1, 2], blk))

    def to_round(self, r: int) -> None:
        self.drive(self.votes(PV, r, [1, 2], None))


def st(h: Harness) -> dict[str, Any]:
    s = h.core.state()
    name = h.names.get
    return {
        "round": s.round,
        "step": s.step.name.lower(),
        "locked": (s.locked_round, None if s.locked_hash is None else name(s.locked_hash)),
        "valid": (s.valid_round, None if s.valid_hash is None else name(s.valid_hash)),
        "decided": None if s.decided_hash is None else name(s.decided_hash),
    }


@dataclass
class Row:
    desc: str
    setup: Callable[[Harness], Any]
    input: Callable[[Harness], list[c.Action]]
    actions: list[tuple[object, ...]]
    state: dict[str, Any]
    height: int = 1


def _noop(h: Harness) -> None:
    return None


ROWS = [
    # --- L10-21 StartRound ---
    Row("L10-13,21: start, not proposer: schedule the propose timeout",
        _noop, lambda h: h.start(),
        [("timeout", "propose", 0, TO_PROPOSE)],
        {"round": 0, "step": "propose", "locked": (-1, None), "valid": (-1, None), "decided": None}),
    Row("L14,18: start as proposer without a valid value: getValue (CreateBlock)",
        _noop, lambda h: h.start(),
        [("create", 0), ("timeout", "propose", 0, TO_PROPOSE)],
        {"round": 0, "step": "propose", "locked": (-1, None), "valid": (-1, None), "decided": None},
        height=4),
    Row("L19: the built block is proposed with pol_round -1",
        lambda h: h.start(), lambda h: h.core.on_own_block(h.A, now_ms=h.now),
        [("propose", 0, -1, "A")],
        {"round": 0, "step": "propose", "locked": (-1, None), "valid": (-1, None), "decided": None},
        height=4),
    Row("L15-16,19: proposer with a valid value re-proposes it with pol_round = validRound",
        lambda h: (h.start(), h.lock_on(0, h.A), h.drive(h.votes(PC, 0, [1, 2], None)),
                   h.drive(h.timeout(Step.PRECOMMIT, 0)), h.to_round(1), h.drive(h.votes(PC, 1, [1, 2], None)),
                   h.drive(h.timeout(Step.PRECOMMIT, 1))),
        lambda h: h.timeout(Step.PRECOMMIT, 2),
        [("propose", 3, 0, "A"), ("timeout", "propose", 3, TO_PROPOSE + 3 * 100)],
        {"round": 3, "step": "propose", "locked": (0, "A"), "valid": (0, "A"), "decided": None}),
    # --- L22-27 ---
    Row("L22-24: valid proposal, not locked: prevote it",
        lambda h: h.start(), lambda h: h.propose(0, h.A),
        [("validate", "A"), ("sign", "prevote", 0, "A")],
        {"round": 0, "step": "prevote", "locked": (-1, None), "valid": (-1, None), "decided": None}),
    Row("L22,25-26: invalid proposal: prevote nil",
        lambda h: h.start(), lambda h: h.propose(0, h.A, verdict=False),
        [("validate", "A"), ("sign", "prevote", 0, "nil")],
        {"round": 0, "step": "prevote", "locked": (-1, None), "valid": (-1, None), "decided": None}),
    Row("L22: no verdict yet: wait (ask the chain once)",
        lambda h: h.start(), lambda h: h.propose(0, h.A, verdict=None),
        [("validate", "A")],
        {"round": 0, "step": "propose", "locked": (-1, None), "valid": (-1, None), "decided": None}),
    Row("L23,26: locked on another value: prevote nil",
        lambda h: (h.start(), h.lock_on(0, h.B), h.drive(h.votes(PC, 0, [1, 2], None)),
                   h.drive(h.timeout(Step.PRECOMMIT, 0))),
        lambda h: h.propose(1, h.A),
        [("validate", "A"), ("sign", "prevote", 1, "nil")],
        {"round": 1, "step": "prevote", "locked": (0, "B"), "valid": (0, "B"), "decided": None}),
    Row("L23-24: locked on the same value (pol -1): prevote it",
        lambda h: (h.start(), h.lock_on(0, h.A), h.drive(h.votes(PC, 0, [1, 2], None)),
                   h.drive(h.timeout(Step.PRECOMMIT, 0))),
        lambda h: h.propose(1, h.A),
        [("sign", "prevote", 1, "A")],
        {"round": 1, "step": "prevote", "locked": (0, "A"), "valid": (0, "A"), "decided": None}),
    Row("block-time rule: block time beyond our clock + max_clock_drift_ms: prevote nil",
        lambda h: h.start(), lambda h: h.propose(0, h.F),
        [("validate", "F"), ("sign", "prevote", 0, "nil")],
        {"round": 0, "step": "prevote", "locked": (-1, None), "valid": (-1, None), "decided": None}),
    Row("block-time rule: exactly at the drift bound is accepted",
        lambda h: h.start(), lambda h: h.propose(0, h.G),
        [("validate", "G"), ("sign", "prevote", 0, "G")],
        {"round": 0, "step": "prevote", "locked": (-1, None), "valid": (-1, None), "decided": None}),
    # --- L28-33 ---
    Row("L28-30: re-proposal with a proof of lock (+2/3 prevotes in vr), not locked: prevote it",
        lambda h: (h.start(), h.drive(h.timeout(Step.PROPOSE, 0)), h.drive(h.votes(PV, 0, [1, 2, 3], h.A)),
                   h.drive(h.votes(PC, 0, [1, 2], None)), h.drive(h.timeout(Step.PRECOMMIT, 0))),
        lambda h: h.propose(1, h.A, pol=0),
        [("validate", "A"), ("sign", "prevote", 1, "A")],
        {"round": 1, "step": "prevote", "locked": (-1, None), "valid": (-1, None), "decided": None}),
    Row("L28-L29: locked in an earlier round than vr on another value: prevote the new one",
        lambda h: (h.start(), h.lock_on(0, h.B), h.drive(h.votes(PC, 0, [1, 2], None)),
                   h.drive(h.timeout(Step.PRECOMMIT, 0)), h.drive(h.timeout(Step.PROPOSE, 1)),
                   h.drive(h.votes(PV, 1, [1, 2, 3], h.A)), h.drive(h.votes(PC, 1, [1, 2], None)),
                   h.drive(h.timeout(Step.PRECOMMIT, 1))),
        lambda h: h.propose(2, h.A, pol=1),
        [("validate", "A"), ("sign", "prevote", 2, "A")],
        {"round": 2, "step": "prevote", "locked": (0, "B"), "valid": (0, "B"), "decided": None}),
    Row("L28,L29,L31-32: locked in a round above vr on another value: prevote nil",
        lambda h: (h.start(), h.drive(h.timeout(Step.PROPOSE, 0)), h.drive(h.votes(PV, 0, [1, 2, 3], h.A)),
                   h.drive(h.votes(PC, 0, [1, 2], None)), h.drive(h.timeout(Step.PRECOMMIT, 0)),
                   h.lock_on(1, h.B), h.drive(h.votes(PC, 1, [1, 2], None)),
                   h.drive(h.timeout(Step.PRECOMMIT, 1))),
        lambda h: h.propose(2, h.A, pol=0),
        [("validate", "A"), ("sign", "prevote", 2, "nil")],
        {"round": 2, "step": "prevote", "locked": (1, "B"), "valid": (1, "B"), "decided": None}),
    Row("L28: proof-of-lock prevotes not (yet) seen: no prevote",
        lambda h: (h.start(), h.drive(h.timeout(Step.PROPOSE, 0)), h.drive(h.votes(PC, 0, [1, 2], None)),
                   h.drive(h.votes(PV, 0, [1, 2], None)), h.drive(h.timeout(Step.PRECOMMIT, 0))),
        lambda h: h.propose(1, h.A, pol=0),
        [("validate", "A")],
        {"round": 1, "step": "propose", "locked": (-1, None), "valid": (-1, None), "decided": None}),
    # --- L34-35 ---
    Row("L34-35: +2/3 prevotes for anything in prevote step: schedule the prevote timeout",
        lambda h: (h.start(), h.drive(h.propose(0, h.A))),
        lambda h: h.votes(PV, 0, [1], h.B) + h.votes(PV, 0, [2], None),
        [("timeout", "prevote", 0, TO_PREVOTE)],
        {"round": 0, "step": "prevote", "locked": (-1, None), "valid": (-1, None), "decided": None}),
    Row("L34: only the first time",
        lambda h: (h.start(), h.drive(h.propose(0, h.A)), h.votes(PV, 0, [1], h.B), h.votes(PV, 0, [2], None)),
        lambda h: h.votes(PV, 0, [3], h.B),
        [],
        {"round": 0, "step": "prevote", "locked": (-1, None), "valid": (-1, None), "decided": None}),
    # --- L36-43 ---
    Row("L36-41: +2/3 prevotes for the proposal in prevote step: lock and precommit it",
        lambda h: (h.start(), h.drive(h.propose(0, h.A))),
        lambda h: h.votes(PV, 0, [1, 2], h.A),
        [("timeout", "prevote", 0, TO_PREVOTE), ("sign", "precommit", 0, "A")],
        {"round": 0, "step": "precommit", "locked": (0, "A"), "valid": (0, "A"), "decided": None}),
    Row("L36,42-43: +2/3 prevotes for v after we precommitted nil: only the valid value moves "
        "(two equivocators' second prevotes count for v, as messages do in the paper)",
        lambda h: (h.start(), h.drive(h.propose(0, h.A)), h.drive(h.votes(PV, 0, [1, 2, 3], None))),
        lambda h: h.votes(PV, 0, [1, 2], h.A),
        [("evidence", 1), ("evidence", 2)],
        {"round": 0, "step": "precommit", "locked": (-1, None), "valid": (0, "A"), "decided": None}),
    Row("L36: needs a valid verdict",
        lambda h: (h.start(), h.drive(h.propose(0, h.A, verdict=None)), h.drive(h.timeout(Step.PROPOSE, 0))),
        lambda h: h.votes(PV, 0, [1, 2], h.A),
        [("timeout", "prevote", 0, TO_PREVOTE)],
        {"round": 0, "step": "prevote", "locked": (-1, None), "valid": (-1, None), "decided": None}),
    # --- L44-46 ---
    Row("L44-46: +2/3 prevotes nil in prevote step: precommit nil",
        lambda h: (h.start(), h.drive(h.propose(0, h.A))),
        lambda h: h.votes(PV, 0, [1, 2, 3], None),
        [("timeout", "prevote", 0, TO_PREVOTE), ("sign", "precommit", 0, "nil")],
        {"round": 0, "step": "precommit", "locked": (-1, None), "valid": (-1, None), "decided": None}),
    # --- L47-48 ---
    Row("L47-48: +2/3 precommits for anything: schedule the precommit timeout",
        lambda h: h.start(),
        lambda h: h.votes(PC, 0, [1], h.A) + h.votes(PC, 0, [2, 3], None),
        [("timeout", "precommit", 0, TO_PRECOMMIT)],
        {"round": 0, "step": "propose", "locked": (-1, None), "valid": (-1, None), "decided": None}),
    # --- L49-54 ---
    Row("L49-51: proposal and +2/3 precommits for it: decide (then wait timeout_commit)",
        lambda h: (h.start(), h.drive(h.propose(0, h.A))),
        lambda h: h.votes(PC, 0, [1, 2, 3], h.A),
        [("decide", 0, "A"), ("timeout", "commit", 0, PARAMS.timeout_commit_ms)],
        {"round": 0, "step": "commit", "locked": (-1, None), "valid": (-1, None), "decided": "A"}),
    Row("L49: a decision in an earlier round than ours",
        lambda h: (h.start(), h.drive(h.propose(0, h.A)), h.drive(h.votes(PV, 0, [1, 2, 3], None)),
                   h.drive(h.votes(PC, 0, [1], h.A)), h.drive(h.votes(PV, 1, [1, 2], None))),
        lambda h: h.votes(PC, 0, [2, 3], h.A),
        [("decide", 0, "A"), ("timeout", "commit", 0, PARAMS.timeout_commit_ms)],
        {"round": 1, "step": "commit", "locked": (-1, None), "valid": (-1, None), "decided": "A"}),
    Row("L49: +2/3 precommits for a block we do not hold: request it",
        lambda h: h.start(),
        lambda h: h.votes(PC, 0, [1, 2, 3], h.A),
        [("request", 0, "A"), ("timeout", "precommit", 0, TO_PRECOMMIT)],
        {"round": 0, "step": "propose", "locked": (-1, None), "valid": (-1, None), "decided": None}),
    Row("L49-51: the requested block arrives and is valid: decide",
        lambda h: (h.start(), h.votes(PC, 0, [1, 2, 3], h.A)),
        lambda h: h.core.on_block(h.A, now_ms=h.now) + h.core.on_block_verdict(h.A.hash(), True, now_ms=h.now),
        [("validate", "A"), ("decide", 0, "A"), ("timeout", "commit", 0, PARAMS.timeout_commit_ms)],
        {"round": 0, "step": "commit", "locked": (-1, None), "valid": (-1, None), "decided": "A"}),
    Row("L50: +2/3 precommits for a block our chain rejects: never decide it",
        lambda h: (h.start(), h.votes(PC, 0, [1, 2, 3], h.A)),
        lambda h: h.core.on_block(h.A, now_ms=h.now) + h.core.on_block_verdict(h.A.hash(), False, now_ms=h.now),
        [("validate", "A")],
        {"round": 0, "step": "propose", "locked": (-1, None), "valid": (-1, None), "decided": None}),
    # --- L55-56 ---
    Row("L55-56: f+1 messages from a higher round: start that round",
        lambda h: h.start(),
        lambda h: h.votes(PV, 3, [1], None) + h.votes(PC, 3, [2], None),
        [("create", 3), ("timeout", "propose", 3, TO_PROPOSE + 300)],
        {"round": 3, "step": "propose", "locked": (-1, None), "valid": (-1, None), "decided": None}),
    Row("L55: a single validator (not f+1) in a higher round: stay",
        lambda h: h.start(),
        lambda h: h.votes(PV, 2, [1], None) + h.votes(PC, 2, [1], None),
        [],
        {"round": 0, "step": "propose", "locked": (-1, None), "valid": (-1, None), "decided": None}),
    # --- L57-67 timeouts ---
    Row("L57-60: propose timeout in propose step: prevote nil",
        lambda h: h.start(), lambda h: h.timeout(Step.PROPOSE, 0),
        [("sign", "prevote", 0, "nil")],
        {"round": 0, "step": "prevote", "locked": (-1, None), "valid": (-1, None), "decided": None}),
    Row("L58: stale propose timeout (step already prevote): ignored",
        lambda h: (h.start(), h.drive(h.propose(0, h.A))), lambda h: h.timeout(Step.PROPOSE, 0),
        [],
        {"round": 0, "step": "prevote", "locked": (-1, None), "valid": (-1, None), "decided": None}),
    Row("L61-64: prevote timeout in prevote step: precommit nil (own prevote re-sent)",
        lambda h: (h.start(), h.drive(h.propose(0, h.A))), lambda h: h.timeout(Step.PREVOTE, 0),
        [("broadcast", "Vote"), ("sign", "precommit", 0, "nil")],
        {"round": 0, "step": "precommit", "locked": (-1, None), "valid": (-1, None), "decided": None}),
    Row("L65-67: precommit timeout: next round, with its longer propose timeout",
        lambda h: h.start(), lambda h: h.timeout(Step.PRECOMMIT, 0),
        [("timeout", "propose", 1, TO_PROPOSE + 100)],
        {"round": 1, "step": "propose", "locked": (-1, None), "valid": (-1, None), "decided": None}),
    Row("L66: stale precommit timeout of an older round: ignored",
        lambda h: (h.start(), h.timeout(Step.PRECOMMIT, 0)), lambda h: h.timeout(Step.PRECOMMIT, 0),
        [],
        {"round": 1, "step": "propose", "locked": (-1, None), "valid": (-1, None), "decided": None}),
    Row("stale timeout of another height: ignored",
        lambda h: h.start(), lambda h: h.timeout(Step.PROPOSE, 0, h=7),
        [],
        {"round": 0, "step": "propose", "locked": (-1, None), "valid": (-1, None), "decided": None}),
    # --- equivocation ---
    Row("two conflicting signed votes of one validator: ReportEvidence",
        lambda h: (h.start(), h.votes(PV, 0, [2], h.A)), lambda h: h.votes(PV, 0, [2], h.B),
        [("evidence", 2)],
        {"round": 0, "step": "propose", "locked": (-1, None), "valid": (-1, None), "decided": None}),
    Row("an identical vote delivered twice: nothing",
        lambda h: (h.start(), h.votes(PV, 0, [2], h.A)), lambda h: h.votes(PV, 0, [2], h.A),
        [],
        {"round": 0, "step": "propose", "locked": (-1, None), "valid": (-1, None), "decided": None}),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.desc.split(":")[0] + " " + str(i) for i, r in enumerate(ROWS)])
def test_step_table(row: Row) -> None:
    h = Harness(row.height)
    row.setup(h)
    got = summarize(row.input(h), h.names)
    assert got == row.actions, row.desc
    assert st(h) == row.state, row.desc


def test_rows_cover_every_rule_of_the_paper() -> None:
    """Every `upon` rule and timeout function of Algorithm 1 has a row."""
    covered: set[int] = set()
    for r in ROWS:
        for spec in re.findall(r"L(\d+(?:[-,]L?\d+)*)", r.desc):
            for part in spec.replace("L", "").split(","):
                lo, _, hi = part.partition("-")
                covered.update(range(int(lo), int(hi or lo) + 1))
    rules = (10, 11, 14, 15, 18, 19, 21, 22, 23, 24, 26, 28, 29, 30, 32, 34, 35, 36, 37, 38, 40,
             42, 43, 44, 45, 47, 48, 49, 50, 51, 55, 56, 57, 58, 59, 61, 62, 63, 65, 66, 67)
    missing = [n for n in rules if n not in covered]
    assert not missing, f"no step-table row for lines {missing}"


def test_timeouts_grow_per_round() -> None:
    h = Harness()
    h.start()
    for r in range(4):
        acts = h.timeout(Step.PRECOMMIT, r)
        got = [a for a in acts if isinstance(a, c.ScheduleTimeout)]
        assert got[-1].delay_ms == PARAMS.timeout_propose_ms + (r + 1) * PARAMS.timeout_propose_delta_ms
    assert h.core.timeout_ms(Step.PREVOTE, 5) == PARAMS.timeout_prevote_ms + 5 * PARAMS.timeout_prevote_delta_ms
    assert h.core.timeout_ms(Step.PRECOMMIT, 2) == PARAMS.timeout_precommit_ms + 2 * PARAMS.timeout_precommit_delta_ms


def test_next_height_after_commit_timeout_and_next_set() -> None:
    h = Harness()
    h.start()
    h.drive(h.propose(0, h.A))
    acts = h.drive(h.votes(PV, 0, [1, 2], h.A))
    acts += h.drive(h.votes(PC, 0, [1, 2], h.A))
    decide = [a for a in acts if isinstance(a, c.Decide)]
    assert len(decide) == 1 and decide[0].block == h.A
    assert decide[0].commit.block_hash == h.A.hash()
    # next set first, then the commit timeout starts height 2 (either order works)
    assert h.core.set_next_validators(2, h.vs, now_ms=h.now) == []
    acts = h.timeout(Step.COMMIT, 0)
    assert h.core.height == 2 and h.core.round == 0 and h.core.step == Step.PROPOSE
    assert any(isinstance(a, c.ScheduleTimeout) and a.height == 2 for a in acts)
    # a late precommit for height 1 still joins the last commit
    before = h.core.last_commit()
    assert before is not None and len(before.signatures) == 3
    h.core.on_vote(vote(h.keys[3], 3, PC, 1, 0, h.A), now_ms=h.now)
    after = h.core.last_commit()
    assert after is not None and len(after.signatures) == 4


def test_votes_for_next_height_are_buffered() -> None:
    h = Harness()
    h.start()
    h.core.on_vote(vote(h.keys[1], 1, PV, 2, 0, None), now_ms=h.now)
    h.drive(h.propose(0, h.A))
    h.drive(h.votes(PV, 0, [1, 2], h.A))
    h.drive(h.votes(PC, 0, [1, 2], h.A))
    h.core.set_next_validators(2, h.vs, now_ms=h.now)
    h.timeout(Step.COMMIT, 0)
    assert h.core.vote_indices(0, PV) == frozenset({1})


def test_precommit_timestamp_is_after_block_time() -> None:
    h = Harness()
    h.now = T0 - 500  # our clock behind the block's time (within the drift)
    h.start()
    blk = make_block(1, "late", time_ms=T0)
    acts = h.drive(h.propose(0, blk))
    acts = h.votes(PV, 0, [1, 2], blk)
    pc = [a.vote for a in acts if isinstance(a, c.SignVote)]
    assert pc and pc[0].type == PC and pc[0].timestamp_ms == T0 + 1


def test_follower_without_key_follows_but_never_signs() -> None:
    keys = make_keys(4)
    core = ConsensusCore(CHAIN_ID, PARAMS, None)
    vs = make_valset(keys)
    core.start_height(1, vs, now_ms=T0)
    blk = make_block(1, "A")
    i = core.proposer_index(1, 0)
    acts = core.on_proposal(proposal(keys[i], i, 1, 0, blk), blk, now_ms=T0)
    acts += core.on_block_verdict(blk.hash(), True, now_ms=T0)
    for j in (1, 2, 3):
        acts += core.on_vote(vote(keys[j], j, PC, 1, 0, blk), now_ms=T0)
    assert not any(isinstance(a, (c.SignVote, c.SignProposal)) for a in acts)
    assert any(isinstance(a, c.Decide) for a in acts)


def test_bad_inputs_raise_typed_errors() -> None:
    h = Harness()
    with pytest.raises(UsageError):
        h.core.on_vote(vote(h.keys[1], 1, PV, 1, 0, None), now_ms=T0)
    h.start()
    forged = vote(h.keys[2], 1, PV, 1, 0, h.A)  # signed by 2, claims to be 1
    with pytest.raises(InvalidVote):
        h.core.on_vote(forged, now_ms=T0)
    with pytest.raises(InvalidVote):
        h.core.on_vote(vote(h.keys[1], 9, PV, 1, 0, h.A), now_ms=T0)
    not_proposer = (h.core.proposer_index(1, 0) + 1) % 4
    with pytest.raises(InvalidProposal):
        h.core.on_proposal(proposal(h.keys[not_proposer], not_proposer, 1, 0, h.A), h.A, now_ms=T0)
    i = h.core.proposer_index(1, 0)
    with pytest.raises(InvalidProposal):
        h.core.on_proposal(proposal(h.keys[i], i, 1, 0, h.A, pol=0), h.A, now_ms=T0)
    with pytest.raises(InvalidProposal):
        h.core.on_proposal(proposal(h.keys[i], i, 1, 0, h.A), h.B, now_ms=T0)
    with pytest.raises(UsageError):
        h.core.start_height(1, h.vs, now_ms=T0)


@given(hs.permutations(list(range(8))))
@settings(max_examples=60)
def test_arrival_order_does_not_matter(order: list[int]) -> None:
    """Whatever order the proposal and the votes arrive in, the core decides A once
    and signs at most one vote per (round, type)."""
    h = Harness()
    h.start()
    i = h.core.proposer_index(1, 0)
    msgs: list[Callable[[], list[c.Action]]] = [
        lambda: h.core.on_proposal(proposal(h.keys[i], i, 1, 0, h.A), h.A, now_ms=h.now),
        lambda: h.core.on_timeout(Step.PROPOSE, 1, 0, now_ms=h.now),
    ]
    for j in (1, 2, 3):
        msgs.append(lambda j=j: h.votes(PV, 0, [j], h.A))
        msgs.append(lambda j=j: h.votes(PC, 0, [j], h.A))
    acts: list[c.Action] = []
    for k in order:
        acts += h.drive(msgs[k](), answer_validate=True)
    decides = [a for a in acts if isinstance(a, c.Decide)]
    assert len(decides) == 1 and decides[0].block == h.A
    signed = [(a.vote.round, a.vote.type) for a in acts if isinstance(a, c.SignVote)]
    assert len(signed) == len(set(signed))


def test_each_height_uses_the_set_it_is_handed() -> None:
    """Set changes reach the core as the set of a height: thresholds, proposer and
    our own index all follow it (the chain applies changes two heights later)."""
    h = Harness()
    h.start()
    h.drive(h.propose(0, h.A))
    h.drive(h.votes(PV, 0, [1, 2], h.A))
    h.drive(h.votes(PC, 0, [1, 2], h.A))
    heavy = make_valset(h.keys, [1, 1, 1, 5])
    h.core.set_next_validators(2, heavy, now_ms=h.now)
    h.timeout(Step.COMMIT, 0)
    assert h.core.valset is heavy and h.core.height == 2
    blk = make_block(2, "C")
    h.h = 2
    h.names[blk.hash()] = "C"
    h.drive(h.propose(0, blk))
    h.drive(h.votes(PC, 0, [1, 2], blk))  # 1 + 1 = 2 of 8: not a commit
    assert h.core.decision is None
    acts = h.votes(PC, 0, [3], blk)  # + 5 = 7 of 8
    assert ("decide", 0, "C") in summarize(acts, h.names)
