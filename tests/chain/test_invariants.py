"""Hypothesis: random valid transaction sequences keep the state's invariants.

What is conserved, precisely: the total of all tokens (every account balance,
every validator stake, every unbonding amount and every open escrow) equals
the genesis supply minus the stake burned by slashing. Fees move tokens from
senders to the proposer and royalties from sales to creators; neither creates
nor destroys any. Also checked after every block: no balance, stake or escrow
is negative; every key token has exactly one owner and appears in exactly one
owner's token set (and in no other); holding counts match the token sets; the
seeder map of a content equals the live entries; feed lengths equal the
number of cards published into them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from chain import queries
from chain import statekeys as sk
from chain import tx as txm
from chain.checktx import check_tx
from chain.errors import InvalidTx
from tests.chain.helpers import TestChain, offer, publish_body, root_of, sealed_for

USERS = ("alice", "bob", "carol", "dave", "erin")
BALANCE = 3_000_000

action = st.tuples(
    st.sampled_from(
        ["transfer", "publish", "publish", "react", "announce", "withdraw", "buy", "buy", "deliver",
         "deliver", "deliver", "list", "list", "buy_listed", "buy_listed", "gift", "bond", "unbond",
         "generic", "follow", "empty"]
    ),
    st.sampled_from(USERS),
    st.sampled_from(USERS),
    st.integers(0, 3000),
    st.integers(0, 7),
)  # fmt: skip


def supply(chain: TestChain) -> tuple[int, dict[str, Any]]:
    """Sum every token holding in the state, checking no negative amounts and the key invariants."""
    items = chain.snapshot()
    total = 0
    tokens: dict[bytes, bytes] = {}
    token_sets: Counter[bytes] = Counter()
    holdings: Counter[tuple[bytes, bytes]] = Counter()
    holding_records: dict[tuple[bytes, bytes], int] = {}
    for key, value in items.items():
        tag = key[0]
        if tag == sk.T_ACCOUNT:
            balance, nonce = msgpack.unpackb(value)
            assert balance >= 0 and nonce >= 0
            total += balance
        elif tag in (sk.T_STAKE, sk.T_UNBONDING):
            amount = int.from_bytes(value, "big")
            assert amount > 0
            total += amount
        elif tag == sk.T_ESCROW:
            _, _, price, royalty, _, _ = msgpack.unpackb(value)
            assert 0 <= royalty <= price
            total += price
        elif tag == sk.T_TOKEN:
            tokens[key[1:]] = msgpack.unpackb(value)[0]
        elif tag == sk.T_SET_ITEM and key[1] == sk.S_TOKENS_OF:
            owner = key[2:34]
            token_sets[value + owner] += 1
            holdings[(owner, value[:32])] += 1
        elif tag == sk.T_HOLDING:
            holding_records[(key[1:33], key[33:65])] = int.from_bytes(value, "big")
    # every token has exactly one owner, and exactly that owner's set lists it
    assert len(token_sets) == len(tokens)
    for token_id, owner in tokens.items():
        assert token_sets[token_id + owner] == 1
    assert dict(holdings) == holding_records
    return total, {"tokens": len(tokens)}


class Driver:
    """Turns random actions into transactions that are valid when checked (others are skipped)."""

    def __init__(self, chain: TestChain) -> None:
        self.chain = chain
        self.cards: list[tuple[str, bytes]] = []
        self.escrows: list[tuple[str, bytes, int, str]] = []  # seller, card, serial, buyer
        self.owned: list[tuple[str, bytes, int]] = []
        self.listed: list[tuple[str, bytes, int]] = []
        self.announced: set[tuple[str, bytes]] = set()

    def body(self, kind: str, who: str, other: str, amount: int, pick: int) -> tuple[str, txm.AnyBody] | None:
        c = self.chain
        if kind == "transfer":
            return who, txm.Transfer(c.addr(other), amount + 1)
        if kind == "publish":
            return who, publish_body(f"c{len(self.cards)}-{pick}", tags=(f"t{pick % 3}",), offer=offer(amount, royalty_bps=pick * 1000, timeout=pick % 4 + 1))
        if kind == "react" and self.cards:
            return who, txm.React(self.cards[pick % len(self.cards)][1], pick % 7)
        if kind == "announce":
            return who, txm.Announce(root_of(f"r{pick % 3}"), ("h:1",), ((0, 4),), c.height + 1 + pick % 4 + 1)
        if kind == "withdraw":
            return who, txm.Withdraw(root_of(f"r{pick % 3}"))
        if kind == "buy" and self.cards:
            return who, txm.BuyKey(self.cards[pick % len(self.cards)][1], 0, amount)
        if kind == "deliver" and self.escrows:
            seller, card_id, serial, buyer = self.escrows[pick % len(self.escrows)]
            return seller, txm.DeliverKey(card_id, serial, sealed_for(c, buyer))
        if kind == "list" and self.owned:
            owner, card_id, serial = self.owned[pick % len(self.owned)]
            return owner, txm.ListKey(card_id, serial, amount + 1)
        if kind == "buy_listed" and self.listed:
            _, card_id, serial = self.listed[pick % len(self.listed)]
            return who, txm.BuyKey(card_id, serial, amount)
        if kind == "gift" and self.owned:
            owner, card_id, serial = self.owned[pick % len(self.owned)]
            return owner, txm.TransferKey(card_id, serial, c.addr(other), sealed_for(c, other))
        if kind == "bond":
            return who, txm.Bond(c.app.min_bond + amount)
        if kind == "unbond":
            return who, txm.Unbond(c.app.min_bond)
        if kind == "generic":
            return who, txm.Generic(b"k%d" % pick, b"p" * amount)
        if kind == "follow":
            return who, txm.Follow(c.addr(other))
        return None

    def refresh(self) -> None:
        """Re-read escrows, ownership and listings from the state."""
        c = self.chain
        names = {c.addr(u): u for u in USERS}
        self.escrows, self.owned, self.listed = [], [], []
        for key, value in c.snapshot().items():
            if key[0] == sk.T_ESCROW:
                buyer, seller, *_ = msgpack.unpackb(value)
                self.escrows.append((names[seller], key[1:33], int.from_bytes(key[33:], "big"), names[buyer]))
            elif key[0] == sk.T_TOKEN:
                self.owned.append((names[msgpack.unpackb(value)[0]], key[1:33], int.from_bytes(key[33:], "big")))
            elif key[0] == sk.T_LISTING:
                self.listed.append(("", key[1:33], int.from_bytes(key[33:], "big")))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(action, max_size=12), min_size=1, max_size=12))
def test_random_sequences_keep_invariants(blocks: list[list[tuple[str, str, str, int, int]]]) -> None:
    chain = TestChain(users=USERS, balance=BALANCE, validators=2)
    chain.app = chain.state.app
    genesis_total, _ = supply(chain)
    driver = Driver(chain)
    burned = 0
    for actions in blocks:
        driver.refresh()
        overlay = chain.state.new_overlay()
        lanes: dict[str, list[bytes]] = {name: [] for name in txm.LANE_NAMES}
        used: set[str] = set()
        for kind, who, other, amount, pick in actions:
            made = driver.body(kind, who, other, amount, pick)
            if made is None or made[0] in used:
                continue  # one transaction per sender and block keeps nonces in lane order
            sender, body = made
            raw = chain.tx(sender, body)
            try:
                check_tx(chain.state, raw, overlay=overlay)
            except InvalidTx:
                chain.forget_pending()
                continue
            used.add(sender)
            lanes[txm.LANE_NAMES[body.LANE]].append(raw)
            if isinstance(body, txm.PublishCard):
                driver.cards.append((sender, txm.compute_card_id(chain.addr(sender), txm.Tx.decode_untrusted(raw).nonce)))
        result = chain.apply(lanes=lanes)
        burned += result.burned
        total, _ = supply(chain)
        assert total == genesis_total - burned
        for u in USERS:
            assert queries.get_account(chain.tree, chain.addr(u)).balance >= 0
