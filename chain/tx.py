"""Transactions of the four lanes: the signed envelope and every body type.

Wire form (canonical msgpack, positional arrays)::

    tx   = [sender: bin32, nonce: uint, fee: uint, body, signature: bin64]
    body = [tag: uint, field_1, ..., field_k]          (fields per body type below)

The signature is Ed25519 by ``sender`` over
``digest(DOMAIN_TX, chain_id, pack([sender, nonce, fee, body]))``. Because a
msgpack array is its header followed by its elements, that payload is exactly
``0x94 ‖ tx_bytes[1:-66]`` (a fixarray of 4 instead of 5, without the trailing
66-byte bin8 signature), so a block's signatures are checked without
re-encoding anything (:func:`signed_payload`).

The body's tag decides its lane: 1-9 cards, 10-19 seeders, 20-29 keys, 30-39
txs. Decoding checks structure and hard caps only (types, sizes, counts);
the limits fixed in genesis (preview cap, tag count, payload cap, ...) are
rules of the state transition (chain.state), so they are reported as the
rule that failed. docs/spec-state.md lists every field and rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar, Protocol

import msgpack

from chain import crypto
from chain.encoding import (
    UINT64_MAX,
    pack_trusted,
    take_array,
    take_bytes,
    take_int,
    take_str,
    unpack_untrusted,
)
from chain.errors import DecodeError

HASH_SIZE = 32
ADDRESS_SIZE = crypto.PUBKEY_SIZE
SIGNATURE_SIZE = crypto.SIGNATURE_SIZE
#: Hard structural caps checked while decoding (genesis limits are tighter).
HARD_MAX_TX_BYTES = 104_857_600
HARD_MAX_ITEMS = 1024
HARD_MAX_STR = 4096
HARD_MAX_BYTES = 1 << 20
MAX_AMOUNT = 2**63 - 1


class Lane(IntEnum):
    CARDS = 0
    SEEDERS = 1
    KEYS = 2
    TXS = 3


LANE_NAMES = ("cards", "seeders", "keys", "txs")

CONTENT_TYPES = ("text", "image", "audio", "video", "software", "document", "other")
"""The documented content types of a card (each also names a feed)."""
CIPHERS = ("chacha20-poly1305",)
"""Cipher names a card may declare (chunked, counter nonces, last-chunk flag)."""
REACTIONS = ("none", "like", "love", "laugh", "wow", "sad", "angry")
"""React.reaction indexes this tuple; 0 withdraws the sender's reaction."""
MIN_CHUNK_SIZE = 1024
MAX_CHUNK_SIZE = 1 << 24
MAX_CONTENT_SIZE = 1 << 50
MAX_ROYALTY_BPS = 10_000


def _h(obj: Any, name: str) -> bytes:
    return take_bytes(obj, name, size=HASH_SIZE)


def _opt_h(obj: Any, name: str) -> bytes:
    return take_bytes(obj, name, sizes=(0, HASH_SIZE))


def _amount(obj: Any, name: str) -> int:
    return take_int(obj, name, 0, MAX_AMOUNT)


def _strs(obj: Any, name: str) -> tuple[str, ...]:
    items = take_array(obj, name, max_len=HARD_MAX_ITEMS)
    return tuple(take_str(x, f"{name}[{i}]", max_len=HARD_MAX_STR) for i, x in enumerate(items))


def _hashes(obj: Any, name: str) -> tuple[bytes, ...]:
    items = take_array(obj, name, max_len=HARD_MAX_ITEMS)
    return tuple(_h(x, f"{name}[{i}]") for i, x in enumerate(items))


class Body(Protocol):
    TAG: ClassVar[int]
    LANE: ClassVar[Lane]

    def fields(self) -> list[Any]: ...


