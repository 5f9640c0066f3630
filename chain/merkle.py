"""Binary Merkle trees over a list of leaves, with inclusion proofs.

Theory of operation. The tree over ``n`` leaves has the shape of RFC 6962
(Certificate Transparency): the left subtree holds the largest power of two
strictly below ``n`` leaves. Built bottom-up, level by level, that is the same
as pairing neighbours and carrying an odd last node up unchanged. Hashing is
domain-separated so a leaf can never pass for an inner node::

    leaf_hash(x)     = BLAKE3(0x00 ‖ x)
    inner_hash(l, r) = BLAKE3(0x01 ‖ l ‖ r)
    root(leaves)     = BLAKE3(0x02 ‖ u64be(n) ‖ top)    n >= 1, top = tree's top node
    root([])         = EMPTY_ROOT = BLAKE3(b"")

The root binds the leaf count: an RFC 6962 top node alone does not (the proof
of leaf 0 of [x, x, x] also proves leaf 0 of a 4-leaf tree), and a light client
that checks "these are ALL transactions of the lane" needs the count.

A proof for leaf ``i`` of ``n`` is the list of sibling hashes from the leaf up
(levels where the node is carried up add none). The verifier recomputes the
path from ``(index, total)`` alone, consumes exactly every sibling, and compares
with the root; it is pure (the light client imports it).

Uses: lane roots (leaves are the lane's transaction hashes), evidence hash
(leaves are the encoded evidence), last commit hash and validators hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import blake3

from chain.encoding import pack, take_array, take_bytes, take_int, unpack_untrusted
from chain.errors import UsageError

LEAF_PREFIX = b"\x00"
INNER_PREFIX = b"\x01"
ROOT_PREFIX = b"\x02"
EMPTY_ROOT = blake3.blake3(b"").digest()
#: Most leaves a tree may have (so a proof has at most 32 siblings).
MAX_LEAVES = 2**32
MAX_PROOF_DEPTH = 32


def leaf_hash(leaf: bytes) -> bytes:
    """BLAKE3(0x00 ‖ leaf)."""
    return blake3.blake3(LEAF_PREFIX + leaf).digest()


def inner_hash(left: bytes, right: bytes) -> bytes:
    """BLAKE3(0x01 ‖ left ‖ right)."""
    return blake3.blake3(INNER_PREFIX + left + right).digest()


def size_bound_root(total: int, top: bytes) -> bytes:
    """BLAKE3(0x02 ‖ u64be(total) ‖ top): the root of a non-empty tree."""
    return blake3.blake3(ROOT_PREFIX + total.to_bytes(8, "big") + top).digest()


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The root over ``leaves`` (raw leaf values, hashed with the leaf prefix)."""
    if not leaves:
        return EMPTY_ROOT
    level = [leaf_hash(x) for x in leaves]
    while len(level) > 1:
        nxt = [inner_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return size_bound_root(len(leaves), level[0])


@dataclass(frozen=True, slots=True)
class MerkleProof:
    """Proof that a leaf sits at ``index`` of a tree of ``total`` leaves."""

    index: int
    """Position of the leaf, 0-based."""
    total: int
    """Number of leaves in the tree."""
    siblings: tuple[bytes, ...]
    """Sibling hashes from the leaf's level upwards."""

    def encode(self) -> bytes:
        return pack([self.index, self.total, list(self.siblings)])

    @classmethod
    def decode_untrusted(cls, data: bytes) -> MerkleProof:
        """Decode a proof; raises :class:`chain.errors.DecodeError`."""
        obj = take_array(unpack_untrusted(data, 64 + 34 * MAX_PROOF_DEPTH), "proof", 3)
        total = take_int(obj[1], "proof.total", 1, MAX_LEAVES)
        index = take_int(obj[0], "proof.index", 0, total - 1)
        sibs = take_array(obj[2], "proof.siblings", max_len=MAX_PROOF_DEPTH)
        return cls(
            index,
            total,
            tuple(take_bytes(s, f"proof.siblings[{i}]", size=32) for i, s in enumerate(sibs)),
        )


def compute_proof(leaves: Sequence[bytes], index: int) -> MerkleProof:
    """The inclusion proof of ``leaves[index]``; :class:`UsageError` if out of range."""
    n = len(leaves)
    if not 0 <= index < n:
        raise UsageError(f"leaf index {index} outside a tree of {n} leaves")
    level = [leaf_hash(x) for x in leaves]
    siblings: list[bytes] = []
    i = index
    while len(level) > 1:
        sib = i ^ 1
        if sib < len(level):
            siblings.append(level[sib])
        nxt = [inner_hash(level[k], level[k + 1]) for k in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
        i //= 2
    return MerkleProof(index, n, tuple(siblings))


def root_from_proof(leaf: bytes, proof: MerkleProof) -> bytes | None:
    """The root implied by ``leaf`` and ``proof``, or None if the proof is malformed."""
    if not (0 <= proof.index < proof.total <= MAX_LEAVES):
        return None
    node = leaf_hash(leaf)
    i, n, used = proof.index, proof.total, 0
    sibs = proof.siblings
    while n > 1:
        if i ^ 1 < n:
            if used >= len(sibs) or len(sibs[used]) != 32:
                return None
            sib = sibs[used]
            used += 1
            node = inner_hash(node, sib) if i % 2 == 0 else inner_hash(sib, node)
        i //= 2
        n = (n + 1) // 2
    if used != len(sibs):
        return None
    return size_bound_root(proof.total, node)


def verify_inclusion(root: bytes, leaf: bytes, proof: MerkleProof) -> bool:
    """True if ``leaf`` is at ``proof.index`` of the tree with ``root``. Never raises."""
    try:
        return root_from_proof(leaf, proof) == root
    except (TypeError, ValueError):
        return False
