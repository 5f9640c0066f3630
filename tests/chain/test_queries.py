"""Queries at a height, with proofs a light client checks against the header's app_hash."""

from __future__ import annotations

import dataclasses

import pytest

from chain import queries
from chain import statekeys as sk
from chain import tx as txm
from chain.errors import StateError, UsageError
from tests.chain.helpers import TestChain, card_id_of, offer, publish_body, root_of, sealed_for


@pytest.fixture(scope="module")
def chain() -> TestChain:
    c = TestChain()
    c.apply([c.tx("alice", publish_body(f"film{i}", tags=("art",), offer=offer(10))) for i in range(3)])
    c.apply([c.tx("bob", publish_body("song", content_type="audio", tags=("art", "music")))])
    cid = card_id_of(c, "alice", 0)
    c.apply([
        c.tx("carol", txm.Announce(root_of("film0"), ("h:1",), ((0, 3),), 50)),
        c.tx("dave", txm.Announce(root_of("film0"), ("h:2",), ((0, 9),), 60)),
        c.tx("bob", txm.BuyKey(cid, 0, 10)),
        c.tx("carol", txm.Generic(b"poll", b"yes")),
    ])  # fmt: skip
    c.apply([c.tx("alice", txm.DeliverKey(cid, 1, sealed_for(c, "bob")))])
    return c


def app_hash(chain: TestChain, height: int) -> bytes:
    return chain.results[height - 1].app_hash


def test_account_proof(chain: TestChain) -> None:
    view = queries.get_account(chain.tree, chain.addr("alice"), prove=True)
    assert view.nonce == 4 and view.height == chain.height
    assert queries.verify_reads(app_hash(chain, chain.height), view.reads)
    assert not queries.verify_reads(app_hash(chain, chain.height - 1), view.reads)
    forged = [dataclasses.replace(view.reads[0], value=b"\x92\xcf" + b"\xff" * 8 + b"\x00")]
    assert not queries.verify_reads(app_hash(chain, chain.height), forged)


def test_absent_account_is_proven_absent(chain: TestChain) -> None:
    view = queries.get_account(chain.tree, b"\x42" * 32, prove=True)
    assert view.balance == 0 and view.reads[0].value is None
    assert queries.verify_reads(app_hash(chain, chain.height), view.reads)


def test_unproven_reads_do_not_verify(chain: TestChain) -> None:
    view = queries.get_account(chain.tree, chain.addr("alice"))
    assert not queries.verify_reads(app_hash(chain, chain.height), view.reads)


def test_card_at_height_with_proof(chain: TestChain) -> None:
    cid = card_id_of(chain, "alice", 0)
    assert queries.get_card(chain.tree, cid, height=0) is None
    card = queries.get_card(chain.tree, cid, height=3, prove=True)
    assert card is not None and card.keys_sold == 1 and card.height == 3
    assert queries.verify_reads(app_hash(chain, 3), card.reads)


def test_feed_pages_are_complete(chain: TestChain) -> None:
    fid = queries.feed_of(sk.F_TAG, b"art")
    page = queries.get_feed_page(chain.tree, fid, prove=True)
    expected = (*(card_id_of(chain, "alice", i) for i in range(3)), card_id_of(chain, "bob", 0))
    assert page.items == expected and page.length == 4
    h = app_hash(chain, chain.height)
    assert queries.verify_feed_page(h, page)
    part = queries.get_feed_page(chain.tree, fid, 1, 3, prove=True)
    assert part.items == expected[1:3] and queries.verify_feed_page(h, part)
    # an item dropped, swapped or a shorter feed claimed: rejected
    assert not queries.verify_feed_page(h, dataclasses.replace(part, items=part.items[::-1]))
    assert not queries.verify_feed_page(h, dataclasses.replace(part, stop=2, items=part.items[:1]))
    assert not queries.verify_feed_page(h, dataclasses.replace(page, length=3))
    # the feed at an older height: only alice's three cards
    old = queries.get_feed_page(chain.tree, fid, height=1, prove=True)
    assert old.items == expected[:3] and queries.verify_feed_page(app_hash(chain, 1), old)
    assert not queries.verify_feed_page(h, old)


