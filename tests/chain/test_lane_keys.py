"""The keys lane: primary sale through escrow, delivery, timeout refund, resale, transfer, VM rules."""

from __future__ import annotations

import msgpack
import pytest

import vm
from chain import queries
from chain import statekeys as sk
from chain import tx as txm
from chain.crypto import unseal
from chain.errors import (
    InsufficientBalance,
    InvalidField,
    NoOpenEscrow,
    NotAuthorized,
    NotFound,
    RuleViolation,
    VMDenied,
)
from tests.chain.helpers import (
    TestChain,
    card_id_of,
    expect_reject,
    offer,
    publish_body,
    sealed_for,
)

PRICE = 1000


def setup(chain: TestChain, **kw: object) -> bytes:
    """alice publishes a card selling keys; returns its id."""
    chain.apply([chain.tx("alice", publish_body(offer=offer(PRICE, **kw)))])  # type: ignore[arg-type]
    return card_id_of(chain, "alice", 0)


def fee_of(raw: bytes) -> int:
    return txm.Tx.decode_untrusted(raw).fee


def last_serial(chain: TestChain, cid: bytes) -> int:
    """The serial of the card's latest primary sale (next_serial - 1 in its supply record)."""
    raw = chain.state.get(sk.key_supply(cid))
    assert raw is not None
    return int(msgpack.unpackb(raw)[0]) - 1


def buy_and_deliver(chain: TestChain, cid: bytes, buyer: str) -> int:
    chain.apply([chain.tx(buyer, txm.BuyKey(cid, 0, PRICE))])
    serial = last_serial(chain, cid)
    chain.apply([chain.tx("alice", txm.DeliverKey(cid, serial, sealed_for(chain, buyer)))])
    return serial


@pytest.fixture
def chain() -> TestChain:
    return TestChain()


def test_primary_sale_escrow_delivery_releases_payment(chain: TestChain) -> None:
    cid = setup(chain)
    alice0, bob0 = chain.balance("alice"), chain.balance("bob")
    buy = chain.tx("bob", txm.BuyKey(cid, 0, PRICE))
    chain.apply([buy])
    assert chain.balance("bob") == bob0 - PRICE - fee_of(buy)
    assert chain.balance("alice") == alice0  # held in escrow
    assert not queries.may_decrypt(chain.tree, chain.addr("bob"), cid).allowed
    sealed = sealed_for(chain, "bob", b"the content key " * 2)
    deliver = chain.tx("alice", txm.DeliverKey(cid, 1, sealed))
    chain.apply([deliver])
    assert chain.balance("alice") == alice0 + PRICE - fee_of(deliver)
    token = queries.get_token(chain.tree, cid, 1)
    assert token is not None and token.owner == chain.addr("bob")
    assert unseal(chain.users["bob"], token.sealed_key) == b"the content key " * 2
    ent = queries.may_decrypt(chain.tree, chain.addr("bob"), cid)
    assert ent.allowed and ent.serial == 1
    assert queries.may_decrypt(chain.tree, chain.addr("alice"), cid).why == "creator"
    assert not queries.may_decrypt(chain.tree, chain.addr("carol"), cid).allowed
    # ownership at a height is a query
    assert not queries.may_decrypt(chain.tree, chain.addr("bob"), cid, height=chain.height - 1).allowed
    assert [t.serial for t in queries.get_keys_of(chain.tree, chain.addr("bob")).tokens] == [1]


def test_double_delivery(chain: TestChain) -> None:
    cid = setup(chain)
    chain.apply([chain.tx("bob", txm.BuyKey(cid, 0, PRICE))])
    chain.apply([chain.tx("alice", txm.DeliverKey(cid, 1, sealed_for(chain, "bob")))])
    expect_reject(chain, [chain.tx("alice", txm.DeliverKey(cid, 1, sealed_for(chain, "bob")))], NoOpenEscrow)


def test_double_delivery_in_one_block(chain: TestChain) -> None:
    cid = setup(chain)
    chain.apply([chain.tx("bob", txm.BuyKey(cid, 0, PRICE))])
    d1 = chain.tx("alice", txm.DeliverKey(cid, 1, sealed_for(chain, "bob")))
    d2 = chain.tx("alice", txm.DeliverKey(cid, 1, sealed_for(chain, "bob")))
    expect_reject(chain, [d1, d2], NoOpenEscrow)


