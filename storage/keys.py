"""Every LevelDB key layout of the node, in one place.

A key is a two-byte namespace followed by fixed-width fields. Integers are
big-endian and unsigned (u8, u16, u32, u64) so that byte order is numeric order and
a forward scan of a prefix walks heights upwards. Variable-length fields (index
names, tx kinds) carry a one-byte or two-byte length before them so no key of one
family is a prefix of a key of another one.

Namespaces (the first byte says who owns the key, the second which family):

    S n  u64 version ‖ nibble path       state tree node                 (storage.state)
    S v  key hash(32) ‖ u64 version       state value record              (storage.state)
    S r  u64 version                      state root pointer              (storage.state)
    S s  u64 version                      keys and nodes made stale at it (storage.state)
    B b  u64 height                       block bytes                     (storage.blocks)
    B c  u64 height                       commit bytes                    (storage.blocks)
    B i  u64 height                       block hash                      (storage.blocks)
    B h  block hash(32)                   u64 height                      (storage.blocks)
    I t  tx hash(32)                      u64 height ‖ u32 index          (chain/, node/)
    I s  sender(32) ‖ u64 height ‖ u32 index          tx hash             (chain/, node/)
    I k  u8 len ‖ kind ‖ u64 height ‖ u32 index       tx hash             (chain/, node/)
    I g  u8 len ‖ name ‖ key                          caller's value      (generic indexes)
    V v  u64 height                       validator set in force at height
    M m  u8 len ‖ name                    node metadata (single values); "store" holds
                                          the marker LevelKV writes when it creates a store

Callers outside storage/ ask this module for keys and never build one themselves.
"""

from __future__ import annotations

import struct

from storage.errors import KeyLayoutError

HASH_LEN = 32
U64_MAX = (1 << 64) - 1
U32_MAX = (1 << 32) - 1
MAX_NAME_LEN = 64

STATE_NODE = b"Sn"
STATE_VALUE = b"Sv"
STATE_ROOT = b"Sr"
STATE_STALE = b"Ss"
BLOCK = b"Bb"
BLOCK_COMMIT = b"Bc"
BLOCK_HASH_BY_HEIGHT = b"Bi"
BLOCK_HEIGHT_BY_HASH = b"Bh"
TX_BY_HASH = b"It"
TX_BY_SENDER = b"Is"
TX_BY_KIND = b"Ik"
GENERIC_INDEX = b"Ig"
VALIDATORS = b"Vv"
META = b"Mm"

# Written when a LevelKV store is created; its absence on open means lost tables.
# The suffix is the on-disk layout version (v1: one state tree node per record); a
# store of another version is refused (storage.errors.UnsupportedLayoutError).
STORE_MARKER_KEY = META + b"\x05store"
STORE_MARKER_FAMILY = b"blackhole-store-v"
STORE_MARKER = STORE_MARKER_FAMILY + b"1"

_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_U64_U32 = struct.Struct(">QI")


def u64(n: int) -> bytes:
    """Fixed-width big-endian encoding of an unsigned 64-bit integer."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 0 or n > U64_MAX:
        raise KeyLayoutError(f"not a u64: {n!r}")
    return _U64.pack(n)


def u32(n: int) -> bytes:
    """Fixed-width big-endian encoding of an unsigned 32-bit integer."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 0 or n > U32_MAX:
        raise KeyLayoutError(f"not a u32: {n!r}")
    return _U32.pack(n)


