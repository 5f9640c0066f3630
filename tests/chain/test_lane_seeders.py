"""The seeders lane: announce, refresh, withdraw, lapse at expiry; the map at any height."""

from __future__ import annotations

import pytest

from chain import queries
from chain import tx as txm
from chain.errors import InvalidField, LimitExceeded, NotFound
from tests.chain.helpers import TestChain, expect_reject, root_of

ROOT = root_of("film")


def announce(expiry: int, addresses: tuple[str, ...] = ("10.0.0.1:4433",),
             ranges: tuple[tuple[int, int], ...] = ((0, 100),), root: bytes = ROOT) -> txm.Announce:
    return txm.Announce(root, addresses, ranges, expiry)


@pytest.fixture
def chain() -> TestChain:
    return TestChain()


def seeders_at(chain: TestChain, height: int | None = None) -> dict[bytes, int]:
    m = queries.get_seeders(chain.tree, ROOT, height=height)
    return {e.seeder: e.expiry_height for e in m.entries}


def test_announce_lapse_and_history(chain: TestChain) -> None:
    chain.apply([chain.tx("alice", announce(4)), chain.tx("bob", announce(6, ("[::1]:9000", "b:1"), ((0, 5), (9, 12))))])
    assert seeders_at(chain) == {chain.addr("alice"): 4, chain.addr("bob"): 6}
    entry = {e.seeder: e for e in queries.get_seeders(chain.tree, ROOT).entries}[chain.addr("bob")]
    assert entry.addresses == ("[::1]:9000", "b:1") and entry.ranges == ((0, 5), (9, 12))
    chain.advance(2)  # height 3: both live
    assert len(seeders_at(chain)) == 2
    chain.advance(1)  # height 4: alice's entry lapses
    assert seeders_at(chain) == {chain.addr("bob"): 6}
    chain.advance(2)  # height 6: bob's too
    assert seeders_at(chain) == {}
    # the map at any retained height is a query
    assert seeders_at(chain, 3) == {chain.addr("alice"): 4, chain.addr("bob"): 6}
    assert seeders_at(chain, 5) == {chain.addr("bob"): 6}


def test_refresh_moves_expiry(chain: TestChain) -> None:
    chain.apply([chain.tx("alice", announce(3))])
    chain.apply([chain.tx("alice", announce(10, ("new:1",)))])
    chain.advance(3)  # past the old expiry
    m = queries.get_seeders(chain.tree, ROOT)
    assert [(e.expiry_height, e.addresses) for e in m.entries] == [(10, ("new:1",))]


def test_withdraw(chain: TestChain) -> None:
    chain.apply([chain.tx("alice", announce(50)), chain.tx("bob", announce(50)), chain.tx("carol", announce(50))])
    chain.apply([chain.tx("alice", txm.Withdraw(ROOT))])
    assert set(seeders_at(chain)) == {chain.addr("bob"), chain.addr("carol")}
    expect_reject(chain, [chain.tx("alice", txm.Withdraw(ROOT))], NotFound)


def test_expired_entry_is_gone_and_cannot_be_withdrawn(chain: TestChain) -> None:
    chain.apply([chain.tx("alice", announce(2))])
    chain.advance(1)
    assert seeders_at(chain) == {}
    expect_reject(chain, [chain.tx("alice", txm.Withdraw(ROOT))], NotFound)


@pytest.mark.parametrize("expiry", [0, 1])
def test_expiry_not_in_the_future(chain: TestChain, expiry: int) -> None:
    expect_reject(chain, [chain.tx("alice", announce(expiry))], InvalidField)


def test_expiry_beyond_max_ttl(chain: TestChain) -> None:
    ttl = chain.app.seeder_max_ttl
    expect_reject(chain, [chain.tx("alice", announce(1 + ttl + 1))], InvalidField)
    chain.apply([chain.tx("alice", announce(1 + ttl))])


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (announce(5, addresses=()), LimitExceeded),
        (announce(5, addresses=tuple(f"h{i}:1" for i in range(9))), LimitExceeded),
        (announce(5, addresses=("x" * 129,)), LimitExceeded),
        (announce(5, ranges=()), LimitExceeded),
        (announce(5, ranges=((5, 5),)), InvalidField),
        (announce(5, ranges=((0, 10), (5, 20))), InvalidField),
        (announce(5, ranges=((10, 20), (0, 5))), InvalidField),
        (announce(5, ranges=tuple((i, i + 1) for i in range(0, 130, 2))), LimitExceeded),
    ],
)
def test_announce_rules(chain: TestChain, body: txm.Announce, error: type[Exception]) -> None:
    expect_reject(chain, [chain.tx("alice", body)], error)


def test_seeder_list_across_chunks_with_removals() -> None:
    """More seeders than one list record holds (128); withdrawals from anywhere keep the list exact."""
    names = [f"s{i}" for i in range(140)]
    chain = TestChain(users=names)
    chain.apply([chain.tx(n, announce(30 if i % 3 else 5)) for i, n in enumerate(names)])
    live = {chain.addr(n) for n in names}
    assert set(seeders_at(chain)) == live and len(queries.get_seeders(chain.tree, ROOT).entries) == 140
    gone = [names[0], names[64], names[139], names[127], names[128], names[1]]
    chain.apply([chain.tx(n, txm.Withdraw(ROOT)) for n in gone])
    live -= {chain.addr(n) for n in gone}
    assert set(seeders_at(chain)) == live
    chain.advance(3)  # height 5: every third seeder's entry lapses
    live -= {chain.addr(n) for i, n in enumerate(names) if i % 3 == 0}
    m = queries.get_seeders(chain.tree, ROOT, prove=True)
    assert {e.seeder for e in m.entries} == live and len(m.entries) == len(live)
    assert queries.verify_reads(chain.results[-1].app_hash, m.reads)
    # refreshing and re-announcing after a withdrawal
    chain.apply([chain.tx(names[64], announce(40)), chain.tx(names[2], announce(41))])
    live.add(chain.addr(names[64]))
    assert set(seeders_at(chain)) == live
    assert seeders_at(chain)[chain.addr(names[2])] == 41
