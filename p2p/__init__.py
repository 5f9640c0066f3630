"""QUIC transport (aioquic sans-IO driven by trio): node identity, framing, channels,
gossip, peer manager. Generic over bytes; imports nothing of ours.

Usage::

    async with Host.open(NodeKey.load(path), ("0.0.0.0", 26656), HostConfig()) as host:
        await host.connect(peer_id, ("10.0.0.2", 26656))
        host.broadcast(CONSENSUS, frame)
        async for event in host.events():
            ...

See docs/p2p.md.
"""

from __future__ import annotations

from p2p.channels import BLOCKS, CONSENSUS, DEFAULT_CHANNELS, MEMPOOL, PEX, ChannelSpec, Overflow
from p2p.config import ALPN, HostConfig
from p2p.errors import (
    ConfigError,
    DialError,
    FrameTooLarge,
    HostClosed,
    KeyFileError,
    LocalProtocolError,
    MalformedFrame,
    NotConnected,
    P2PError,
    PeerIdentityError,
    RemoteProtocolError,
)
from p2p.host import Event, Host, Metrics, PeerConnected, PeerDisconnected, Received
from p2p.identity import (
    Address,
    NodeKey,
    PeerId,
    format_peer_id,
    parse_peer_address,
    parse_peer_id,
)
from p2p.peers import PeerPolicy

__all__ = [
    "ALPN",
    "BLOCKS",
    "CONSENSUS",
    "DEFAULT_CHANNELS",
    "MEMPOOL",
    "PEX",
    "Address",
    "ChannelSpec",
    "ConfigError",
    "DialError",
    "Event",
    "FrameTooLarge",
    "Host",
    "HostClosed",
    "HostConfig",
    "KeyFileError",
    "LocalProtocolError",
    "MalformedFrame",
    "Metrics",
    "NodeKey",
    "NotConnected",
    "Overflow",
    "P2PError",
    "PeerConnected",
    "PeerDisconnected",
    "PeerId",
    "PeerIdentityError",
    "PeerPolicy",
    "Received",
    "RemoteProtocolError",
    "format_peer_id",
    "parse_peer_address",
    "parse_peer_id",
]
