"""Keys, signing digests, signatures and sealed boxes.

Theory of operation. Every signature in Blackhole is an Ed25519 signature (pynacl)
over a 32-byte digest::

    digest = BLAKE3(domain ‖ u8 len(chain_id) ‖ chain_id ‖ payload)

``domain`` is the signed kind's tag from :data:`DOMAINS` (one tag per kind: a
vote can never be replayed as a transaction), ``chain_id`` is ASCII and binds the
signature to one chain, and ``payload`` is the canonical encoding of the signed
fields. The tags are prefix-free (none is a prefix of another; checked at
registration), so the concatenation is unambiguous.

An account address is its 32-byte Ed25519 public key. Key material for an owner
is sealed to the X25519 key derived from the owner's Ed25519 key (libsodium's
``crypto_sign_ed25519_pk_to_curve25519``) with a libsodium sealed box (an
ephemeral X25519 key plus XSalsa20-Poly1305): only the owner can open it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import blake3
import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.signing

from chain.errors import InvalidKey, InvalidSignature, UnsealError, UsageError

PUBKEY_SIZE: Final = 32
SEED_SIZE: Final = 32
SIGNATURE_SIZE: Final = 64
DIGEST_SIZE: Final = 32
#: Longest chain id in bytes (its length is hashed as one byte; CometBFT also caps it at 50).
MAX_CHAIN_ID_BYTES: Final = 50
#: Extra bytes a sealed box adds to its plaintext.
SEAL_OVERHEAD: Final = 48

#: name -> tag, one per signed kind. Extend only with :func:`register_domain`.
DOMAINS: dict[str, bytes] = {}


def register_domain(name: str, tag: bytes) -> bytes:
    """Register the domain tag of a new signed kind and return it.

    Raises :class:`UsageError` if the name is taken, or the tag is empty, longer
    than 64 bytes, or a prefix of (or prefixed by) an existing tag.
    """
    if name in DOMAINS:
        raise UsageError(f"domain {name!r} is already registered")
    if not tag or len(tag) > 64:
        raise UsageError("a domain tag has 1 to 64 bytes")
    for other_name, other in DOMAINS.items():
        if tag.startswith(other) or other.startswith(tag):
            raise UsageError(f"domain tag {tag!r} overlaps the tag of {other_name!r}")
    DOMAINS[name] = tag
    return tag


#: A consensus vote (prevote or precommit); also covers commit signatures.
DOMAIN_VOTE: Final = register_domain("vote", b"blackhole/vote/v1\x00")
#: A block proposal.
DOMAIN_PROPOSAL: Final = register_domain("proposal", b"blackhole/proposal/v1\x00")
#: A transaction envelope of any lane.
DOMAIN_TX: Final = register_domain("tx", b"blackhole/tx/v1\x00")
#: Evidence submitted by a reporter in its own name (the evidence itself is signed votes).
DOMAIN_EVIDENCE: Final = register_domain("evidence", b"blackhole/evidence/v1\x00")
#: Key material delivery records (a seller's statement about a sealed key).
DOMAIN_KEY_DELIVERY: Final = register_domain("key_delivery", b"blackhole/key-delivery/v1\x00")
#: A node's statement binding its node key to its handshake (p2p identity).
DOMAIN_NODE_INFO: Final = register_domain("node_info", b"blackhole/node-info/v1\x00")


#: The chain id rule of headers and genesis files: a letter or digit, then letters, digits, ".", "_", "-".
CHAIN_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,49}")


def is_valid_chain_id(chain_id: object) -> bool:
    """True if ``chain_id`` is a str of 1..50 characters following :data:`CHAIN_ID_PATTERN`."""
    return type(chain_id) is str and CHAIN_ID_PATTERN.fullmatch(chain_id) is not None


def encode_chain_id(chain_id: str) -> bytes:
    """Return ``u8 len ‖ chain_id`` as hashed into every digest."""
    try:
        raw = chain_id.encode("ascii")
    except (UnicodeEncodeError, AttributeError) as exc:
        raise UsageError(f"chain id must be an ASCII string: {chain_id!r}") from exc
    if not 1 <= len(raw) <= MAX_CHAIN_ID_BYTES:
        raise UsageError(f"chain id must have 1 to {MAX_CHAIN_ID_BYTES} bytes: {chain_id!r}")
    return bytes((len(raw),)) + raw


def digest(domain: bytes, chain_id: str, payload: bytes) -> bytes:
    """BLAKE3(domain ‖ u8 len(chain_id) ‖ chain_id ‖ payload): the bytes that get signed."""
    h = blake3.blake3(domain)
    h.update(encode_chain_id(chain_id))
    h.update(payload)
    return h.digest()


def hash_bytes(data: bytes) -> bytes:
    """BLAKE3 of ``data`` (32 bytes): ids of transactions, blocks, votes."""
    return blake3.blake3(data).digest()


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An Ed25519 public key; as an account address it is just these 32 bytes."""

    raw: bytes
    """The 32-byte encoded key."""

    def __post_init__(self) -> None:
        if type(self.raw) is not bytes or len(self.raw) != PUBKEY_SIZE:
            raise InvalidKey(f"an Ed25519 public key has {PUBKEY_SIZE} bytes")

    def __bytes__(self) -> bytes:
        return self.raw

    def hex(self) -> str:
        return self.raw.hex()

    def verify(self, signature: bytes, digest_: bytes) -> bool:
        """True if ``signature`` is this key's signature of ``digest_``."""
        return verify(self.raw, signature, digest_)

    def to_x25519(self) -> bytes:
        """The X25519 public key derived from this Ed25519 key (for sealing)."""
        return ed25519_to_x25519_public(self.raw)


