"""In-process event bus: the node publishes, RPC subscribers receive.

Theory of operation. `EventBus.publish(topic, event)` is synchronous and never
blocks: for every `Subscriber` with a matching `Query` it appends
``(subscription id, topic, event)`` to that subscriber's bounded buffer and calls
its `wake` callback. A subscriber whose buffer is full is not waited for: it is
dropped on the spot (removed from the bus, `closed_reason` set, woken one last
time) so that the transport can tell its client why and close. Order is kept per
subscriber. Nothing here knows about trio or sockets; the WebSocket driver
supplies `wake` and drains `pop_all`. Call `publish` from the node's trio thread
(the WebSocket's `wake` sets a `trio.Event`); from a worker thread use
``trio.from_thread.run_sync(bus.publish, topic, event)``.

Queries follow CometBFT's syntax, reduced to what the node needs::

    tm.event = 'Tx' AND sender = 'ab12..' AND kind = 'transfer'
    tm.event = 'NewBlock' AND height >= 100

or just a topic name (``NewBlock``). Conditions are joined by AND; operators are
``=  !=  <  <=  >  >=  CONTAINS``; values are 'single-quoted' strings or integers;
a key other than ``tm.event`` names a field of the event (dots go into nested
objects). Every query names exactly one topic.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from node.errors import InvalidParams, LimitExceeded, NodeError

TOPICS: tuple[str, ...] = (
    "NewBlock",
    "NewBlockHeader",
    "Tx",
    "NewCard",
    "SeederDelta",
    "KeyOp",
    "ValidatorSetUpdates",
)
"""Topics the node publishes (see docs/rpc.md for each event's fields)."""

MAX_QUERY_LENGTH = 512
MAX_CONDITIONS = 8

_TOKEN = re.compile(
    r"\s*(?:(?P<key>[A-Za-z_][A-Za-z0-9_.]*)\s*"
    r"(?P<op><=|>=|!=|=|<|>|CONTAINS\b)\s*"
    r"(?:'(?P<str>[^'\\]*)'|(?P<int>-?[0-9]{1,40}))\s*)"
)


class EventError(NodeError):
    """Misuse of the bus by our own code (publishing an unknown topic)."""


@dataclass(frozen=True, slots=True)
class Condition:
    key: str
    op: str
    value: str | int

    def matches(self, event: Mapping[str, Any]) -> bool:
        found: Any = event
        for part in self.key.split("."):
            if not isinstance(found, Mapping) or part not in found:
                return False
            found = found[part]
        v = self.value
        if self.op == "CONTAINS":
            if isinstance(found, str):
                return isinstance(v, str) and v in found
            return isinstance(found, list | tuple) and v in found
        if isinstance(found, bool) or not isinstance(found, type(v)):
            return False
        if self.op == "=":
            return bool(found == v)
        if self.op == "!=":
            return bool(found != v)
        if isinstance(v, str) or not isinstance(found, int):  # order compares integers only
            return False
        if self.op == "<":
            return bool(found < v)
        if self.op == "<=":
            return bool(found <= v)
        if self.op == ">":
            return bool(found > v)
        return bool(found >= v)


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed subscription query: one topic and field conditions."""

    text: str
    topic: str
    conditions: tuple[Condition, ...]

    @classmethod
    def parse(cls, text: str) -> Query:
        """Parse a query; raises `InvalidParams` with the reason."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidParams("query must be a non-empty string", {"param": "query"})
        if len(text) > MAX_QUERY_LENGTH:
            raise InvalidParams(f"query is longer than {MAX_QUERY_LENGTH} characters")
        stripped = text.strip()
        if stripped in TOPICS:
            return cls(stripped, stripped, ())
        parts = re.split(r"\s+AND\s+", stripped)
        if len(parts) > MAX_CONDITIONS + 1:
            raise InvalidParams(f"query has more than {MAX_CONDITIONS} conditions")
        topic: str | None = None
        conds: list[Condition] = []
        for part in parts:
            m = _TOKEN.fullmatch(part)
            if m is None:
                raise InvalidParams(
                    f"cannot parse query condition {part[:80]!r}: expected key OP 'string' or"
                    " key OP integer",
                    {"param": "query"},
                )
            key, op = m.group("key"), m.group("op")
            value: str | int = m.group("str") if m.group("int") is None else int(m.group("int"))
            if key == "tm.event":
                if op != "=" or not isinstance(value, str):
                    raise InvalidParams("tm.event takes only = 'Topic'", {"param": "query"})
                if topic is not None:
                    raise InvalidParams("query names tm.event twice", {"param": "query"})
                topic = value
            else:
                conds.append(Condition(key, op, value))
        if topic is None:
            raise InvalidParams("query must name a topic: tm.event = 'Topic'", {"param": "query"})
        if topic not in TOPICS:
            raise InvalidParams(
                f"unknown topic {topic[:64]!r}; topics: {', '.join(TOPICS)}",
                {"param": "query", "topics": list(TOPICS)},
            )
        return cls(stripped, topic, tuple(conds))

    def matches(self, topic: str, event: Mapping[str, Any]) -> bool:
        return topic == self.topic and all(c.matches(event) for c in self.conditions)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event queued for a subscriber."""

    subscription: str
    """The subscription id returned by `Subscriber.subscribe` (the query text)."""
    topic: str
    event: Mapping[str, Any]
    memo: dict[str, Any] = field(default_factory=dict, compare=False)
    """Shared by every delivery of one publication, so a transport can encode the
    event once for all its subscribers (the WebSocket keeps its JSON here)."""


class Subscriber:
    """One client of the bus (for example one WebSocket connection) with its
    subscriptions and its bounded buffer."""

    def __init__(
        self,
        bus: EventBus,
        *,
        buffer_size: int,
        max_subscriptions: int,
        wake: Callable[[], None] = lambda: None,
        name: str = "",
    ) -> None:
        if buffer_size < 1 or max_subscriptions < 1:
            raise ValueError("buffer_size and max_subscriptions must be >= 1")
        self.bus = bus
        self.buffer_size = buffer_size
        self.max_subscriptions = max_subscriptions
        self.wake = wake
        self.name = name
        self.queries: dict[str, Query] = {}
        self.buffer: deque[Delivery] = deque()
        self.closed_reason: str | None = None

    def subscribe(self, query_text: str) -> str:
        """Add a subscription; returns its id (the query text, as CometBFT does)."""
        if self.closed_reason is not None:
            raise LimitExceeded(self.closed_reason)
        query = Query.parse(query_text)
        if query.text in self.queries:
            raise InvalidParams("already subscribed to this query", {"query": query.text})
        if len(self.queries) >= self.max_subscriptions:
            raise LimitExceeded(
                f"at most {self.max_subscriptions} subscriptions per client",
                {"max_subscriptions_per_client": self.max_subscriptions},
            )
        self.queries[query.text] = query
        self.bus._attach(self)
        return query.text

    def unsubscribe(self, query_text: str) -> None:
        key = query_text.strip() if isinstance(query_text, str) else query_text
        if key not in self.queries:
            raise InvalidParams("no subscription for this query", {"query": str(query_text)[:128]})
        del self.queries[key]
        if not self.queries:
            self.bus._detach(self)

    def unsubscribe_all(self) -> int:
        """Drop every subscription; returns how many there were."""
        n = len(self.queries)
        self.queries.clear()
        self.bus._detach(self)
        return n

    def pop_all(self) -> list[Delivery]:
        """Take every queued delivery, oldest first."""
        out = list(self.buffer)
        self.buffer.clear()
        return out

    def close(self) -> None:
        """Leave the bus for good (the transport closed)."""
        self.queries.clear()
        self.bus._detach(self)
        if self.closed_reason is None:
            self.closed_reason = "closed"

    def _offer(self, delivery: Delivery) -> bool:
        if len(self.buffer) >= self.buffer_size:
            self.closed_reason = (
                f"subscriber too slow: its buffer of {self.buffer_size} events overflowed"
            )
            self.queries.clear()
            self.buffer.clear()
            return False
        self.buffer.append(delivery)
        return True


class EventBus:
    """The node's single bus. `publish` is O(subscribers) and never blocks."""

    def __init__(self, *, on_drop: Callable[[Subscriber], None] | None = None) -> None:
        self._subscribers: dict[int, Subscriber] = {}
        self.on_drop = on_drop
        self.dropped_total = 0

    def subscriber(
        self,
        *,
        buffer_size: int,
        max_subscriptions: int,
        wake: Callable[[], None] = lambda: None,
        name: str = "",
    ) -> Subscriber:
        """A new subscriber; it joins the bus on its first subscription."""
        return Subscriber(
            self, buffer_size=buffer_size, max_subscriptions=max_subscriptions, wake=wake, name=name
        )

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(self, topic: str, event: Mapping[str, Any]) -> int:
        """Deliver `event` to every matching subscription; returns how many
        deliveries were queued. Slow subscribers are dropped, never waited for."""
        if topic not in TOPICS:
            raise EventError(f"unknown topic {topic!r}")
        queued = 0
        memo: dict[str, Any] = {}
        for sub in list(self._subscribers.values()):
            woke = False
            for sid, query in list(sub.queries.items()):
                if not query.matches(topic, event):
                    continue
                if not sub._offer(Delivery(sid, topic, event, memo)):
                    self._detach(sub)
                    self.dropped_total += 1
                    if self.on_drop is not None:
                        self.on_drop(sub)
                    woke = True
                    break
                queued += 1
                woke = True
            if woke:
                sub.wake()
        return queued

    def _attach(self, sub: Subscriber) -> None:
        self._subscribers[id(sub)] = sub

    def _detach(self, sub: Subscriber) -> None:
        self._subscribers.pop(id(sub), None)