def test_feed_page_bounds(chain: TestChain) -> None:
    fid = queries.feed_of(sk.F_TAG, b"art")
    with pytest.raises(UsageError):
        queries.get_feed_page(chain.tree, fid, 2, 9)
    empty = queries.get_feed_page(chain.tree, queries.feed_of(sk.F_TAG, b"nothing"), prove=True)
    assert empty.length == 0 and empty.items == ()
    assert queries.verify_feed_page(app_hash(chain, chain.height), empty)


def test_feed_by_type_and_creator(chain: TestChain) -> None:
    audio = queries.get_feed_page(chain.tree, queries.feed_of(sk.F_CONTENT_TYPE, b"audio"))
    assert audio.items == (card_id_of(chain, "bob", 0),)
    mine = queries.get_feed_page(chain.tree, queries.feed_of(sk.F_CREATOR, chain.addr("alice")))
    assert len(mine.items) == 3


def test_seeder_map_with_proofs(chain: TestChain) -> None:
    m = queries.get_seeders(chain.tree, root_of("film0"), prove=True)
    assert {e.seeder for e in m.entries} == {chain.addr("carol"), chain.addr("dave")}
    assert queries.verify_reads(app_hash(chain, chain.height), m.reads)
    assert queries.get_seeders(chain.tree, root_of("film0"), height=2).entries == ()


def test_may_decrypt_with_proofs(chain: TestChain) -> None:
    cid = card_id_of(chain, "alice", 0)
    ent = queries.may_decrypt(chain.tree, chain.addr("bob"), cid, prove=True)
    assert ent.allowed and ent.why == "holder"
    assert queries.verify_reads(app_hash(chain, chain.height), ent.reads)
    before = queries.may_decrypt(chain.tree, chain.addr("bob"), cid, height=3, prove=True)
    assert not before.allowed and queries.verify_reads(app_hash(chain, 3), before.reads)
    assert queries.may_decrypt(chain.tree, chain.addr("bob"), b"\x00" * 32).why == "no such card"
    keys = queries.get_keys_of(chain.tree, chain.addr("bob"), prove=True)
    assert [(t.card_id, t.serial) for t in keys.tokens] == [(cid, 1)]
    assert queries.verify_reads(app_hash(chain, chain.height), keys.reads)


def test_generic_by_kind_with_proofs(chain: TestChain) -> None:
    page = queries.get_generic_by_kind(chain.tree, b"poll", prove=True)
    assert [(g.payload, g.sender, g.height) for g in page.txs] == [(b"yes", chain.addr("carol"), 3)]
    h = app_hash(chain, chain.height)
    assert queries.verify_feed_page(h, page.page) and queries.verify_reads(h, page.reads)


def test_heights_outside_the_store(chain: TestChain) -> None:
    with pytest.raises(StateError):
        queries.get_account(chain.tree, chain.addr("alice"), height=chain.height + 5)


def test_long_feed_across_blocks_proves_every_page() -> None:
    """Feeds longer than a bucket (16 items), appended over several blocks."""
    c = TestChain(users=("alice", "bob"))
    expected = []
    for block in range(5):
        txs = []
        for who in ("alice", "bob"):
            for _ in range(4 + block):
                txs.append(c.tx(who, publish_body(f"{who}{len(expected)}", tags=("long",))))
        for raw in txs:
            t = txm.Tx.decode_untrusted(raw)
            expected.append(txm.compute_card_id(t.sender, t.nonce))
        c.apply(txs)
    fid = queries.feed_of(sk.F_TAG, b"long")
    n = len(expected)
    assert n == 60
    h = c.results[-1].app_hash
    for a, b in [(0, n), (0, 16), (15, 17), (16, 48), (33, 60), (59, 60), (7, 7), (32, 48)]:
        page = queries.get_feed_page(c.tree, fid, a, b, prove=True)
        assert page.items == tuple(expected[a:b])
        assert queries.verify_feed_page(h, page)
    old = queries.get_feed_page(c.tree, fid, height=2, prove=True)
    assert old.items == tuple(expected[:18]) and queries.verify_feed_page(c.results[1].app_hash, old)


def test_token_proof(chain: TestChain) -> None:
    cid = card_id_of(chain, "alice", 0)
    read = queries.prove_token(chain.tree, cid, 1)
    assert read.value is not None and queries.verify_reads(app_hash(chain, chain.height), [read])
    absent = queries.prove_token(chain.tree, cid, 2)
    assert absent.value is None and queries.verify_reads(app_hash(chain, chain.height), [absent])
