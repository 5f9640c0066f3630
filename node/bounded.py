"""A bounded, insertion-ordered map: the oldest entry is forgotten first.

Used for caches keyed by transaction hash that must not grow with the load: the
hashes whose signature verified (node.sigcache) and the transactions first seen
lately (node.txgossip). Adding a key already present changes nothing (it keeps
its age). Single dict operations only, so a reader on another thread is safe
under the GIL while the trio thread writes.
"""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedMap(Generic[K, V]):
    """At most `capacity` entries; past it, the oldest are dropped."""

    __slots__ = ("_items", "capacity")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._items: dict[K, V] = {}

    def put(self, key: K, value: V) -> None:
        items = self._items
        if key in items:
            return
        items[key] = value
        while len(items) > self.capacity:
            del items[next(iter(items))]

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)
