"""The txs lane: transfers, bonding with updates two heights later, evidence, generic typed txs."""

from __future__ import annotations

import pytest

from chain import queries
from chain import state as st
from chain import tx as txm
from chain.errors import (
    BlockEvidenceInvalid,
    InsufficientBalance,
    InvalidField,
    LimitExceeded,
    RuleViolation,
)
from chain.types import DuplicateVoteEvidence, Vote, VoteType
from tests.chain.helpers import CHAIN_ID, VALIDATOR_POWER, TestChain, expect_reject


@pytest.fixture
def chain() -> TestChain:
    return TestChain()


def test_transfer(chain: TestChain) -> None:
    a0, e0 = chain.balance("alice"), chain.balance(b"\x07" * 32)
    raw = chain.tx("alice", txm.Transfer(b"\x07" * 32, 12345))
    chain.apply([raw])
    assert chain.balance(b"\x07" * 32) == e0 + 12345
    assert chain.balance("alice") == a0 - 12345 - txm.Tx.decode_untrusted(raw).fee
    assert chain.account("alice")[1] == 1


def test_transfer_rejections(chain: TestChain) -> None:
    expect_reject(chain, [chain.tx("alice", txm.Transfer(chain.addr("bob"), 0))], InvalidField)
    everything = chain.balance("alice")
    expect_reject(chain, [chain.tx("alice", txm.Transfer(chain.addr("bob"), everything))], InsufficientBalance)


def test_spend_received_funds_in_same_block() -> None:
    chain = TestChain(balance=10_000)
    fresh = txm.Transfer(chain.addr("bob"), 9_000)
    chain.apply([chain.tx("alice", fresh), chain.tx("bob", txm.Transfer(chain.addr("carol"), 18_000))])
    assert chain.balance("carol") == 28_000


def test_bond_takes_effect_two_heights_later(chain: TestChain) -> None:
    me = chain.addr("alice")
    result = chain.apply([chain.tx("alice", txm.Bond(chain.app.min_bond))])  # height 1
    assert [(v.pubkey, v.power) for v in result.validator_updates] == [(me, chain.app.min_bond)]
    assert result.next_validators.index_of(me) is not None
    assert chain.state.validator_set(2).index_of(me) is None
    assert chain.state.validator_set(3).index_of(me) is not None
    assert queries.get_account(chain.tree, me).stake == chain.app.min_bond
    # blocks 2 and 3 carry the right validator hashes (the helper reads the scheduled sets)
    chain.advance(2)
    assert chain.state.validator_set(3).index_of(me) is not None


def test_bond_rules(chain: TestChain) -> None:
    expect_reject(chain, [chain.tx("alice", txm.Bond(chain.app.min_bond - 1))], InvalidField)
    poor = TestChain(balance=10)
    expect_reject(poor, [poor.tx("alice", txm.Bond(poor.app.min_bond))], InsufficientBalance)


def test_unbond_returns_tokens_at_h_plus_2(chain: TestChain) -> None:
    me = chain.addr("alice")
    chain.apply([chain.tx("alice", txm.Bond(3 * chain.app.min_bond))])
    before = chain.balance("alice")
    raw = chain.tx("alice", txm.Unbond(3 * chain.app.min_bond))
    result = chain.apply([raw])  # height 2
    assert result.removed_validators == (me,)
    assert chain.balance("alice") == before - txm.Tx.decode_untrusted(raw).fee
    chain.advance(1)  # height 3: still locked
    assert chain.balance("alice") == before - txm.Tx.decode_untrusted(raw).fee
    chain.advance(1)  # height 4: returned
    assert chain.balance("alice") == before - txm.Tx.decode_untrusted(raw).fee + 3 * chain.app.min_bond
    assert chain.state.validator_set(4).index_of(me) is None