# --- cards lane -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyOffer:
    """The sale terms of a card's key tokens (its key class)."""

    price: int
    """Primary-sale price in tokens."""
    supply_cap: int
    """Most keys ever sold by the creator; 0 = unlimited."""
    royalty_bps: int
    """Creator's share of every resale price, in basis points (default rule)."""
    delivery_timeout: int
    """Heights the seller has to deliver a sealed key; 0 = the genesis default."""
    program: bytes
    """The key class's VM rule program deciding resales; b"" = the default rule."""
    params: tuple[int, ...]
    """Parameters handed to the program (vm.Context.params)."""

    def fields(self) -> list[Any]:
        return [self.price, self.supply_cap, self.royalty_bps, self.delivery_timeout, self.program, list(self.params)]

    @classmethod
    def from_fields(cls, obj: Any) -> KeyOffer:
        f = take_array(obj, "offer", 6)
        params = take_array(f[5], "offer.params", max_len=64)
        return cls(
            price=_amount(f[0], "offer.price"),
            supply_cap=_amount(f[1], "offer.supply_cap"),
            royalty_bps=take_int(f[2], "offer.royalty_bps", 0, MAX_ROYALTY_BPS),
            delivery_timeout=_amount(f[3], "offer.delivery_timeout"),
            program=take_bytes(f[4], "offer.program", max_len=HARD_MAX_BYTES),
            params=tuple(take_int(p, f"offer.params[{i}]", 0, MAX_AMOUNT) for i, p in enumerate(params)),
        )


@dataclass(frozen=True, slots=True)
class PublishCard:
    """Publish a hash card; its id is compute_card_id(sender, nonce)."""

    TAG: ClassVar[int] = 1
    LANE: ClassVar[Lane] = Lane.CARDS
    content_root: bytes
    """BLAKE3 root of the content's ciphertext (32 bytes)."""
    size: int
    """Ciphertext size in bytes (1 .. 2**50)."""
    chunk_size: int
    """Chunk size, a power of two in [1 KiB, 16 MiB]."""
    cipher: str
    """One of CIPHERS."""
    content_type: str
    """One of CONTENT_TYPES."""
    title: str
    """UTF-8, 1 .. max_title_bytes."""
    tags: tuple[str, ...]
    """Distinct, each 1 .. max_tag_bytes; at most max_tags."""
    links: tuple[bytes, ...]
    """32-byte ids of other cards or content roots; at most max_links."""
    preview: bytes
    """Inline preview, at most max_preview_bytes (b"" if none or by hash)."""
    preview_hash: bytes
    """BLAKE3 of an off-chain preview (32 bytes) or b""; not both with preview."""
    parent: bytes
    """Card id this card comments on, or b""."""
    offer: KeyOffer | None
    """Key sale terms, or None for a card whose key is not sold."""

    def fields(self) -> list[Any]:
        return [
            self.content_root, self.size, self.chunk_size, self.cipher, self.content_type, self.title,
            list(self.tags), list(self.links), self.preview, self.preview_hash, self.parent,
            None if self.offer is None else self.offer.fields(),
        ]  # fmt: skip

    @classmethod
    def from_fields(cls, f: list[Any]) -> PublishCard:
        take_array(f, "publish", 12)
        return cls(
            content_root=_h(f[0], "content_root"),
            size=take_int(f[1], "size", 0, MAX_CONTENT_SIZE),
            chunk_size=take_int(f[2], "chunk_size", 0, MAX_CHUNK_SIZE),
            cipher=take_str(f[3], "cipher", max_len=64),
            content_type=take_str(f[4], "content_type", max_len=64),
            title=take_str(f[5], "title", max_len=HARD_MAX_STR),
            tags=_strs(f[6], "tags"),
            links=_hashes(f[7], "links"),
            preview=take_bytes(f[8], "preview", max_len=HARD_MAX_BYTES),
            preview_hash=_opt_h(f[9], "preview_hash"),
            parent=_opt_h(f[10], "parent"),
            offer=None if f[11] is None else KeyOffer.from_fields(f[11]),
        )


