"""Real QUIC on 127.0.0.1: several hosts in one process under trio."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import trio

from p2p import (
    BLOCKS,
    CONSENSUS,
    DEFAULT_CHANNELS,
    MEMPOOL,
    ChannelSpec,
    DialError,
    LocalProtocolError,
    NodeKey,
    NotConnected,
    Overflow,
    PeerIdentityError,
    PeerPolicy,
)
from p2p.framing import encode_frame, encode_varint

from .helpers import FAST, Node, cluster, running, until

pytestmark = pytest.mark.trio


def fully_meshed(nodes: list[Node]) -> bool:
    return all(len(n.host.peers) == len(nodes) - 1 for n in nodes)


async def test_connect_send_and_metrics() -> None:
    async with cluster(2) as (a, b):
        await a.host.connect(b.id, b.addr)
        assert a.host.peers == [b.id]
        await until(lambda: b.host.peers == [a.id], what="b admits a")
        a.host.send(b.id, BLOCKS, b"block-1")
        await until(lambda: len(b.received(BLOCKS)) == 1, what="frame")
        got = b.received(BLOCKS)[0]
        assert (got.peer_id, got.frame) == (a.id, b"block-1")
        assert a.host.metrics.frames_sent[BLOCKS] == 1
        assert b.host.metrics.bytes_received[BLOCKS] == len(b"block-1")
        assert a.host.metrics.peers == 1
        # connect events on both sides, with the direction
        assert [e.outbound for e in a.connects()] == [True]
        assert [e.outbound for e in b.connects()] == [False]
        # our misuse is our error, not a crash
        with pytest.raises(LocalProtocolError):
            a.host.send(b.id, 99, b"x")
        with pytest.raises(LocalProtocolError):
            a.host.send(b.id, 0, b"x")  # peer exchange is internal
        with pytest.raises(LocalProtocolError):
            a.host.send(b.id, MEMPOOL, b"x" * (256 * 1024 + 1))
        with pytest.raises(NotConnected):
            a.host.send(NodeKey.generate().peer_id, BLOCKS, b"x")
        a.host.disconnect(b.id)
        await until(lambda: not b.host.peers and bool(b.disconnects()), what="b sees it")
        assert a.disconnects()


async def test_mesh_forms_by_peer_exchange_and_gossip_reaches_all() -> None:
    async with cluster(5) as nodes:
        hub = nodes[0]
        for node in nodes[1:]:
            node.host.add_persistent_peer(hub.id, hub.addr)
        await until(lambda: fully_meshed(nodes), timeout=20, what="full mesh via peer exchange")
        nodes[3].host.broadcast(MEMPOOL, b"tx-1")
        nodes[1].host.broadcast(CONSENSUS, b"vote-1")
        await until(
            lambda: all(len(n.received()) == 2 for n in nodes if n not in (nodes[1], nodes[3]))
            and len(nodes[1].received()) == 1 and len(nodes[3].received()) == 1,
            what="gossip at every node",
        )
        # each node delivered each message once; the copies were counted as duplicates
        for n in nodes:
            frames = sorted(e.frame for e in n.received())
            assert len(frames) == len(set(frames))
        assert sum(n.host.metrics.gossip_duplicates for n in nodes) > 0


async def test_gossip_is_forwarded_along_a_line() -> None:
    # persistent links only (max_outbound=0): a - b - c - d
    config = dataclasses.replace(FAST, policy=PeerPolicy(max_outbound=0, backoff_base=0.05))
    async with cluster(4, config) as nodes:
        for left, right in itertools.pairwise(nodes):
            right.host.add_persistent_peer(left.id, left.addr)
        await until(lambda: all(len(n.host.peers) == (1 if i in (0, 3) else 2)
                                for i, n in enumerate(nodes)), what="line")
        nodes[0].host.broadcast(CONSENSUS, b"proposal")
        await until(lambda: all(len(n.received()) == 1 for n in nodes[1:]), what="4 hops")
        assert nodes[3].received()[0].peer_id == nodes[2].id
        assert nodes[0].received() == []  # never sent back to its origin


async def test_another_key_than_expected_is_refused() -> None:
    async with cluster(2) as (a, b):
        impostor_id = NodeKey.generate().peer_id
        with pytest.raises(PeerIdentityError):
            await a.host.connect(impostor_id, b.addr)
        assert a.host.peers == []
        assert a.host.metrics.connections_refused == 1
        # b was not hurt and not banned: the right id connects
        await a.host.connect(b.id, b.addr)
        assert a.host.peers == [b.id]


async def test_restart_with_same_key_is_readmitted() -> None:
    async with running() as a:
        b_key = NodeKey.generate()
        async with running(b_key) as b:
            a.host.add_persistent_peer(b.id, b.addr)
            await until(lambda: a.host.peers == [b.id], what="first connection")
            port = b.addr[1]
        await until(lambda: a.host.peers == [], what="a notices b is gone")
        async with running(b_key, listen=("127.0.0.1", port)) as b2:
            await until(lambda: a.host.peers == [b2.id], what="redial with backoff")
            a.host.send(b2.id, CONSENSUS, b"welcome back")
            await until(lambda: len(b2.received()) == 1, what="frame after restart")


async def _inject(evil: Node, victim: Node, raw: bytes, streams: int = 1,
                  bidirectional: bool = False) -> None:
    """Write raw bytes on fresh streams, bypassing every sender-side check."""
    conn = evil.host._peers[victim.id]
    for _ in range(streams):
        stream_id = conn.quic.get_next_available_stream_id(is_unidirectional=not bidirectional)
        conn.quic.send_stream_data(stream_id, raw)
    evil.host._mark_dirty(conn)
    await trio.lowlevel.checkpoint()


@pytest.mark.parametrize(
    ("raw", "reason", "streams", "bidirectional"),
    [
        (bytes([CONSENSUS]) + bytes.fromhex("4005") + b"hello", "malformed_frame", 1, False),
        (bytes([MEMPOOL]) + encode_varint(256 * 1024 + 1), "oversize_frame", 1, False),
        (bytes([77]) + b"\x01x", "malformed_frame", 1, False),
        (bytes([BLOCKS]) + b"\x01x", "malformed_frame", 2, False),
        (bytes([BLOCKS]) + b"\x01x", "malformed_frame", 1, True),
    ],
    ids=["non-minimal-prefix", "oversize", "unknown-channel", "second-stream-same-channel",
         "bidirectional-stream"],
)
async def test_bad_frames_get_the_sender_banned_and_nobody_else_hurt(
    raw: bytes, reason: str, streams: int, bidirectional: bool
) -> None:
    async with cluster(3) as (a, c, evil):
        await c.host.connect(a.id, a.addr)
        await evil.host.connect(a.id, a.addr)
        await evil.host.connect(c.id, c.addr)
        await until(lambda: len(a.host.peers) == 2, what="a has c and evil")
        await _inject(evil, a, raw, streams, bidirectional)
        await until(lambda: a.host.is_banned(evil.id), what="ban")
        await until(lambda: evil.id not in a.host.peers and a.id not in evil.host.peers,
                    what="evil disconnected")
        assert any(reason in d.reason for d in a.disconnects())
        assert a.host.metrics.violations == 1
        # the ban holds: evil cannot come back
        with pytest.raises(DialError):
            await evil.host.connect(a.id, a.addr)
        # c is untouched: still connected, gossip still flows both ways
        assert c.id in a.host.peers
        a.host.broadcast(CONSENSUS, b"still fine")
        c.host.broadcast(MEMPOOL, b"me too")
        await until(lambda: len(c.received(CONSENSUS)) == 1 and len(a.received(MEMPOOL)) == 1,
                    what="gossip between a and c")
        assert not c.host.is_banned(a.id) and not a.host.is_banned(c.id)


async def test_reported_violation_bans_until_expiry() -> None:
    config = dataclasses.replace(FAST, policy=PeerPolicy(ban_seconds=1.0, backoff_base=0.05))
    async with cluster(2, config) as (a, b):
        await b.host.connect(a.id, a.addr)
        await until(lambda: a.host.peers == [b.id])
        a.host.report_violation(b.id, "invalid vote signature")
        await until(lambda: b.host.peers == [], what="b dropped")
        assert any("invalid vote signature" in d.reason for d in a.disconnects())
        with pytest.raises(DialError):
            await b.host.connect(a.id, a.addr)
        # after the ban ends b is admitted again
        async def reconnect() -> bool:
            try:
                await b.host.connect(a.id, a.addr)
            except DialError:
                return False
            return True

        with trio.fail_after(10):
            while not await reconnect():
                await trio.sleep(0.1)
        assert a.host.peers == [b.id]


async def test_inbound_limit() -> None:
    config = dataclasses.replace(FAST, policy=PeerPolicy(max_inbound=1))
    async with running(config=config) as a, cluster(2) as (b, c):
        await b.host.connect(a.id, a.addr)
        with pytest.raises(DialError):
            await c.host.connect(a.id, a.addr)
        assert a.host.peers == [b.id]
        assert a.host.metrics.connections_refused == 1


async def test_simultaneous_dials_keep_one_connection() -> None:
    async with cluster(2) as (a, b):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.host.connect, b.id, b.addr)
            nursery.start_soon(b.host.connect, a.id, a.addr)
        await until(lambda: a.host.peers == [b.id] and b.host.peers == [a.id])
        # both ends kept the same connection: frames flow both ways on it
        a.host.send(b.id, BLOCKS, b"ab")
        b.host.send(a.id, BLOCKS, b"ba")
        await until(lambda: len(a.received(BLOCKS)) == 1 and len(b.received(BLOCKS)) == 1)
        assert len(a.host._conns) <= 2  # the loser is closing or gone
        admitted = [c for c in a.host._conns if c.state == "admitted"]
        assert len(admitted) == 1


async def test_slow_peer_policy_drop_for_mempool_disconnect_for_consensus() -> None:
    small = []
    for spec in DEFAULT_CHANNELS:
        if spec.id in (CONSENSUS, MEMPOOL):
            spec = dataclasses.replace(spec, max_frame_size=1000, queue_bytes=4000)
        small.append(spec)
    config = dataclasses.replace(FAST, channels=tuple(small), stream_window=2000)
    async with cluster(2, config) as (a, b):
        await a.host.connect(b.id, b.addr)
        # without yielding, nothing leaves the queue: it fills deterministically
        results = [a.host.send(b.id, MEMPOOL, bytes([i]) * 900) for i in range(10)]
        assert results == [True] * 4 + [False] * 6
        assert a.host.metrics.frames_dropped[MEMPOOL] == 6
        assert a.host.peers == [b.id]  # dropping mempool frames is fine
        await until(lambda: len(b.received(MEMPOOL)) == 4)
        for i in range(5):
            a.host.send(b.id, CONSENSUS, bytes([i]) * 900)
        # the fifth consensus frame did not fit: the peer is too slow, not silently lossy
        assert a.host.peers == []
        assert a.host.metrics.slow_peer_disconnects == 1
        await until(lambda: bool(a.disconnects()), what="disconnect event")
        assert "too slow" in a.disconnects()[-1].reason
        await until(lambda: b.host.peers == [], what="b sees the close")


async def test_send_wait_paces_a_bulk_sender() -> None:
    async with cluster(2) as (a, b):
        await a.host.connect(b.id, b.addr)
        frame = b"z" * 60_000
        with trio.fail_after(30):
            for i in range(200):  # 12 MB, about twice the blocks channel's window + queue
                await a.host.send_wait(b.id, BLOCKS, i.to_bytes(4, "big") + frame)
        await until(lambda: len(b.received(BLOCKS)) == 200, timeout=30, what="all frames")
        assert [int.from_bytes(e.frame[:4], "big") for e in b.received(BLOCKS)] == list(range(200))
        assert a.host.metrics.frames_dropped[BLOCKS] == 0


async def test_custom_channel_and_config_errors() -> None:
    from p2p import ConfigError, HostConfig

    with pytest.raises(ConfigError):
        HostConfig(channels=(ChannelSpec(1, "c", 0, 10, 18, Overflow.DROP),))
    with pytest.raises(ConfigError):
        HostConfig(max_datagram_size=100)
    extra = (*DEFAULT_CHANNELS, ChannelSpec(40, "content", 2, 1 << 20, 4 << 20, Overflow.DROP))
    async with cluster(2, dataclasses.replace(FAST, channels=extra)) as (a, b):
        await a.host.connect(b.id, b.addr)
        a.host.send(b.id, 40, b"chunk")
        await until(lambda: [e.frame for e in b.received(40)] == [b"chunk"])


async def test_crashed_peer_redialling_replaces_its_stale_connection() -> None:
    keys = sorted((NodeKey.generate() for _ in range(2)), key=lambda k: k.peer_id)
    async with running(keys[0]) as a, running(keys[1]) as b:
        # a (smaller id) dials b; then b "crashes": it forgets the connection
        # without a goodbye and ignores a's packets from then on
        await a.host.connect(b.id, b.addr)
        await until(lambda: b.host.peers == [a.id])
        for conn in list(b.host._conns):
            b.host._conns.discard(conn)
            b.host._peers.clear()
            b.host._pm.connected.clear()
            for cid in conn.cids:
                b.host._by_cid.pop(cid, None)
        # b dials a: crossing directions and the dialer (b) has the larger id, so a
        # first refuses the duplicate and probes the old connection; when the probe
        # stays unanswered, the next dial replaces it
        attempts = 0
        with trio.fail_after(10):
            while True:
                attempts += 1
                try:
                    await b.host.connect(a.id, a.addr)
                    break
                except DialError:
                    await trio.sleep(0.1)
        assert attempts > 1
        await until(lambda: a.host.peers == [b.id] and a.host._peers[b.id].outbound is False)
        b.host.send(a.id, BLOCKS, b"after crash")
        await until(lambda: any(e.frame == b"after crash" for e in a.received(BLOCKS)))


async def test_dial_by_hostname_and_unresolvable_name() -> None:
    async with cluster(2) as (a, b):
        await a.host.connect(b.id, ("localhost", b.addr[1]))
        assert a.host.peers == [b.id]
        with pytest.raises(DialError):
            await a.host.connect(NodeKey.generate().peer_id, ("no-such-host.invalid", 1))
        with pytest.raises(DialError):  # nobody listens there: handshake timeout
            await a.host.connect(NodeKey.generate().peer_id, ("127.0.0.1", 9), timeout=0.3)


async def test_peer_that_never_says_hello_is_dropped() -> None:
    config = dataclasses.replace(FAST, handshake_timeout=0.5)
    async with running(config=config) as a, running(config=config) as mute:
        mute.host._send_pex = lambda conn, msg: None  # type: ignore[method-assign]
        await mute.host.connect(a.id, a.addr)  # a says HELLO, so mute sees a connected
        await until(lambda: a.id not in mute.host.peers, what="a drops the mute peer")
        assert a.connects() == []  # never announced on a's side
        assert not a.host.is_banned(mute.id)


async def test_bad_peer_exchange_message_gets_the_sender_banned() -> None:
    async with cluster(2) as (a, evil):
        await evil.host.connect(a.id, a.addr)
        conn = evil.host._peers[a.id]
        evil.host._enqueue(conn, 0, encode_frame(bytes.fromhex("920700")))  # unknown tag 7
        await until(lambda: a.host.is_banned(evil.id), what="ban")
        await until(lambda: any("bad_pex" in d.reason for d in a.disconnects()))


async def test_consensus_frame_overtakes_a_blocks_backlog() -> None:
    async with cluster(2) as (a, b):
        await a.host.connect(b.id, b.addr)
        await until(lambda: b.host.peers == [a.id])
        for i in range(128):  # 8 MiB queued on the blocks channel
            assert a.host.send(b.id, BLOCKS, i.to_bytes(4, "big") + bytes(65532))
        a.host.send(b.id, CONSENSUS, b"vote")
        await until(lambda: len(b.received()) == 129, timeout=30, what="everything")
        order = [e.channel for e in b.received()]
        # all of it was queued before the driver's next turn, which hands
        # channels to QUIC most urgent first: the vote leads the 8 MiB of blocks
        assert order.index(CONSENSUS) <= 1


async def test_seed_gives_addresses_then_is_let_go() -> None:
    async with cluster(2) as (seed, c):
        await c.host.connect(seed.id, seed.addr)
        await until(lambda: seed.host.peers == [c.id])
        config = dataclasses.replace(FAST, seeds=((seed.id, seed.addr),))
        async with running(config=config) as a:
            # a dials the seed, learns c's address, drops the seed and dials c
            await until(lambda: a.host.peers == [c.id], what="a connected to c only")
            assert any(d.peer_id == seed.id and "seed" in d.reason for d in a.disconnects())


def _ipv6_loopback_works() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback_works(), reason="no IPv6 loopback on this machine")
async def test_ipv6_loopback() -> None:
    async with running(listen=("::1", 0)) as a, running(listen=("::1", 0)) as b:
        await a.host.connect(b.id, ("::1", b.addr[1]))
        a.host.send(b.id, BLOCKS, b"v6")
        await until(lambda: [e.frame for e in b.received(BLOCKS)] == [b"v6"])


async def test_bad_listen_address_and_use_after_close() -> None:
    from p2p import HostClosed

    with pytest.raises(LocalProtocolError):
        async with running(listen=("no-such-host.invalid", 0)):
            pass
    async with running() as a:
        with pytest.raises(LocalProtocolError):  # the port is taken
            async with running(listen=a.addr):
                pass
        host = a.host
    with pytest.raises(HostClosed):
        host.broadcast(CONSENSUS, b"late")
    with pytest.raises(HostClosed):
        await host.connect(NodeKey.generate().peer_id, ("127.0.0.1", 9))
    with pytest.raises(HostClosed):
        await host.next_event()


async def test_frames_that_overtake_the_hello_wait_for_it() -> None:
    from p2p import pex as pexmod

    async with cluster(2) as (a, b):
        held: list[object] = []
        real_send_pex = a.host._send_pex

        def hold_hello(conn: object, msg: pexmod.PexMessage) -> None:
            if isinstance(msg, pexmod.Hello):
                held.append((conn, msg))
            else:
                real_send_pex(conn, msg)  # type: ignore[arg-type]

        a.host._send_pex = hold_hello  # type: ignore[method-assign,assignment]
        await a.host.connect(b.id, b.addr)  # b's HELLO reached a; a's is held back
        a.host.send(b.id, CONSENSUS, b"early vote")
        await until(lambda: a.id in b.host._peers and len(b.host._peers[a.id].early) == 1,
                    what="arrival")
        assert b.received() == [] and b.connects() == []  # held: b has not met a yet
        for conn, msg in held:
            real_send_pex(conn, msg)  # type: ignore[arg-type]
        await until(lambda: len(b.received()) == 1, what="delivery after HELLO")
        kinds = [type(e).__name__ for e in b.events]
        assert kinds == ["PeerConnected", "Received"]


async def test_cancelled_dial_leaves_nothing_behind() -> None:
    async with running() as a:
        silent = NodeKey.generate().peer_id
        with trio.move_on_after(0.2):
            await a.host.connect(silent, ("127.0.0.1", 9))  # nobody answers
        assert silent not in a.host._pm.dialing
        await until(lambda: not a.host._conns, what="abandoned connection gone")


async def test_slow_application_inbox_drops_mempool_and_holds_consensus() -> None:
    from p2p import Host, Received

    config = dataclasses.replace(FAST, inbox_size=5)
    b_key = NodeKey.generate()
    async with running() as a, Host.open(b_key, ("127.0.0.1", 0), config) as b:
        await a.host.connect(b_key.peer_id, b.listen_address)
        # nobody reads b's events: mempool frames beyond the inbox are dropped...
        for i in range(20):
            a.host.send(b_key.peer_id, MEMPOOL, b"tx%d" % i)
        await until(lambda: b.metrics.frames_received[MEMPOOL] == 20, what="mempool arrived")
        assert b.metrics.frames_dropped[MEMPOOL] >= 15
        # ...while consensus frames wait (the driver waits for the application)
        for i in range(20):
            a.host.send(b_key.peer_id, CONSENSUS, b"vote%d" % i)
        await until(lambda: b._undelivered > 5, what="driver holding events")
        votes: list[bytes] = []
        with trio.fail_after(10):
            async for event in b.events():
                if isinstance(event, Received) and event.channel == CONSENSUS:
                    votes.append(event.frame)
                    if len(votes) == 20:
                        break
        assert votes == [b"vote%d" % i for i in range(20)]


async def test_many_messages_from_many_origins_reach_every_node_once() -> None:
    import random

    rng = random.Random(6)
    # a ring with chords over 8 nodes, persistent links only
    config = dataclasses.replace(FAST, policy=PeerPolicy(max_outbound=0, backoff_base=0.05))
    async with cluster(8, config) as nodes:
        links = {(i, (i + 1) % 8) for i in range(8)} | {(0, 4), (2, 6)}
        for i, j in links:
            nodes[i].host.add_persistent_peer(nodes[j].id, nodes[j].addr)
        degree = [sum(1 for link in links if k in link) for k in range(8)]
        await until(lambda: all(len(n.host.peers) == degree[k] for k, n in enumerate(nodes)),
                    what="ring with chords")
        sent: list[tuple[int, bytes]] = []
        for m in range(200):
            origin = rng.randrange(8)
            frame = b"msg-%d" % m
            channel = CONSENSUS if m % 2 else MEMPOOL
            nodes[origin].host.broadcast(channel, frame)
            sent.append((origin, frame))
            if m % 50 == 49:
                await trio.sleep(0)
        for k, node in enumerate(nodes):
            expected = sorted(f for origin, f in sent if origin != k)
            await until(lambda node=node, expected=expected:
                        sorted(e.frame for e in node.received()) == expected,
                        timeout=20, what=f"node {k} has every message once")
        # nothing arrived twice in the meantime either
        for k, node in enumerate(nodes):
            frames = [e.frame for e in node.received()]
            assert len(frames) == len(set(frames)) == sum(1 for o, _ in sent if o != k)
