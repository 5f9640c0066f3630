"""Proposer rotation, vote tallying, evidence pool and block sync."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise
from math import gcd

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain.types import Commit, DuplicateVoteEvidence, VoteType
from consensus import blocksync as bs
from consensus.errors import InvalidMessage, InvalidVote, UsageError
from consensus.evidence import EvidencePool, detect_duplicate, is_conflicting
from consensus.proposer import ProposerSchedule, compute_stride, proposer_index
from consensus.votes import HeightVotes, is_one_third, is_two_thirds

from .helpers import CHAIN_ID, make_block, make_keys, make_valset, vote

PV, PC = VoteType.PREVOTE, VoteType.PRECOMMIT

# --- proposer -------------------------------------------------------------------------


@given(st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=12),
       st.integers(min_value=0, max_value=10**6))
def test_each_validator_proposes_exactly_its_power_per_cycle(powers: list[int], start: int) -> None:
    sched = ProposerSchedule.from_powers(powers)
    total = sum(powers)
    counts = Counter(sched.proposer_index(start + k, 0) for k in range(total))
    assert [counts[i] for i in range(len(powers))] == powers
    assert gcd(sched.stride, total) == 1


def test_rotation_is_spread_and_rounds_advance() -> None:
    sched = ProposerSchedule.from_powers([1, 1, 1, 1])
    assert [sched.proposer_index(1, r) for r in range(4)] == [1, 2, 3, 0]
    assert sched.proposer_index(5, 2) == sched.proposer_index(7, 0)
    # a validator with half the power never proposes many times in a row
    sched = ProposerSchedule.from_powers([10, 4, 3, 3])
    seq = [sched.proposer_index(h, 0) for h in range(200)]
    longest, run = 1, 1
    for x, y in pairwise(seq):
        run = run + 1 if x == y else 1
        longest = max(longest, run)
    assert longest <= 2  # half the power, yet never three turns in a row
    assert proposer_index([10, 4, 3, 3], 17, 1) == sched.proposer_index(18, 0)


def test_proposer_golden_vector() -> None:
    """Fixed: any change to the algorithm changes every chain's proposers."""
    assert compute_stride(28) == 17
    sched = ProposerSchedule.from_powers([7, 7, 1, 5, 8])
    assert [sched.proposer_index(h, 0) for h in range(1, 13)] == [3, 0, 4, 1, 0, 3, 1, 4, 1, 0, 3, 1]
    assert [ProposerSchedule.from_powers([5, 1, 2, 2]).proposer_index(h, 0) for h in range(10)] == [
        0, 2, 0, 0, 3, 1, 0, 3, 2, 0,
    ]


def test_proposer_bad_input() -> None:
    with pytest.raises(UsageError):
        ProposerSchedule.from_powers([])
    with pytest.raises(UsageError):
        ProposerSchedule.from_powers([1, 0])
    with pytest.raises(UsageError):
        ProposerSchedule.from_powers([1]).proposer_index(-1, 0)


# --- votes --------------------------------------------------------------------------


def test_thresholds_are_by_power() -> None:
    assert is_two_thirds(3, 4) and not is_two_thirds(2, 3) and is_two_thirds(7, 10)
    assert not is_two_thirds(20, 30) and is_two_thirds(21, 30)
    assert is_one_third(2, 4) and not is_one_third(1, 3) and is_one_third(11, 30)
    keys = make_keys(4)
    vs = make_valset(keys, [5, 1, 1, 1])
    hv = HeightVotes(CHAIN_ID, 1, vs, None)
    blk = make_block(1, "A")
    hv.add(vote(keys[0], 0, PV, 1, 0, blk))
    assert not hv.has_two_thirds_for(0, PV, blk.hash())  # 5 of 8 is not more than 2/3
    hv.add(vote(keys[1], 1, PV, 1, 0, blk))
    assert hv.has_two_thirds_for(0, PV, blk.hash())  # 6 of 8
    assert hv.two_thirds_majority(0, PV) == blk.hash()
    assert hv.rounds_with_one_third_above(-1) == [0]


def test_equivocation_counts_once_for_any_and_once_per_hash() -> None:
    keys = make_keys(4)
    vs = make_valset(keys)
    hv = HeightVotes(CHAIN_ID, 1, vs, None)
    a, b = make_block(1, "A"), make_block(1, "B")
    first = vote(keys[1], 1, PV, 1, 0, a)
    assert hv.add(first).added
    res = hv.add(vote(keys[1], 1, PV, 1, 0, b))
    assert res.added and res.conflicting == first
    assert hv.power_any(0, PV) == 1
    assert hv.power_for(0, PV, a.hash()) == 1 and hv.power_for(0, PV, b.hash()) == 1
    assert not hv.add(vote(keys[1], 1, PV, 1, 0, b)).added  # re-delivery
    # the cap on different hashes per validator
    for i in range(10):
        hv.add(vote(keys[1], 1, PV, 1, 0, bytes([i + 1]) * 32))
    assert len(hv.votes_for(0, PV, b.hash())) == 1


