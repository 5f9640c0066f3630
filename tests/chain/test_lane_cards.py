"""The cards lane: publish, update, react, follow and unfollow; every rejection."""

from __future__ import annotations

import dataclasses

import pytest

from chain import queries
from chain import statekeys as sk
from chain import tx as txm
from chain.errors import (
    BadTxSignature,
    FeeTooLow,
    InsufficientBalance,
    InvalidField,
    LimitExceeded,
    NotCreator,
    NotFound,
    OversizePreview,
    RuleViolation,
    WrongNonce,
)
from chain.params import AppParams
from tests.chain.helpers import (
    TestChain,
    card_id_of,
    expect_reject,
    key,
    offer,
    publish_body,
    root_of,
)


@pytest.fixture
def chain() -> TestChain:
    return TestChain()


def test_publish_creates_card_feeds_and_pays_fee(chain: TestChain) -> None:
    raw = chain.tx("alice", publish_body("film", tags=("art", "noir"), offer=offer(500)))
    fee = txm.Tx.decode_untrusted(raw).fee
    before = chain.balance("alice")
    result = chain.apply([raw])
    assert result.tx_results[0].kind == "PublishCard"
    assert chain.balance("alice") == before - fee
    proposer = chain.state.validator_set(1).validators[0].pubkey
    assert chain.balance(proposer) == fee
    cid = card_id_of(chain, "alice", 0)
    card = queries.get_card(chain.tree, cid)
    assert card is not None
    assert (card.creator, card.content_root, card.title) == (chain.addr("alice"), root_of("film"), "The film")
    assert card.tags == ("art", "noir") and card.offer is not None and card.offer[0] == 500
    for fid in (
        sk.feed_id(sk.F_CONTENT_TYPE, b"video"),
        sk.feed_id(sk.F_CREATOR, chain.addr("alice")),
        sk.feed_id(sk.F_TAG, b"art"),
        sk.feed_id(sk.F_TAG, b"noir"),
    ):
        page = queries.get_feed_page(chain.tree, fid)
        assert page.items == (cid,)


def test_comment_links_parent(chain: TestChain) -> None:
    chain.apply([chain.tx("alice", publish_body("film"))])
    parent = card_id_of(chain, "alice", 0)
    chain.apply([chain.tx("bob", publish_body("reply", content_type="text", parent=parent))])
    card = queries.get_card(chain.tree, parent)
    assert card is not None and card.comments == 1
    page = queries.get_feed_page(chain.tree, sk.feed_id(sk.F_COMMENTS, parent))
    assert page.items == (card_id_of(chain, "bob", 0),)


def test_update_by_creator_keeps_root(chain: TestChain) -> None:
    chain.apply([chain.tx("alice", publish_body("film"))])
    cid = card_id_of(chain, "alice", 0)
    chain.apply([chain.tx("alice", txm.UpdateCard(cid, "New title", (root_of("x"),), b"", bytes(32)))])
    card = queries.get_card(chain.tree, cid)
    assert card is not None
    assert (card.title, card.links, card.preview, card.preview_hash) == ("New title", (root_of("x"),), b"", bytes(32))
    assert card.content_root == root_of("film") and card.updated_height == 2 and card.created_height == 1


def test_react_and_change_reaction(chain: TestChain) -> None:
    chain.apply([chain.tx("alice", publish_body("film"))])
    cid = card_id_of(chain, "alice", 0)
    chain.apply([chain.tx("bob", txm.React(cid, 1)), chain.tx("carol", txm.React(cid, 1))])
    card = queries.get_card(chain.tree, cid)
    assert card is not None and card.reactions[:2] == (2, 0)
    chain.apply([chain.tx("bob", txm.React(cid, 2))])
    card = queries.get_card(chain.tree, cid)
    assert card is not None and card.reactions[:2] == (1, 1)
    chain.apply([chain.tx("bob", txm.React(cid, 0))])
    card = queries.get_card(chain.tree, cid)
    assert card is not None and card.reactions[:2] == (1, 0)


def test_follow_unfollow(chain: TestChain) -> None:
    chain.apply([chain.tx("bob", txm.Follow(chain.addr("alice")))])
    assert chain.state.get(sk.follow(chain.addr("bob"), chain.addr("alice"))) is not None
    expect_reject(chain, [chain.tx("bob", txm.Follow(chain.addr("alice")))], RuleViolation)
    chain.apply([chain.tx("bob", txm.Unfollow(chain.addr("alice")))])
    assert chain.state.get(sk.follow(chain.addr("bob"), chain.addr("alice"))) is None
    expect_reject(chain, [chain.tx("bob", txm.Unfollow(chain.addr("alice")))], NotFound)
    expect_reject(chain, [chain.tx("bob", txm.Follow(chain.addr("bob")))], InvalidField)


