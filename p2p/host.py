"""The trio driver: one UDP socket, many aioquic connections, one `Host`.

Theory of operation. aioquic's `QuicConnection` is sans-IO; this module is
the only place in p2p that touches a socket or a clock. One task (`_run`)
owns the socket. Each turn it waits until the socket is readable, the
earliest QUIC timer is due, or the application queued frames (`send` cancels
the wait); then, outside that wait, it drains up to `recv_batch` datagrams,
feeds each to the connection its destination connection id names (creating
a server-side connection for a new Initial packet), fires due timers,
handles the connections' events, moves queued frames into channel streams
in priority order, and transmits each touched connection's datagrams once.
Every call gets `now=trio.current_time()`, so trio's MockClock drives QUIC
timers too.

Identity: both sides present a self-signed certificate for their Ed25519
node key (the server asks for the client's; see `_ServerConnection`). After
the handshake the driver reads the peer's certificate key: the dialer drops
the connection unless it is the peer id it asked for; both sides then ask the
peer manager whether the peer may stay (bans, limits, duplicates).

Backpressure: `send_stream_data` buffers without limit, so frames wait in a
bounded per-peer `SendQueue` and are handed to aioquic only while the
stream's unacknowledged bytes stay under `stream_window`. A full queue drops
frames (`Overflow.DROP`) or disconnects the too-slow peer
(`Overflow.DISCONNECT`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import trio
from aioquic.buffer import Buffer  # type: ignore[attr-defined]  # re-exported from _buffer
from aioquic.quic import events as qe
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicPacketType, pull_quic_header
from cryptography import x509

from p2p import pex
from p2p.channels import PEX, ChannelSpec, Overflow, Push, SendQueue, check_channels
from p2p.config import ALPN, HostConfig
from p2p.errors import (
    DialError,
    HostClosed,
    LocalProtocolError,
    MalformedFrame,
    NotConnected,
    P2PError,
    PeerIdentityError,
    RemoteProtocolError,
)
from p2p.framing import StreamDecoder, encode_frame, stream_preamble
from p2p.gossip import SeenCache, compute_forward_targets, message_id
from p2p.identity import Address, NodeKey, PeerId, format_peer_id, peer_id_from_certificate
from p2p.peers import Admission, PeerManager

log = logging.getLogger("p2p")

# Application error codes carried in CONNECTION_CLOSE.
CLOSE_NORMAL = 0x0
CLOSE_PROTOCOL = 0x1
CLOSE_IDENTITY = 0x2
CLOSE_REFUSED = 0x3
CLOSE_TOO_SLOW = 0x4

_CID_LENGTH = 8
_EARLY_BYTES_MAX = 4 * 1024 * 1024  # frames held for a peer whose HELLO is late


class _ServerConnection(QuicConnection):
    """A server-side connection that asks the client for its certificate.

    aioquic's TLS context can request a client certificate but exposes the
    switch only as the private `_request_client_certificate` attribute of the
    `tls.Context` it builds in `_initialize`; we set it right after. The
    client answers with its node certificate (it has one configured) and
    signs the transcript with its key, which TLS checks.
    """

    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        self.tls._request_client_certificate = True


def _peer_certificate(quic: QuicConnection) -> x509.Certificate | None:
    # aioquic keeps the verified peer certificate privately on its TLS context.
    cert = getattr(quic.tls, "_peer_certificate", None)
    return cert if isinstance(cert, x509.Certificate) else None


def _unacked_bytes(quic: QuicConnection, stream_id: int) -> int:
    # Bytes handed to the stream and not yet acknowledged (aioquic has no public call).
    stream = quic._streams.get(stream_id)
    if stream is None:
        return 0
    return len(stream.sender._buffer)


# -- what the application sees ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerConnected:
    """A peer passed the handshake and was admitted."""

    peer_id: PeerId
    """The peer's node public key."""
    addr: Address
    """The UDP address the connection runs over."""
    outbound: bool
    """True if we dialled."""


@dataclass(frozen=True, slots=True)
class PeerDisconnected:
    """An admitted peer's connection ended."""

    peer_id: PeerId
    """The peer's node public key."""
    reason: str
    """Why, in a few words (ours or the peer's)."""


@dataclass(frozen=True, slots=True)
class Received:
    """A frame arrived (gossip frames only the first time)."""

    peer_id: PeerId
    """The peer that sent it to us."""
    channel: int
    """The channel id."""
    frame: bytes
    """The frame payload."""


Event = PeerConnected | PeerDisconnected | Received