class PrivateKey:
    """An Ed25519 signing key, held as its 32-byte seed."""

    __slots__ = ("_signing", "public_key")

    def __init__(self, seed: bytes) -> None:
        if type(seed) is not bytes or len(seed) != SEED_SIZE:
            raise InvalidKey(f"an Ed25519 private seed has {SEED_SIZE} bytes")
        self._signing = nacl.signing.SigningKey(seed)
        self.public_key = PublicKey(bytes(self._signing.verify_key))

    @classmethod
    def generate(cls) -> PrivateKey:
        """A fresh key from the operating system's randomness."""
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @property
    def seed(self) -> bytes:
        """The 32-byte seed (secret: write it only to 0600 files)."""
        return bytes(self._signing)

    def sign(self, digest_: bytes) -> bytes:
        """The 64-byte signature of a 32-byte digest."""
        if type(digest_) is not bytes or len(digest_) != DIGEST_SIZE:
            raise UsageError(f"sign takes a {DIGEST_SIZE}-byte digest")
        return self._signing.sign(digest_).signature

    def sign_message(self, domain: bytes, chain_id: str, payload: bytes) -> bytes:
        """Sign ``digest(domain, chain_id, payload)``."""
        return self.sign(digest(domain, chain_id, payload))

    def to_x25519(self) -> nacl.public.PrivateKey:
        """The X25519 private key matching :meth:`PublicKey.to_x25519`."""
        sk = self._signing.encode() + self.public_key.raw
        return nacl.public.PrivateKey(nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(sk))

    def __repr__(self) -> str:
        return f"PrivateKey(public={self.public_key.hex()})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PrivateKey) and other.seed == self.seed

    def __hash__(self) -> int:
        return hash(self.public_key.raw)


def verify(pubkey: bytes, signature: bytes, digest_: bytes) -> bool:
    """True if ``signature`` is a valid Ed25519 signature of ``digest_`` by ``pubkey``.

    Malformed inputs (wrong lengths, a public key that is not a curve point)
    give False, never an exception.
    """
    if (
        type(pubkey) is not bytes
        or type(signature) is not bytes
        or type(digest_) is not bytes
        or len(pubkey) != PUBKEY_SIZE
        or len(signature) != SIGNATURE_SIZE
    ):
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + digest_, pubkey)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError):
        return False
    return True


def require_signature(pubkey: bytes, signature: bytes, digest_: bytes, what: str) -> None:
    """Raise :class:`InvalidSignature` naming ``what`` unless the signature verifies."""
    if not verify(pubkey, signature, digest_):
        raise InvalidSignature(f"bad signature on {what}")


def ed25519_to_x25519_public(pubkey: bytes) -> bytes:
    """Convert an Ed25519 public key to X25519; :class:`InvalidKey` if it is no curve point."""
    if type(pubkey) is not bytes or len(pubkey) != PUBKEY_SIZE:
        raise InvalidKey(f"an Ed25519 public key has {PUBKEY_SIZE} bytes")
    try:
        return bytes(nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(pubkey))
    except (nacl.exceptions.CryptoError, RuntimeError, ValueError) as exc:
        raise InvalidKey("the Ed25519 public key is not a valid curve point") from exc


def seal(recipient_pubkey: bytes, data: bytes) -> bytes:
    """Seal ``data`` to the owner of the Ed25519 key ``recipient_pubkey``.

    The result is ``SEAL_OVERHEAD`` bytes longer than ``data``; only
    :func:`unseal` with the matching private key opens it.
    """
    x_pub = nacl.public.PublicKey(ed25519_to_x25519_public(recipient_pubkey))
    return bytes(nacl.public.SealedBox(x_pub).encrypt(bytes(data)))


def unseal(private_key: PrivateKey, sealed: bytes) -> bytes:
    """Open a box made by :func:`seal`; :class:`UnsealError` if it is not ours or was altered."""
    if type(sealed) is not bytes or len(sealed) < SEAL_OVERHEAD:
        raise UnsealError("sealed box is truncated")
    try:
        return bytes(nacl.public.SealedBox(private_key.to_x25519()).decrypt(sealed))
    except nacl.exceptions.CryptoError as exc:
        raise UnsealError("sealed box does not open with this key") from exc