def test_vote_checks() -> None:
    keys = make_keys(4)
    hv = HeightVotes(CHAIN_ID, 2, make_valset(keys), __import__("chain.crypto").crypto.verify)
    with pytest.raises(InvalidVote):
        hv.add(vote(keys[0], 0, PV, 1, 0, None))  # wrong height
    with pytest.raises(InvalidVote):
        hv.add(vote(keys[0], 1, PV, 2, 0, None))  # signature of another key
    with pytest.raises(InvalidVote):
        hv.add(vote(keys[0], 7, PV, 2, 0, None))  # unknown index
    hv.add(vote(keys[0], 0, PV, 2, 0, None))


# --- evidence -------------------------------------------------------------------------


def test_evidence_detection_and_pool() -> None:
    keys = make_keys(4)
    vs = make_valset(keys)
    a, b = make_block(3, "A"), make_block(3, "B")
    v1 = vote(keys[2], 2, PC, 3, 1, a)
    v2 = vote(keys[2], 2, PC, 3, 1, b)
    assert is_conflicting(v1, v2) and not is_conflicting(v1, v1)
    ev = detect_duplicate(v2, v1, CHAIN_ID, vs)
    assert ev is not None and ev.vote_a.block_hash < ev.vote_b.block_hash
    assert ev.verify(CHAIN_ID, vs).pubkey == keys[2].public_key.raw
    forged = vote(keys[3], 2, PC, 3, 1, b)  # signed by the wrong key
    assert detect_duplicate(v1, forged, CHAIN_ID, vs) is None
    pool = EvidencePool(CHAIN_ID, max_age_heights=10)
    assert pool.add(ev, vs, 4) and not pool.add(ev, vs, 4)
    w1 = vote(keys[2], 2, PC, 3, 2, a)
    w2 = vote(keys[3], 2, PC, 3, 2, b)  # the second vote signed by another key
    with pytest.raises(InvalidMessage):
        pool.add(DuplicateVoteEvidence.from_votes(w1, w2), vs, 4)
    assert [p.evidence for p in pool.pending(5, 4)] == [ev]
    assert pool.pending(5, 14) == []  # too old by then
    pool.mark_committed([ev])
    assert pool.is_committed(ev) and len(pool) == 0 and not pool.add(ev, vs, 5)


# --- block sync -------------------------------------------------------------------------


def _chain(keys: list, vs: object, n: int) -> list[tuple]:
    """n linked blocks with valid commits signed by all four validators."""
    out = []
    prev = b""
    for h in range(1, n + 1):
        blk = make_block(h, f"b{h}", valset=vs, prev=prev)  # type: ignore[arg-type]
        votes = [vote(k, i, PC, h, 0, blk) for i, k in enumerate(keys)]
        out.append((blk, Commit.from_votes(votes)))
        prev = blk.hash()
    return out


def test_block_sync_downloads_verifies_applies_and_hands_over() -> None:
    keys = make_keys(4)
    vs = make_valset(keys)
    chain = _chain(keys, vs, 6)
    sync = bs.BlockSync(CHAIN_ID, 1, vs, b"", window=3, max_in_flight_per_peer=2)
    acts = sync.on_status("p1", 6) + sync.on_status("p2", 6)
    reqs = [a for a in acts if isinstance(a, bs.SendRequest)]
    assert sorted(r.height for r in reqs) == [1, 2, 3]
    applied: list[int] = []
    switched: list[int] = []
    queue = list(acts)
    for _ in range(200):  # bounded
        if not queue:
            break
        a = queue.pop(0)
        if isinstance(a, bs.SendRequest):
            blk, cm = chain[a.height - 1]
            queue += sync.on_response(a.peer, a.height, blk, cm)
        elif isinstance(a, bs.ApplyBlock):
            applied.append(a.height)
            queue += sync.on_applied(a.height, vs)
        elif isinstance(a, bs.SwitchToConsensus):
            switched.append(a.height)
    assert applied == [1, 2, 3, 4, 5, 6] and switched == [7]


def test_block_sync_drops_a_peer_with_a_bad_commit() -> None:
    keys = make_keys(4)
    vs = make_valset(keys)
    chain = _chain(keys, vs, 2)
    sync = bs.BlockSync(CHAIN_ID, 1, vs, b"", window=1)
    (req,) = sync.on_status("liar", 2)
    assert isinstance(req, bs.SendRequest)
    blk, cm = chain[0]
    weak = Commit(cm.height, cm.round, cm.block_hash, cm.signatures[:2])  # only 2 of 4
    acts = sync.on_response("liar", 1, blk, weak)
    assert any(isinstance(a, bs.DropPeer) and a.peer == "liar" for a in acts)
    assert not any(isinstance(a, bs.ApplyBlock) for a in acts)
    acts = sync.on_status("honest", 2)
    (req2,) = [a for a in acts if isinstance(a, bs.SendRequest)]
    assert req2.peer == "honest" and req2.height == 1
    acts = sync.on_response("honest", 1, blk, cm)
    assert any(isinstance(a, bs.ApplyBlock) for a in acts)
    # a timeout moves the request elsewhere; unsolicited answers are ignored
    assert sync.on_response("stranger", 2, *chain[1]) == []
    with pytest.raises(UsageError):
        sync.on_applied(5, vs)


def test_fall_back_rule() -> None:
    assert not bs.should_fall_back(10, {"a": 12, "b": 13})
    assert bs.should_fall_back(10, {"a": 14})
    assert not bs.should_fall_back(10, {})
