"""Binary Merkle trees: roots against an independent recursive definition, proofs, tampering."""

from __future__ import annotations

import json
from pathlib import Path

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain.errors import DecodeError, UsageError
from chain.merkle import (
    EMPTY_ROOT,
    MerkleProof,
    compute_proof,
    inner_hash,
    leaf_hash,
    merkle_root,
    size_bound_root,
    verify_inclusion,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "crypto.json").read_text())


def rfc6962_root(leaves: list[bytes]) -> bytes:
    """RFC 6962's recursive definition with our prefixes, bound to the size (the reference)."""
    if not leaves:
        return blake3.blake3(b"").digest()
    return blake3.blake3(b"\x02" + len(leaves).to_bytes(8, "big") + rfc6962_top(leaves)).digest()


def rfc6962_top(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return blake3.blake3(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return blake3.blake3(b"\x01" + rfc6962_top(leaves[:k]) + rfc6962_top(leaves[k:])).digest()


@pytest.mark.parametrize("entry", VECTORS["merkle"], ids=lambda e: f"{len(e['leaves'])}_leaves")
def test_root_vectors(entry: dict[str, object]) -> None:
    leaves = [bytes.fromhex(x) for x in entry["leaves"]]  # type: ignore[attr-defined]
    assert merkle_root(leaves).hex() == entry["root"]


def test_small_trees_by_hand() -> None:
    a, b, c = b"a", b"b", b"c"
    assert merkle_root([]) == EMPTY_ROOT == blake3.blake3(b"").digest()
    assert merkle_root([a]) == size_bound_root(1, leaf_hash(a))
    assert merkle_root([a, b]) == size_bound_root(2, inner_hash(leaf_hash(a), leaf_hash(b)))
    top3 = inner_hash(inner_hash(leaf_hash(a), leaf_hash(b)), leaf_hash(c))
    assert merkle_root([a, b, c]) == size_bound_root(3, top3)


def test_root_binds_the_leaf_count() -> None:
    leaves = [b"x", b"x", b"x"]
    proof = compute_proof(leaves, 0)
    assert verify_inclusion(merkle_root(leaves), b"x", proof)
    # Same siblings would fit a 4-leaf tree's shape; the size-bound root refuses it.
    assert not verify_inclusion(merkle_root(leaves), b"x", MerkleProof(0, 4, proof.siblings))


def test_leaf_cannot_pass_for_inner_node() -> None:
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert merkle_root([a + b]) != merkle_root([b"a", b"b"])


@given(st.lists(st.binary(max_size=40), max_size=70))
def test_root_matches_rfc6962_shape(leaves: list[bytes]) -> None:
    assert merkle_root(leaves) == rfc6962_root(leaves)


@given(st.lists(st.binary(max_size=8), min_size=1, max_size=70), st.data())
def test_every_proof_verifies_and_only_for_its_leaf(
    leaves: list[bytes], data: st.DataObject
) -> None:
    root = merkle_root(leaves)
    i = data.draw(st.integers(min_value=0, max_value=len(leaves) - 1))
    proof = compute_proof(leaves, i)
    assert verify_inclusion(root, leaves[i], proof)
    assert MerkleProof.decode_untrusted(proof.encode()) == proof
    assert not verify_inclusion(root, leaves[i] + b"x", proof)
    if len(leaves) > 1:
        j = (i + 1) % len(leaves)
        moved = MerkleProof(j, proof.total, proof.siblings)
        assert not verify_inclusion(root, leaves[i], moved) or leaves[i] == leaves[j]
        bigger = MerkleProof(i, proof.total + 1, proof.siblings)
        assert not verify_inclusion(root, leaves[i], bigger)
    if proof.siblings:
        flipped = (bytes([proof.siblings[0][0] ^ 1]) + proof.siblings[0][1:], *proof.siblings[1:])
        assert not verify_inclusion(root, leaves[i], MerkleProof(i, proof.total, flipped))
        assert not verify_inclusion(
            root, leaves[i], MerkleProof(i, proof.total, proof.siblings[:-1])
        )
    assert not verify_inclusion(
        root, leaves[i], MerkleProof(i, proof.total, (*proof.siblings, root))
    )


def test_malformed_proofs_are_false_not_errors() -> None:
    leaves = [b"a", b"b", b"c"]
    root = merkle_root(leaves)
    assert not verify_inclusion(root, b"a", MerkleProof(5, 3, ()))
    assert not verify_inclusion(root, b"a", MerkleProof(-1, 3, ()))
    assert not verify_inclusion(root, b"a", MerkleProof(0, 0, ()))
    assert not verify_inclusion(root, b"a", MerkleProof(0, 3, (b"short", b"x" * 32)))


def test_compute_proof_index_out_of_range() -> None:
    with pytest.raises(UsageError):
        compute_proof([b"a"], 1)
    with pytest.raises(UsageError):
        compute_proof([], 0)


@pytest.mark.parametrize(
    "obj",
    [
        [0, 0, []],  # total 0
        [3, 3, []],  # index >= total
        [0, 2, [b"x" * 31]],
        [0, 2, [b"x" * 32] * 33],
        [0, 2],
        [-1, 2, []],
        [0, 2, b""],
    ],
)
def test_proof_decode_rejects(obj: object) -> None:
    from chain.encoding import pack

    with pytest.raises(DecodeError):
        MerkleProof.decode_untrusted(pack(obj))
