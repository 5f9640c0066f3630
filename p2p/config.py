"""Host configuration (one frozen value; the node builds it from its TOML)."""

from __future__ import annotations

from dataclasses import dataclass, field

from p2p.channels import DEFAULT_CHANNELS, MIB, ChannelSpec, check_channels
from p2p.errors import ConfigError
from p2p.identity import Address, PeerId
from p2p.peers import PeerPolicy

ALPN = "blackhole/1"


@dataclass(frozen=True, slots=True)
class HostConfig:
    """Everything a `Host` needs besides its key and listen address."""

    channels: tuple[ChannelSpec, ...] = DEFAULT_CHANNELS
    """Channel table; channel 0 (peer exchange) is required."""
    policy: PeerPolicy = field(default_factory=PeerPolicy)
    """Peer-manager limits and timings."""
    persistent_peers: tuple[tuple[PeerId, Address], ...] = ()
    """Peers always kept connected (redialled with backoff)."""
    seeds: tuple[tuple[PeerId, Address], ...] = ()
    """Peers dialled for addresses while the address book is short."""
    max_datagram_size: int = 1452
    """QUIC datagram size; 1452 fits a 1500-byte Ethernet MTU over IPv4/IPv6."""
    idle_timeout: float = 30.0
    """A connection silent this long is dropped by QUIC."""
    handshake_timeout: float = 10.0
    """`connect` gives up after this many seconds."""
    stream_window: int = 2 * MIB
    """Unacknowledged bytes per channel stream before frames wait in our queue."""
    max_data: int = 16 * MIB
    """Connection flow-control window granted to each peer."""
    max_stream_data: int = 4 * MIB
    """Per-stream flow-control window granted to each peer."""
    socket_buffer: int = 4 * MIB
    """SO_RCVBUF / SO_SNDBUF of the UDP socket."""
    recv_batch: int = 64
    """Datagrams drained per wake-up before transmitting."""
    seen_cache_size: int = 100_000
    """Gossip ids remembered."""
    seen_ttl: float = 120.0
    """Seconds a gossip id is remembered."""
    inbox_size: int = 10_000
    """Events buffered for the application before the driver waits for it."""
    pex_interval: float = 30.0
    """Seconds between address requests while below `policy.max_outbound` peers."""
    stale_probe_seconds: float = 1.0
    """A connection that has not answered a probe for this long counts as dead
    when the same peer connects again."""
    max_pending_handshakes: int = 64
    """Inbound connections still in the handshake beyond which new ones are ignored."""

    def __post_init__(self) -> None:
        check_channels(self.channels)
        if not 1200 <= self.max_datagram_size <= 65527:
            raise ConfigError("max_datagram_size must be in 1200..65527")
        for name in ("idle_timeout", "handshake_timeout", "seen_ttl", "pex_interval",
                     "stale_probe_seconds"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        for name in ("stream_window", "max_data", "max_stream_data", "socket_buffer",
                     "recv_batch", "seen_cache_size", "inbox_size", "max_pending_handshakes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