@dataclass(frozen=True, slots=True)
class UpdateCard:
    """Change a card's title, links and preview (creator only; root, tags, offer fixed)."""

    TAG: ClassVar[int] = 2
    LANE: ClassVar[Lane] = Lane.CARDS
    card_id: bytes
    title: str
    links: tuple[bytes, ...]
    preview: bytes
    preview_hash: bytes

    def fields(self) -> list[Any]:
        return [self.card_id, self.title, list(self.links), self.preview, self.preview_hash]

    @classmethod
    def from_fields(cls, f: list[Any]) -> UpdateCard:
        take_array(f, "update", 5)
        return cls(
            card_id=_h(f[0], "card_id"),
            title=take_str(f[1], "title", max_len=HARD_MAX_STR),
            links=_hashes(f[2], "links"),
            preview=take_bytes(f[3], "preview", max_len=HARD_MAX_BYTES),
            preview_hash=_opt_h(f[4], "preview_hash"),
        )


@dataclass(frozen=True, slots=True)
class React:
    """Set (or with reaction 0 withdraw) the sender's reaction to a card."""

    TAG: ClassVar[int] = 3
    LANE: ClassVar[Lane] = Lane.CARDS
    card_id: bytes
    reaction: int
    """Index into REACTIONS."""

    def fields(self) -> list[Any]:
        return [self.card_id, self.reaction]

    @classmethod
    def from_fields(cls, f: list[Any]) -> React:
        take_array(f, "react", 2)
        return cls(_h(f[0], "card_id"), take_int(f[1], "reaction", 0, len(REACTIONS) - 1))


@dataclass(frozen=True, slots=True)
class Follow:
    """Follow a creator (an account address)."""

    TAG: ClassVar[int] = 4
    LANE: ClassVar[Lane] = Lane.CARDS
    creator: bytes

    def fields(self) -> list[Any]:
        return [self.creator]

    @classmethod
    def from_fields(cls, f: list[Any]) -> Follow:
        take_array(f, "follow", 1)
        return cls(_h(f[0], "creator"))


@dataclass(frozen=True, slots=True)
class Unfollow:
    """Stop following a creator."""

    TAG: ClassVar[int] = 5
    LANE: ClassVar[Lane] = Lane.CARDS
    creator: bytes

    def fields(self) -> list[Any]:
        return [self.creator]

    @classmethod
    def from_fields(cls, f: list[Any]) -> Unfollow:
        take_array(f, "unfollow", 1)
        return cls(_h(f[0], "creator"))


# --- seeders lane ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Announce:
    """Add or refresh the sender's seeder entry for a content root."""

    TAG: ClassVar[int] = 10
    LANE: ClassVar[Lane] = Lane.SEEDERS
    content_root: bytes
    addresses: tuple[str, ...]
    """QUIC addresses ("host:port"), 1 .. max_addresses, each at most 128 bytes."""
    ranges: tuple[tuple[int, int], ...]
    """Chunk ranges held, [start, stop) each, ascending and disjoint."""
    expiry_height: int
    """The entry lapses at this height (height < expiry <= height + seeder_max_ttl)."""

    def fields(self) -> list[Any]:
        return [self.content_root, list(self.addresses), [list(r) for r in self.ranges], self.expiry_height]

    @classmethod
    def from_fields(cls, f: list[Any]) -> Announce:
        take_array(f, "announce", 4)
        ranges = []
        for i, r in enumerate(take_array(f[2], "ranges", max_len=65_536)):
            pair = take_array(r, f"ranges[{i}]", 2)
            ranges.append((take_int(pair[0], f"ranges[{i}].start"), take_int(pair[1], f"ranges[{i}].stop")))
        return cls(
            content_root=_h(f[0], "content_root"),
            addresses=_strs(f[1], "addresses"),
            ranges=tuple(ranges),
            expiry_height=take_int(f[3], "expiry_height"),
        )