def decode_u64(data: bytes) -> int:
    if len(data) != 8:
        raise KeyLayoutError(f"u64 needs 8 bytes, got {len(data)}")
    return int(_U64.unpack(data)[0])


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with `prefix` (None: no bound)."""
    p = bytearray(prefix)
    while p:
        if p[-1] != 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return None


def _hash32(h: bytes, what: str) -> bytes:
    if not isinstance(h, bytes) or len(h) != HASH_LEN:
        raise KeyLayoutError(f"{what} must be {HASH_LEN} bytes")
    return h


def _name(name: str | bytes, what: str) -> bytes:
    raw = name.encode() if isinstance(name, str) else name
    if not isinstance(raw, bytes) or not 0 < len(raw) <= MAX_NAME_LEN:
        raise KeyLayoutError(f"{what} must be 1..{MAX_NAME_LEN} bytes")
    return bytes([len(raw)]) + raw


# -- state tree (storage.state) ---------------------------------------------------


def state_node_key(version: int, path: bytes) -> bytes:
    """Node of the state tree written at `version`; `path` is an encoded nibble path
    (see storage.state.encode_path)."""
    return STATE_NODE + u64(version) + path


def state_node_version_prefix(version: int) -> bytes:
    return STATE_NODE + u64(version)


def state_value_key(key_hash: bytes, version: int) -> bytes:
    """Value record of the state key whose BLAKE3 is `key_hash`, as set at `version`."""
    return STATE_VALUE + _hash32(key_hash, "key hash") + u64(version)


def state_value_prefix(key_hash: bytes) -> bytes:
    return STATE_VALUE + _hash32(key_hash, "key hash")


def state_root_key(version: int) -> bytes:
    return STATE_ROOT + u64(version)


def state_stale_key(version: int) -> bytes:
    return STATE_STALE + u64(version)


# -- block store (storage.blocks) -------------------------------------------------


def block_key(height: int) -> bytes:
    return BLOCK + u64(height)


def commit_key(height: int) -> bytes:
    return BLOCK_COMMIT + u64(height)


def block_hash_key(height: int) -> bytes:
    return BLOCK_HASH_BY_HEIGHT + u64(height)


def block_height_key(block_hash: bytes) -> bytes:
    return BLOCK_HEIGHT_BY_HASH + _hash32(block_hash, "block hash")


# -- indexes used by chain/ and node/ ---------------------------------------------


def tx_key(tx_hash: bytes) -> bytes:
    """Tx hash -> location; the value is `tx_location(height, index)`."""
    return TX_BY_HASH + _hash32(tx_hash, "tx hash")


def tx_location(height: int, index: int) -> bytes:
    """Value stored under `tx_key`: u64 height ‖ u32 index in the block."""
    return u64(height) + u32(index)


def decode_tx_location(data: bytes) -> tuple[int, int]:
    if not isinstance(data, bytes) or len(data) != 12:
        raise KeyLayoutError("a tx location is 12 bytes")
    height, index = _U64_U32.unpack(data)
    return int(height), int(index)


def sender_tx_prefix(sender: bytes) -> bytes:
    """Prefix of every tx of `sender`; a forward scan yields them in height order."""
    return TX_BY_SENDER + _hash32(sender, "sender")


def sender_tx_key(sender: bytes, height: int, index: int) -> bytes:
    return sender_tx_prefix(sender) + u64(height) + u32(index)


def kind_tx_prefix(kind: str | bytes) -> bytes:
    """Prefix of every generic tx of `kind`, in height order."""
    return TX_BY_KIND + _name(kind, "tx kind")


def kind_tx_key(kind: str | bytes, height: int, index: int) -> bytes:
    return kind_tx_prefix(kind) + u64(height) + u32(index)


def height_index_of(key: bytes) -> tuple[int, int]:
    """The (height, index) that ends a sender or kind index key."""
    if len(key) < 12:
        raise KeyLayoutError("key too short to end in height and index")
    height, index = _U64_U32.unpack(key[-12:])
    return int(height), int(index)


def index_prefix(name: str | bytes) -> bytes:
    """Prefix of the generic index `name` (for example b"cards_by_creator")."""
    return GENERIC_INDEX + _name(name, "index name")


def index_key(name: str | bytes, key: bytes) -> bytes:
    """Key `key` of the generic index `name`. Build `key` from fixed-width parts
    (hashes, `u64`, `u32`) so that scans come out in a useful order."""
    if not isinstance(key, bytes):
        raise KeyLayoutError("index key must be bytes")
    return index_prefix(name) + key


def index_key_at(name: str | bytes, key: bytes, height: int, index: int = 0) -> bytes:
    """Generic index entry ordered by height under `key` (for example a card's
    reactions in height order): name ‖ key ‖ u64 height ‖ u32 index."""
    return index_key(name, key) + u64(height) + u32(index)


def validators_key(height: int) -> bytes:
    """Validator set in force at `height`."""
    return VALIDATORS + u64(height)


def meta_key(name: str | bytes) -> bytes:
    """A single named value of the node (for example b"genesis_hash")."""
    return META + _name(name, "meta name")
