"""Jailing: verified duplicate-vote evidence tombstones the validator.

The rule (docs/spec-state.md, process_evidence): `slash_bps` of the stake is
burned, the rest is unbonded (returned at h+2), the validator leaves the set of
h+2 and can never bond again; a validator whose removal would empty the set
stays bonded (slashed) and leaves as soon as another validator remains.
"""

from __future__ import annotations

import msgpack
import pytest

from chain import state as st
from chain import statekeys as sk
from chain import tx as txm
from chain.errors import BlockEvidenceInvalid, RuleViolation, ValidatorJailed
from chain.types import DuplicateVoteEvidence, Vote, VoteType
from tests.chain.helpers import CHAIN_ID, VALIDATOR_POWER, TestChain, expect_reject, key
from tests.chain.test_invariants import supply

BURN = VALIDATOR_POWER * 500 // 10_000


def evidence(chain: TestChain, height: int, validator: int, *, vote_type: VoteType = VoteType.PREVOTE) -> bytes:
    """Two conflicting votes of validator-`validator` at `height`, with its index in that height's set."""
    k = chain.validator_keys[validator]
    index = chain.state.validator_set(height).index_of(k.public_key.raw)
    assert index is not None
    a = Vote(vote_type, height, 0, b"\x01" * 32, 5, index).signed(k, CHAIN_ID)
    b = Vote(vote_type, height, 0, b"\x02" * 32, 6, index).signed(k, CHAIN_ID)
    return DuplicateVoteEvidence.from_votes(a, b).encode()


def pubkey(chain: TestChain, validator: int) -> bytes:
    return chain.validator_keys[validator].public_key.raw


def stake(chain: TestChain, address: bytes) -> int:
    raw = chain.state.get(sk.stake(address))
    return 0 if raw is None else int.from_bytes(raw, "big")


def jailed_at(chain: TestChain, address: bytes) -> int | None:
    raw = chain.state.get(sk.jailed(address))
    return None if raw is None else int.from_bytes(raw, "big")


def in_set(chain: TestChain, height: int, address: bytes) -> bool:
    return chain.state.validator_set(height).index_of(address) is not None


def assert_jailed_and_removed(chain: TestChain, guilty: bytes, h: int, total_before: int) -> None:
    """Evidence handled in block h: jailed at h, slashed, unbonding, still in h+1, out at h+2."""
    assert jailed_at(chain, guilty) == h
    assert stake(chain, guilty) == 0
    assert chain.state.get(sk.unbonding(h + 2, guilty)) == (VALIDATOR_POWER - BURN).to_bytes(8, "big")
    assert in_set(chain, h + 1, guilty) and not in_set(chain, h + 2, guilty)
    assert len(chain.state.validator_set(h + 2)) == 3
    assert supply(chain)[0] == total_before - BURN
    balance = chain.balance(guilty)
    chain.advance(2)  # height h+2: the validator is out and its unbonded stake returns
    assert chain.balance(guilty) == balance + VALIDATOR_POWER - BURN
    assert supply(chain)[0] == total_before - BURN
    assert chain.state.validator_set(h + 2).hash() == chain.state.validator_set(chain.height).hash()


def test_evidence_in_a_submit_evidence_tx_jails_the_validator() -> None:
    chain = TestChain(validators=4)
    chain.advance(2)
    guilty, total = pubkey(chain, 2), supply(chain)[0]
    result = chain.apply([chain.tx("alice", txm.SubmitEvidence(evidence(chain, 1, 2)))])
    assert result.burned == BURN
    assert result.removed_validators == (guilty,)
    assert_jailed_and_removed(chain, guilty, result.height, total)  # the fee went to the proposer


def test_evidence_in_a_block_jails_the_validator() -> None:
    chain = TestChain(validators=4)
    chain.advance(1)
    guilty, total = pubkey(chain, 1), supply(chain)[0]
    result = chain.apply(evidence=[evidence(chain, 1, 1, vote_type=VoteType.PRECOMMIT)])
    assert result.burned == BURN and result.removed_validators == (guilty,)
    assert_jailed_and_removed(chain, guilty, result.height, total)