@dataclass(frozen=True, slots=True)
class Withdraw:
    """Remove the sender's seeder entry for a content root."""

    TAG: ClassVar[int] = 11
    LANE: ClassVar[Lane] = Lane.SEEDERS
    content_root: bytes

    def fields(self) -> list[Any]:
        return [self.content_root]

    @classmethod
    def from_fields(cls, f: list[Any]) -> Withdraw:
        take_array(f, "withdraw", 1)
        return cls(_h(f[0], "content_root"))


# --- keys lane ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BuyKey:
    """Pay into escrow for a key: serial 0 = next primary sale, else a listed resale."""

    TAG: ClassVar[int] = 20
    LANE: ClassVar[Lane] = Lane.KEYS
    card_id: bytes
    serial: int
    max_price: int
    """The buyer's limit: the sale fails if the price is higher."""

    def fields(self) -> list[Any]:
        return [self.card_id, self.serial, self.max_price]

    @classmethod
    def from_fields(cls, f: list[Any]) -> BuyKey:
        take_array(f, "buy", 3)
        return cls(_h(f[0], "card_id"), take_int(f[1], "serial"), _amount(f[2], "max_price"))


@dataclass(frozen=True, slots=True)
class DeliverKey:
    """The escrow's seller delivers key material sealed to the buyer; releases payment."""

    TAG: ClassVar[int] = 21
    LANE: ClassVar[Lane] = Lane.KEYS
    card_id: bytes
    serial: int
    sealed_key: bytes
    """chain.crypto.seal(buyer, content key); the chain cannot read it."""

    def fields(self) -> list[Any]:
        return [self.card_id, self.serial, self.sealed_key]

    @classmethod
    def from_fields(cls, f: list[Any]) -> DeliverKey:
        take_array(f, "deliver", 3)
        return cls(
            _h(f[0], "card_id"),
            take_int(f[1], "serial", 1),
            take_bytes(f[2], "sealed_key", max_len=HARD_MAX_BYTES),
        )


@dataclass(frozen=True, slots=True)
class ListKey:
    """Offer an owned key for resale at a price; price 0 withdraws the listing."""

    TAG: ClassVar[int] = 22
    LANE: ClassVar[Lane] = Lane.KEYS
    card_id: bytes
    serial: int
    price: int

    def fields(self) -> list[Any]:
        return [self.card_id, self.serial, self.price]

    @classmethod
    def from_fields(cls, f: list[Any]) -> ListKey:
        take_array(f, "list", 3)
        return cls(_h(f[0], "card_id"), take_int(f[1], "serial", 1), _amount(f[2], "price"))


@dataclass(frozen=True, slots=True)
class TransferKey:
    """Give an owned key to another account, with key material sealed to it."""

    TAG: ClassVar[int] = 23
    LANE: ClassVar[Lane] = Lane.KEYS
    card_id: bytes
    serial: int
    to: bytes
    sealed_key: bytes

    def fields(self) -> list[Any]:
        return [self.card_id, self.serial, self.to, self.sealed_key]

    @classmethod
    def from_fields(cls, f: list[Any]) -> TransferKey:
        take_array(f, "transfer_key", 4)
        return cls(
            _h(f[0], "card_id"),
            take_int(f[1], "serial", 1),
            _h(f[2], "to"),
            take_bytes(f[3], "sealed_key", max_len=HARD_MAX_BYTES),
        )


# --- txs lane -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transfer:
    """Move tokens to another account."""

    TAG: ClassVar[int] = 30
    LANE: ClassVar[Lane] = Lane.TXS
    to: bytes
    amount: int

    def fields(self) -> list[Any]:
        return [self.to, self.amount]

    @classmethod
    def from_fields(cls, f: list[Any]) -> Transfer:
        take_array(f, "transfer", 2)
        return cls(_h(f[0], "to"), _amount(f[1], "amount"))


