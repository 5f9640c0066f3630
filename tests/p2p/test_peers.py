"""Peer-manager policy as tables of inputs and expected decisions (pure, clock as input)."""

from __future__ import annotations

import pytest

from p2p.errors import ConfigError
from p2p.peers import Admission, Dial, PeerManager, PeerPolicy, is_new_connection_kept

ME = b"\x50" * 32
LOW = b"\x10" * 32  # sorts below ME
HIGH = b"\x90" * 32  # sorts above ME
ADDR = ("127.0.0.1", 1000)


def pid(i: int) -> bytes:
    return bytes([i]) * 32


@pytest.mark.parametrize(
    ("remote", "new_outbound", "existing_outbound", "kept"),
    [
        # same direction: the newer connection wins (the old one is presumed dead)
        (LOW, True, True, True),
        (HIGH, False, False, True),
        # crossing dials: the connection dialled by the smaller id wins, at both ends
        (HIGH, True, False, True),  # we dialled, we are smaller
        (HIGH, False, True, False),
        (LOW, True, False, False),  # we dialled, the peer is smaller
        (LOW, False, True, True),
    ],
)
def test_duplicate_resolution(remote: bytes, new_outbound: bool, existing_outbound: bool,
                              kept: bool) -> None:
    assert is_new_connection_kept(ME, remote, new_outbound, existing_outbound) is kept
    if new_outbound == existing_outbound:
        return
    # crossing dials: whichever order the other end saw them in, it keeps the
    # connection with the same dialer as we do
    ours = (ME if new_outbound else remote) if kept else (ME if existing_outbound else remote)
    for they_saw_new_first in (False, True):
        new_out, old_out = (not new_outbound, not existing_outbound)
        if they_saw_new_first:
            new_out, old_out = old_out, new_out
        theirs_kept = is_new_connection_kept(remote, ME, new_out, old_out)
        kept_out = new_out if theirs_kept else old_out
        assert (remote if kept_out else ME) == ours


def test_admission_table() -> None:
    pm = PeerManager(ME, PeerPolicy(max_inbound=1, max_outbound=1))
    assert pm.admit(ME, True, 0) is Admission.SELF
    assert pm.admit(pid(1), False, 0) is Admission.ACCEPT
    pm.on_connected(pid(1), False)
    assert pm.admit(pid(2), False, 0) is Admission.FULL
    assert pm.admit(pid(2), True, 0) is Admission.ACCEPT
    pm.on_connected(pid(2), True)
    assert pm.admit(pid(3), True, 0) is Admission.FULL
    # persistent peers are not subject to the limits
    pm.add_persistent(pid(3), ADDR)
    assert pm.admit(pid(3), True, 0) is Admission.ACCEPT
    # a restarted peer dialling in again replaces its old inbound connection
    assert pm.admit(pid(1), False, 0) is Admission.REPLACE
    pm.ban(pid(4), now=0)
    assert pm.admit(pid(4), False, 1) is Admission.BANNED


def test_bans_expire() -> None:
    pm = PeerManager(ME, PeerPolicy(ban_seconds=10))
    pm.ban(pid(1), now=100)
    assert pm.is_banned(pid(1), 109.9)
    assert pm.next_wakeup(100) == 110
    assert not pm.is_banned(pid(1), 110)
    assert pm.admit(pid(1), False, 110) is Admission.ACCEPT
    # a longer ban is never shortened by a shorter one
    pm.ban(pid(2), now=0, seconds=50)
    pm.ban(pid(2), now=1, seconds=5)
    assert pm.banned_until(pid(2)) == 50


