"""The due index (what falls due at a height): appends find the chunk with room by
doubling and halving the index probed; the chunks they write are exactly those a
scan from chunk 0 writes, and expiry reads them back in order."""

from __future__ import annotations

import random

import pytest

from chain import state as st
from chain import statekeys as sk
from tests.chain.helpers import TestChain


def scan_add(ov: st.Overlay, height: int, item: bytes) -> None:
    """The reference: scan from chunk 0 for the first chunk missing or with room."""
    set_id = sk.due_set(height)
    for c in range(st.MAX_DUE_CHUNKS):
        chunk_key = sk.set_item(sk.S_DUE, set_id, c)
        chunk = ov.get(chunk_key)
        if chunk is None:
            ov.put(chunk_key, b"\x01" + bytes([len(item)]) + item)
            return
        if chunk[0] < st.DUE_CHUNK:
            ov.put(chunk_key, bytes([chunk[0] + 1]) + chunk[1:] + bytes([len(item)]) + item)
            return
    raise AssertionError("unreachable")


@pytest.mark.parametrize("seed", range(6))
def test_appends_match_a_scan_from_chunk_zero(seed: int) -> None:
    rng = random.Random(seed)
    chain = TestChain()
    ours, ref = chain.state.new_overlay(), chain.state.new_overlay()
    heights = [100 + rng.randrange(4) for _ in range(8)]
    ap = st.Apply(chain.state, ours, 10, 0, None)
    counts = {h: 0 for h in heights}
    for _ in range(rng.choice((40, 300, 1500))):
        if rng.random() < 0.01:  # later transitions see the same overlay afresh
            ap = st.Apply(chain.state, ours, 10, 0, None)
        h = rng.choice(heights)
        item = bytes([sk.DUE_SEEDER]) + rng.randbytes(rng.randrange(1, 60))
        ap.due_add(h, item)
        scan_add(ref, h, item)
        counts[h] += 1
    assert ours.writes == ref.writes
    for h, count in counts.items():
        chunks = (count + st.DUE_CHUNK - 1) // st.DUE_CHUNK
        set_id = sk.due_set(h)
        assert [ours.get(sk.set_item(sk.S_DUE, set_id, c)) is not None for c in range(chunks + 1)] == [
            True
        ] * chunks + [False]


@pytest.mark.parametrize("count", [1, 31, 32, 33, 64, 65, 200])
def test_appends_at_chunk_boundaries(count: int) -> None:
    chain = TestChain()
    ours, ref = chain.state.new_overlay(), chain.state.new_overlay()
    ap = st.Apply(chain.state, ours, 10, 0, None)
    for i in range(count):
        item = bytes([sk.DUE_ESCROW]) + i.to_bytes(40, "big")
        ap.due_add(50, item)
        scan_add(ref, 50, item)
    assert ours.writes == ref.writes