@dataclass(frozen=True, slots=True)
class Bond:
    """Lock tokens as the sender's validator stake (power changes at height + 2)."""

    TAG: ClassVar[int] = 31
    LANE: ClassVar[Lane] = Lane.TXS
    amount: int

    def fields(self) -> list[Any]:
        return [self.amount]

    @classmethod
    def from_fields(cls, f: list[Any]) -> Bond:
        take_array(f, "bond", 1)
        return cls(_amount(f[0], "amount"))


@dataclass(frozen=True, slots=True)
class Unbond:
    """Unlock stake; power drops and the tokens return at height + 2."""

    TAG: ClassVar[int] = 32
    LANE: ClassVar[Lane] = Lane.TXS
    amount: int

    def fields(self) -> list[Any]:
        return [self.amount]

    @classmethod
    def from_fields(cls, f: list[Any]) -> Unbond:
        take_array(f, "unbond", 1)
        return cls(_amount(f[0], "amount"))


@dataclass(frozen=True, slots=True)
class SubmitEvidence:
    """Report misbehaviour: the bytes of a chain.types.DuplicateVoteEvidence."""

    TAG: ClassVar[int] = 33
    LANE: ClassVar[Lane] = Lane.TXS
    evidence: bytes

    def fields(self) -> list[Any]:
        return [self.evidence]

    @classmethod
    def from_fields(cls, f: list[Any]) -> SubmitEvidence:
        take_array(f, "evidence", 1)
        return cls(take_bytes(f[0], "evidence", max_len=HARD_MAX_BYTES))


@dataclass(frozen=True, slots=True)
class Generic:
    """An application transaction: recorded in state and indexed by kind."""

    TAG: ClassVar[int] = 34
    LANE: ClassVar[Lane] = Lane.TXS
    kind: bytes
    """1 .. max_generic_kind_bytes (<= 32) bytes."""
    payload: bytes
    """Opaque, at most max_generic_payload_bytes."""

    def fields(self) -> list[Any]:
        return [self.kind, self.payload]

    @classmethod
    def from_fields(cls, f: list[Any]) -> Generic:
        take_array(f, "generic", 2)
        kind = take_bytes(f[0], "kind", max_len=32)
        if not kind:
            raise DecodeError("kind: must not be empty")
        return cls(kind, take_bytes(f[1], "payload", max_len=HARD_MAX_TX_BYTES))


AnyBody = (
    PublishCard | UpdateCard | React | Follow | Unfollow | Announce | Withdraw
    | BuyKey | DeliverKey | ListKey | TransferKey | Transfer | Bond | Unbond | SubmitEvidence | Generic
)  # fmt: skip

BODY_TYPES: dict[int, Any] = {
    cls.TAG: cls
    for cls in (
        PublishCard, UpdateCard, React, Follow, Unfollow, Announce, Withdraw, BuyKey,
        DeliverKey, ListKey, TransferKey, Transfer, Bond, Unbond, SubmitEvidence, Generic,
    )
}  # fmt: skip


def encode_body(body: AnyBody) -> list[Any]:
    return [body.TAG, *body.fields()]


def decode_body(obj: Any) -> AnyBody:
    arr = take_array(obj, "body", max_len=16)
    if not arr:
        raise DecodeError("body: empty")
    tag = take_int(arr[0], "body.tag", 0, 255)
    cls = BODY_TYPES.get(tag)
    if cls is None:
        raise DecodeError(f"body.tag: unknown transaction type {tag}")
    body: AnyBody = cls.from_fields(arr[1:])
    return body