@dataclass(slots=True)
class Metrics:
    """Counters the node exports (monotonic unless noted)."""

    bytes_sent: dict[int, int] = field(default_factory=dict)
    """Frame bytes (with prefixes) handed to QUIC, per channel."""
    bytes_received: dict[int, int] = field(default_factory=dict)
    """Frame payload bytes received, per channel."""
    frames_sent: dict[int, int] = field(default_factory=dict)
    """Frames queued for peers, per channel (one per peer a broadcast reached)."""
    frames_received: dict[int, int] = field(default_factory=dict)
    frames_dropped: dict[int, int] = field(default_factory=dict)
    """Frames discarded by a full per-peer queue or a full inbox (DROP channels)."""
    gossip_duplicates: int = 0
    datagrams_sent: int = 0
    datagrams_received: int = 0
    datagrams_ignored: int = 0
    connections_refused: int = 0
    slow_peer_disconnects: int = 0
    violations: int = 0
    peers: int = 0
    """Admitted peers now (a gauge)."""


class _Conn:
    __slots__ = (
        "addr",
        "announced",
        "cids",
        "drained",
        "early",
        "early_bytes",
        "error",
        "expected",
        "in_channels",
        "in_streams",
        "last_rx",
        "listen_port",
        "out_streams",
        "outbound",
        "peer_id",
        "pex_answered",
        "probe_at",
        "queue",
        "quic",
        "ready",
        "state",
        "timer",
    )

    def __init__(self, quic: QuicConnection, addr: Address, outbound: bool,
                 expected: PeerId | None, specs: dict[int, ChannelSpec]) -> None:
        self.quic = quic
        self.addr = addr
        self.outbound = outbound
        self.expected = expected
        self.peer_id: PeerId | None = None
        self.state = "handshake"  # -> "admitted" -> "closing"
        self.ready = trio.Event()
        self.error: P2PError | None = None
        self.cids: set[bytes] = set()
        self.out_streams: dict[int, int] = {}
        self.in_streams: dict[int, StreamDecoder] = {}
        self.in_channels: set[int] = set()
        self.queue = SendQueue(specs)
        self.timer: float | None = None
        self.last_rx = -math.inf
        self.probe_at: float | None = None
        self.listen_port: int | None = None
        self.pex_answered = -math.inf
        self.drained = trio.Event()
        self.announced = False
        self.early: list[tuple[int, bytes]] = []
        self.early_bytes = 0


