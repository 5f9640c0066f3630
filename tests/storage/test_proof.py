"""Proof format: golden vectors, the hash rules written out independently, strict
decoding of untrusted bytes."""

from __future__ import annotations

import pytest
from blake3 import blake3

from storage.errors import ProofDecodeError
from storage.kv import MemoryKV
from storage.proof import EMPTY_ROOT, MAX_PROOF_BYTES, Proof, verify_proof
from storage.state import StateTree

# Golden vectors: {alice: 100} then {alice: 100, bob: 7, carol: ""}.
ROOT_ALICE = "b9b1d1721022eed972e90c357425d647ea69731bb936f051048709cf4056bc68"
ROOT_THREE = "1d75679c12bbd59a7d83a9075e900a0113555925705146fead92105906df08b0"
PROOF_BOB = (
    "0101e476f1b379438de7a1acfd567a94a8c53f08b9714042f7f17e5791645afc3176"
    "22f36339ae3058eeaf19a52949cfb9eb0a6bf4c21c05b6191ae4a19c8a93de4b4480"
    "b9b1d1721022eed972e90c357425d647ea69731bb936f051048709cf4056bc68"
    "4b8056393327a715d3e9179655c83028412be48f094c73dd761a3c05be3fbc7d"
)
PROOF_DAVE_ABSENT = (
    "01004480b9b1d1721022eed972e90c357425d647ea69731bb936f051048709cf4056bc68"
    "4b8056393327a715d3e9179655c83028412be48f094c73dd761a3c05be3fbc7d"
    "2f0ae10d0dc497355c657314c136cde6f3bcd6e5aeaf31a623337c88af7ebf43"
)


def h(data: bytes) -> bytes:
    return blake3(data).digest()


def leaf(key: bytes, value: bytes) -> bytes:
    return h(b"\x00" + h(key) + h(value))


def three_key_tree() -> StateTree:
    tree = StateTree(MemoryKV())
    tree.apply(0, {b"alice": b"100"}, [])
    tree.apply(1, {b"bob": b"7", b"carol": b""}, [])
    return tree


def test_empty_root_is_zero_bytes() -> None:
    assert bytes(32) == EMPTY_ROOT
    tree = StateTree(MemoryKV())
    assert tree.root() == EMPTY_ROOT
    assert tree.apply(0, {}, []) == EMPTY_ROOT
    value, proof = tree.get_with_proof(b"x")
    assert value is None and proof == Proof((), None)
    assert proof.encode() == b"\x00\x00"
    assert verify_proof(EMPTY_ROOT, b"x", None, proof)
    assert not verify_proof(EMPTY_ROOT, b"x", b"", proof)
    assert not verify_proof(bytes(31) + b"\x01", b"x", None, proof)


def test_hash_rules_written_out() -> None:
    """The roots follow from the documented rules, computed here without storage/."""
    assert leaf(b"alice", b"100").hex() == ROOT_ALICE
    # alice, carol and bob hash to first nibbles 7, a and e.
    children = [(0x7, leaf(b"alice", b"100")), (0xA, leaf(b"carol", b"")), (0xE, leaf(b"bob", b"7"))]
    bitmap = sum(1 << n for n, _ in children)
    expected = h(b"\x01" + bitmap.to_bytes(2, "big") + b"".join(x for _, x in children))
    assert expected.hex() == ROOT_THREE


def test_golden_vectors_both_ways() -> None:
    tree = three_key_tree()
    assert tree.root(0).hex() == ROOT_ALICE
    assert tree.root().hex() == ROOT_THREE
    value, proof = tree.get_with_proof(b"bob")
    assert value == b"7"
    assert proof.encode().hex() == PROOF_BOB
    assert Proof.decode_untrusted(bytes.fromhex(PROOF_BOB)) == proof
    assert verify_proof(bytes.fromhex(ROOT_THREE), b"bob", b"7", proof)
    value, proof = tree.get_with_proof(b"dave")
    assert value is None
    assert proof.encode().hex() == PROOF_DAVE_ABSENT
    decoded = Proof.decode_untrusted(bytes.fromhex(PROOF_DAVE_ABSENT))
    assert decoded == proof
    assert verify_proof(bytes.fromhex(ROOT_THREE), b"dave", None, decoded)
    # A single-leaf tree proves the other keys absent with the leaf alone.
    value, proof = tree.get_with_proof(b"bob", 0)
    assert value is None and proof.levels == () and proof.leaf is not None
    assert verify_proof(bytes.fromhex(ROOT_ALICE), b"bob", None, proof)
    assert not verify_proof(bytes.fromhex(ROOT_ALICE), b"alice", None, proof)


def test_every_prefix_and_extension_is_rejected() -> None:
    tree = three_key_tree()
    for key in (b"bob", b"dave", b"carol"):
        data = tree.get_with_proof(key)[1].encode()
        for cut in range(len(data)):
            with pytest.raises(ProofDecodeError):
                Proof.decode_untrusted(data[:cut])
        with pytest.raises(ProofDecodeError):
            Proof.decode_untrusted(data + b"\x00")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"\x00\x02",  # unknown terminal
        bytes([65, 0]),  # deeper than 64 levels
        b"\x01\x00\x00\x00",  # empty bitmap
        b"\x01\x01" + bytes(64) + b"\x00\x00",  # empty bitmap above a leaf
        b"\x00" * (MAX_PROOF_BYTES + 1),
    ],
    ids=["empty", "one-byte", "terminal", "depth", "bitmap", "bitmap-leaf", "oversize"],
)
def test_malformed_proofs_are_rejected(data: bytes) -> None:
    with pytest.raises(ProofDecodeError):
        Proof.decode_untrusted(data)


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(ProofDecodeError):
        Proof.decode_untrusted(bytearray(b"\x00\x00"))  # type: ignore[arg-type]


def test_verify_never_raises_on_bad_arguments() -> None:
    tree = three_key_tree()
    value, proof = tree.get_with_proof(b"bob")
    root = tree.root()
    assert not verify_proof(root[:31], b"bob", value, proof)
    assert not verify_proof("root", b"bob", value, proof)  # type: ignore[arg-type]
    assert not verify_proof(root, "bob", value, proof)  # type: ignore[arg-type]
    odd = Proof(((1, b"\x00" * 5),), None)
    assert not verify_proof(root, b"bob", None, odd)
    odd_leaf = Proof((), (b"\x00", b"\x01"))
    assert not verify_proof(root, b"bob", None, odd_leaf)
    deep = Proof(tuple((0xFFFF, bytes(32 * 15)) for _ in range(70)), None)
    assert not verify_proof(root, b"bob", None, deep)


def test_absence_leaf_must_share_the_path() -> None:
    """An absence proof ending in another key's leaf must have that leaf on the
    key's path; the same leaf at depth 0 cannot vouch for an unrelated root."""
    tree = StateTree(MemoryKV())
    root = tree.apply(0, {b"alice": b"100"}, [])
    _, proof = tree.get_with_proof(b"zed")
    assert verify_proof(root, b"zed", None, proof)
    # Put alice's leaf under a fake level: verification must fail.
    nib = h(b"zed")[0] >> 4
    fake = Proof(((1 << nib, b""),), proof.leaf)
    fake_root = h(b"\x01" + (1 << nib).to_bytes(2, "big") + leaf(b"alice", b"100"))
    assert h(b"alice")[0] >> 4 != nib  # the fake level is off alice's path
    assert not verify_proof(fake_root, b"zed", None, fake)
