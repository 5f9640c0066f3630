"""The mempool against a real state on LevelDB: nonces, priority, limits, eviction,
recheck after a block, dedup, and reaps that always apply as a block."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from chain import tx as txm
from chain.errors import InsufficientBalance, MalformedTx, NotFound, WrongNonce
from chain.params import ConsensusParams
from node.config import MempoolConfig
from node.mempool import (
    PARK_HEIGHTS,
    DuplicateTx,
    Mempool,
    MempoolFull,
    MempoolUsageError,
    TxInvalid,
    TxParked,
    TxTooLarge,
)
from node.metrics import NodeMetrics
from tests.chain.helpers import TestChain, publish_body, root_of


@pytest.fixture
def chain(tmp_path: Path) -> TestChain:
    c = TestChain(path=tmp_path / "db", users=("alice", "bob", "carol", "dave", "erin"))
    yield c
    c.close()


def pay(chain: TestChain, who: str, amount: int = 1, *, fee: int | None = None, nonce: int | None = None,
        to: str = "dave") -> bytes:
    return chain.tx(who, txm.Transfer(chain.addr(to), amount), fee=fee, nonce=nonce)


def pool(chain: TestChain, **cfg: object) -> Mempool:
    return Mempool(chain.state, MempoolConfig(**cfg))  # type: ignore[arg-type]


def commit(chain: TestChain, mp: Mempool, lanes: dict[str, list[bytes]]) -> None:
    result = chain.apply_block(chain.block(lanes=lanes))
    mp.update(chain.height, result)


def test_consecutive_nonces_accepted_in_order_and_reaped_as_a_valid_block(chain: TestChain) -> None:
    mp = pool(chain)
    raws = [pay(chain, "alice") for _ in range(3)]
    results = [mp.add(r) for r in raws]
    assert [r.nonce for r in results] == [0, 1, 2]
    assert mp.size == 3 and mp.bytes == mp.total_bytes == sum(map(len, raws))
    assert mp.next_nonce(chain.addr("alice")) == 3
    lanes = mp.reap(chain.consensus)
    assert lanes["txs"] == raws and lanes["cards"] == lanes["seeders"] == lanes["keys"] == []
    commit(chain, mp, lanes)
    assert mp.size == 0 and mp.bytes == 0
    assert chain.account("alice")[1] == 3


def test_nonce_gap_and_repeated_nonce_are_rejected_not_held(chain: TestChain) -> None:
    mp = pool(chain)
    mp.add(pay(chain, "alice", nonce=0))
    with pytest.raises(TxInvalid) as gap:
        mp.add(pay(chain, "alice", nonce=2))
    assert isinstance(gap.value.reason, WrongNonce) and "expected 1" in str(gap.value)
    with pytest.raises(TxInvalid) as again:
        mp.add(pay(chain, "alice", amount=7, nonce=0))  # a different tx with a pooled nonce
    assert isinstance(again.value.reason, WrongNonce)
    assert mp.size == 1
    # the gap is filled in order afterwards
    mp.add(pay(chain, "alice", nonce=1))
    mp.add(pay(chain, "alice", nonce=2))
    assert mp.size == 3


def test_duplicates_are_refused_while_pooled_and_after_commit(chain: TestChain) -> None:
    mp = pool(chain)
    raw = pay(chain, "alice")
    mp.add(raw)
    with pytest.raises(DuplicateTx):
        mp.add(raw)
    commit(chain, mp, mp.reap(chain.consensus))
    assert mp.size == 0
    with pytest.raises(DuplicateTx):
        mp.add(raw)  # the cache remembers committed hashes (gossip echoes)
    assert mp.seen(txm.tx_hash(raw))


def test_dedup_cache_is_bounded(chain: TestChain) -> None:
    mp = pool(chain, cache_size=2)
    raws = [pay(chain, "alice") for _ in range(3)]
    for r in raws:
        mp.add(r)
    commit(chain, mp, mp.reap(chain.consensus))
    assert not mp.seen(txm.tx_hash(raws[0])) and mp.seen(txm.tx_hash(raws[2]))
    # forgotten by the cache, the old tx fails the chain's nonce rule instead
    with pytest.raises(TxInvalid) as info:
        mp.add(raws[0])
    assert isinstance(info.value.reason, WrongNonce)


def test_bad_input_gets_typed_errors(chain: TestChain) -> None:
    mp = pool(chain, max_tx_bytes=300, max_txs_bytes=10_000)
    with pytest.raises(TxInvalid) as info:
        mp.add(b"\x01\x02garbage")
    assert isinstance(info.value.reason, MalformedTx)
    with pytest.raises(TxInvalid):
        mp.add("not bytes")  # type: ignore[arg-type]
    with pytest.raises(TxTooLarge, match="max_tx_bytes 300"):
        mp.add(chain.tx("alice", publish_body(preview=b"p" * 400)))
    chain.forget_pending()
    with pytest.raises(TxInvalid) as poor:
        mp.add(pay(chain, "alice", amount=10**15))
    assert isinstance(poor.value.reason, InsufficientBalance)
    assert mp.size == 0
    with pytest.raises(MempoolUsageError):
        mp.update(chain.height + 5)


def test_priority_orders_senders_but_keeps_each_senders_nonces(chain: TestChain) -> None:
    mp = pool(chain)
    base = pay(chain, "carol")
    fee = txm.Tx.decode_untrusted(base).fee
    chain.forget_pending()
    a0 = pay(chain, "alice", fee=fee)  # low head ...
    a1 = pay(chain, "alice", fee=fee * 50)  # ... with a rich follower
    b0 = pay(chain, "bob", fee=fee * 10)
    c0 = pay(chain, "carol", fee=fee * 5)
    for raw in (a0, a1, b0, c0):
        mp.add(raw)
    assert mp.reap(chain.consensus)["txs"] == [b0, c0, a0, a1]


def test_equal_priority_goes_by_arrival(chain: TestChain) -> None:
    mp = pool(chain)
    raws = [pay(chain, who) for who in ("carol", "alice", "bob")]
    for r in raws:
        mp.add(r)
    assert mp.reap(chain.consensus)["txs"] == raws


def test_reap_respects_lane_limits_block_bytes_and_max_txs(chain: TestChain) -> None:
    mp = pool(chain)
    raws = [pay(chain, who) for who in ("alice", "bob", "carol") for _ in range(2)]
    for r in raws:
        mp.add(r)
    small_lane = dataclasses.replace(chain.consensus, max_lane_txs_txs=2)
    assert len(mp.reap(small_lane)["txs"]) == 2
    size = len(raws[0]) + 5
    tight = dataclasses.replace(chain.consensus, max_block_bytes=1024 + 3 * size)
    assert len(mp.reap(tight, reserved_bytes=1024)["txs"]) == 3
    assert len(mp.reap(chain.consensus, max_txs=4)["txs"]) == 4
    assert mp.size == 6  # reaping removes nothing


def test_a_senders_later_lane_waits_when_lanes_would_run_it_first(chain: TestChain) -> None:
    mp = pool(chain)
    transfer = pay(chain, "alice")  # nonce 0, txs lane (runs last)
    card = chain.tx("alice", publish_body())  # nonce 1, cards lane (runs first)
    mp.add(transfer)
    mp.add(card)
    lanes = mp.reap(chain.consensus)
    assert lanes["txs"] == [transfer] and lanes["cards"] == []
    commit(chain, mp, lanes)
    assert mp.reap(chain.consensus)["cards"] == [card]


def test_full_pool_evicts_lowest_priority_tail_never_an_earlier_nonce(chain: TestChain) -> None:
    mp = pool(chain, size=3)
    fee = txm.Tx.decode_untrusted(pay(chain, "erin")).fee
    chain.forget_pending()
    a0 = pay(chain, "alice", fee=fee * 3)
    a1 = pay(chain, "alice", fee=fee)  # lowest priority, and alice's tail
    b0 = pay(chain, "bob", fee=fee * 2)
    for raw in (a0, a1, b0):
        mp.add(raw)
    c0 = pay(chain, "carol", fee=fee * 4)
    mp.add(c0)
    assert txm.tx_hash(a1) not in mp and txm.tx_hash(a0) in mp and mp.size == 3
    # next to go would be bob (priority 2) before alice's head (3); a newcomer of equal
    # priority to the lowest evicts nothing
    with pytest.raises(MempoolFull):
        mp.add(pay(chain, "dave", fee=fee * 2, to="alice"))
    chain.forget_pending()
    d0 = pay(chain, "dave", fee=fee * 5, to="alice")
    mp.add(d0)
    assert txm.tx_hash(b0) not in mp and {txm.tx_hash(x) for x in (a0, c0, d0)} == {e.tx_hash for e in mp.entries()}
    # alice's head is the lowest now, but alice's own next nonce needs it: carol's goes
    chain.forget_pending()
    a1_again = pay(chain, "alice", fee=fee * 100, nonce=1)
    mp.add(a1_again)
    assert [e.tx_hash for e in mp.entries()] == [txm.tx_hash(x) for x in (a0, d0, a1_again)]
    # what stays is still valid in sequence
    commit(chain, mp, mp.reap(chain.consensus))
    assert mp.size == 0


def test_byte_limit_evicts_until_the_newcomer_fits(chain: TestChain) -> None:
    one = len(pay(chain, "alice"))
    chain.forget_pending()
    mp = pool(chain, size=100, max_txs_bytes=3 * one + 10, max_tx_bytes=3 * one)
    fee = txm.Tx.decode_untrusted(pay(chain, "erin")).fee
    chain.forget_pending()
    small = [pay(chain, who, fee=fee) for who in ("alice", "bob", "carol")]
    for raw in small:
        mp.add(raw)
    big = chain.tx("dave", publish_body(preview=b"x" * one), fee=fee * 1000)
    assert len(big) > one
    mp.add(big)
    assert txm.tx_hash(big) in mp and mp.bytes <= 3 * one + 10
    assert sum(txm.tx_hash(r) in mp for r in small) == 3 - -(-(len(big) - 10) // one)


def test_update_rechecks_and_drops_what_became_invalid(chain: TestChain) -> None:
    metrics = NodeMetrics()
    mp = Mempool(chain.state, MempoolConfig(), metrics=metrics)
    # alice's pooled nonces 0 and 1; a competing nonce-0 tx reaches a block directly
    pooled = [pay(chain, "alice"), pay(chain, "alice")]
    for raw in pooled:
        mp.add(raw)
    chain.forget_pending()
    rival = pay(chain, "alice", amount=2)
    # bob's tx stays valid; carol's loses its funding when carol spends everything first
    b0 = pay(chain, "bob")
    mp.add(b0)
    chain.forget_pending()
    balance = chain.balance("carol")
    c_spend = pay(chain, "carol", amount=balance // 2)
    mp.add(c_spend)
    chain.forget_pending()
    carol_all = chain.tx("carol", txm.Transfer(chain.addr("dave"), balance - 10_000), nonce=0)
    result = chain.apply_block(chain.block([rival, carol_all]))
    dropped = mp.update(chain.height, result)
    assert set(dropped) == {txm.tx_hash(pooled[0]), txm.tx_hash(pooled[1]), txm.tx_hash(c_spend)}
    assert [e.tx_hash for e in mp.entries()] == [txm.tx_hash(b0)]
    assert metrics.mempool_size._value.get() == 1
    # dropped txs may come back once valid again (they are not kept in the cache):
    # a dropped pooled hash is not "seen"
    assert not mp.seen(txm.tx_hash(pooled[1]))
    commit(chain, mp, mp.reap(chain.consensus))
    assert mp.size == 0


def test_state_moving_without_update_is_noticed(chain: TestChain) -> None:
    mp = pool(chain)
    raw = pay(chain, "alice")
    chain.forget_pending()
    chain.apply([pay(chain, "alice", amount=3)])  # the node forgot to call update
    with pytest.raises(TxInvalid):
        mp.add(raw)
    assert mp.reap(chain.consensus)["txs"] == []


def test_check_does_not_insert(chain: TestChain) -> None:
    mp = pool(chain)
    mp.add(pay(chain, "alice"))
    second = pay(chain, "alice")
    assert mp.check(second).nonce == 1
    assert mp.size == 1
    mp.add(second)
    with pytest.raises(TxInvalid):
        mp.check(pay(chain, "alice", nonce=5))


def test_random_pools_always_reap_blocks_that_apply(chain: TestChain) -> None:
    rnd = random.Random(7)
    mp = pool(chain, size=40)
    users = ["alice", "bob", "carol", "dave", "erin"]
    base_fee = txm.Tx.decode_untrusted(pay(chain, "alice")).fee
    chain.forget_pending()
    consensus = dataclasses.replace(ConsensusParams(), max_lane_txs_txs=6, max_lane_txs_cards=3)
    full = 0
    for _ in range(6):
        for _ in range(25):
            who = rnd.choice(users)
            fee = base_fee * rnd.randint(1, 9) + 200
            if rnd.random() < 0.3:
                body = publish_body(f"c{rnd.random()}", tags=())
            else:
                body = txm.Transfer(chain.addr(rnd.choice(users)), rnd.randint(1, 10**9))
            nonce = mp.next_nonce(chain.addr(who))
            raw = chain.tx(who, body, fee=fee, nonce=chain.account(who)[1] if nonce is None else nonce)
            try:
                mp.add(raw)
            except MempoolFull:
                full += 1
        lanes = mp.reap(consensus)
        assert len(lanes["txs"]) <= 6 and len(lanes["cards"]) <= 3
        commit(chain, mp, lanes)  # apply_block raises if any reaped tx is invalid in sequence
        for u in users:
            q = [e.nonce for e in mp.entries() if e.sender == chain.addr(u)]
            assert q == list(range(chain.account(u)[1], chain.account(u)[1] + len(q)))
    assert full > 0  # the pool was full at times: eviction and refusal were exercised


def test_without_recheck_only_passed_nonces_are_dropped_and_reap_still_validates(chain: TestChain) -> None:
    mp = pool(chain, recheck=False)
    root = root_of("film")
    chain.apply([chain.tx("bob", txm.Announce(root, ("127.0.0.1:1",), ((0, 1),), 3))])  # lapses at 3
    withdraw = chain.tx("bob", txm.Withdraw(root))  # valid for height 2
    stale = pay(chain, "alice")
    mp.add(withdraw)
    mp.add(stale)
    chain.forget_pending()
    rival = pay(chain, "alice", amount=2)  # alice's nonce 0 reaches a block another way
    result = chain.apply_block(chain.block([rival]))
    # height 3 next: bob's entry lapses before any tx runs, alice's nonce is passed
    assert mp.update(chain.height, result) == [txm.tx_hash(stale)]
    assert [e.tx_hash for e in mp.entries()] == [txm.tx_hash(withdraw)]  # kept without recheck
    assert mp.reap(chain.consensus)["seeders"] == []  # but never reaped: it fails after the expiry
    checked = pool(chain)
    with pytest.raises(TxInvalid) as info:
        checked.add(withdraw)
    assert isinstance(info.value.reason, NotFound)


def test_a_deferred_recheck_never_lets_reap_pick_a_stale_transaction(chain: TestChain) -> None:
    mp = pool(chain)
    stale = pay(chain, "alice")
    later = pay(chain, "alice")
    bobs = [pay(chain, "bob"), pay(chain, "bob")]
    for raw in (stale, later, *bobs):
        mp.add(raw)
    chain.forget_pending()
    rival = pay(chain, "alice", amount=2)  # alice's nonce 0 reaches a block another way
    result = chain.apply_block(chain.block([rival]))
    assert mp.update(chain.height, result, recheck_now=False) == []
    assert mp.size == 4  # nothing replayed yet
    # the reap re-runs what it picks: alice's stale nonce and her later one are left out
    lanes = mp.reap(chain.consensus)
    assert lanes["txs"] == bobs
    commit(chain, mp, lanes)
    # the next add replays the pool against the new state: alice's pair is dropped
    mp.add(pay(chain, "carol"))
    assert txm.tx_hash(stale) not in mp and txm.tx_hash(later) not in mp and mp.size == 1


def test_a_peers_transaction_ahead_of_its_senders_nonce_is_parked_and_added_in_order(chain: TestChain) -> None:
    mp = pool(chain)
    raws = [pay(chain, "alice", nonce=n) for n in range(4)]
    for raw in (raws[3], raws[2]):  # nonce 0 and 1 missing: parked, not refused
        with pytest.raises(TxParked):
            mp.add(raw, park_future=True)
    assert mp.size == 0 and mp.parked == 2
    with pytest.raises(TxInvalid):  # a client's gap is still refused
        mp.add(pay(chain, "bob", nonce=1))
    mp.add(raws[0])
    assert mp.size == 1 and mp.parked == 2  # nonce 1 still missing
    mp.add(raws[1], park_future=True)  # fills the gap: 2 and 3 follow it
    assert mp.size == 4 and mp.parked == 0
    assert [tx for tx, _ in mp.take_promoted()] == [raws[2], raws[3]]
    assert mp.take_promoted() == []
    assert mp.reap(chain.consensus)["txs"] == raws


def test_parked_transactions_follow_a_block_that_committed_their_predecessor(chain: TestChain) -> None:
    mp = pool(chain)
    raws = [pay(chain, "alice", nonce=n) for n in range(3)]
    with pytest.raises(TxParked):
        mp.add(raws[1], park_future=True)
    with pytest.raises(TxParked):
        mp.add(raws[2], park_future=True)
    commit(chain, mp, {"txs": [raws[0]]})  # another validator's block had nonce 0
    assert mp.size == 0 and mp.parked == 2
    mp.promote_parked()
    assert mp.size == 2 and mp.parked == 0
    assert [tx for tx, _ in mp.take_promoted()] == raws[1:]
    commit(chain, mp, mp.reap(chain.consensus))
    assert chain.account("alice")[1] == 3


def test_parked_transactions_are_bounded_and_expire(chain: TestChain) -> None:
    mp = pool(chain, size=2)
    for n in (1, 2):
        with pytest.raises(TxParked):
            mp.add(pay(chain, "alice", nonce=n), park_future=True)
    with pytest.raises(TxInvalid):  # no room to park a third
        mp.add(pay(chain, "alice", nonce=3), park_future=True)
    assert mp.parked == 2
    for _ in range(PARK_HEIGHTS + 1):
        commit(chain, mp, {})
    mp.promote_parked()
    assert mp.parked == 0 and mp.size == 0


def test_a_stale_nonce_is_never_parked(chain: TestChain) -> None:
    mp = pool(chain)
    first = pay(chain, "alice", nonce=0)
    commit(chain, mp, {"txs": [first]})
    with pytest.raises(TxInvalid) as stale:
        mp.add(pay(chain, "alice", amount=5, nonce=0), park_future=True)
    assert isinstance(stale.value.reason, WrongNonce) and mp.parked == 0
