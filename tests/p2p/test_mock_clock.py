"""QUIC timers run on trio's clock: a MockClock drives idle timeouts, bans and backoff.

The clock jumps only after 50 ms of real idleness, so packets on loopback
(microseconds) arrive before any jump; a silent peer then costs no real time.
Conditions are polled every 30 s of mock time (each poll is one jump).
"""

from __future__ import annotations

import dataclasses

import pytest
import trio
import trio.testing

from p2p import CONSENSUS, DialError, PeerPolicy

from .helpers import FAST, cluster, until

pytestmark = pytest.mark.trio


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0.05)


async def test_idle_timeout_and_ban_expiry_on_the_mock_clock(
    mock_clock: trio.testing.MockClock,
) -> None:
    config = dataclasses.replace(
        FAST, idle_timeout=600.0, policy=PeerPolicy(ban_seconds=3600.0), pex_interval=1e6
    )
    async with cluster(2, config) as (a, b):
        start = trio.current_time()
        await a.host.connect(b.id, b.addr)
        await until(lambda: b.host.peers == [a.id], timeout=1e6, step=30.0)
        # b vanishes without a goodbye: only QUIC's idle timer can tell a
        for conn in list(b.host._conns):
            b.host._conns.discard(conn)
            for cid in conn.cids:
                b.host._by_cid.pop(cid, None)
        await until(lambda: a.host.peers == [], timeout=2000, what="idle timeout", step=30.0)
        assert trio.current_time() - start >= 600.0  # ten minutes of mock time
        # a one-hour ban, also in mock time
        async with cluster(1, config) as (c,):
            await c.host.connect(a.id, a.addr)
            a.host.report_violation(c.id, "test")
            banned_at = trio.current_time()
            await until(lambda: c.host.peers == [], timeout=1e6, step=30.0)
            with pytest.raises(DialError):
                await c.host.connect(a.id, a.addr)
            await trio.sleep(3600.0 - (trio.current_time() - banned_at) + 1)
            await c.host.connect(a.id, a.addr)
            c.host.send(a.id, CONSENSUS, b"back after an hour")
            await until(lambda: any(e.frame == b"back after an hour" for e in a.received()),
                        timeout=1e6, step=30.0)