def test_persistent_redial_backoff() -> None:
    pm = PeerManager(ME, PeerPolicy(backoff_base=1, backoff_max=4))
    pm.add_persistent(pid(1), ADDR)
    assert pm.due_dials(0) == [Dial(pid(1), ADDR)]
    assert pm.due_dials(0) == []  # in flight
    schedule = []
    now = 0.0
    for _ in range(5):
        pm.on_dial_failed(pid(1), now)
        wake = pm.next_wakeup(now)
        assert wake is not None
        schedule.append(wake - now)
        assert pm.due_dials(wake - 0.01) == []
        now = wake
        assert pm.due_dials(now) == [Dial(pid(1), ADDR)]
    assert schedule == [1, 2, 4, 4, 4]
    pm.on_connected(pid(1), True)
    assert pm.next_wakeup(now) is None
    # after a drop the first redial is quick, then the backoff starts over
    pm.on_disconnected(pid(1), now=100)
    assert pm.due_dials(100) == []
    assert pm.due_dials(101) == [Dial(pid(1), ADDR)]
    pm.on_dial_failed(pid(1), 101)
    assert pm.next_wakeup(101) == 102


def test_banned_persistent_peer_waits_for_the_ban() -> None:
    pm = PeerManager(ME, PeerPolicy(ban_seconds=30))
    pm.add_persistent(pid(1), ADDR)
    pm.ban(pid(1), now=0)
    assert pm.due_dials(10) == []
    assert pm.next_wakeup(10) == 30
    assert pm.due_dials(30) == [Dial(pid(1), ADDR)]


def test_address_book_seeds_and_outbound_limit() -> None:
    pm = PeerManager(ME, PeerPolicy(max_outbound=2, address_book_size=3))
    pm.add_seed(pid(9), ("seed", 1))
    # few addresses known: the seed is dialled
    assert pm.due_dials(0) == [Dial(pid(9), ("seed", 1))]
    pm.on_connected(pid(9), True)
    added = pm.add_addresses([(pid(i), ("h", i)) for i in range(1, 6)] + [(ME, ("me", 1))], now=0)
    assert added == 5
    assert list(pm.book) == [pid(3), pid(4), pid(5)]  # bounded, oldest forgotten
    pm.on_disconnected(pid(9), 0)
    dials = pm.due_dials(0)
    assert [d.peer_id for d in dials] == [pid(3), pid(4)]  # max_outbound = 2
    pm.on_connected(pid(3), True)
    pm.on_dial_failed(pid(4), 0)
    assert [d.peer_id for d in pm.due_dials(0)] == [pid(5)]


def test_failing_learnt_address_is_forgotten() -> None:
    pm = PeerManager(ME, PeerPolicy(backoff_base=1))
    pm.add_addresses([(pid(1), ADDR)], now=0)
    for t in (0, 10, 20):
        assert [d.peer_id for d in pm.due_dials(t)] == [pid(1)]
        pm.on_dial_failed(pid(1), t)
    assert pid(1) not in pm.book


def test_addresses_to_share_excludes_requester_and_banned() -> None:
    pm = PeerManager(ME)
    pm.add_persistent(pid(1), ("p", 1))
    pm.add_addresses([(pid(2), ("b", 2)), (pid(3), ("b", 3))], now=0)
    pm.ban(pid(3), now=0)
    shared = pm.addresses_to_share(pid(1), {pid(4): ("c", 4)}, limit=10)
    assert shared == [(pid(4), ("c", 4)), (pid(2), ("b", 2))]
    assert len(pm.addresses_to_share(pid(9), {pid(4): ("c", 4)}, limit=1)) == 1


def test_policy_validation() -> None:
    with pytest.raises(ConfigError):
        PeerPolicy(max_inbound=-1)
    with pytest.raises(ConfigError):
        PeerPolicy(backoff_base=5, backoff_max=1)


def test_seed_is_not_redialled_at_once_after_it_answered() -> None:
    pm = PeerManager(ME, PeerPolicy(backoff_max=30))
    pm.add_seed(pid(9), ("seed", 1))
    assert pm.due_dials(0) == [Dial(pid(9), ("seed", 1))]
    pm.on_connected(pid(9), True)
    pm.on_disconnected(pid(9), now=1)  # it answered with nothing useful
    assert pm.due_dials(1) == []
    assert pm.next_wakeup(1) == 31
    assert pm.due_dials(31) == [Dial(pid(9), ("seed", 1))]