class Host:
    """A p2p node: use `async with Host.open(key, listen, config) as host:`."""

    def __init__(self, key: NodeKey, sock: socket.socket, config: HostConfig,
                 nursery: trio.Nursery) -> None:
        self.key = key
        self.config = config
        self.metrics = Metrics()
        self._sock = sock
        self._nursery = nursery
        self._specs = check_channels(config.channels)
        self._limits = {c: s.max_frame_size for c, s in self._specs.items()}
        self._pm = PeerManager(key.peer_id, config.policy)
        for peer_id, addr in config.persistent_peers:
            self._pm.add_persistent(peer_id, addr)
        for peer_id, addr in config.seeds:
            self._pm.add_seed(peer_id, addr)
        self._seen = SeenCache(config.seen_cache_size, config.seen_ttl)
        self._by_cid: dict[bytes, _Conn] = {}
        self._conns: set[_Conn] = set()
        self._peers: dict[PeerId, _Conn] = {}
        self._dirty: set[_Conn] = set()
        self._wake_scope: trio.CancelScope | None = None
        self._dial_wake = trio.Event()
        self._peers_changed = trio.Event()
        self._closed = False
        # Events go to the application in one batch per driver turn: one
        # channel operation (one scheduler round) per turn, not per frame.
        self._outbox: list[Event] = []
        self._ready: deque[Event] = deque()
        self._undelivered = 0
        self._taken = trio.Event()
        self._inbox_send, self._inbox_recv = trio.open_memory_channel[list[Event]](math.inf)
        self._client_cfg = self._quic_config(is_client=True)
        self._server_cfg = self._quic_config(is_client=False)
        self._ping_uid = 0
        for spec in self._specs.values():
            for table in (self.metrics.bytes_sent, self.metrics.bytes_received,
                          self.metrics.frames_sent, self.metrics.frames_received,
                          self.metrics.frames_dropped):
                table[spec.id] = 0

    # -- lifecycle -------------------------------------------------------------

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, key: NodeKey, listen: Address = ("127.0.0.1", 0),
                   config: HostConfig | None = None) -> AsyncIterator[Host]:
        """Bind the UDP socket, run the driver, yield the host; closes everything on exit."""
        config = config or HostConfig()
        sock = _open_socket(listen, config.socket_buffer)
        try:
            async with trio.open_nursery() as nursery:
                host = cls(key, sock, config, nursery)
                nursery.start_soon(host._run)
                nursery.start_soon(host._dial_loop)
                try:
                    yield host
                finally:
                    host._shutdown()
                    nursery.cancel_scope.cancel()
        finally:
            sock.close()

    def _shutdown(self) -> None:
        self._closed = True
        now = trio.current_time()
        for conn in list(self._conns):
            if conn.state != "closing":
                conn.quic.close(error_code=CLOSE_NORMAL, reason_phrase="shutdown")
                conn.state = "closing"
            self._transmit(conn, now, [])
        if self._outbox:
            with contextlib.suppress(trio.ClosedResourceError):
                self._inbox_send.send_nowait(self._outbox)
            self._outbox = []
        self._inbox_send.close()

    # -- public API ----------------------------------------------------------------

    @property
    def peer_id(self) -> PeerId:
        """This node's id (its 32-byte node public key)."""
        return self.key.peer_id

    @property
    def listen_address(self) -> Address:
        """The bound UDP address (the real port when 0 was asked)."""
        host, port = self._sock.getsockname()[:2]
        return (host, port)

    @property
    def peers(self) -> list[PeerId]:
        """Connected peers now (admitted by both sides)."""
        return [p for p, c in self._peers.items() if c.announced]

    def is_banned(self, peer_id: PeerId) -> bool:
        return self._pm.is_banned(peer_id, trio.current_time())

    def add_persistent_peer(self, peer_id: PeerId, addr: Address) -> None:
        """Keep `peer_id` connected from now on (dialled and redialled with backoff)."""
        self._pm.add_persistent(peer_id, addr)
        self._dial_wake.set()

    def add_seed(self, peer_id: PeerId, addr: Address) -> None:
        self._pm.add_seed(peer_id, addr)
        self._dial_wake.set()

    def send(self, peer_id: PeerId, channel: int, frame: bytes) -> bool:
        """Queue `frame` for one peer; False if the channel's policy dropped it.

        Raises `NotConnected` if the peer is not admitted, `LocalProtocolError`
        for an unknown or internal channel or a frame above its limit.
        """
        self._check_frame(channel, frame)
        conn = self._peers.get(peer_id)
        if conn is None or conn.state != "admitted":
            raise NotConnected(f"peer {format_peer_id(peer_id)[:16]} is not connected")
        return self._enqueue(conn, channel, encode_frame(frame))

    async def send_wait(self, peer_id: PeerId, channel: int, frame: bytes) -> None:
        """Like `send`, but waits while the peer's queue for `channel` is full.

        For bulk transfers (block sync): the sender goes at the pace the peer
        acknowledges instead of overflowing the queue. Raises `NotConnected`
        if the peer goes away while we wait.
        """
        self._check_frame(channel, frame)
        encoded = encode_frame(frame)
        limit = self._specs[channel].queue_bytes
        while True:
            conn = self._peers.get(peer_id)
            if conn is None or conn.state != "admitted":
                raise NotConnected(f"peer {format_peer_id(peer_id)[:16]} is not connected")
            if conn.queue.queued_bytes(channel) + len(encoded) <= limit:
                self._enqueue(conn, channel, encoded)
                await trio.lowlevel.checkpoint_if_cancelled()
                return
            await conn.drained.wait()

    def broadcast(self, channel: int, frame: bytes) -> int:
        """Send `frame` to every admitted peer (gossip); returns how many queued it.

        On a gossip channel the frame's id enters the seen-cache, so copies
        that come back are neither delivered nor forwarded.
        """
        self._check_frame(channel, frame)
        if self._specs[channel].gossip:
            self._seen.observe(message_id(frame), None, trio.current_time())
        encoded = encode_frame(frame)
        return sum(1 for conn in list(self._peers.values()) if self._enqueue(conn, channel, encoded))

    async def connect(self, peer_id: PeerId, addr: Address, timeout: float | None = None) -> None:
        """Dial `addr`, expecting `peer_id`; returns once the peer is admitted.

        Raises `PeerIdentityError` if another key answers, `DialError` on
        timeout or refusal. Connecting to an admitted peer returns at once.
        """
        if self._closed:
            raise HostClosed("host is closed")
        if peer_id in self.peers:
            return
        if peer_id == self.peer_id:
            raise LocalProtocolError("cannot connect to ourselves")
        self._pm.on_dial_started(peer_id)
        conn: _Conn | None = None
        succeeded = False
        try:
            conn = self._start_dial(peer_id, await self._resolve(addr))
            limit = self.config.handshake_timeout if timeout is None else timeout
            with trio.move_on_after(limit):
                await conn.ready.wait()
            if not conn.ready.is_set():
                self._close(conn, CLOSE_NORMAL, "handshake timeout")
                conn.error = DialError(f"handshake with {addr} timed out")
            if conn.error is not None:
                # refused as a duplicate: the peer may be connected over its own dial
                other = self._peers.get(peer_id)
                if other is not None and other is not conn:
                    with trio.move_on_after(limit):
                        await other.ready.wait()
                if peer_id not in self.peers:
                    raise conn.error
            succeeded = True
        finally:
            if succeeded:
                self._pm.dialing.discard(peer_id)
            else:  # failed or cancelled: never leave a half-open dial behind
                if conn is not None and not conn.ready.is_set():
                    self._close(conn, CLOSE_NORMAL, "dial abandoned")
                self._pm.on_dial_failed(peer_id, trio.current_time())
                self._dial_wake.set()

    async def _resolve(self, addr: Address) -> tuple[Any, ...]:
        # The result must equal the address recvfrom reports for the peer's
        # datagrams (aioquic matches network paths by it): a 4-tuple on IPv6.
        host, port = addr
        ipv6 = self._sock.family == socket.AF_INET6
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            if not ipv6:
                return (str(literal), port)
            text = str(literal) if literal.version == 6 else f"::ffff:{literal}"
            return (text, port, 0, 0)
        try:
            infos = await trio.socket.getaddrinfo(
                host, port, family=self._sock.family, type=socket.SOCK_DGRAM
            )
        except (OSError, UnicodeError) as exc:
            raise DialError(f"cannot resolve {host!r}: {exc}") from exc
        if not infos:
            raise DialError(f"cannot resolve {host!r}")
        return tuple(infos[0][4])

    def disconnect(self, peer_id: PeerId, reason: str = "closed by us") -> None:
        conn = self._peers.get(peer_id)
        if conn is not None:
            self._close(conn, CLOSE_NORMAL, reason)

    def report_violation(self, peer_id: PeerId, reason: str) -> None:
        """An upper layer found the peer misbehaving (say an invalid signature): ban it."""
        self.metrics.violations += 1
        self._pm.ban(peer_id, trio.current_time())
        log.info("banned %s: %s", format_peer_id(peer_id)[:16], reason)
        conn = self._peers.get(peer_id)
        if conn is not None:
            self._close(conn, CLOSE_PROTOCOL, f"violation: {reason}")

    async def events(self) -> AsyncIterator[Event]:
        """Connect, disconnect and frame events, in arrival order; ends when the host closes.

        Consume it in a task of its own: while more than `inbox_size` events
        wait, the driver waits too (frames on DROP channels are dropped instead).
        """
        while True:
            try:
                event = await self.next_event()
            except HostClosed:
                return
            yield event

    async def next_event(self) -> Event:
        """The next event; raises `HostClosed` after shutdown.

        Events of one driver turn arrive together: only the first of a batch waits.
        """
        if not self._ready:
            try:
                batch = await self._inbox_recv.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError) as exc:
                raise HostClosed("host is closed") from exc
            self._ready.extend(batch)
            self._undelivered -= len(batch)
            self._taken.set()
            self._taken = trio.Event()
        return self._ready.popleft()

    async def wait_for_peers(self, peer_ids: Iterable[PeerId] | int) -> None:
        """Block until these peers (or this many peers) are admitted; wrap in a timeout."""
        wanted: set[PeerId] | int = peer_ids if isinstance(peer_ids, int) else set(peer_ids)
        while True:
            peers = set(self.peers)
            if isinstance(wanted, int):
                if len(peers) >= wanted:
                    return
            elif wanted <= peers:
                return
            await self._peers_changed.wait()

    def _check_frame(self, channel: int, frame: bytes) -> None:
        if self._closed:
            raise HostClosed("host is closed")
        spec = self._specs.get(channel)
        if spec is None or channel == PEX:
            raise LocalProtocolError(f"channel {channel} is unknown or internal")
        if len(frame) > spec.max_frame_size:
            raise LocalProtocolError(
                f"frame of {len(frame)} bytes exceeds channel {spec.name}'s {spec.max_frame_size}"
            )

    # -- queues --------------------------------------------------------------------

    def _enqueue(self, conn: _Conn, channel: int, encoded: bytes) -> bool:
        if conn.state != "admitted":
            return False
        verdict = conn.queue.push(channel, encoded)
        if verdict is Push.QUEUED:
            self.metrics.frames_sent[channel] += 1
            self._mark_dirty(conn)
            return True
        self.metrics.frames_dropped[channel] += 1
        if verdict is Push.OVERFLOW:
            self.metrics.slow_peer_disconnects += 1
            self._close(conn, CLOSE_TOO_SLOW, f"too slow on channel {self._specs[channel].name}")
        return False

    def _mark_dirty(self, conn: _Conn) -> None:
        self._dirty.add(conn)
        self._wake()

    def _wake(self) -> None:
        # end the driver's wait; it then runs one turn for everything queued meanwhile
        scope = self._wake_scope
        if scope is not None:
            self._wake_scope = None
            scope.cancel()

    # -- the driver loop ------------------------------------------------------------

    async def _run(self) -> None:
        sock = self._sock
        recv = sock.recvfrom
        while True:
            if not self._dirty and not self._outbox:
                deadline = min(
                    (c.timer for c in self._conns if c.timer is not None), default=math.inf
                )
                with trio.CancelScope(deadline=deadline) as scope:
                    self._wake_scope = scope
                    await trio.lowlevel.wait_readable(sock)
                self._wake_scope = None
            else:
                await trio.lowlevel.checkpoint()
            now = trio.current_time()
            touched: set[_Conn] = self._dirty
            self._dirty = set()
            for _ in range(self.config.recv_batch):
                try:
                    data, addr = recv(65536)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    continue
                conn = self._on_datagram(data, addr, now)
                if conn is not None:
                    touched.add(conn)
            for conn in self._conns:
                if conn.timer is not None and conn.timer <= now:
                    conn.quic.handle_timer(now=now)
                    touched.add(conn)
            for conn in touched:
                self._handle_events(conn, now)
            # events may have queued forwards or closes on other connections
            touched |= self._dirty
            self._dirty = set()
            unsent: list[tuple[bytes, Address]] = []
            for conn in touched:
                self._pump(conn)
                self._transmit(conn, now, unsent)
            if unsent:
                await self._send_blocked(unsent)
            if self._outbox:
                await self._deliver()

    def _on_datagram(self, data: bytes, addr: Address, now: float) -> _Conn | None:
        self.metrics.datagrams_received += 1
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=_CID_LENGTH)
        except ValueError:
            self.metrics.datagrams_ignored += 1
            return None
        conn = self._by_cid.get(header.destination_cid)
        if conn is None:
            if (
                self._closed
                or header.packet_type != QuicPacketType.INITIAL
                or len(data) < 1200
                or header.version not in self._server_cfg.supported_versions
                or sum(1 for c in self._conns if c.state == "handshake" and not c.outbound)
                >= self.config.max_pending_handshakes
            ):
                self.metrics.datagrams_ignored += 1
                return None
            quic = _ServerConnection(
                configuration=self._server_cfg,
                original_destination_connection_id=header.destination_cid,
            )
            conn = _Conn(quic, (addr[0], addr[1]), False, None, self._specs)
            self._conns.add(conn)
            self._register_cid(conn, header.destination_cid)
            self._register_cid(conn, quic.host_cid)
        conn.quic.receive_datagram(data, addr, now=now)
        conn.last_rx = now
        return conn

    def _register_cid(self, conn: _Conn, cid: bytes) -> None:
        self._by_cid[cid] = conn
        conn.cids.add(cid)

    def _pump(self, conn: _Conn) -> None:
        if conn.state != "admitted":
            return
        quic = conn.quic
        window = self.config.stream_window
        sent = self.metrics.bytes_sent
        for channel in conn.queue.pending_channels():
            stream_id = conn.out_streams.get(channel)
            if stream_id is None:
                stream_id = quic.get_next_available_stream_id(is_unidirectional=True)
                quic.send_stream_data(stream_id, stream_preamble(channel))
                conn.out_streams[channel] = stream_id
            room = window - _unacked_bytes(quic, stream_id)
            if room <= 0:
                continue
            data = conn.queue.take(channel, room)
            quic.send_stream_data(stream_id, data)
            sent[channel] += len(data)
            conn.drained.set()
            conn.drained = trio.Event()

    def _transmit(self, conn: _Conn, now: float, unsent: list[tuple[bytes, Address]]) -> None:
        sendto = self._sock.sendto
        count = 0
        for data, addr in conn.quic.datagrams_to_send(now=now):
            count += 1
            if unsent:
                unsent.append((data, addr))
                continue
            try:
                sendto(data, addr)
            except BlockingIOError:
                unsent.append((data, addr))
            except OSError as exc:  # unreachable address and the like: QUIC retransmits
                log.debug("sendto %s failed: %s", addr, exc)
        self.metrics.datagrams_sent += count
        conn.timer = conn.quic.get_timer()

    async def _send_blocked(self, unsent: list[tuple[bytes, Address]]) -> None:
        for data, addr in unsent:
            while True:
                try:
                    self._sock.sendto(data, addr)
                    break
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(self._sock)
                except OSError:
                    break

    # -- events from aioquic --------------------------------------------------------

    def _handle_events(self, conn: _Conn, now: float) -> None:
        quic = conn.quic
        while (event := quic.next_event()) is not None:
            if isinstance(event, qe.StreamDataReceived):
                if conn.state == "admitted":
                    self._on_stream_data(conn, event, now)
            elif isinstance(event, qe.HandshakeCompleted):
                self._on_handshake(conn, event, now)
            elif isinstance(event, qe.ConnectionIdIssued):
                self._register_cid(conn, event.connection_id)
            elif isinstance(event, qe.ConnectionIdRetired):
                if self._by_cid.get(event.connection_id) is conn:
                    del self._by_cid[event.connection_id]
                conn.cids.discard(event.connection_id)
            elif isinstance(event, qe.ConnectionTerminated):
                self._on_terminated(conn, event, now)
                return

    def _on_handshake(self, conn: _Conn, event: qe.HandshakeCompleted, now: float) -> None:
        try:
            if event.alpn_protocol != ALPN:
                raise PeerIdentityError(f"peer negotiated ALPN {event.alpn_protocol!r}")
            peer_id = peer_id_from_certificate(_peer_certificate(conn.quic))
            if conn.expected is not None and peer_id != conn.expected:
                raise PeerIdentityError(
                    f"expected peer {format_peer_id(conn.expected)[:16]}, "
                    f"certificate holds {format_peer_id(peer_id)[:16]}"
                )
        except PeerIdentityError as exc:
            self.metrics.connections_refused += 1
            conn.error = exc
            self._close(conn, CLOSE_IDENTITY, str(exc))
            return
        conn.peer_id = peer_id
        existing = self._peers.get(peer_id)
        alive = existing is None or not self._is_stale(existing, now)
        verdict = self._pm.admit(peer_id, conn.outbound, now) if alive else Admission.REPLACE
        if verdict is Admission.DUPLICATE and existing is not None:
            self._probe(existing, now)
        if not verdict.accepted:
            self.metrics.connections_refused += 1
            conn.error = DialError(f"refused by {conn.addr}: {verdict.value}")
            self._close(conn, CLOSE_REFUSED, verdict.value)
            return
        if existing is not None:
            self._detach(existing, now, "replaced by a newer connection")
            self._close(existing, CLOSE_NORMAL, "replaced by a newer connection")
        conn.state = "admitted"
        self._peers[peer_id] = conn
        self._pm.on_connected(peer_id, conn.outbound)
        # The peer is announced when its HELLO arrives: it sends HELLO only
        # after admitting us, so a dialer never reports a peer that refused it.
        self._send_pex(conn, pex.Hello(self.listen_address[1]))
        if conn.outbound:
            self._send_pex(conn, pex.Request())
        self._nursery.start_soon(self._expect_hello, conn)

    async def _expect_hello(self, conn: _Conn) -> None:
        # an admitted peer that never says HELLO must not hold a slot forever
        await trio.sleep(self.config.handshake_timeout)
        if not conn.announced and conn.state == "admitted":
            self._close(conn, CLOSE_PROTOCOL, "no HELLO")

    def _is_stale(self, conn: _Conn, now: float) -> bool:
        return (
            conn.probe_at is not None
            and conn.last_rx < conn.probe_at
            and now - conn.probe_at >= self.config.stale_probe_seconds
        )

    def _probe(self, conn: _Conn, now: float) -> None:
        if conn.probe_at is None or conn.last_rx >= conn.probe_at:
            conn.probe_at = now
            self._ping_uid += 1
            conn.quic.send_ping(self._ping_uid)
            self._mark_dirty(conn)

    def _on_stream_data(self, conn: _Conn, event: qe.StreamDataReceived, now: float) -> None:
        stream_id = event.stream_id
        try:
            decoder = conn.in_streams.get(stream_id)
            if decoder is None:
                # only unidirectional streams opened by the peer carry channels
                peer_is_client = not conn.outbound
                if not stream_id & 2 or bool(stream_id & 1) == peer_is_client:
                    raise MalformedFrame(f"unexpected stream {stream_id}")
                decoder = StreamDecoder(self._limits)
                conn.in_streams[stream_id] = decoder
            had_channel = decoder.channel is not None
            frames = decoder.feed(event.data)
            if not had_channel and decoder.channel is not None:
                if decoder.channel in conn.in_channels:
                    raise MalformedFrame(f"second stream for channel {decoder.channel}")
                conn.in_channels.add(decoder.channel)
            if event.end_stream:
                decoder.end_of_stream()
            channel = decoder.channel
            for frame in frames:
                if channel is None or conn.state != "admitted":
                    break
                if channel != PEX and not conn.announced:
                    # streams are independent: frames may overtake the HELLO;
                    # hold them so the application hears of the peer first
                    conn.early.append((channel, frame))
                    conn.early_bytes += len(frame)
                    if conn.early_bytes > _EARLY_BYTES_MAX:
                        self._close(conn, CLOSE_PROTOCOL, "too much data before HELLO")
                    continue
                self._on_frame(conn, channel, frame, now)
        except RemoteProtocolError as exc:
            self._violation(conn, exc, now)

    def _on_frame(self, conn: _Conn, channel: int, frame: bytes, now: float) -> None:
        peer_id = conn.peer_id
        if peer_id is None:
            return
        self.metrics.frames_received[channel] += 1
        self.metrics.bytes_received[channel] += len(frame)
        if channel == PEX:
            self._on_pex(conn, pex.decode_pex_untrusted(frame), now)
            return
        spec = self._specs[channel]
        if spec.gossip:
            msg_id = message_id(frame)
            if not self._seen.observe(msg_id, peer_id, now):
                self.metrics.gossip_duplicates += 1
                return
            targets = (
                compute_forward_targets(self._peers, self._seen.senders(msg_id))
                if len(self._peers) > 1 else ()
            )
            if targets:
                encoded = encode_frame(frame)
                for target in targets:
                    self._enqueue(self._peers[target], channel, encoded)
        if (
            spec.overflow is Overflow.DROP
            and self._undelivered + len(self._outbox) >= self.config.inbox_size
        ):
            self.metrics.frames_dropped[channel] += 1
            return
        self._outbox.append(Received(peer_id, channel, frame))

    def _on_pex(self, conn: _Conn, msg: pex.PexMessage, now: float) -> None:
        peer_id = conn.peer_id
        if peer_id is None:
            return
        if isinstance(msg, pex.Hello):
            if conn.listen_port is not None:
                raise RemoteProtocolError("second HELLO", reason="bad_pex")
            conn.listen_port = msg.listen_port
            conn.announced = True
            self.metrics.peers = sum(1 for c in self._peers.values() if c.announced)
            self._notify_peers_changed()
            self._emit(PeerConnected(peer_id, conn.addr, conn.outbound))
            conn.ready.set()
            early, conn.early = conn.early, []
            for channel, frame in early:
                self._on_frame(conn, channel, frame, now)
        elif isinstance(msg, pex.Request):
            # answer at most one request per interval; extra requests are ignored
            if now - conn.pex_answered >= self.config.pex_interval:
                conn.pex_answered = now
                entries = self._pm.addresses_to_share(peer_id, self._dialable(), pex.MAX_ADDRS)
                self._send_pex(conn, pex.Addrs(tuple(entries)))
        else:
            self._pm.add_addresses(msg.entries, now)
            self._dial_wake.set()
            if peer_id in self._pm.seeds and peer_id not in self._pm.persistent:
                self._close(conn, CLOSE_NORMAL, "seed answered")

    def _dialable(self) -> dict[PeerId, Address]:
        out: dict[PeerId, Address] = {}
        for peer_id, conn in self._peers.items():
            if conn.outbound:
                out[peer_id] = conn.addr
            elif conn.listen_port:
                out[peer_id] = (conn.addr[0], conn.listen_port)
        return out

    def _send_pex(self, conn: _Conn, msg: pex.PexMessage) -> None:
        self._enqueue(conn, PEX, encode_frame(pex.encode_pex(msg)))

    def _violation(self, conn: _Conn, exc: RemoteProtocolError, now: float) -> None:
        self.metrics.violations += 1
        if conn.peer_id is not None:
            self._pm.ban(conn.peer_id, now)
            log.info("banned %s: %s", format_peer_id(conn.peer_id)[:16], exc)
        self._close(conn, CLOSE_PROTOCOL, f"{exc.reason}: {exc}")

    def _on_terminated(self, conn: _Conn, event: qe.ConnectionTerminated, now: float) -> None:
        for cid in conn.cids:
            if self._by_cid.get(cid) is conn:
                del self._by_cid[cid]
        conn.cids.clear()
        self._conns.discard(conn)
        self._dirty.discard(conn)
        conn.timer = None
        self._detach(conn, now, event.reason_phrase or f"closed (code {event.error_code})")
        conn.state = "closing"
        conn.drained.set()
        if not conn.ready.is_set():
            if conn.error is None:
                conn.error = DialError(
                    f"connection to {conn.addr} closed: {event.reason_phrase or event.error_code}"
                )
            conn.ready.set()

    def _detach(self, conn: _Conn, now: float, reason: str) -> None:
        """Forget `conn` as its peer's connection (if it is the current one)."""
        peer_id = conn.peer_id
        if peer_id is None or self._peers.get(peer_id) is not conn:
            return
        del self._peers[peer_id]
        self._pm.on_disconnected(peer_id, now)
        self._dial_wake.set()
        if conn.announced:
            self.metrics.peers = sum(1 for c in self._peers.values() if c.announced)
            self._notify_peers_changed()
            self._emit(PeerDisconnected(peer_id, reason))

    def _close(self, conn: _Conn, code: int, reason: str) -> None:
        if conn.state == "closing":
            return
        self._detach(conn, trio.current_time(), reason)
        conn.state = "closing"
        conn.drained.set()
        conn.quic.close(error_code=code, reason_phrase=reason[:200])
        if not conn.ready.is_set():
            if conn.error is None:
                conn.error = DialError(reason)
            conn.ready.set()
        self._mark_dirty(conn)

    def _emit(self, event: Event) -> None:
        self._outbox.append(event)
        self._wake()

    async def _deliver(self) -> None:
        batch, self._outbox = self._outbox, []
        try:
            self._inbox_send.send_nowait(batch)
        except trio.ClosedResourceError:
            return
        self._undelivered += len(batch)
        # The application is behind: wait for it (QUIC input stalls meanwhile,
        # which is the backpressure a slow consumer should feel).
        while self._undelivered > self.config.inbox_size:
            await self._taken.wait()

    def _notify_peers_changed(self) -> None:
        self._peers_changed.set()
        self._peers_changed = trio.Event()

    # -- dialling ------------------------------------------------------------------

    def _start_dial(self, peer_id: PeerId, sockaddr: tuple[Any, ...]) -> _Conn:
        quic = QuicConnection(configuration=self._client_cfg)
        conn = _Conn(quic, (str(sockaddr[0]), int(sockaddr[1])), True, peer_id, self._specs)
        self._conns.add(conn)
        self._register_cid(conn, quic.host_cid)
        quic.connect(sockaddr, now=trio.current_time())
        self._mark_dirty(conn)
        return conn

    async def _dial_loop(self) -> None:
        next_pex = trio.current_time() + self.config.pex_interval
        while True:
            now = trio.current_time()
            for dial in self._pm.due_dials(now):
                self._nursery.start_soon(self._dial_task, dial.peer_id, dial.addr)
            if now >= next_pex:
                next_pex = now + self.config.pex_interval
                if len(self._peers) < self.config.policy.max_outbound:
                    for conn in list(self._peers.values()):
                        self._send_pex(conn, pex.Request())
            backoff_end = self._pm.next_wakeup(now)
            wake = next_pex if backoff_end is None else min(backoff_end, next_pex)
            with trio.move_on_at(wake):
                await self._dial_wake.wait()
            self._dial_wake = trio.Event()

    async def _dial_task(self, peer_id: PeerId, addr: Address) -> None:
        try:
            await self.connect(peer_id, addr)
        except P2PError as exc:
            log.debug("dial %s at %s failed: %s", format_peer_id(peer_id)[:16], addr, exc)

    def _quic_config(self, is_client: bool) -> QuicConfiguration:
        cfg = QuicConfiguration(
            is_client=is_client,
            alpn_protocols=[ALPN],
            connection_id_length=_CID_LENGTH,
            idle_timeout=self.config.idle_timeout,
            max_data=self.config.max_data,
            max_stream_data=self.config.max_stream_data,
            max_datagram_size=self.config.max_datagram_size,
            verify_mode=ssl.CERT_NONE,  # no CA: the node key is checked after the handshake
        )
        cfg.certificate = self.key.certificate()
        cfg.private_key = self.key.private_key
        return cfg


def _open_socket(listen: Address, buffer_size: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(listen[0], listen[1], type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise LocalProtocolError(f"cannot resolve listen address {listen}: {exc}") from exc
    family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, opt, buffer_size)
        sock.bind(sockaddr)
    except OSError as exc:
        sock.close()
        raise LocalProtocolError(f"cannot bind UDP {listen}: {exc}") from exc
    return sock
