"""The feed Merkle list: appends, roots and page-completeness proofs."""

from __future__ import annotations

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain import mmr


class ListMMR:
    """An in-memory Merkle list built only through mmr.compute_append."""

    def __init__(self) -> None:
        self.items: list[bytes] = []
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.root = mmr.EMPTY_ROOT

    def get_node(self, level: int, index: int) -> bytes:
        if level == 0:
            return mmr.leaf_hash(self.items[index])
        return self.nodes[(level, index)]

    def append(self, item: bytes) -> None:
        created, self.root = mmr.compute_append(len(self.items), item, self.get_node)
        self.items.append(item)
        for level, index, h in created:
            self.nodes[(level, index)] = h


def item(i: int) -> bytes:
    return blake3.blake3(i.to_bytes(4, "big")).digest()


def build(n: int) -> ListMMR:
    m = ListMMR()
    for i in range(n):
        m.append(item(i))
    return m


def reference_root(items: list[bytes]) -> bytes:
    """The root recomputed from scratch, independent of the incremental path."""
    peaks = []
    offset = 0
    n = len(items)
    for level in range(n.bit_length() - 1, -1, -1):
        if n >> level & 1:
            layer = [mmr.leaf_hash(x) for x in items[offset : offset + (1 << level)]]
            while len(layer) > 1:
                layer = [mmr.node_hash(layer[i], layer[i + 1]) for i in range(0, len(layer), 2)]
            peaks.append(layer[0])
            offset += 1 << level
    return mmr.bag_peaks(n, peaks)


def test_peaks_follow_the_bits_of_the_length() -> None:
    assert mmr.compute_peaks(0) == []
    assert mmr.compute_peaks(1) == [(0, 0)]
    assert mmr.compute_peaks(6) == [(2, 0), (1, 2)]
    assert mmr.compute_peaks(7) == [(2, 0), (1, 2), (0, 6)]


def test_incremental_root_equals_reference_root() -> None:
    m = ListMMR()
    assert m.root == reference_root([])
    for i in range(70):
        m.append(item(i))
        assert m.root == reference_root(m.items)
        assert m.root == mmr.compute_root(len(m.items), m.get_node)


def test_one_new_node_an_item_on_average() -> None:
    m = build(256)
    assert len(m.nodes) == 255


@given(st.integers(0, 80), st.data())
def test_every_page_proves_and_tampering_fails(n: int, data: st.DataObject) -> None:
    m = build(n)
    a = data.draw(st.integers(0, n))
    b = data.draw(st.integers(a, n))
    page = m.items[a:b]
    proof = mmr.compute_page_proof(n, a, b, m.get_node)
    assert mmr.verify_page(m.root, n, a, b, page, proof)
    assert len(proof) <= 2 * max(n, 1).bit_length() + len(mmr.compute_peaks(n)) + 2
    if page:
        # an item left out, replaced or moved
        assert not mmr.verify_page(m.root, n, a, b - 1, page[:-1], proof)
        assert not mmr.verify_page(m.root, n, a, b, [item(999), *page[1:]], proof)
        if len(page) > 1:
            assert not mmr.verify_page(m.root, n, a, b, page[::-1], proof) or page == page[::-1]
    # the same page claimed against another length
    assert not mmr.verify_page(m.root, n + 1, a, b, page, proof)
    if proof:
        assert not mmr.verify_page(m.root, n, a, b, page, proof[:-1])
        assert not mmr.verify_page(m.root, n, a, b, page, [*proof, proof[0]])


def test_a_page_of_an_older_root_does_not_verify_against_a_newer_one() -> None:
    m = build(10)
    old_root = m.root
    proof = mmr.compute_page_proof(10, 7, 10, m.get_node)
    m.append(item(10))
    assert mmr.verify_page(old_root, 10, 7, 10, m.items[7:10], proof)
    assert not mmr.verify_page(m.root, 10, 7, 10, m.items[7:10], proof)
    assert not mmr.verify_page(m.root, 11, 7, 10, m.items[7:10], proof)


def test_bad_ranges() -> None:
    m = build(5)
    with pytest.raises(ValueError):
        mmr.compute_page_proof(5, 3, 2, m.get_node)
    with pytest.raises(ValueError):
        mmr.compute_page_proof(5, 0, 6, m.get_node)
    assert not mmr.verify_page(m.root, 5, -1, 2, [], [])
    assert not mmr.verify_page(m.root, 5, 0, 2, m.items[:2], [b"short"])


class BucketedMMR:
    """The storage layout of chain.state: buckets of 16 items, nodes of level >= 4 only."""

    def __init__(self) -> None:
        self.length = 0
        self.buckets: dict[int, bytes] = {}
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.root = mmr.EMPTY_ROOT

    def get_node(self, level: int, index: int) -> bytes:
        return mmr.bucketed_get_node(self.buckets.__getitem__, lambda lv, ix: self.nodes[(lv, ix)], level, index)

    def append(self, item: bytes) -> None:
        created, self.root = mmr.compute_append(self.length, item, self.get_node)
        b = self.length >> mmr.BUCKET_LEVELS
        self.buckets[b] = self.buckets.get(b, b"") + item
        for level, index, h in created:
            if level >= mmr.BUCKET_LEVELS:
                self.nodes[(level, index)] = h
        self.length += 1


def test_bucketed_storage_gives_the_same_roots_and_proofs() -> None:
    plain, bucketed = ListMMR(), BucketedMMR()
    for i in range(150):
        plain.append(item(i))
        bucketed.append(item(i))
        assert bucketed.root == plain.root
    # only the nodes of level >= 4 are stored: 9 + 4 + 2 + 1 of them, against 146 in full
    assert bucketed.nodes == {k: v for k, v in plain.nodes.items() if k[0] >= mmr.BUCKET_LEVELS}
    assert len(bucketed.nodes) == 16 and len(plain.nodes) == 146
    for a, b in [(0, 150), (3, 17), (16, 32), (149, 150), (40, 40), (100, 140)]:
        proof = mmr.compute_page_proof(150, a, b, bucketed.get_node)
        assert proof == mmr.compute_page_proof(150, a, b, plain.get_node)
        assert mmr.verify_page(bucketed.root, 150, a, b, plain.items[a:b], proof)


def test_bucketed_node_from_a_short_bucket_is_an_error() -> None:
    with pytest.raises(ValueError):
        mmr.bucketed_get_node(lambda b: b"\x00" * 64, lambda lv, ix: b"", 2, 0)


def test_append_from_peaks_matches_the_stored_path() -> None:
    m = ListMMR()
    peaks: list[bytes] = []
    for i in range(70):
        created_a, root_a = mmr.compute_append(len(m.items), item(i), m.get_node)
        created_b, peaks, root_b = mmr.compute_append_from_peaks(len(m.items), peaks, item(i))
        assert (created_a, root_a) == (created_b, root_b)
        m.append(item(i))
        assert peaks == [m.get_node(lv, ix) for lv, ix in mmr.compute_peaks(len(m.items))]
