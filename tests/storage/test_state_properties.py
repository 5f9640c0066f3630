"""Property tests of the state tree against a dict model (hypothesis)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from storage.kv import MemoryKV
from storage.proof import Proof, verify_proof
from storage.state import StateTree

# A small key space so that updates, deletes of present keys and shared hash
# prefixes (deeper paths) all happen often.
KEYS = [b"k%d" % i for i in range(48)]
key_st = st.sampled_from(KEYS)
value_st = st.binary(min_size=0, max_size=12)
op_st = st.tuples(key_st, st.one_of(st.none(), value_st))  # None = delete
block_st = st.lists(op_st, max_size=25)


def split_ops(ops: list[tuple[bytes, bytes | None]]) -> tuple[dict[bytes, bytes], list[bytes]]:
    """Last operation per key wins; returns (puts, deletes)."""
    last: dict[bytes, bytes | None] = {}
    for k, v in ops:
        last[k] = v
    puts = {k: v for k, v in last.items() if v is not None}
    dels = [k for k, v in last.items() if v is None]
    return puts, dels


def scratch_root(model: dict[bytes, bytes]) -> bytes:
    tree = StateTree(MemoryKV())
    return tree.apply(0, model, [])


def flip(data: bytes, bit: int) -> bytes:
    b = bytearray(data)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


@settings(max_examples=300)
@given(st.lists(block_st, min_size=1, max_size=8), st.integers(min_value=0, max_value=7))
def test_model_agreement_across_versions(blocks: list[list[tuple[bytes, bytes | None]]], prune_at: int) -> None:
    tree = StateTree(MemoryKV(), cache_bytes=4096)
    model: dict[bytes, bytes] = {}
    history: list[tuple[bytes, dict[bytes, bytes]]] = []
    for version, ops in enumerate(blocks):
        puts, dels = split_ops(ops)
        for k in dels:
            model.pop(k, None)
        model.update(puts)
        root = tree.apply(version, puts, dels)
        history.append((root, dict(model)))
        assert tree.latest_version == version
    keep = min(prune_at, len(blocks) - 1)
    tree.prune(keep)
    for version in range(keep, len(blocks)):
        root, snap = history[version]
        assert tree.root(version) == root
        assert root == scratch_root(snap)
        for k in KEYS:
            assert tree.get(k, version) == snap.get(k)
            value, proof = tree.get_with_proof(k, version)
            assert value == snap.get(k)
            assert verify_proof(root, k, value, Proof.decode_untrusted(proof.encode()))
    assert dict(tree.iter_items()) == history[-1][1]


@settings(max_examples=200)
@given(st.dictionaries(key_st, value_st, max_size=40), st.randoms(use_true_random=False), st.integers(1, 5))
def test_root_independent_of_insertion_order(final: dict[bytes, bytes], rnd: random.Random, parts: int) -> None:
    """The same final key set reached by different routes (orders, block splits,
    puts of values later overwritten, keys inserted then deleted) has one root."""
    expected = scratch_root(final)
    items = list(final.items())
    rnd.shuffle(items)
    noise = [k for k in KEYS if k not in final][:5]
    tree = StateTree(MemoryKV())
    version = 0
    tree.apply(version, {k: b"noise" for k in noise}, [])
    chunks = [items[i::parts] for i in range(parts)]
    for chunk in chunks:
        version += 1
        tree.apply(version, {k: b"old" + v for k, v in chunk}, [])
    for chunk in reversed(chunks):
        version += 1
        tree.apply(version, dict(chunk), [])
    version += 1
    assert tree.apply(version, {}, noise) == expected


@settings(max_examples=300)
@given(st.dictionaries(key_st, value_st, max_size=30), key_st, st.data())
def test_any_flipped_bit_fails(model: dict[bytes, bytes], key: bytes, data: st.DataObject) -> None:
    tree = StateTree(MemoryKV())
    root = tree.apply(0, model, [])
    value, proof = tree.get_with_proof(key, 0)
    assert value == model.get(key)
    encoded = proof.encode()
    assert verify_proof(root, key, value, proof)
    # root
    bit = data.draw(st.integers(0, len(root) * 8 - 1), label="root bit")
    assert not verify_proof(flip(root, bit), key, value, proof)
    # proof bytes: either rejected by the strict decoder or fails to verify
    bit = data.draw(st.integers(0, len(encoded) * 8 - 1), label="proof bit")
    bad = flip(encoded, bit)
    try:
        decoded = Proof.decode_untrusted(bad)
    except Exception as exc:  # only the typed decode error may come out
        from storage.errors import ProofDecodeError

        assert isinstance(exc, ProofDecodeError)
    else:
        assert not verify_proof(root, key, value, decoded)
    # key: an inclusion proof never proves another key; an absence proof may
    # also prove the absence of another key, but only if that key is truly absent
    bit = data.draw(st.integers(0, len(key) * 8 - 1), label="key bit")
    other = flip(key, bit)
    if verify_proof(root, other, value, proof):
        assert value is None and other not in model
    # value
    if value is not None:
        if value:
            bit = data.draw(st.integers(0, len(value) * 8 - 1), label="value bit")
            assert not verify_proof(root, key, flip(value, bit), proof)
        assert not verify_proof(root, key, value + b"\x00", proof)
        assert not verify_proof(root, key, None, proof)
    else:
        assert not verify_proof(root, key, b"", proof)