@dataclass(frozen=True, slots=True)
class Tx:
    """A signed transaction envelope."""

    sender: bytes
    """The sender's account address (Ed25519 public key)."""
    nonce: int
    """Exactly the sender's account nonce (0 for a new account); strictly sequential."""
    fee: int
    """Tokens paid to the block's proposer; at least max(min_fee, fee_per_byte * len(tx_bytes))."""
    body: AnyBody
    """What the transaction does; its type decides the lane."""
    signature: bytes
    """Ed25519 by sender over digest(DOMAIN_TX, chain_id, pack([sender, nonce, fee, body]))."""

    @property
    def lane(self) -> Lane:
        return self.body.LANE

    def unsigned_fields(self) -> list[Any]:
        return [self.sender, self.nonce, self.fee, encode_body(self.body)]

    def encode(self) -> bytes:
        return pack_trusted([*self.unsigned_fields(), self.signature])

    def signing_digest(self, chain_id: str) -> bytes:
        return crypto.digest(crypto.DOMAIN_TX, chain_id, pack_trusted(self.unsigned_fields()))

    def verify_signature(self, chain_id: str) -> bool:
        return crypto.verify(self.sender, self.signature, self.signing_digest(chain_id))

    @classmethod
    def create(
        cls, key: crypto.PrivateKey, chain_id: str, nonce: int, fee: int, body: AnyBody
    ) -> Tx:
        """Build and sign a transaction from `key`'s account."""
        unsigned = cls(key.public_key.raw, nonce, fee, body, b"")
        sig = key.sign(unsigned.signing_digest(chain_id))
        return cls(key.public_key.raw, nonce, fee, body, sig)

    @classmethod
    def decode_untrusted(cls, data: bytes, max_size: int = HARD_MAX_TX_BYTES) -> Tx:
        """Decode canonical tx bytes; raises chain.errors.DecodeError only.

        Fast path for well-formed input: msgpack decodes (maps and extension
        types refused), the typed field checks fix every type and range, and what
        was decoded must re-encode to exactly `data` (canonical form). Anything
        the fast path refuses goes through chain.encoding.unpack_untrusted for
        the precise error.
        """
        if type(data) is bytes and 0 < len(data) <= max_size:
            try:
                obj = msgpack.unpackb(
                    data, raw=False, use_list=True, strict_map_key=True,
                    object_pairs_hook=_refuse, ext_hook=_refuse,
                )  # fmt: skip
            except Exception:  # malformed: the slow path names the error
                obj = None
            if obj is not None:
                tx = cls._from_array(obj)
                if msgpack.packb(obj, use_bin_type=True) != data:
                    raise DecodeError("non-canonical encoding (re-encoding differs)")
                return tx
        return cls._from_array(unpack_untrusted(data, max_size))

    @classmethod
    def _from_array(cls, obj: Any) -> Tx:
        arr = take_array(obj, "tx", 5)
        return cls(
            sender=take_bytes(arr[0], "sender", size=ADDRESS_SIZE),
            nonce=take_int(arr[1], "nonce", 0, UINT64_MAX),
            fee=_amount(arr[2], "fee"),
            body=decode_body(arr[3]),
            signature=take_bytes(arr[4], "signature", size=SIGNATURE_SIZE),
        )


def _refuse(*_: Any) -> Any:
    raise ValueError("maps and extension types are not canonical")


_SIG_SUFFIX = 2 + SIGNATURE_SIZE  # bin8 header (0xc4, 64) + the signature


def signed_payload(tx_bytes: bytes) -> bytes:
    """pack([sender, nonce, fee, body]) of canonical tx bytes, without re-encoding (see module doc)."""
    return b"\x94" + tx_bytes[1:-_SIG_SUFFIX]


def signature_of(tx_bytes: bytes) -> bytes:
    return tx_bytes[-SIGNATURE_SIZE:]


def tx_hash(tx_bytes: bytes) -> bytes:
    return crypto.hash_bytes(tx_bytes)


def compute_card_id(creator: bytes, nonce: int) -> bytes:
    """The id of the card published by `creator`'s transaction with `nonce`."""
    return crypto.hash_bytes(b"blackhole/card\x00" + creator + nonce.to_bytes(8, "big"))
