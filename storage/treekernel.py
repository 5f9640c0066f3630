"""The hot half of the state tree: node records, hashing and the staging pass.

storage.state keeps the tree's API, its reads and its bookkeeping; this module is
the part that runs once per changed node when a block is staged. It is plain,
fully typed Python, and it is also written to be compiled by mypyc: `make accel`
(run by `make test`, `make devnet` and `make bench`) builds a compiled copy next
to it, and storage.accel loads that copy only when it was built from exactly this
source (else this module runs as it is; the two give identical results, which
tests/storage/test_accel.py checks). Nothing here reads or writes the store: a
node the cache lacks comes through the `load` callable the caller passes.

Hashes and layouts are those of docs/storage.md and storage.proof.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from typing import Final

from blake3 import blake3

from storage import keys
from storage.errors import StateKeyError

# A child slot is one bytes object: b"" (no child), hash ‖ u64 version (40 bytes, an
# internal node) or leaf hash ‖ key hash (64 bytes, a leaf; the value hash is in the
# value index).
#
# A node record is u16 bitmap ‖ u16 leaf bitmap ‖ the hashes of its children ‖ their
# extras (u64 version or key hash), both in nibble order. The hashes sit side by side
# so that the node hash is one slice of the record and a proof level is two; a
# rewrite copies the unchanged runs of the old record as slices.

EMPTY: Final = b""
INTERNAL_SLOT: Final = 40
LEAF_SLOT: Final = 64
MAX_KEY_LEN: Final = 0xFFFF

_LEAF: Final = b"\x00"
_NODE: Final = b"\x01"
_POP: Final = tuple(bin(i).count("1") for i in range(1 << 16))
_U16: Final = tuple(i.to_bytes(2, "big") for i in range(1 << 16))
_DEPTH: Final = tuple(bytes([d]) for d in range(65))
_HIGH: Final = tuple(bytes([b & 0xF0]) for b in range(256))
_HEX: Final = {c: int(c, 16) for c in "0123456789abcdef"}

def encode_path(key_hash: bytes, depth: int) -> bytes:
    """u8 nibble count ‖ the nibbles packed two a byte (an odd last one high)."""
    half = depth >> 1
    if depth & 1:
        return bytes([depth]) + key_hash[:half] + bytes([key_hash[half] & 0xF0])
    return bytes([depth]) + key_hash[:half]


def _nibble(kh: bytes, depth: int) -> int:
    b = kh[depth >> 1]
    return b & 0x0F if depth & 1 else b >> 4


def check_node(rec: bytes) -> None:
    """Raise ValueError unless `rec` is a well-formed node record."""
    if len(rec) < 4:
        raise ValueError("node record too short")
    bm = (rec[0] << 8) | rec[1]
    lm = (rec[2] << 8) | rec[3]
    if bm == 0 or lm & ~bm:
        raise ValueError("node bitmaps inconsistent")
    cnt, leaves = _POP[bm], _POP[lm]
    if len(rec) != 4 + 32 * cnt + 8 * (cnt - leaves) + 32 * leaves:
        raise ValueError("node record length does not match its bitmaps")


def node_hash(rec: bytes) -> bytes:
    """The hash of a node record: BLAKE3(0x01 ‖ bitmap ‖ child hashes)."""
    end = 4 + 32 * _POP[(rec[0] << 8) | rec[1]]
    return blake3(_NODE + rec[:2] + rec[4:end]).digest()


def node_child(rec: bytes, nib: int) -> bytes:
    """The slot of child `nib` of a node record (b"" if absent)."""
    bm = (rec[0] << 8) | rec[1]
    if not bm >> nib & 1:
        return EMPTY
    lm = (rec[2] << 8) | rec[3]
    low = (1 << nib) - 1
    i = _POP[bm & low]
    li = _POP[lm & low]
    h = 4 + 32 * i
    x = 4 + 32 * _POP[bm] + 8 * (i - li) + 32 * li
    if lm >> nib & 1:
        return rec[h : h + 32] + rec[x : x + 32]
    return rec[h : h + 32] + rec[x : x + 8]


def make_node(slots: list[bytes]) -> tuple[bytes, bytes]:
    """(record, hash input) of a node from its 16 slots."""
    bm = lm = 0
    hashes: list[bytes] = []
    extras: list[bytes] = []
    for n in range(16):
        s = slots[n]
        if s:
            bm |= 1 << n
            if len(s) == LEAF_SLOT:
                lm |= 1 << n
            hashes.append(s[:32])
            extras.append(s[32:])
    bmb = bm.to_bytes(2, "big")
    hs = b"".join(hashes)
    return bmb + lm.to_bytes(2, "big") + hs + b"".join(extras), _NODE + bmb + hs


def rewrite_node(rec: bytes, changes: list[tuple[int, bytes]]) -> tuple[bytes, bytes, bytes]:
    """Apply (nibble, new slot) changes, ascending by nibble, to a node record.

    Returns (record, hash input, single_leaf): record is b"" if no child is left;
    single_leaf is the slot of the only child when that child is a leaf (the node
    then disappears and the leaf moves up), else b"".
    """
    bm = (rec[0] << 8) | rec[1]
    lm = (rec[2] << 8) | rec[3]
    xs = 4 + 32 * _POP[bm]
    hparts: list[bytes] = []
    xparts: list[bytes] = []
    hpos, xpos = 4, xs
    nbm, nlm = bm, lm
    for nib, slot in changes:
        bit = 1 << nib
        low = bit - 1
        i = _POP[bm & low]
        li = _POP[lm & low]
        h_at = 4 + 32 * i
        x_at = xs + 8 * (i - li) + 32 * li
        hparts.append(rec[hpos:h_at])
        xparts.append(rec[xpos:x_at])
        if bm & bit:
            hpos = h_at + 32
            xpos = x_at + (32 if lm & bit else 8)
        else:
            hpos, xpos = h_at, x_at
        if slot:
            hparts.append(slot[:32])
            xparts.append(slot[32:])
            nbm |= bit
            if len(slot) == LEAF_SLOT:
                nlm |= bit
            else:
                nlm &= ~bit
        else:
            nbm &= ~bit
            nlm &= ~bit
    hparts.append(rec[hpos:xs])
    xparts.append(rec[xpos:])
    if nbm == 0:
        return EMPTY, EMPTY, EMPTY
    hs = b"".join(hparts)
    if nlm == nbm and _POP[nbm] == 1:
        return EMPTY, EMPTY, hs + b"".join(xparts)
    bmb = nbm.to_bytes(2, "big")
    record = bmb + nlm.to_bytes(2, "big") + hs + b"".join(xparts)
    return record, _NODE + bmb + hs, EMPTY



def hash_updates(
    puts: Iterable[tuple[object, object]], deletes: Iterable[object]
) -> dict[bytes, tuple[bytes, bytes | None, bytes | None]]:
    """Key hash -> (key, value or None, leaf slot or None) for a block's updates,
    after checking every key and value is bytes. A key both put and deleted is put."""
    ops: dict[bytes, tuple[bytes, bytes | None, bytes | None]] = {}
    # One hasher reset between inputs: a new BLAKE3 object per small input costs
    # about half as much again as the hashing.
    h = blake3()
    # Bound once: a method call through the type costs a lookup every time.
    update, digest, reset = h.update, h.digest, h.reset
    for key in deletes:
        if type(key) is not bytes:
            raise StateKeyError(f"state key must be bytes, got {type(key).__name__}")
        update(key)
        ops[digest()] = (key, None, None)
        reset()
    for key, value in puts:
        if type(key) is not bytes:
            raise StateKeyError(f"state key must be bytes, got {type(key).__name__}")
        if type(value) is not bytes:
            raise StateKeyError(f"state value must be bytes, got {type(value).__name__}")
        if len(key) > MAX_KEY_LEN:
            raise StateKeyError(f"state key of {len(key)} bytes exceeds {MAX_KEY_LEN}")
        update(key)
        kh = digest()
        reset()
        update(value)
        vh = digest()
        reset()
        update(_LEAF + kh + vh)
        ops[kh] = (key, value, digest() + kh)
        reset()
    return ops


class Updater:
    """One staging pass: recursive update of the tree over sorted key hashes.

    `cache` maps node paths (storage.keys' encoding, as `encode_path`) to the
    records of the nodes of the latest committed version: a path names one node
    of one tree, so a staging pass, which always starts from that version, can
    look a node up by path alone. `load(u64 version, path)` reads a node the cache
    lacks (and may add it to the cache). After `update` returns the new root slot,
    `collect()` fills `paths` and `records` with the nodes the version writes,
    sorted by path, and `olds` with the length of the cached record each one
    replaces (-1: none was found in the cache); `stale` holds the u64 version ‖ path
    of the nodes it replaces, `removed` the paths where a node existed and none
    does now, and `changed` the indexes (into `khs`) of the keys whose value
    changed. (Parallel lists rather than tuples: nothing for the cyclic collector
    to track.)"""

    __slots__ = (
        "by_depth", "cache", "changed", "h_digest", "h_reset", "h_update", "hexes", "khs", "leaves",
        "load", "olds", "paths", "records", "removed", "stale", "vbytes",
    )

    def __init__(
        self,
        cache: dict[bytes, bytes],
        load: Callable[[bytes, bytes], bytes],
        version: int,
        khs: list[bytes],
        leaves: list[bytes | None],
    ) -> None:
        self.cache = cache
        self.load = load
        self.vbytes = version.to_bytes(8, "big")
        # One hasher, reset after each node (cheaper than a new one per node), its
        # methods bound once (a call through the type looks the method up each time).
        hasher = blake3()
        self.h_update: Callable[[bytes], object] = hasher.update
        self.h_digest: Callable[[], bytes] = hasher.digest
        self.h_reset: Callable[[], object] = hasher.reset
        self.khs = khs
        self.hexes = [kh.hex() for kh in khs]
        self.leaves = leaves
        # New nodes per depth: paths, records and replaced lengths, side by side. A
        # depth-first pass finishes the nodes of one depth in path order, so the
        # depths concatenated are sorted by path (the path encoding starts with the
        # depth): `collect` needs no sort.
        self.by_depth: list[tuple[list[bytes], list[bytes], list[int]]] = [
            ([], [], []) for _ in range(65)
        ]
        self.paths: list[bytes] = []
        self.records: list[bytes] = []
        self.olds: list[int] = []
        self.stale: list[bytes] = []
        self.removed: list[bytes] = []
        self.changed: list[int] = []

    def collect(self) -> None:
        """Fill `paths`, `records` and `olds` with the new nodes, sorted by path."""
        paths, records, olds = self.paths, self.records, self.olds
        for level_paths, level_records, level_olds in self.by_depth:
            if level_paths:
                paths.extend(level_paths)
                records.extend(level_records)
                olds.extend(level_olds)

    def _emit(self, depth: int, path: bytes, record: bytes, old: int) -> None:
        level = self.by_depth[depth]
        level[0].append(path)
        level[1].append(record)
        level[2].append(old)

    def _digest(self, data: bytes) -> bytes:
        self.h_update(data)
        digest = self.h_digest()
        self.h_reset()
        return digest

    def build(self, items: list[tuple[bytes, bytes]], depth: int) -> bytes:
        """Slot of a new subtree at `depth` holding exactly `items` (sorted (key hash,
        leaf slot) pairs)."""
        if len(items) == 1:
            return items[0][1]
        if not items:
            return EMPTY
        slots = [EMPTY] * 16
        start = 0
        n_items = len(items)
        while start < n_items:
            nib = _nibble(items[start][0], depth)
            end = start + 1
            while end < n_items and _nibble(items[end][0], depth) == nib:
                end += 1
            slots[nib] = self.build(items[start:end], depth + 1)
            start = end
        record, pre = make_node(slots)
        self._emit(depth, encode_path(items[0][0], depth), record, -1)
        return self._digest(pre) + self.vbytes

    def update(self, slot: bytes, depth: int, lo: int, hi: int) -> bytes:
        """New slot for the subtree at `depth` after the ops khs[lo:hi]."""
        if lo == hi:
            return slot
        khs, leaves = self.khs, self.leaves
        size = len(slot)
        if size == 0:
            items = []
            for i in range(lo, hi):
                leaf = leaves[i]
                if leaf is not None:
                    items.append((khs[i], leaf))
                    self.changed.append(i)
            return self.build(items, depth)
        if size == LEAF_SLOT:
            lk = slot[32:64]
            items = []
            keep_old = True
            for i in range(lo, hi):
                kh, leaf = khs[i], leaves[i]
                if kh == lk:
                    keep_old = False
                    if leaf != slot:
                        self.changed.append(i)
                    if leaf is not None:
                        items.append((kh, leaf))
                elif leaf is not None:
                    items.append((kh, leaf))
                    self.changed.append(i)
            if keep_old:
                if not items:
                    return slot
                bisect.insort(items, (lk, slot))
            elif len(items) == 1 and items[0][1] == slot:
                return slot
            return self.build(items, depth)
        kh0 = khs[lo]
        half = depth >> 1
        if depth & 1:
            path = _DEPTH[depth] + kh0[:half] + _HIGH[kh0[half]]
        else:
            path = _DEPTH[depth] + kh0[:half]
        cached = self.cache.get(path)
        if cached is None:
            rec = self.load(slot[32:40], path)
            old = -1
        else:
            rec = cached
            old = len(rec)
        hexes = self.hexes
        first = hexes[lo][depth]
        if first != hexes[hi - 1][depth]:
            return self._update_many(slot, rec, old, path, depth, lo, hi)
        # One child changes (the common case below the top levels): splice it in.
        nib = _HEX[first]
        bit = 1 << nib
        bm = (rec[0] << 8) | rec[1]
        lm = (rec[2] << 8) | rec[3]
        xs = 4 + 32 * _POP[bm]
        i = _POP[bm & (bit - 1)]
        li = _POP[lm & (bit - 1)]
        h_at = 4 + 32 * i
        x_at = xs + 8 * (i - li) + 32 * li
        if bm & bit:
            x_end = x_at + (32 if lm & bit else 8)
            h_end = h_at + 32
            child = rec[h_at:h_end] + rec[x_at:x_end]
        else:
            h_end, x_end = h_at, x_at
            child = EMPTY
        if hi - lo == 1 and len(child) != INTERNAL_SLOT:
            # One key meeting an empty slot or a leaf: the bottom of most paths.
            leaf = self.leaves[lo]
            if not child:
                if leaf is None:
                    return slot
                new = leaf
                self.changed.append(lo)
            elif child[32:] == khs[lo]:
                if leaf == child:
                    return slot
                new = EMPTY if leaf is None else leaf
                self.changed.append(lo)
            elif leaf is None:
                return slot
            else:
                self.changed.append(lo)
                pair = [(child[32:], child), (khs[lo], leaf)]
                pair.sort()
                new = self.build(pair, depth + 1)
        else:
            new = self.update(child, depth + 1, lo, hi)
            if new == child:
                return slot
        self.stale.append(slot[32:40] + path)
        if new:
            nbm = bm | bit
            nlm = lm | bit if len(new) == LEAF_SLOT else lm & ~bit
            hs = rec[4:h_at] + new[:32] + rec[h_end:xs]
            extras = rec[xs:x_at] + new[32:] + rec[x_end:]
        else:
            nbm = bm & ~bit
            nlm = lm & ~bit
            if nbm == 0:
                self.removed.append(path)
                return EMPTY
            hs = rec[4:h_at] + rec[h_end:xs]
            extras = rec[xs:x_at] + rec[x_end:]
        if nlm == nbm and _POP[nbm] == 1:
            self.removed.append(path)
            return hs + extras  # the only child left is a leaf: it moves up
        head = _U16[nbm]
        self._emit(depth, path, head + _U16[nlm] + hs + extras, old)
        return self._digest(_NODE + head + hs) + self.vbytes

    def _update_many(
        self, slot: bytes, rec: bytes, old: int, path: bytes, depth: int, lo: int, hi: int
    ) -> bytes:
        hexes = self.hexes
        changes: list[tuple[int, bytes]] = []
        i = lo
        while i < hi:
            c = hexes[i][depth]
            if hi - i > 24:
                j = bisect.bisect_right(hexes, hexes[i][: depth + 1] + "g", i, hi)
            else:
                j = i + 1
                while j < hi and hexes[j][depth] == c:
                    j += 1
            nib = _HEX[c]
            child = node_child(rec, nib)
            new = self.update(child, depth + 1, i, j)
            if new != child:
                changes.append((nib, new))
            i = j
        if not changes:
            return slot
        self.stale.append(slot[32:40] + path)
        record, pre, single_leaf = rewrite_node(rec, changes)
        if not record:
            self.removed.append(path)
            return single_leaf
        self._emit(depth, path, record, old)
        return self._digest(pre) + self.vbytes


CACHE_ENTRY_OVERHEAD: Final = 120
"""Bytes a cached record costs beyond its record and path (objects, dict slot)."""


def promote(
    cache: dict[bytes, bytes],
    paths: list[bytes],
    records: list[bytes],
    olds: list[int],
    removed: list[bytes],
    used: int,
    limit: int,
) -> int:
    """Make `cache` hold the version a staging pass computed: drop the `removed`
    paths, overwrite or add the new nodes (`paths`, `records`; add only while
    `used` stays within `limit`). `olds[i]` is the length of the cached record that
    node i replaces, as the pass found it (-1: not found, so look). Returns the
    new `used`."""
    for path in removed:
        gone = cache.pop(path, None)
        if gone is not None:
            used -= len(gone) + len(path) + CACHE_ENTRY_OVERHEAD
    for i in range(len(paths)):
        path = paths[i]
        rec = records[i]
        old = olds[i]
        if old < 0:
            found = cache.get(path)
            if found is None:
                size = len(rec) + len(path) + CACHE_ENTRY_OVERHEAD
                if used + size <= limit:
                    cache[path] = rec
                    used += size
                continue
            old = len(found)
        cache[path] = rec
        used += len(rec) - old
    return used


_VALUE_PRESENT: Final = b"\x01"
_VALUE_DELETED: Final = b"\x00"


def stage_writes(
    run: Updater,
    version: int,
    new_root: bytes,
    ops: dict[bytes, tuple[bytes, bytes | None, bytes | None]],
) -> tuple[list[bytes], list[bytes]]:
    """The store writes of a finished pass as (keys, values), side by side (no
    tuples for the cyclic collector), sorted as LevelDB likes them: the new nodes
    (S n, by path), the root pointer (S r), the stale record (S s), then the value
    records of the changed keys (S v, in key-hash order)."""
    vbytes = version.to_bytes(8, "big")
    node_prefix = keys.STATE_NODE + vbytes
    run.collect()
    out_keys = [node_prefix + path for path in run.paths]
    out_values = run.records[:]
    out_keys.append(keys.STATE_ROOT + vbytes)
    out_values.append(new_root)
    khs = run.khs
    changed = [khs[i] for i in run.changed]
    if run.stale or changed:
        stale = [len(run.stale).to_bytes(4, "big")]
        stale.extend(run.stale)
        stale.extend(changed)
        out_keys.append(keys.STATE_STALE + vbytes)
        out_values.append(b"".join(stale))
    value_prefix = keys.STATE_VALUE
    for kh in changed:
        key, new_value, _leaf = ops[kh]
        out_keys.append(value_prefix + kh + vbytes)
        if new_value is None:
            out_values.append(_VALUE_DELETED)
        else:
            out_values.append(_VALUE_PRESENT + _U16[len(key)] + key + new_value)
    return out_keys, out_values
