"""State proofs: encoding, strict decoding and verification. Pure: no plyvel, no trio.

Theory of operation (see docs/storage.md for the full picture). The state tree is a
16-way sparse Merkle tree over the 64 nibbles of `blake3(key)`:

    leaf hash     = blake3(0x00 ‖ key_hash ‖ blake3(value))
    internal hash = blake3(0x01 ‖ u16 bitmap ‖ hashes of the present children, nibble order)
    empty tree    = EMPTY_ROOT (32 zero bytes)

A subtree holding one key is that key's leaf, placed as high as it is unique. A
proof lists, from the root down, each internal node on the key's path as its bitmap
and the hashes of its other children, and ends in one of:

  * a leaf (key_hash, value_hash): the key's own leaf (inclusion), or another key's
    leaf sitting where the key would be (absence, that leaf's key shares the path);
  * nothing: the key's nibble is not set in the last node's bitmap (absence; the
    last level then carries all of that node's children), or the tree is empty.

The verifier rebuilds the hashes bottom-up and compares with the root.

Encoding (all fixed-width, big-endian):

    u8 depth ‖ u8 terminal (0 none, 1 leaf) ‖ [key_hash ‖ value_hash if leaf]
    ‖ depth × (u16 bitmap ‖ sibling hashes)
"""

from __future__ import annotations

from dataclasses import dataclass

from blake3 import blake3

from storage.errors import ProofDecodeError

EMPTY_ROOT = bytes(32)
"""Root of the empty tree: 32 zero bytes (no hash preimage is known for it)."""

HASH_LEN = 32
MAX_DEPTH = 64
MAX_PROOF_BYTES = 2 + 2 * HASH_LEN + MAX_DEPTH * (2 + 16 * HASH_LEN)
LEAF_TAG = b"\x00"
NODE_TAG = b"\x01"

_POPCOUNT = tuple(bin(i).count("1") for i in range(1 << 16))


def leaf_hash(key_hash: bytes, value_hash: bytes) -> bytes:
    return blake3(LEAF_TAG + key_hash + value_hash).digest()


def value_hash(value: bytes) -> bytes:
    return blake3(value).digest()


def key_hash(key: bytes) -> bytes:
    return blake3(key).digest()


@dataclass(frozen=True, slots=True)
class Proof:
    """Proof of a key's value, or of its absence, against a state root."""

    levels: tuple[tuple[int, bytes], ...]
    """From the root down: (child bitmap, concatenated hashes of the other children)."""
    leaf: tuple[bytes, bytes] | None
    """(key_hash, value_hash) of the leaf the path ends in; None if it ends in no child."""

    def encode(self) -> bytes:
        parts = [bytes([len(self.levels), 0 if self.leaf is None else 1])]
        if self.leaf is not None:
            parts.append(self.leaf[0])
            parts.append(self.leaf[1])
        for bitmap, siblings in self.levels:
            parts.append(bitmap.to_bytes(2, "big"))
            parts.append(siblings)
        return b"".join(parts)

    @classmethod
    def decode_untrusted(cls, data: bytes) -> Proof:
        """Parse proof bytes from a peer. Raises ProofDecodeError for anything that is
        not exactly the encoding of a well-formed proof."""
        if not isinstance(data, bytes):
            raise ProofDecodeError("proof must be bytes")
        n = len(data)
        if n > MAX_PROOF_BYTES:
            raise ProofDecodeError(f"proof is {n} bytes, limit {MAX_PROOF_BYTES}")
        if n < 2:
            raise ProofDecodeError("proof truncated: no header")
        depth, terminal = data[0], data[1]
        if depth > MAX_DEPTH:
            raise ProofDecodeError(f"proof depth {depth} exceeds {MAX_DEPTH}")
        if terminal > 1:
            raise ProofDecodeError(f"unknown proof terminal {terminal}")
        pos = 2
        leaf: tuple[bytes, bytes] | None = None
        if terminal == 1:
            if n < pos + 2 * HASH_LEN:
                raise ProofDecodeError("proof truncated in its leaf")
            leaf = (data[pos : pos + HASH_LEN], data[pos + HASH_LEN : pos + 2 * HASH_LEN])
            pos += 2 * HASH_LEN
        levels = []
        for i in range(depth):
            if n < pos + 2:
                raise ProofDecodeError(f"proof truncated at level {i}")
            bitmap = (data[pos] << 8) | data[pos + 1]
            pos += 2
            count = _POPCOUNT[bitmap]
            if count == 0:
                raise ProofDecodeError(f"empty bitmap at level {i}")
            if leaf is not None or i != depth - 1:
                count -= 1
            end = pos + count * HASH_LEN
            if n < end:
                raise ProofDecodeError(f"proof truncated at level {i}")
            levels.append((bitmap, data[pos:end]))
            pos = end
        if pos != n:
            raise ProofDecodeError(f"{n - pos} trailing bytes after proof")
        return cls(tuple(levels), leaf)


def verify_proof(root: bytes, key: bytes, value: bytes | None, proof: Proof) -> bool:
    """True iff `proof` shows that `key` maps to `value` (None: is absent) in the
    tree whose root hash is `root`. Never raises for well-typed arguments."""
    if type(root) is not bytes or len(root) != HASH_LEN or type(key) is not bytes:
        return False
    if not isinstance(proof, Proof) or (value is not None and type(value) is not bytes):
        return False
    levels = proof.levels
    depth = len(levels)
    if depth > MAX_DEPTH:
        return False
    kh = blake3(key).digest()
    leaf = proof.leaf
    if leaf is not None:
        lk, lv = leaf
        if len(lk) != HASH_LEN or len(lv) != HASH_LEN:
            return False
        if value is None:
            if lk == kh:
                return False
            # The other leaf must lie on the key's path: same first `depth` nibbles.
            half = depth >> 1
            if lk[:half] != kh[:half] or (depth & 1 and (lk[half] ^ kh[half]) & 0xF0):
                return False
        elif lk != kh or lv != blake3(value).digest():
            return False
        cur = blake3(LEAF_TAG + lk + lv).digest()
        i = depth - 1
    else:
        if value is not None:
            return False
        if depth == 0:
            return root == EMPTY_ROOT
        i = depth - 1
        bitmap, siblings = levels[i]
        byte = kh[i >> 1]
        nib = byte & 0x0F if i & 1 else byte >> 4
        if bitmap >> nib & 1 or len(siblings) != _POPCOUNT[bitmap] * HASH_LEN:
            return False
        cur = blake3(NODE_TAG + bitmap.to_bytes(2, "big") + siblings).digest()
        i -= 1
    while i >= 0:
        bitmap, siblings = levels[i]
        byte = kh[i >> 1]
        nib = byte & 0x0F if i & 1 else byte >> 4
        if not bitmap >> nib & 1:
            return False
        at = _POPCOUNT[bitmap & ((1 << nib) - 1)] * HASH_LEN
        if len(siblings) != (_POPCOUNT[bitmap] - 1) * HASH_LEN:
            return False
        cur = blake3(
            NODE_TAG + bitmap.to_bytes(2, "big") + siblings[:at] + cur + siblings[at:]
        ).digest()
        i -= 1
    return cur == root