def test_unbond_rules(chain: TestChain) -> None:
    expect_reject(chain, [chain.tx("alice", txm.Unbond(1))], InsufficientBalance)
    chain.apply([chain.tx("alice", txm.Bond(2 * chain.app.min_bond))])
    expect_reject(chain, [chain.tx("alice", txm.Unbond(chain.app.min_bond + 1))], InvalidField)


def test_last_validator_cannot_leave() -> None:
    chain = TestChain(users=("validator",))
    # the genesis validator's key is "validator-0"; give the helper its key under a user name
    from tests.chain.helpers import key

    chain.users["v"] = key("validator-0")
    chain.apply([chain.tx("validator", txm.Transfer(chain.addr("v"), 10_000))])
    expect_reject(chain, [chain.tx("v", txm.Unbond(VALIDATOR_POWER))], RuleViolation)


def make_evidence(chain: TestChain, height: int, index: int = 0) -> bytes:
    k = chain.validator_keys[index]
    a = Vote(VoteType.PREVOTE, height, 0, b"\x01" * 32, 5, index).signed(k, CHAIN_ID)
    b = Vote(VoteType.PREVOTE, height, 0, b"\x02" * 32, 6, index).signed(k, CHAIN_ID)
    return DuplicateVoteEvidence.from_votes(a, b).encode()


def test_evidence_slashes_once() -> None:
    chain = TestChain(validators=2)
    chain.advance(2)
    guilty = chain.validator_keys[0].public_key.raw
    vset = chain.state.validator_set(1)
    index = vset.index_of(guilty)
    assert index is not None
    ev = make_evidence(chain, 1, index)
    result = chain.apply([chain.tx("alice", txm.SubmitEvidence(ev))])
    burned = VALIDATOR_POWER * chain.app.slash_bps // 10_000
    assert result.burned == burned
    # jailed: the rest of the stake is unbonded and the validator leaves the set (tests/chain/test_evidence_jail.py)
    assert queries.get_account(chain.tree, guilty).stake == 0
    assert chain.state.validator_set(chain.height + 2).index_of(guilty) is None
    expect_reject(chain, [chain.tx("bob", txm.SubmitEvidence(ev))], RuleViolation)


def test_evidence_in_block_and_bad_evidence() -> None:
    chain = TestChain(validators=2)
    chain.advance(1)
    ev = make_evidence(chain, 1, 1)
    root = chain.tree.root()
    with pytest.raises(BlockEvidenceInvalid):
        st.apply_block(chain.state, chain.draft(evidence=[ev[:-1] + bytes([ev[-1] ^ 1])]))
    with pytest.raises(BlockEvidenceInvalid):
        st.apply_block(chain.state, chain.draft(evidence=[make_evidence(chain, 5, 1)]))  # from the future
    assert chain.tree.root() == root
    result = chain.apply(evidence=[ev])
    assert result.burned > 0
    expect_reject(chain, [chain.tx("alice", txm.SubmitEvidence(b"junk"))], InvalidField)


def test_generic_indexed_by_kind(chain: TestChain) -> None:
    txs = [chain.tx("alice", txm.Generic(b"poll/v1", b"vote:%d" % i)) for i in range(3)]
    chain.apply([*txs[:2], chain.tx("bob", txm.Generic(b"other", b"x"))])
    chain.apply(txs[2:])
    page = queries.get_generic_by_kind(chain.tree, b"poll/v1")
    assert [g.payload for g in page.txs] == [b"vote:0", b"vote:1", b"vote:2"]
    assert [g.height for g in page.txs] == [1, 1, 2]
    assert page.page.items == tuple(txm.tx_hash(t) for t in txs)
    assert [g.kind for g in queries.get_generic_by_kind(chain.tree, b"other").txs] == [b"other"]


def test_generic_limits(chain: TestChain) -> None:
    big = b"x" * (chain.app.max_generic_payload_bytes + 1)
    expect_reject(chain, [chain.tx("alice", txm.Generic(b"k", big))], LimitExceeded)
