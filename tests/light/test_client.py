"""LightClient and VerifiedQueries against a real 4-validator chain on LevelDB served by
the node's real RpcServer on 127.0.0.1, including validator set changes (bond/unbond)
crossed by skipping verification with bisection, witnesses and a detected attack."""

from __future__ import annotations

from pathlib import Path

import pytest

from light import errors as le
from light.client import LightClient, Options, Provider
from light.evidence import LightClientAttackEvidence
from light.queries import VerifiedQueries
from light.store import TrustedStore
from tests.light.fixtures import Served, World, forked_chains
from tests.node.chainfixture import CHAIN_ID, FixtureView


def clock_for(world: World) -> int:
    return world.fx.state.time_ms + 60_000


def make_client(world: World, address: str, home: Path, *, witnesses: tuple[str, ...] = (),
                mode: str = "skipping", trust_height: int = 1) -> LightClient:
    return LightClient.init(
        TrustedStore(home), Provider.at(address), [Provider.at(w) for w in witnesses],
        trust_height=trust_height, trust_hash=world.header_hash(trust_height),
        options=Options(mode=mode), clock=lambda: clock_for(world),
    )


def test_skipping_bisects_across_validator_set_changes(world: World, served: Served, home: Path) -> None:
    client = make_client(world, served.address, home)
    latest = client.update()
    assert latest.height == world.fx.height
    assert latest.hash() == world.header_hash(world.fx.height)
    stored = client.store.heights()
    # the genesis set kept too little power to vouch for the latest header directly
    assert len(stored) > 2 and stored[0] == 1 and stored[-1] == world.fx.height
    assert len(stored) < world.fx.height  # but it did skip
    # a height below the newest trusted one is verified backwards by hash links
    assert client.verify_to_height(3).hash() == world.header_hash(3)


def test_sequential_verifies_every_height(world: World, served: Served, home: Path) -> None:
    client = make_client(world, served.address, home, mode="sequential")
    assert client.update().height == world.fx.height
    assert client.store.heights() == list(range(1, world.fx.height + 1))


def test_reopen_from_store_and_wrong_root(world: World, served: Served, home: Path) -> None:
    make_client(world, served.address, home).update()
    again = LightClient.open(TrustedStore(home), clock=lambda: clock_for(world))
    assert again.latest_trusted().height == world.fx.height
    with pytest.raises(le.InvalidHeader):
        LightClient.init(TrustedStore(home), Provider.at(served.address), [], trust_height=2,
                         trust_hash=world.header_hash(1), clock=lambda: clock_for(world))


def test_trusting_period_expires(world: World, served: Served, home: Path) -> None:
    client = make_client(world, served.address, home)
    client.clock = lambda: world.fx.state.time_ms + 30 * 24 * 3600 * 1000
    with pytest.raises(le.TrustExpired):
        client.update()


def test_verified_queries(world: World, served: Served, home: Path) -> None:
    q = VerifiedQueries(make_client(world, served.address, home))
    acct = q.account(world.dave)
    assert acct.value.address == world.dave and acct.value.balance > 0
    card = q.card(world.paid_card, height=3)
    assert card.height == 3 and card.value.keys_sold == 1 and card.value.offer[0] == 1000
    assert q.card(bytes(32)).value is None  # absence proven
    feed = q.feed("tag", "art")
    assert [c.card_id for c in feed.value.cards] == list(feed.value.page.items)
    assert world.free_card in feed.value.page.items and feed.value.page.stop == feed.value.page.length
    page = q.feed("creator", world.bob.hex(), start=1, limit=1)
    assert page.value.page.start == 1 and len(page.value.cards) == 1
    seeders = q.seeders(world.root)
    assert sorted(e.seeder for e in seeders.value.entries) == sorted([world.bob, world.carol])
    assert q.key(world.paid_card, 1).value.owner == world.dave
    assert q.may_decrypt(world.dave, world.paid_card).value.allowed
    assert q.may_decrypt(world.alice, world.paid_card).value.why == "creator"
    no = q.may_decrypt(world.carol, world.paid_card)
    assert not no.value.allowed and no.json["why"] == "no key"


def test_witness_agrees(world: World, served: Served, home: Path) -> None:
    other = Served(world.view)
    try:
        client = make_client(world, served.address, home, witnesses=(other.address,))
        assert client.update().height == world.fx.height
        assert client.dropped_witnesses == []
    finally:
        other.stop()



def test_conflicting_witness_is_an_attack(tmp_path: Path) -> None:
    a, b = forked_chains(tmp_path)
    sa, sb = Served(FixtureView(a, tmp_path / "va")), Served(FixtureView(b, tmp_path / "vb"))
    try:
        from chain.types import Block

        root = Block.decode_untrusted(a.blocks.get_block(1) or b"").hash()
        assert root == Block.decode_untrusted(b.blocks.get_block(1) or b"").hash()
        store = TrustedStore(tmp_path / "light")
        client = LightClient.init(store, Provider.at(sa.address), [Provider.at(sb.address)],
                                  trust_height=1, trust_hash=root, clock=lambda: a.state.time_ms + 60_000)
        with pytest.raises(le.AttackDetected) as info:
            client.update()
        assert info.value.evidence_path is not None and Path(info.value.evidence_path).exists()
        evidence = [LightClientAttackEvidence.decode_untrusted(raw) for raw in store.evidence()]
        # skipping went from the root straight to the latest height: that is where they conflict
        assert len(evidence) == 2 and {e.conflicting_block.height for e in evidence} == {a.height}
        for e in evidence:
            e.verify(CHAIN_ID)
            assert e.common_height == 1 and e.common_hash == root
            # the same four validators signed both chains
            assert set(e.byzantine_validators) == {k.public_key.raw for k in a.validator_keys}
        with pytest.raises(le.Halted):
            client.update()
        with pytest.raises(le.Halted):
            LightClient.open(TrustedStore(tmp_path / "light"), clock=lambda: a.state.time_ms).update()
    finally:
        sa.stop()
        sb.stop()
        a.close()
        b.close()