def test_escrow_timeout_refunds_buyer(chain: TestChain) -> None:
    cid = setup(chain, timeout=3)
    buy = chain.tx("bob", txm.BuyKey(cid, 0, PRICE))
    bob0 = chain.balance("bob")
    chain.apply([buy])  # height 2, deadline 5
    chain.advance(2)  # height 4: still held
    assert chain.balance("bob") == bob0 - PRICE - fee_of(buy)
    chain.advance(1)  # height 5: refunded
    assert chain.balance("bob") == bob0 - fee_of(buy)
    card = queries.get_card(chain.tree, cid)
    assert card is not None and card.keys_sold == 0
    # the seller is too late now
    expect_reject(chain, [chain.tx("alice", txm.DeliverKey(cid, 1, sealed_for(chain, "bob")))], NoOpenEscrow)
    assert queries.get_token(chain.tree, cid, 1) is None


def test_delivery_only_by_seller(chain: TestChain) -> None:
    cid = setup(chain)
    chain.apply([chain.tx("bob", txm.BuyKey(cid, 0, PRICE))])
    expect_reject(chain, [chain.tx("carol", txm.DeliverKey(cid, 1, sealed_for(chain, "bob")))], NotAuthorized)
    expect_reject(chain, [chain.tx("alice", txm.DeliverKey(cid, 1, b"short"))], InvalidField)


def test_primary_sale_rules(chain: TestChain) -> None:
    cid = setup(chain, supply_cap=1)
    expect_reject(chain, [chain.tx("bob", txm.BuyKey(cid, 0, PRICE - 1))], RuleViolation)
    expect_reject(chain, [chain.tx("alice", txm.BuyKey(cid, 0, PRICE))], RuleViolation)
    expect_reject(chain, [chain.tx("bob", txm.BuyKey(bytes(32), 0, PRICE))], NotFound)
    chain.apply([chain.tx("bob", txm.BuyKey(cid, 0, PRICE))])
    expect_reject(chain, [chain.tx("carol", txm.BuyKey(cid, 0, PRICE))], RuleViolation)  # sold out


def test_buyer_cannot_pay() -> None:
    chain = TestChain(balance=10_000)
    chain.apply([chain.tx("alice", publish_body(offer=offer(50_000)))])
    cid = card_id_of(chain, "alice", 0)
    expect_reject(chain, [chain.tx("bob", txm.BuyKey(cid, 0, 50_000))], InsufficientBalance)


def test_card_without_offer_sells_nothing(chain: TestChain) -> None:
    chain.apply([chain.tx("alice", publish_body())])
    cid = card_id_of(chain, "alice", 0)
    expect_reject(chain, [chain.tx("bob", txm.BuyKey(cid, 0, PRICE))], NotFound)


def test_resale_default_rule_pays_royalty(chain: TestChain) -> None:
    cid = setup(chain, royalty_bps=1000)
    serial = buy_and_deliver(chain, cid, "bob")
    chain.apply([chain.tx("bob", txm.ListKey(cid, serial, 5000))])
    alice0, bob0, carol0 = chain.balance("alice"), chain.balance("bob"), chain.balance("carol")
    buy = chain.tx("carol", txm.BuyKey(cid, serial, 5000))
    chain.apply([buy])
    assert chain.balance("carol") == carol0 - 5000 - fee_of(buy)
    deliver = chain.tx("bob", txm.DeliverKey(cid, serial, sealed_for(chain, "carol")))
    chain.apply([deliver])
    assert chain.balance("alice") == alice0 + 500  # 10 % royalty
    assert chain.balance("bob") == bob0 + 4500 - fee_of(deliver)
    token = queries.get_token(chain.tree, cid, serial)
    assert token is not None and token.owner == chain.addr("carol") and token.times_resold == 1
    assert queries.may_decrypt(chain.tree, chain.addr("carol"), cid).allowed
    assert not queries.may_decrypt(chain.tree, chain.addr("bob"), cid).allowed
    assert queries.get_keys_of(chain.tree, chain.addr("bob")).tokens == ()


def test_resale_rules(chain: TestChain) -> None:
    cid = setup(chain)
    serial = buy_and_deliver(chain, cid, "bob")
    expect_reject(chain, [chain.tx("carol", txm.BuyKey(cid, serial, 10**6))], NotFound)  # not listed
    expect_reject(chain, [chain.tx("carol", txm.ListKey(cid, serial, 10))], NotAuthorized)
    chain.apply([chain.tx("bob", txm.ListKey(cid, serial, 5000))])
    expect_reject(chain, [chain.tx("carol", txm.BuyKey(cid, serial, 4999))], RuleViolation)
    expect_reject(chain, [chain.tx("bob", txm.BuyKey(cid, serial, 5000))], RuleViolation)
    expect_reject(chain, [chain.tx("carol", txm.BuyKey(cid, 99, 5000))], NotFound)
    chain.apply([chain.tx("carol", txm.BuyKey(cid, serial, 5000))])
    # in escrow: no second buyer, no relisting, no gift
    expect_reject(chain, [chain.tx("dave", txm.BuyKey(cid, serial, 5000))], NotFound)
    expect_reject(chain, [chain.tx("bob", txm.ListKey(cid, serial, 1))], RuleViolation)
    gift = txm.TransferKey(cid, serial, chain.addr("dave"), sealed_for(chain, "dave"))
    expect_reject(chain, [chain.tx("bob", gift)], RuleViolation)


