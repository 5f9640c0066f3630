"""Peer-manager policy (pure): whom to dial, whom to admit, whom to ban.

Theory of operation. The manager keeps four address sources: persistent
peers (always wanted, redialled forever with exponential backoff and never
subject to the connection limits), seeds (dialled while we know too few
addresses, asked for addresses, then let go), and the address book filled by
peer exchange (bounded, oldest forgotten first). It also keeps the set of
admitted peers with their direction, dials in flight, and bans.

The driver asks `due_dials(now)` what to dial, reports the outcome
(`on_dial_failed`, `on_connected`, `on_disconnected`), asks `admit` whether a
freshly authenticated connection may stay, and calls `ban` for protocol
violations (its own findings or an upper layer's report). `next_wakeup`
tells it when a backoff or a ban ends. Time is always an input.

Duplicate connections (both sides dialled at once, or a restarted peer
dialling in before we noticed its old connection died): if both connections
have the same direction the newer one wins (the old one is presumed dead);
otherwise the one dialled by the smaller peer id wins, which both ends
compute alike, so they keep the same connection.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from p2p.errors import ConfigError
from p2p.identity import Address, PeerId


@dataclass(frozen=True, slots=True)
class PeerPolicy:
    """Limits and timings of the peer manager."""

    max_inbound: int = 40
    """Admitted inbound connections, persistent peers not counted."""
    max_outbound: int = 10
    """Outbound connections the manager aims for (and will not exceed), persistent not counted."""
    ban_seconds: float = 600.0
    """How long a protocol violation keeps a peer out."""
    backoff_base: float = 0.5
    """First redial delay of a persistent peer; doubles per failure."""
    backoff_max: float = 60.0
    """Cap of the redial delay."""
    address_book_size: int = 1000
    """Addresses learnt from peer exchange that are kept."""

    def __post_init__(self) -> None:
        if min(self.max_inbound, self.max_outbound, self.address_book_size) < 0:
            raise ConfigError("peer limits must not be negative")
        if not 0 < self.backoff_base <= self.backoff_max or self.ban_seconds <= 0:
            raise ConfigError("need 0 < backoff_base <= backoff_max and ban_seconds > 0")


@dataclass(frozen=True, slots=True)
class Dial:
    """Action: dial `peer_id` at `addr`."""

    peer_id: PeerId
    addr: Address


class Admission(enum.Enum):
    """Verdict on a freshly authenticated connection."""

    ACCEPT = "accept"
    REPLACE = "replace"  # accept and close the existing connection to the same peer
    SELF = "self"
    BANNED = "banned"
    FULL = "full"
    DUPLICATE = "duplicate"

    @property
    def accepted(self) -> bool:
        return self in (Admission.ACCEPT, Admission.REPLACE)


def is_new_connection_kept(local: PeerId, remote: PeerId, new_outbound: bool,
                           existing_outbound: bool) -> bool:
    """Duplicate resolution, the same answer at both ends (see module docstring)."""
    if new_outbound == existing_outbound:
        return True
    new_dialer = local if new_outbound else remote
    return new_dialer == min(local, remote)


class PeerManager:
    """Dial, admission and ban decisions for one node."""

    def __init__(self, local_id: PeerId, policy: PeerPolicy | None = None) -> None:
        self.local_id = local_id
        self.policy = policy or PeerPolicy()
        self.persistent: dict[PeerId, Address] = {}
        self.seeds: dict[PeerId, Address] = {}
        self.book: OrderedDict[PeerId, Address] = OrderedDict()
        self.connected: dict[PeerId, bool] = {}  # peer -> outbound?
        self.dialing: set[PeerId] = set()
        self._failures: dict[PeerId, int] = {}
        self._retry_at: dict[PeerId, float] = {}
        self._bans: dict[PeerId, float] = {}

    # -- address sources -------------------------------------------------

    def add_persistent(self, peer_id: PeerId, addr: Address) -> None:
        if peer_id != self.local_id:
            self.persistent[peer_id] = addr

    def add_seed(self, peer_id: PeerId, addr: Address) -> None:
        if peer_id != self.local_id:
            self.seeds[peer_id] = addr

    def add_addresses(self, entries: Iterable[tuple[PeerId, Address]], now: float) -> int:
        """Learn addresses from peer exchange; returns how many were new."""
        added = 0
        for peer_id, addr in entries:
            if peer_id == self.local_id or self.is_banned(peer_id, now):
                continue
            if peer_id in self.persistent:
                continue
            if peer_id not in self.book:
                added += 1
            self.book[peer_id] = addr
            self.book.move_to_end(peer_id)
            while len(self.book) > self.policy.address_book_size:
                self.book.popitem(last=False)
        return added

    def addresses_to_share(self, requester: PeerId, known: dict[PeerId, Address],
                           limit: int) -> list[tuple[PeerId, Address]]:
        """Addresses for a peer-exchange answer: connected peers first, then the book."""
        out: list[tuple[PeerId, Address]] = []
        seen = {requester}
        for source in (known, self.persistent, self.book):
            for peer_id, addr in source.items():
                if len(out) >= limit:
                    return out
                if peer_id not in seen and peer_id not in self._bans:
                    seen.add(peer_id)
                    out.append((peer_id, addr))
        return out

    # -- bans ----------------------------------------------------------------

    def ban(self, peer_id: PeerId, now: float, seconds: float | None = None) -> None:
        until = now + (self.policy.ban_seconds if seconds is None else seconds)
        self._bans[peer_id] = max(until, self._bans.get(peer_id, until))
        self.book.pop(peer_id, None)

    def is_banned(self, peer_id: PeerId, now: float) -> bool:
        until = self._bans.get(peer_id)
        if until is None:
            return False
        if until <= now:
            del self._bans[peer_id]
            return False
        return True

    def banned_until(self, peer_id: PeerId) -> float | None:
        return self._bans.get(peer_id)

    # -- admission -----------------------------------------------------

    def _count(self, outbound: bool) -> int:
        return sum(
            1 for p, o in self.connected.items() if o == outbound and p not in self.persistent
        )

    def admit(self, peer_id: PeerId, outbound: bool, now: float) -> Admission:
        """May a connection to `peer_id` just authenticated stay? Changes nothing."""
        # a node must not connect to itself
        if peer_id == self.local_id:
            return Admission.SELF
        # bans cover both directions
        if self.is_banned(peer_id, now):
            return Admission.BANNED
        # one connection per peer
        if peer_id in self.connected:
            keep = is_new_connection_kept(
                self.local_id, peer_id, outbound, self.connected[peer_id]
            )
            return Admission.REPLACE if keep else Admission.DUPLICATE
        # persistent peers are never refused for lack of room
        if peer_id in self.persistent:
            return Admission.ACCEPT
        limit = self.policy.max_outbound if outbound else self.policy.max_inbound
        if self._count(outbound) >= limit:
            return Admission.FULL
        return Admission.ACCEPT

    def on_connected(self, peer_id: PeerId, outbound: bool) -> None:
        self.dialing.discard(peer_id)
        self.connected[peer_id] = outbound
        self._failures.pop(peer_id, None)
        self._retry_at.pop(peer_id, None)

    def on_disconnected(self, peer_id: PeerId, now: float) -> None:
        if self.connected.pop(peer_id, None) is None:
            return
        if peer_id in self.persistent:
            # first redial after a drop is quick; failures back off from there
            self._retry_at[peer_id] = now + self.policy.backoff_base
        else:
            # a seed that answered, or a peer that left: not straight back
            self._retry_at[peer_id] = now + self.policy.backoff_max

    # -- dialling --------------------------------------------------------------

    def on_dial_started(self, peer_id: PeerId) -> None:
        self.dialing.add(peer_id)

    def on_dial_failed(self, peer_id: PeerId, now: float) -> None:
        self.dialing.discard(peer_id)
        failures = self._failures.get(peer_id, 0)
        self._failures[peer_id] = failures + 1
        delay = min(self.policy.backoff_base * (2**failures), self.policy.backoff_max)
        self._retry_at[peer_id] = now + delay
        if peer_id not in self.persistent and failures + 1 >= 3:
            # a learnt address that keeps failing is forgotten
            self.book.pop(peer_id, None)

    def _dialable(self, peer_id: PeerId, now: float) -> bool:
        return (
            peer_id not in self.connected
            and peer_id not in self.dialing
            and not self.is_banned(peer_id, now)
            and self._retry_at.get(peer_id, now) <= now
        )

    def due_dials(self, now: float) -> list[Dial]:
        """Dials to start now; marks them as in flight."""
        dials = [Dial(p, a) for p, a in self.persistent.items() if self._dialable(p, now)]
        outbound = self._count(True) + sum(1 for p in self.dialing if p not in self.persistent)
        room = self.policy.max_outbound - outbound
        candidates = [(p, a) for p, a in self.book.items() if p not in self.persistent]
        if len(candidates) < self.policy.max_outbound:
            candidates += list(self.seeds.items())
        for peer_id, addr in candidates:
            if room <= 0:
                break
            if self._dialable(peer_id, now) and all(d.peer_id != peer_id for d in dials):
                dials.append(Dial(peer_id, addr))
                room -= 1
        for dial in dials:
            self.dialing.add(dial.peer_id)
        return dials

    def next_wakeup(self, now: float) -> float | None:
        """Earliest future time a backoff or a ban ends (None: nothing scheduled)."""
        times = [
            t for p, t in self._retry_at.items()
            if t > now and p not in self.connected and p not in self.dialing
        ]
        times += [t for t in self._bans.values() if t > now]
        return min(times) if times else None
