"""Node identity: an Ed25519 node key, its self-signed certificate, the peer id.

The peer id IS the node's 32-byte Ed25519 public key (docs/interfaces.md:
peers are identified by their node public key). The key is bound into the TLS
certificate each side presents; TLS's CertificateVerify proves the peer holds
the certificate's private key, so after the handshake the certificate's public
key is the peer's identity. The certificate itself carries no trust (no CA, no
validity checks): both sides compare its key to the id they expect or admit.

Pure: no sockets, no clock (the certificate has fixed validity dates, so it is
a deterministic function of the key).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from p2p.errors import ConfigError, KeyFileError, PeerIdentityError

PeerId = bytes
"""A peer's 32-byte Ed25519 node public key."""

Address = tuple[str, int]
"""A UDP address: (host, port)."""

PEER_ID_SIZE = 32
_NOT_BEFORE = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
_NOT_AFTER = datetime.datetime(9999, 12, 31, tzinfo=datetime.UTC)


@dataclass(frozen=True, slots=True)
class NodeKey:
    """A node's Ed25519 private key and what derives from it."""

    seed: bytes
    """The 32-byte Ed25519 private seed; keep it secret."""
    private_key: ed25519.Ed25519PrivateKey = field(repr=False, compare=False)
    """The same key as a `cryptography` object (what aioquic's TLS wants)."""
    peer_id: PeerId
    """The 32-byte public key: this node's identity on the network."""

    @classmethod
    def from_seed(cls, seed: bytes) -> NodeKey:
        if not isinstance(seed, bytes) or len(seed) != 32:
            raise ConfigError("a node key seed is exactly 32 bytes")
        private_key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        public = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return cls(seed=seed, private_key=private_key, peer_id=public)

    @classmethod
    def generate(cls) -> NodeKey:
        return cls.from_seed(os.urandom(32))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> NodeKey:
        """Read a key file written by `save` (the seed as 64 hex digits)."""
        try:
            text = Path(path).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyFileError(f"cannot read node key {path}: {exc}") from exc
        try:
            seed = bytes.fromhex(text)
        except ValueError as exc:
            raise KeyFileError(f"node key {path} is not hex") from exc
        if len(seed) != 32:
            raise KeyFileError(f"node key {path} must hold 32 bytes, found {len(seed)}")
        return cls.from_seed(seed)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the seed as hex to a new file readable by the owner only."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise KeyFileError(f"cannot create node key {path}: {exc}") from exc
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(self.seed.hex() + "\n")

    def certificate(self) -> x509.Certificate:
        """The self-signed certificate binding this key (deterministic)."""
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.peer_id.hex())])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.private_key.public_key())
            .serial_number(int.from_bytes(self.peer_id[:16], "big") >> 1 or 1)
            .not_valid_before(_NOT_BEFORE)
            .not_valid_after(_NOT_AFTER)
        )
        return builder.sign(self.private_key, None)


def peer_id_from_certificate(cert: x509.Certificate | None) -> PeerId:
    """The peer id bound in a certificate the peer presented; the peer's fault if none."""
    if cert is None:
        raise PeerIdentityError("the peer presented no certificate")
    key = cert.public_key()
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise PeerIdentityError("the peer's certificate key is not Ed25519")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def format_peer_id(peer_id: PeerId) -> str:
    """Hex form used in logs, config files and `id@host:port` addresses."""
    return peer_id.hex()


def parse_peer_id(text: str) -> PeerId:
    """Parse the hex form of a peer id; the operator's fault if malformed."""
    try:
        raw = bytes.fromhex(text)
    except ValueError as exc:
        raise ConfigError(f"peer id {text!r} is not hex") from exc
    if len(raw) != PEER_ID_SIZE:
        raise ConfigError(f"peer id {text!r} must be {PEER_ID_SIZE} bytes")
    return raw


def parse_peer_address(text: str) -> tuple[PeerId, Address]:
    """Parse `<hex peer id>@<host>:<port>` (CometBFT's persistent_peers habit)."""
    ident, sep, hostport = text.partition("@")
    host, sep2, port_text = hostport.rpartition(":")
    if not sep or not sep2 or not host:
        raise ConfigError(f"peer address {text!r} is not id@host:port")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"peer address {text!r} has a bad port")
    return parse_peer_id(ident), (host.strip("[]"), int(port_text))
