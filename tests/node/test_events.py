"""The event bus core (no sockets): queries, ordering, bounded buffers, drops."""

from __future__ import annotations

import pytest

from node.errors import InvalidParams, LimitExceeded
from node.events import EventBus, EventError, Query, Subscriber


@pytest.mark.parametrize(
    ("text", "topic", "event", "matches"),
    [
        ("NewBlock", "NewBlock", {"height": 1}, True),
        ("NewBlock", "Tx", {}, False),
        ("tm.event = 'Tx'", "Tx", {"sender": "aa"}, True),
        ("tm.event='Tx' AND sender='aa'", "Tx", {"sender": "aa"}, True),
        ("tm.event='Tx' AND sender='aa'", "Tx", {"sender": "bb"}, False),
        ("tm.event='Tx' AND sender='aa'", "Tx", {}, False),
        ("tm.event = 'Tx' AND sender != 'aa'", "Tx", {"sender": "bb"}, True),
        ("tm.event = 'NewBlock' AND height >= 5", "NewBlock", {"height": 5}, True),
        ("tm.event = 'NewBlock' AND height > 5", "NewBlock", {"height": 5}, False),
        ("tm.event = 'NewBlock' AND height < 5", "NewBlock", {"height": 4}, True),
        ("tm.event = 'NewBlock' AND height <= 5", "NewBlock", {"height": "4"}, False),
        ("tm.event = 'NewBlock' AND height = 5", "NewBlock", {"height": True}, False),
        ("tm.event = 'NewCard' AND card.type = 'video'", "NewCard", {"card": {"type": "video"}}, True),
        ("tm.event = 'NewCard' AND card.type = 'video'", "NewCard", {"card": "video"}, False),
        ("tm.event = 'NewCard' AND tags CONTAINS 'cats'", "NewCard", {"tags": ["cats", "dogs"]}, True),
        ("tm.event = 'NewCard' AND title CONTAINS 'cat'", "NewCard", {"title": "a cat"}, True),
        ("tm.event = 'NewCard' AND tags CONTAINS 'cow'", "NewCard", {"tags": ["cats"]}, False),
        ("tm.event = 'Tx' AND kind = 'transfer' AND fee > 10", "Tx", {"kind": "transfer", "fee": 11}, True),
        ("tm.event = 'Tx' AND kind = 'transfer' AND fee > 10", "Tx", {"kind": "transfer", "fee": 9}, False),
    ],
)
def test_query_matching(text: str, topic: str, event: dict[str, object], matches: bool) -> None:
    assert Query.parse(text).matches(topic, event) is matches


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "Nope",
        "sender = 'aa'",
        "tm.event = 'Nope'",
        "tm.event = 'Tx' AND tm.event = 'NewBlock'",
        "tm.event > 'Tx'",
        "tm.event = 'Tx' AND",
        "tm.event = 'Tx' OR sender = 'a'",
        "tm.event = 'Tx' AND sender = \"aa\"",
        "tm.event = 'Tx' AND sender ~ 'a'",
        "tm.event = 'Tx'" + " AND a = 1" * 9,
        "x" * 600,
    ],
)
def test_bad_queries_are_invalid_params(bad: str) -> None:
    with pytest.raises(InvalidParams):
        Query.parse(bad)


def new_sub(bus: EventBus, size: int = 4, subs: int = 3) -> tuple[Subscriber, list[int]]:
    wakes: list[int] = []
    sub = bus.subscriber(buffer_size=size, max_subscriptions=subs, wake=lambda: wakes.append(1))
    return sub, wakes


def test_order_is_kept_and_wake_is_called() -> None:
    bus = EventBus()
    sub, wakes = new_sub(bus, size=10)
    sub.subscribe("NewBlock")
    sub.subscribe("tm.event = 'Tx' AND sender = 'a'")
    for h in range(3):
        bus.publish("NewBlock", {"height": h})
        bus.publish("Tx", {"sender": "a", "n": h})
        bus.publish("Tx", {"sender": "b", "n": h})
    got = [(d.topic, d.event.get("height", d.event.get("n"))) for d in sub.pop_all()]
    assert got == [("NewBlock", 0), ("Tx", 0), ("NewBlock", 1), ("Tx", 1), ("NewBlock", 2), ("Tx", 2)]
    assert len(wakes) == 6
    assert sub.pop_all() == []


def test_overflow_drops_only_the_slow_subscriber() -> None:
    dropped: list[Subscriber] = []
    bus = EventBus(on_drop=dropped.append)
    slow, _ = new_sub(bus, size=2)
    fast, _ = new_sub(bus, size=2)
    slow.subscribe("NewBlock")
    fast.subscribe("NewBlock")
    for h in range(3):
        bus.publish("NewBlock", {"height": h})
        fast.pop_all()
    assert dropped == [slow]
    assert slow.closed_reason is not None and "overflowed" in slow.closed_reason
    assert slow.buffer == type(slow.buffer)() and slow.queries == {}
    assert bus.subscriber_count == 1
    assert bus.publish("NewBlock", {"height": 9}) == 1
    assert [d.event for d in fast.pop_all()] == [{"height": 9}]
    with pytest.raises(LimitExceeded):
        slow.subscribe("Tx")


def test_subscription_limits_and_unsubscribe() -> None:
    bus = EventBus()
    sub, _ = new_sub(bus, subs=2)
    sub.subscribe("NewBlock")
    with pytest.raises(InvalidParams):
        sub.subscribe(" NewBlock ")
    sub.subscribe("Tx")
    with pytest.raises(LimitExceeded):
        sub.subscribe("NewCard")
    with pytest.raises(InvalidParams):
        sub.unsubscribe("NewCard")
    sub.unsubscribe("Tx")
    assert bus.subscriber_count == 1
    assert bus.publish("Tx", {}) == 0
    assert sub.unsubscribe_all() == 1
    assert bus.subscriber_count == 0
    sub.close()
    assert sub.closed_reason == "closed"


def test_publishing_an_unknown_topic_is_our_bug() -> None:
    with pytest.raises(EventError):
        EventBus().publish("Nope", {})


def test_one_publication_shares_its_memo_across_subscribers() -> None:
    bus = EventBus()
    a, _ = new_sub(bus)
    b, _ = new_sub(bus)
    a.subscribe("NewBlock")
    b.subscribe("NewBlock")
    bus.publish("NewBlock", {"height": 1})
    bus.publish("NewBlock", {"height": 2})
    (a1, a2), (b1, b2) = a.pop_all(), b.pop_all()
    assert a1.memo is b1.memo and a2.memo is b2.memo and a1.memo is not a2.memo
