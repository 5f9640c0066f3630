"""check_tx: the mempool's check shares the state transition's rules."""

from __future__ import annotations

import pytest

from chain import tx as txm
from chain.checktx import check_tx
from chain.errors import (
    BadTxSignature,
    FeeTooLow,
    InsufficientBalance,
    MalformedTx,
    NotCreator,
    OversizePreview,
    WrongNonce,
)
from chain.params import AppParams
from tests.chain.helpers import TestChain, card_id_of, key, publish_body


@pytest.fixture
def chain() -> TestChain:
    return TestChain()


def test_passing_tx_changes_nothing_without_overlay(chain: TestChain) -> None:
    root = chain.tree.root()
    raw = chain.tx("alice", txm.Transfer(chain.addr("bob"), 5))
    result = check_tx(chain.state, raw)
    assert (result.lane, result.sender, result.nonce, result.size) == ("txs", chain.addr("alice"), 0, len(raw))
    assert result.fee_per_byte == result.fee / len(raw)
    assert chain.tree.root() == root
    # the same tx again still passes: nothing was kept
    check_tx(chain.state, raw)


def test_mempool_overlay_sequences_nonces_and_balances() -> None:
    chain = TestChain(balance=10_000)
    overlay = chain.state.new_overlay()
    first = chain.tx("alice", txm.Transfer(chain.addr("bob"), 6_000))
    second = chain.tx("alice", txm.Transfer(chain.addr("bob"), 3_800))
    check_tx(chain.state, first, overlay=overlay)
    with pytest.raises(WrongNonce):
        check_tx(chain.state, first, overlay=overlay)  # replay within the pool
    with pytest.raises(InsufficientBalance):
        check_tx(chain.state, second, overlay=overlay)  # 6,000 + fees already spent
    # a failed check leaves the overlay as it was: a cheaper second tx with the same nonce passes
    chain.forget_pending()
    cheaper = chain.tx("alice", txm.Transfer(chain.addr("bob"), 100), nonce=1)
    check_tx(chain.state, cheaper, overlay=overlay)
    # and the block made of what passed applies
    chain.apply([first, cheaper])
    assert chain.account("alice")[1] == 2


def test_rejections_match_the_block_rules(chain: TestChain) -> None:
    with pytest.raises(BadTxSignature):
        check_tx(chain.state, chain.tx("alice", publish_body(), signer=key("eve")))
    with pytest.raises(BadTxSignature):
        check_tx(chain.state, chain.tx("alice", publish_body(), chain_id="elsewhere"))
    with pytest.raises(WrongNonce):
        check_tx(chain.state, chain.tx("alice", publish_body(), nonce=5))
    with pytest.raises(FeeTooLow):
        check_tx(chain.state, chain.tx("alice", publish_body(), fee=1, nonce=0))
    with pytest.raises(OversizePreview):
        check_tx(chain.state, chain.tx("alice", publish_body(preview=b"x" * 5000), nonce=0))
    with pytest.raises(MalformedTx):
        check_tx(chain.state, b"\x93\x01\x02\x03")
    chain.apply([chain.tx("alice", publish_body(), nonce=0)])
    with pytest.raises(NotCreator):
        check_tx(chain.state, chain.tx("bob", txm.UpdateCard(card_id_of(chain, "alice", 0), "x", (), b"", b"")))


def test_oversize_tx() -> None:
    chain = TestChain(app_params=AppParams(max_tx_bytes=256, max_preview_bytes=1024))
    with pytest.raises(MalformedTx):
        check_tx(chain.state, chain.tx("alice", publish_body(preview=b"x" * 300)))


def test_overlay_is_dropped_after_commit(chain: TestChain) -> None:
    """A new overlay after a commit sees the committed state (the read cache followed it)."""
    raw = chain.tx("alice", txm.Transfer(chain.addr("bob"), 5))
    chain.apply([raw])
    with pytest.raises(WrongNonce):
        check_tx(chain.state, raw)
    check_tx(chain.state, chain.tx("alice", txm.Transfer(chain.addr("bob"), 5)))


def test_second_state_handle_sees_commits_of_the_first(chain: TestChain) -> None:
    """The read cache of a State is dropped when the store moves under it."""
    from chain import state as st

    other = st.State(
        chain.tree, chain_id=chain.state.chain_id, app_params=chain.app, consensus_params=chain.consensus,
        initial_height=1, genesis_time_ms=chain.state.genesis_time_ms,
    )  # fmt: skip
    raw = chain.tx("alice", txm.Transfer(chain.addr("bob"), 5))
    check_tx(other, raw)  # warms other's cache with alice's account
    chain.apply([raw])
    with pytest.raises(WrongNonce):
        check_tx(other, raw)
