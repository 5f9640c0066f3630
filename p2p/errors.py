"""Errors of the p2p layer, split as h11 splits them: whose fault is it?

- `LocalProtocolError`: we (the caller of this package) misused it: an unknown
  channel, a frame above the channel's limit handed to `send`, a closed host.
  Fix the calling code; the peer did nothing wrong.
- `RemoteProtocolError`: the peer broke the protocol: a malformed or oversize
  frame, an unknown channel, a certificate that does not carry the key we
  expected. The host bans the peer for these.
- `DialError`: a connection attempt failed for reasons that are nobody's
  protocol fault (timeout, refused, peer at its limits).

Every exception raised by this package derives from `P2PError`.
"""

from __future__ import annotations


class P2PError(Exception):
    """Base class of every error raised by `p2p`."""


class LocalProtocolError(P2PError):
    """Raised when our own code misuses the p2p API (our fault, not the peer's)."""


class ConfigError(LocalProtocolError):
    """Raised when a `HostConfig` or `ChannelSpec` is inconsistent (the operator's fault)."""


class KeyFileError(LocalProtocolError):
    """Raised when a node key file is missing, unreadable or malformed (the operator's fault)."""


class NotConnected(LocalProtocolError):
    """Raised by `Host.send` when no admitted connection to that peer exists."""


class HostClosed(LocalProtocolError):
    """Raised when the host is used after it has shut down."""


class RemoteProtocolError(P2PError):
    """Raised when the peer broke the protocol (the peer's fault); the peer gets banned.

    `reason` is a short machine-friendly word kept in metrics and ban records.
    """

    def __init__(self, message: str, reason: str = "protocol") -> None:
        super().__init__(message)
        self.reason = reason


class MalformedFrame(RemoteProtocolError):
    """Raised by the frame decoder for bytes that are not a valid frame stream
    (non-minimal length prefix, unknown channel, stream ended inside a frame)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="malformed_frame")


class FrameTooLarge(RemoteProtocolError):
    """Raised by the frame decoder when a length prefix exceeds the channel's maximum."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="oversize_frame")


class PeerIdentityError(RemoteProtocolError):
    """Raised when the peer's certificate is missing, is not Ed25519, or carries
    another key than the peer id the dialer expected."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="identity")


class DialError(P2PError):
    """Raised by `Host.connect` when the connection could not be made or was not admitted."""