def test_resale_timeout_keeps_token_with_seller(chain: TestChain) -> None:
    cid = setup(chain, timeout=2)
    serial = buy_and_deliver(chain, cid, "bob")
    chain.apply([chain.tx("bob", txm.ListKey(cid, serial, 5000))])
    carol0 = chain.balance("carol")
    buy = chain.tx("carol", txm.BuyKey(cid, serial, 5000))
    chain.apply([buy])
    chain.advance(2)
    assert chain.balance("carol") == carol0 - fee_of(buy)
    token = queries.get_token(chain.tree, cid, serial)
    assert token is not None and token.owner == chain.addr("bob")


def test_delist(chain: TestChain) -> None:
    cid = setup(chain)
    serial = buy_and_deliver(chain, cid, "bob")
    expect_reject(chain, [chain.tx("bob", txm.ListKey(cid, serial, 0))], NotFound)
    chain.apply([chain.tx("bob", txm.ListKey(cid, serial, 10))])
    chain.apply([chain.tx("bob", txm.ListKey(cid, serial, 0))])
    expect_reject(chain, [chain.tx("carol", txm.BuyKey(cid, serial, 10))], NotFound)


def test_gift_transfer(chain: TestChain) -> None:
    cid = setup(chain)
    serial = buy_and_deliver(chain, cid, "bob")
    gift = txm.TransferKey(cid, serial, chain.addr("dave"), sealed_for(chain, "dave"))
    expect_reject(chain, [chain.tx("carol", gift)], NotAuthorized)
    expect_reject(chain, [chain.tx("bob", txm.TransferKey(cid, serial, chain.addr("bob"), sealed_for(chain, "bob")))], InvalidField)
    chain.apply([chain.tx("bob", gift)])
    assert queries.may_decrypt(chain.tree, chain.addr("dave"), cid).allowed
    assert not queries.may_decrypt(chain.tree, chain.addr("bob"), cid).allowed


def test_vm_deny_soulbound(chain: TestChain) -> None:
    cid = setup(chain, program=vm.stdlib.program("soulbound"))
    serial = buy_and_deliver(chain, cid, "bob")
    gift = txm.TransferKey(cid, serial, chain.addr("dave"), sealed_for(chain, "dave"))
    err = expect_reject(chain, [chain.tx("bob", gift)], VMDenied)
    assert isinstance(err, VMDenied) and err.reason == 100
    chain.apply([chain.tx("bob", txm.ListKey(cid, serial, 10))])
    expect_reject(chain, [chain.tx("carol", txm.BuyKey(cid, serial, 10))], VMDenied)
    assert queries.may_decrypt(chain.tree, chain.addr("bob"), cid).allowed


def test_vm_hold_blocks_then_allows_with_royalty(chain: TestChain) -> None:
    cid = setup(chain, program=vm.stdlib.program("hold_blocks"), params=(3,), royalty_bps=2000)
    serial = buy_and_deliver(chain, cid, "bob")  # acquired at height 3
    chain.apply([chain.tx("bob", txm.ListKey(cid, serial, 1000))])  # height 4
    expect_reject(chain, [chain.tx("carol", txm.BuyKey(cid, serial, 1000))], VMDenied)  # height 5 < 3 + 3
    chain.advance(1)
    alice0 = chain.balance("alice")
    result = chain.apply([chain.tx("carol", txm.BuyKey(cid, serial, 1000))])  # height 6
    assert result.tx_results[0].gas_used > 0
    chain.apply([chain.tx("bob", txm.DeliverKey(cid, serial, sealed_for(chain, "carol")))])
    assert chain.balance("alice") == alice0 + 200


def test_vm_expiring_key_stops_entitling(chain: TestChain) -> None:
    cid = setup(chain, program=vm.stdlib.program("expiring"), params=(6,))
    buy_and_deliver(chain, cid, "bob")  # height 3
    assert queries.may_decrypt(chain.tree, chain.addr("bob"), cid).allowed
    chain.advance(3)  # height 6
    ent = queries.may_decrypt(chain.tree, chain.addr("bob"), cid)
    assert not ent.allowed and ent.why == "rule denies"
    assert queries.may_decrypt(chain.tree, chain.addr("bob"), cid, height=5).allowed
