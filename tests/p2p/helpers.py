"""Test helpers: hosts on 127.0.0.1 with an event recorder, and condition polling."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import trio

from p2p import (
    Event,
    Host,
    HostConfig,
    NodeKey,
    PeerConnected,
    PeerDisconnected,
    PeerPolicy,
    Received,
)

FAST = HostConfig(
    policy=PeerPolicy(backoff_base=0.05, backoff_max=0.4, ban_seconds=60.0),
    pex_interval=0.3,
    handshake_timeout=3.0,
    idle_timeout=5.0,
    stale_probe_seconds=0.3,
)


@dataclass
class Node:
    """A running host and everything it reported."""

    host: Host
    key: NodeKey
    events: list[Event] = field(default_factory=list)

    @property
    def id(self) -> bytes:
        return self.key.peer_id

    @property
    def addr(self) -> tuple[str, int]:
        return self.host.listen_address

    def received(self, channel: int | None = None) -> list[Received]:
        return [e for e in self.events if isinstance(e, Received)
                and (channel is None or e.channel == channel)]

    def disconnects(self) -> list[PeerDisconnected]:
        return [e for e in self.events if isinstance(e, PeerDisconnected)]

    def connects(self) -> list[PeerConnected]:
        return [e for e in self.events if isinstance(e, PeerConnected)]


async def until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "",
                step: float = 0.01) -> None:
    """Poll `condition` every `step` seconds; fail the test after `timeout` seconds."""
    with trio.move_on_after(timeout):
        while not condition():
            await trio.sleep(step)
        return
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")


@contextlib.asynccontextmanager
async def running(key: NodeKey | None = None, config: HostConfig = FAST,
                  listen: tuple[str, int] = ("127.0.0.1", 0)) -> AsyncIterator[Node]:
    """A host whose events are recorded into `Node.events` by a background task."""
    key = key or NodeKey.generate()
    async with Host.open(key, listen, config) as host:
        node = Node(host, key)
        async with trio.open_nursery() as nursery:

            async def record() -> None:
                async for event in host.events():
                    node.events.append(event)

            nursery.start_soon(record)
            try:
                yield node
            finally:
                nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def cluster(n: int, config: HostConfig = FAST) -> AsyncIterator[list[Node]]:
    async with contextlib.AsyncExitStack() as stack:
        nodes = [await stack.enter_async_context(running(config=config)) for _ in range(n)]
        yield nodes