# --- envelope rejections (the same for every lane) --------------------------------


def test_bad_signature(chain: TestChain) -> None:
    raw = chain.tx("alice", publish_body(), signer=key("mallory"))
    expect_reject(chain, [raw], BadTxSignature)


def test_wrong_chain_id_is_a_bad_signature(chain: TestChain) -> None:
    raw = chain.tx("alice", publish_body(), chain_id="another-chain")
    expect_reject(chain, [raw], BadTxSignature)


def test_flipped_signature_byte(chain: TestChain) -> None:
    raw = bytearray(chain.tx("alice", publish_body()))
    raw[-1] ^= 1
    expect_reject(chain, [bytes(raw)], BadTxSignature)


def test_replayed_nonce(chain: TestChain) -> None:
    raw = chain.tx("alice", publish_body())
    chain.apply([raw])
    expect_reject(chain, [raw], WrongNonce)
    expect_reject(chain, [chain.tx("alice", publish_body("b"), nonce=0)], WrongNonce)


def test_skipped_nonce(chain: TestChain) -> None:
    expect_reject(chain, [chain.tx("alice", publish_body(), nonce=1)], WrongNonce)


def test_same_nonce_twice_in_one_block(chain: TestChain) -> None:
    a = chain.tx("alice", publish_body("a"), nonce=0)
    b = chain.tx("alice", publish_body("b"), nonce=0)
    expect_reject(chain, [a, b], WrongNonce)


def test_fee_below_minimum(chain: TestChain) -> None:
    expect_reject(chain, [chain.tx("alice", publish_body(), fee=chain.app.min_fee - 1)], FeeTooLow)


def test_fee_per_byte_counts_size() -> None:
    chain = TestChain(app_params=AppParams(fee_per_byte=10, min_fee=1))
    raw = chain.tx("alice", publish_body(preview=b"p" * 1000))
    fee = txm.Tx.decode_untrusted(raw).fee
    assert fee == 10 * len(raw)
    chain.forget_pending()
    expect_reject(chain, [chain.tx("alice", publish_body(preview=b"p" * 1000), fee=fee - 10)], FeeTooLow)


def test_cannot_pay_fee() -> None:
    chain = TestChain(balance=50)
    expect_reject(chain, [chain.tx("alice", publish_body())], InsufficientBalance)


# --- body rejections ------------------------------------------------------------


def test_oversize_preview(chain: TestChain) -> None:
    big = b"x" * (chain.app.max_preview_bytes + 1)
    expect_reject(chain, [chain.tx("alice", publish_body(preview=big))], OversizePreview)
    chain.apply([chain.tx("alice", publish_body(preview=b"x" * chain.app.max_preview_bytes))])
    cid = card_id_of(chain, "alice", 0)
    expect_reject(chain, [chain.tx("alice", txm.UpdateCard(cid, "t", (), big, b""))], OversizePreview)


def test_non_creator_update(chain: TestChain) -> None:
    chain.apply([chain.tx("alice", publish_body())])
    cid = card_id_of(chain, "alice", 0)
    expect_reject(chain, [chain.tx("bob", txm.UpdateCard(cid, "mine now", (), b"", b""))], NotCreator)


def test_update_unknown_card(chain: TestChain) -> None:
    expect_reject(chain, [chain.tx("alice", txm.UpdateCard(bytes(32), "t", (), b"", b""))], NotFound)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"content_type": "hologram"}, InvalidField),
        ({"cipher": "rot13"}, InvalidField),
        ({"size": 0}, InvalidField),
        ({"chunk_size": 3000}, InvalidField),
        ({"chunk_size": 512}, InvalidField),
        ({"title": ""}, LimitExceeded),
        ({"title": "t" * 201}, LimitExceeded),
        ({"tags": tuple(f"t{i}" for i in range(11))}, LimitExceeded),
        ({"tags": ("a", "a")}, InvalidField),
        ({"tags": ("x" * 33,)}, LimitExceeded),
        ({"links": tuple(bytes([i]) * 32 for i in range(17))}, LimitExceeded),
        ({"preview_hash": bytes(32)}, InvalidField),
        ({"parent": bytes(32)}, NotFound),
        ({"offer": offer(timeout=10**6)}, LimitExceeded),
        ({"offer": offer(program=b"not a program")}, InvalidField),
        ({"offer": offer(params=tuple(range(17)))}, LimitExceeded),
    ],
)
def test_publish_rules(chain: TestChain, change: dict[str, object], error: type[Exception]) -> None:
    body = dataclasses.replace(publish_body(), **change)  # type: ignore[arg-type]
    expect_reject(chain, [chain.tx("alice", body)], error)


def test_react_unknown_card(chain: TestChain) -> None:
    expect_reject(chain, [chain.tx("bob", txm.React(bytes(32), 1))], NotFound)
