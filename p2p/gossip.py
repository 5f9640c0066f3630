"""Gossip bookkeeping (pure): message ids and the seen-cache.

A message id is BLAKE3 of the frame bytes. The cache remembers, for each id
seen within `ttl` seconds, which peers sent it (up to `max_senders`), so a
frame is delivered and forwarded once, and never back to a peer that already
has it. It holds at most `capacity` ids; when full, the oldest are evicted
first (all entries share one ttl, so insertion order is expiry order). An
evicted id that comes back is treated as new: the ttl must exceed the time a
frame can circulate, and upper layers must tolerate a rare duplicate.
The clock is an input (`now`), never read here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from blake3 import blake3

from p2p.errors import ConfigError


def message_id(frame: bytes) -> bytes:
    """The gossip id of a frame: its 32-byte BLAKE3 hash."""
    return blake3(frame).digest()


@dataclass(slots=True)
class _Entry:
    expires_at: float
    senders: set[bytes] = field(default_factory=set)


class SeenCache:
    """Bounded, expiring map from message id to the peers that sent it."""

    __slots__ = ("_entries", "capacity", "max_senders", "ttl")

    def __init__(self, capacity: int = 100_000, ttl: float = 120.0, max_senders: int = 32) -> None:
        if capacity <= 0 or ttl <= 0 or max_senders <= 0:
            raise ConfigError("seen-cache capacity, ttl and max_senders must be positive")
        self.capacity = capacity
        self.ttl = ttl
        self.max_senders = max_senders
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, entry = next(iter(entries.items()))
            if entry.expires_at > now:
                break
            del entries[key]

    def observe(self, msg_id: bytes, sender: bytes | None, now: float) -> bool:
        """Record that `sender` (None: ourselves) produced `msg_id`; True if it was new."""
        self.expire(now)
        entry = self._entries.get(msg_id)
        is_new = entry is None
        if entry is None:
            while len(self._entries) >= self.capacity:
                self._entries.popitem(last=False)
            entry = _Entry(now + self.ttl)
            self._entries[msg_id] = entry
        if sender is not None and len(entry.senders) < self.max_senders:
            entry.senders.add(sender)
        return is_new

    def senders(self, msg_id: bytes) -> frozenset[bytes]:
        entry = self._entries.get(msg_id)
        return frozenset(entry.senders) if entry else frozenset()

    def __contains__(self, msg_id: object) -> bool:
        return msg_id in self._entries


def compute_forward_targets(peers: Iterable[bytes], senders: frozenset[bytes]) -> list[bytes]:
    """Every connected peer that has not sent us the message."""
    return [p for p in peers if p not in senders]
