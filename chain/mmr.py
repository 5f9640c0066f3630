"""Append-only Merkle list (a Merkle mountain range) for provable feeds.

Theory of operation. A list of n items is a row of perfect binary trees, one
per set bit of n, largest first (the "peaks"). Node (level, index) covers items
[index * 2**level, (index + 1) * 2**level); it exists once that range is full,
and never changes afterwards, so appending item n only creates the nodes on
the path where n's trailing one-bits merge (amortised one new node an item).

    leaf   = blake3(0x00 ‖ item)
    node   = blake3(0x01 ‖ left ‖ right)
    root   = blake3(0x02 ‖ u64 n ‖ peak_1 ‖ ... ‖ peak_k)      (largest peak first)

The length is inside the root, so a root commits to exactly n items.

Page proof: items [a, b) of a list of length n. Walk every peak top-down; a
subtree disjoint from [a, b) contributes its hash to the proof, a subtree
inside [a, b) is rebuilt from the page's items, anything else is split into
its two children. The verifier walks the same shape (it depends only on n, a
and b), consuming proof hashes in order, and compares the bagged root. A page
that verifies is complete: no item of [a, b) can be left out or reordered. The
proof holds at most two hashes a level plus the peaks: O(log n).

Storage layout (used by chain.state and chain.queries, see
:func:`bucketed_get_node`): items are kept in buckets of BUCKET (16)
consecutive items, one record a bucket, and only nodes of level >= 4 are
stored; a lower node lies inside one bucket and is rehashed from its items.
An append then writes about two records (its bucket, the head) instead of
three or more.

This module is pure (no storage): node hashes are read through a callback, so
the light client verifies with `verify_page` alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import blake3

MAX_LENGTH = 1 << 62
HASH_SIZE = 32

GetNode = Callable[[int, int], bytes]
"""get_node(level, index) -> the 32-byte hash of a node that exists (level 0 = leaf hash)."""


def leaf_hash(item: bytes) -> bytes:
    return blake3.blake3(b"\x00" + item).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return blake3.blake3(b"\x01" + left + right).digest()


def bag_peaks(length: int, peak_hashes: Sequence[bytes]) -> bytes:
    return blake3.blake3(b"\x02" + length.to_bytes(8, "big") + b"".join(peak_hashes)).digest()


EMPTY_ROOT = bag_peaks(0, ())


BUCKET_LEVELS = 4
BUCKET = 1 << BUCKET_LEVELS
"""Items per stored bucket; nodes below level BUCKET_LEVELS are not stored."""


def subtree_hash(items: Sequence[bytes]) -> bytes:
    """Root of the perfect subtree over `items` (a power of two of them)."""
    layer = [leaf_hash(x) for x in items]
    while len(layer) > 1:
        layer = [node_hash(layer[i], layer[i + 1]) for i in range(0, len(layer), 2)]
    return layer[0]


def bucket_items(bucket: bytes) -> list[bytes]:
    return [bucket[i : i + HASH_SIZE] for i in range(0, len(bucket), HASH_SIZE)]


def bucketed_get_node(
    get_bucket: Callable[[int], bytes], get_stored: Callable[[int, int], bytes], level: int, index: int
) -> bytes:
    """A node of a list stored in buckets: rehashed from its bucket below level 4, else stored."""
    if level >= BUCKET_LEVELS:
        return get_stored(level, index)
    first = index << level
    bucket = get_bucket(first >> BUCKET_LEVELS)
    offset = (first & (BUCKET - 1)) * HASH_SIZE
    chunk = bucket[offset : offset + (HASH_SIZE << level)]
    if len(chunk) != HASH_SIZE << level:
        raise ValueError(f"bucket {first >> BUCKET_LEVELS} is too short for node ({level}, {index})")
    return subtree_hash(bucket_items(chunk))


def compute_peaks(length: int) -> list[tuple[int, int]]:
    """(level, index) of each peak of a list of `length` items, largest first."""
    out: list[tuple[int, int]] = []
    offset = 0
    for level in range(length.bit_length() - 1, -1, -1):
        if length >> level & 1:
            out.append((level, offset >> level))
            offset += 1 << level
    return out


def compute_append(length: int, item: bytes, get_node: GetNode) -> tuple[list[tuple[int, int, bytes]], bytes]:
    """Append `item` as index `length`.

    Returns the new interior nodes (level >= 1) to store and the new root.
    """
    h = leaf_hash(item)
    level, index = 0, length
    created: list[tuple[int, int, bytes]] = []
    while index & 1:
        h = node_hash(get_node(level, index - 1), h)
        level += 1
        index >>= 1
        created.append((level, index, h))
    new_length = length + 1
    peaks = compute_peaks(new_length)
    hashes = [get_node(lv, ix) for lv, ix in peaks[:-1]]
    hashes.append(h)
    return created, bag_peaks(new_length, hashes)


def compute_append_from_peaks(
    length: int, peak_hashes: Sequence[bytes], item: bytes
) -> tuple[list[tuple[int, int, bytes]], list[bytes], bytes]:
    """Append `item` knowing only the current peaks (largest first): no node reads.

    The nodes an append merges with are exactly the peaks of the levels of the
    length's trailing one-bits. Returns (new interior nodes, new peaks, new root).
    """
    peaks = list(peak_hashes)
    h = leaf_hash(item)
    level, index = 0, length
    created: list[tuple[int, int, bytes]] = []
    while index & 1:
        h = node_hash(peaks.pop(), h)
        level += 1
        index >>= 1
        created.append((level, index, h))
    peaks.append(h)
    return created, peaks, bag_peaks(length + 1, peaks)


def compute_root(length: int, get_node: GetNode) -> bytes:
    return bag_peaks(length, [get_node(lv, ix) for lv, ix in compute_peaks(length)])


def is_valid_range(length: int, start: int, stop: int) -> bool:
    return 0 <= start <= stop <= length <= MAX_LENGTH


def compute_page_proof(length: int, start: int, stop: int, get_node: GetNode) -> list[bytes]:
    """Hashes proving items [start, stop) of a list of `length` items (see module doc)."""
    if not is_valid_range(length, start, stop):
        raise ValueError(f"bad page [{start}, {stop}) of a list of {length}")
    proof: list[bytes] = []

    def walk(level: int, index: int) -> None:
        lo, hi = index << level, (index + 1) << level
        if hi <= start or lo >= stop:
            proof.append(get_node(level, index))
        elif start <= lo and hi <= stop:
            return
        else:
            walk(level - 1, 2 * index)
            walk(level - 1, 2 * index + 1)

    for level, index in compute_peaks(length):
        walk(level, index)
    return proof


def verify_page(
    root: bytes, length: int, start: int, stop: int, items: Sequence[bytes], proof: Sequence[bytes]
) -> bool:
    """True iff `items` are exactly items [start, stop) of the list committed by (root, length)."""
    if not is_valid_range(length, start, stop) or len(items) != stop - start:
        return False
    if any(len(p) != HASH_SIZE for p in proof):
        return False
    cursor = 0

    def subtree(level: int, index: int) -> bytes | None:
        nonlocal cursor
        lo, hi = index << level, (index + 1) << level
        if hi <= start or lo >= stop:
            if cursor >= len(proof):
                return None
            cursor += 1
            return proof[cursor - 1]
        if level == 0:
            return leaf_hash(items[lo - start])
        left = subtree(level - 1, 2 * index)
        right = subtree(level - 1, 2 * index + 1)
        if left is None or right is None:
            return None
        return node_hash(left, right)

    peak_hashes: list[bytes] = []
    for level, index in compute_peaks(length):
        h = subtree(level, index)
        if h is None:
            return False
        peak_hashes.append(h)
    return cursor == len(proof) and bag_peaks(length, peak_hashes) == root