def test_a_jailed_key_cannot_bond_again() -> None:
    chain = TestChain(validators=4)
    chain.advance(1)
    chain.users["cheat"] = key("validator-3")
    chain.apply([chain.tx("alice", txm.Transfer(pubkey(chain, 3), 10 * chain.app.min_bond))])
    h = chain.apply(evidence=[evidence(chain, 1, 3)]).height
    err = expect_reject(chain, [chain.tx("cheat", txm.Bond(chain.app.min_bond))], ValidatorJailed)
    assert f"jailed at height {h}" in str(err)
    chain.advance(3)  # still refused once the removal has taken effect
    expect_reject(chain, [chain.tx("cheat", txm.Bond(chain.app.min_bond))], ValidatorJailed)
    # another key is free to bond
    chain.apply([chain.tx("bob", txm.Bond(chain.app.min_bond))])
    assert stake(chain, chain.addr("bob")) == chain.app.min_bond


def test_replayed_evidence_is_refused_and_a_second_offence_changes_nothing() -> None:
    chain = TestChain(validators=4)
    chain.advance(3)
    ev = evidence(chain, 1, 0)
    chain.apply(evidence=[ev])
    expect_reject(chain, [chain.tx("bob", txm.SubmitEvidence(ev))], RuleViolation)
    root = chain.tree.root()
    with pytest.raises(BlockEvidenceInvalid, match="already handled"):
        st.apply_block(chain.state, chain.draft(evidence=[ev]))
    assert chain.tree.root() == root
    # new evidence (another height) against the jailed validator: handled, no second penalty
    jailed = jailed_at(chain, pubkey(chain, 0))
    result = chain.apply(evidence=[evidence(chain, 2, 0)])
    assert result.burned == 0 and result.removed_validators == ()
    assert jailed_at(chain, pubkey(chain, 0)) == jailed


def test_the_last_validator_is_jailed_but_stays_until_another_remains() -> None:
    chain = TestChain(validators=1)
    chain.advance(1)
    only, total = pubkey(chain, 0), supply(chain)[0]
    result = chain.apply(evidence=[evidence(chain, 1, 0)])
    h = result.height
    # jailed and slashed, but kept bonded: the set of h+2 is not empty
    assert result.burned == BURN and result.removed_validators == ()
    assert jailed_at(chain, only) == h
    assert stake(chain, only) == VALIDATOR_POWER - BURN
    assert [(v.pubkey, v.power) for v in chain.state.validator_set(h + 2).validators] == [(only, VALIDATOR_POWER - BURN)]
    assert msgpack.unpackb(chain.state.get(sk.JAIL_DEFERRED)) == [only]
    assert supply(chain)[0] == total - BURN
    chain.advance(3)  # the chain keeps going with it
    assert in_set(chain, chain.height + 2, only)
    # another validator bonds: in that same block the jailed one is removed
    result = chain.apply([chain.tx("carol", txm.Bond(chain.app.min_bond))])
    assert result.removed_validators == (only,)
    assert [v.pubkey for v in result.next_validators.validators] == [chain.addr("carol")]
    assert chain.state.get(sk.JAIL_DEFERRED) is None
    assert stake(chain, only) == 0
    balance = chain.balance(only)  # it proposed the bond's block and earned its fee
    chain.advance(2)
    assert chain.balance(only) == balance + VALIDATOR_POWER - BURN
    assert [v.pubkey for v in chain.state.validator_set(chain.height).validators] == [chain.addr("carol")]


def test_two_equivocators_of_two_leave_one_validator_in_the_set() -> None:
    chain = TestChain(validators=2)
    chain.advance(1)
    first, second = sorted([evidence(chain, 1, 0), evidence(chain, 1, 1)])
    result = chain.apply(evidence=[first, second])
    a = DuplicateVoteEvidence.decode_untrusted(first)
    removed = chain.state.validator_set(1).validators[a.vote_a.validator_index].pubkey
    assert result.burned == 2 * BURN
    assert result.removed_validators == (removed,)
    assert len(result.next_validators) == 1
    kept = result.next_validators.validators[0].pubkey
    assert msgpack.unpackb(chain.state.get(sk.JAIL_DEFERRED)) == [kept]
    assert jailed_at(chain, removed) == jailed_at(chain, kept) == result.height
