"""The authenticated state: a versioned 16-way sparse Merkle tree over LevelDB.

Theory of operation (docs/storage.md has the long form):

* A state key is placed by the 64 nibbles of `blake3(key)`. A subtree with one key
  is just that key's leaf, as high as it is unique; a subtree with two or more keys
  is an internal node with up to 16 children (no extension nodes, as in Jellyfish).
  The shape depends on the key set only, so the root does not depend on the order
  of updates. Hashes are those of storage.proof.
* Internal nodes are stored two levels to a record: a **group** is an internal node
  at an even depth (its head) together with its internal children at the odd depth
  below, inline. Groups are immutable records keyed by (version written, nibble
  path); a group's head refers to the groups two levels down by hash and version.
  Leaves are held inline as (leaf hash, key hash), so updating a key rewrites only
  the groups on its path (about half as many records as one node per record) and
  no separate leaf records exist. The grouping is physical only: hashes and proofs
  are those of the 16-way tree.
* A version is one write batch: the new nodes, one root pointer, the value records
  of the keys that changed, and one "stale" record listing the nodes this version
  replaced and the keys it changed. `prune(below)` replays stale records up to
  `below` and deletes what they list, so every retained version stays readable.
* Values live in a second, versioned index keyed by (key hash, version), so `get`
  is one reverse seek and never walks the tree. A deleted key gets a tombstone.
* `stage` computes a version in one recursive pass over the sorted key hashes of
  the block: each touched node is read once, rewritten once and hashed once. A
  bounded cache keeps node records of the latest committed version (upper first);
  nodes of a staged version enter it only once that version is seen committed.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterable, Iterator, Mapping
from itertools import pairwise

from blake3 import blake3

from storage import keys
from storage.errors import CorruptDatabaseError, StateKeyError, VersionError
from storage.kv import KV, WriteBatch
from storage.proof import EMPTY_ROOT, HASH_LEN, Proof

# A child slot is one bytes object: b"" (no child), hash ‖ u64 version (40 bytes, an
# internal node) or leaf hash ‖ key hash (64 bytes, a leaf; the value hash is in the
# value index).
#
# A node record is u16 bitmap ‖ u16 leaf bitmap ‖ the hashes of its children ‖ their
# extras (u64 version or key hash), both in nibble order. The hashes sit
# side by side so that the node hash is one slice of the record and a proof level is
# two; a rewrite copies the unchanged runs of the old record as slices.
#
# A group record (the value of a node key, at an even depth) is
#   u8 k ‖ (k + 1) × u16 end offset ‖ head node record ‖ k inline node records
# where the inline records are the head's internal children (odd depth) in nibble
# order, end offset 0 is the end of the head and end offset i that of inline record
# i. An inline child's slot in the head carries INLINE_VERSION (zeros) as version.

EMPTY = b""
INTERNAL_SLOT = 40
LEAF_SLOT = 64
MAX_KEY_LEN = 0xFFFF
DEFAULT_CACHE_BYTES = 96 << 20

_LEAF = b"\x00"
_NODE = b"\x01"
_VALUE_PRESENT = b"\x01"
_VALUE_DELETED = b"\x00"
_POP = tuple(bin(i).count("1") for i in range(1 << 16))
_NODE_PREFIX = keys.STATE_NODE
_U16 = tuple(i.to_bytes(2, "big") for i in range(1 << 16))
_DEPTH = tuple(bytes([d]) for d in range(65))
_HIGH = tuple(bytes([b & 0xF0]) for b in range(256))
_HEX = {c: int(c, 16) for c in "0123456789abcdef"}
INLINE_VERSION = bytes(8)
"""The version field of a slot whose node is inline in the same group (odd depth)."""
_ENDS = tuple(struct.Struct(f">{k + 1}H") for k in range(17))


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


def join_group(head: bytes, subs: list[bytes]) -> bytes:
    """Group record of a head node record and its inline children's records (in
    nibble order of the head's internal children)."""
    k = len(subs)
    end = 3 + 2 * k + len(head)
    ends = [end]
    for sub in subs:
        end += len(sub)
        ends.append(end)
    return bytes([k]) + _ENDS[k].pack(*ends) + head + b"".join(subs)


def split_group(group: bytes) -> tuple[bytes, list[bytes]]:
    """(head record, inline children's records) of a group record (unchecked)."""
    k = group[0]
    ends = _ENDS[k].unpack_from(group, 1)
    return group[3 + 2 * k : ends[0]], [group[ends[i] : ends[i + 1]] for i in range(k)]


def check_group(group: bytes) -> None:
    """Raise ValueError unless `group` is a well-formed group record: a head node
    whose internal children are exactly its inline records, each well formed and
    with only leaves or versioned (non-inline) internal children."""
    if not group or group[0] > 16 or len(group) < 3 + 2 * group[0]:
        raise ValueError("group header truncated")
    k = group[0]
    ends = _ENDS[k].unpack_from(group, 1)
    if ends[0] < 3 + 2 * k or ends[-1] != len(group) or any(a > b for a, b in pairwise(ends)):
        raise ValueError("group offsets inconsistent")
    head, subs = split_group(group)
    check_node(head)
    if _POP[((head[0] << 8) | head[1]) & ~((head[2] << 8) | head[3])] != k:
        raise ValueError("group holds a different number of inline nodes than its head")
    for sub in subs:
        check_node(sub)


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
    """(record, hash) of a node from its 16 slots."""
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
    return bmb + lm.to_bytes(2, "big") + hs + b"".join(extras), blake3(_NODE + bmb + hs).digest()


def rewrite_node(rec: bytes, changes: list[tuple[int, bytes]]) -> tuple[bytes, bytes, bytes]:
    """Apply (nibble, new slot) changes, ascending by nibble, to a node record.

    Returns (record, hash, single_leaf): record is b"" if no child is left;
    single_leaf is the slot of the only child when that child is a leaf (the node
    then disappears and the leaf moves up), else b"".
    """
    if len(changes) == 1:
        return splice_node(rec, changes[0][0], changes[0][1])
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
    return record, blake3(_NODE + bmb + hs).digest(), EMPTY


def splice_node(rec: bytes, nib: int, slot: bytes) -> tuple[bytes, bytes, bytes]:
    """rewrite_node for one change (the common case below the top levels)."""
    bm = (rec[0] << 8) | rec[1]
    lm = (rec[2] << 8) | rec[3]
    bit = 1 << nib
    xs = 4 + 32 * _POP[bm]
    i = _POP[bm & (bit - 1)]
    li = _POP[lm & (bit - 1)]
    h_at = 4 + 32 * i
    x_at = xs + 8 * (i - li) + 32 * li
    if bm & bit:
        h_end = h_at + 32
        x_end = x_at + (32 if lm & bit else 8)
    else:
        h_end, x_end = h_at, x_at
    if slot:
        nbm = bm | bit
        nlm = lm | bit if len(slot) == LEAF_SLOT else lm & ~bit
        hs = rec[4:h_at] + slot[:32] + rec[h_end:xs]
        extras = rec[xs:x_at] + slot[32:] + rec[x_end:]
    else:
        nbm = bm & ~bit
        nlm = lm & ~bit
        if nbm == 0:
            return EMPTY, EMPTY, EMPTY
        hs = rec[4:h_at] + rec[h_end:xs]
        extras = rec[xs:x_at] + rec[x_end:]
    if nlm == nbm and _POP[nbm] == 1:
        return EMPTY, EMPTY, hs + extras
    head = _U16[nbm]
    return head + _U16[nlm] + hs + extras, blake3(_NODE + head + hs).digest(), EMPTY


def _assemble(
    group: bytes, k: int, ends: tuple[int, ...], ib: int, head: bytes, new_subs: dict[int, bytes]
) -> bytes:
    """The rewritten group: new head record `head`, the inline records in `new_subs`
    (by nibble) and the old group's other inline records. `k`, `ends` and `ib` (the
    internal-children bitmap) describe the old group."""
    nib_ = ((head[0] << 8) | head[1]) & ~((head[2] << 8) | head[3])
    if nib_ == ib and len(new_subs) <= 1:
        # Same inline children, at most one of them rewritten: shift the offsets
        # and splice the new records into the old bytes.
        shift = len(head) - (ends[0] - 3 - 2 * k)
        if not new_subs:
            offsets = [e + shift for e in ends]
            tail = group[ends[0] :]
        else:
            ((n, sub),) = new_subs.items()
            at = _POP[ib & ((1 << n) - 1)]
            shift2 = shift + len(sub) - (ends[at + 1] - ends[at])
            offsets = [e + shift for e in ends[: at + 1]]
            offsets.extend(e + shift2 for e in ends[at + 1 :])
            tail = group[ends[0] : ends[at]] + sub + group[ends[at + 1] :]
        return group[:1] + _ENDS[k].pack(*offsets) + head + tail
    subs: list[bytes] = []
    n = 0
    while nib_:
        if nib_ & 1:
            if n in new_subs:
                subs.append(new_subs[n])
            else:
                at = _POP[ib & ((1 << n) - 1)]
                subs.append(group[ends[at] : ends[at + 1]])
        nib_ >>= 1
        n += 1
    return join_group(head, subs)


def _leaf_pair(items: list[tuple[bytes, bytes]], depth: int) -> tuple[bytes, bytes] | None:
    """(record, hash) of a node at `depth` whose two children are the two sorted leaf
    `items`, if they part at this depth (the usual new node: a key meets a leaf)."""
    (ka, a), (kb, b) = items
    na, nb = _nibble(ka, depth), _nibble(kb, depth)
    if na == nb:
        return None
    bm = _U16[(1 << na) | (1 << nb)]
    hs = a[:32] + b[:32]
    return bm + bm + hs + a[32:] + b[32:], blake3(_NODE + bm + hs).digest()


def _slot_hash(slot: bytes) -> bytes:
    return slot[:32] if slot else EMPTY_ROOT


def _check_bytes(what: str, b: object) -> bytes:
    if type(b) is not bytes:
        raise StateKeyError(f"state {what} must be bytes, got {type(b).__name__}")
    return b


class StagedVersion:
    """A computed but unwritten version: its root and the writes that make it."""

    __slots__ = ("_new_nodes", "_ops", "_root_slot", "_stale_nodes", "root", "version")

    def __init__(
        self,
        version: int,
        root_slot: bytes,
        ops: list[tuple[bytes, bytes | None]],
        new_nodes: list[tuple[bytes, bytes]],
        stale_nodes: list[bytes],
    ) -> None:
        self.version = version
        self.root = _slot_hash(root_slot)
        self._root_slot = root_slot
        self._ops = ops
        self._new_nodes = new_nodes
        self._stale_nodes = stale_nodes

    def write_into(self, batch: WriteBatch) -> None:
        """Append this version's writes to `batch` (the caller writes it, sync=True)."""
        batch.ops.extend(self._ops)

    @property
    def write_count(self) -> int:
        return len(self._ops)


class StateTree:
    """Versioned authenticated map from bytes to bytes over a KV store."""

    def __init__(self, kv: KV, *, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.kv = kv
        self._cache: dict[bytes, bytes] = {}
        self._cache_used = 0
        self._cache_limit = cache_bytes
        self.cache_misses = 0
        """Node reads during staging that the cache could not serve (for metrics)."""
        self._pending: StagedVersion | None = None
        self._oldest: int | None = None
        self._latest_seen: int | None = None
        self._refresh_bounds()

    @property
    def cache_size(self) -> tuple[int, int]:
        """(node records, accounted bytes) in the node cache."""
        return len(self._cache), self._cache_used

    # -- versions -----------------------------------------------------------------

    def _refresh_bounds(self) -> None:
        first = next(self.kv.iterate(keys.STATE_ROOT), None)
        last = next(self.kv.iterate(keys.STATE_ROOT, reverse=True), None)
        self._oldest = None if first is None else keys.decode_u64(first[0][2:])
        self._latest_seen = None if last is None else keys.decode_u64(last[0][2:])

    @property
    def latest_version(self) -> int | None:
        """Newest committed version (None: nothing written yet)."""
        last = next(self.kv.iterate(keys.STATE_ROOT, reverse=True), None)
        latest = None if last is None else keys.decode_u64(last[0][2:])
        if latest != self._latest_seen:
            self._refresh_bounds()
        return latest

    @property
    def oldest_version(self) -> int | None:
        """Oldest version still readable (versions below it were pruned)."""
        self._refresh_bounds()
        return self._oldest

    def _check_version(self, version: int) -> None:
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise VersionError(f"bad version {version!r}")
        if self._latest_seen is None or version > self._latest_seen:
            self._refresh_bounds()
        if self._latest_seen is None:
            raise VersionError(f"version {version} not found: the tree has no versions")
        if version > self._latest_seen:
            raise VersionError(f"version {version} is newer than latest {self._latest_seen}")
        if self._oldest is not None and version < self._oldest:
            self._refresh_bounds()
            if self._oldest is not None and version < self._oldest:
                raise VersionError(f"version {version} was pruned (oldest kept {self._oldest})")

    def _root_slot(self, version: int | None) -> tuple[int | None, bytes]:
        if version is None:
            version = self.latest_version
            if version is None:
                return None, EMPTY
        else:
            self._check_version(version)
        raw = self.kv.get(keys.state_root_key(version))
        if raw is None:
            raise VersionError(f"version {version} not found")
        if len(raw) not in (0, INTERNAL_SLOT, LEAF_SLOT):
            raise self._corrupt(f"bad root pointer at version {version}")
        return version, raw

    def _corrupt(self, detail: str) -> CorruptDatabaseError:
        return CorruptDatabaseError(getattr(self.kv, "path", "<memory>"), detail)

    def root(self, version: int | None = None) -> bytes:
        """Root hash at `version` (default latest); EMPTY_ROOT for an empty tree."""
        return _slot_hash(self._root_slot(version)[1])

    # -- reads --------------------------------------------------------------------

    def get(self, key: bytes, version: int | None = None) -> bytes | None:
        """Value of `key` at `version` (default latest): one reverse seek in the
        versioned value index, no tree walk."""
        prefix = keys.STATE_VALUE + blake3(_check_bytes("key", key)).digest()
        if version is None:
            item = next(self.kv.iterate(prefix, reverse=True), None)
        else:
            self._check_version(version)
            if version != self._latest_seen and self.kv.get(keys.state_root_key(version)) is None:
                # Pruned by another handle on the same store since our bounds were read.
                self._refresh_bounds()
                raise VersionError(f"version {version} is not stored (pruned?)")
            stop = prefix + keys.u64(version) + b"\x00"
            item = next(self.kv.iterate(prefix, stop=stop, reverse=True), None)
        if item is None:
            return None
        return self._decode_value(item[1])

    def _decode_value(self, record: bytes) -> bytes | None:
        if record == _VALUE_DELETED:
            return None
        if record[:1] != _VALUE_PRESENT or len(record) < 3:
            raise self._corrupt("bad value record")
        klen = (record[1] << 8) | record[2]
        if len(record) < 3 + klen:
            raise self._corrupt("bad value record")
        return record[3 + klen :]

    def _load(self, nk: bytes) -> bytes:
        rec = self._cache.get(nk)
        if rec is not None:
            return rec
        rec = self.kv.get(nk)
        if rec is None:
            raise self._corrupt(f"missing tree node {nk[2:].hex()}")
        try:
            check_group(rec)
        except ValueError as exc:
            raise self._corrupt(f"tree node {nk[2:].hex()}: {exc}") from None
        return rec

    def _load_cached(self, nk: bytes) -> bytes:
        """Load a node of the latest version, keeping it in the cache if there is room."""
        rec = self._cache.get(nk)
        if rec is not None:
            return rec
        self.cache_misses += 1
        rec = self._load(nk)
        size = len(rec) + len(nk) + 120
        if self._cache_used + size <= self._cache_limit:
            self._cache[nk] = rec
            self._cache_used += size
        return rec

    def get_with_proof(self, key: bytes, version: int | None = None) -> tuple[bytes | None, Proof]:
        """Value of `key` (or None) at `version` and a proof of it against root(version)."""
        kh = blake3(_check_bytes("key", key)).digest()
        version, slot = self._root_slot(version)
        levels: list[tuple[int, bytes]] = []
        depth = 0
        group = rec = EMPTY
        ibm = nib = 0
        while len(slot) == INTERNAL_SLOT:
            if depth & 1:
                # An odd-depth node is inline in the group read one level up.
                k = group[0]
                ends = _ENDS[k].unpack_from(group, 1)
                at = _POP[ibm & ((1 << nib) - 1)]
                rec = group[ends[at] : ends[at + 1]]
            else:
                group = self._load(keys.STATE_NODE + slot[32:40] + encode_path(kh, depth))
                rec = group[3 + 2 * group[0] : (group[1] << 8) | group[2]]
            bm = (rec[0] << 8) | rec[1]
            ibm = bm & ~((rec[2] << 8) | rec[3])
            nib = _nibble(kh, depth)
            end = 4 + 32 * _POP[bm]
            if bm >> nib & 1:
                at = 4 + 32 * _POP[bm & ((1 << nib) - 1)]
                levels.append((bm, rec[4:at] + rec[at + 32 : end]))
                slot = node_child(rec, nib)
            else:
                levels.append((bm, rec[4:end]))
                slot = EMPTY
            depth += 1
        if len(slot) != LEAF_SLOT:
            return None, Proof(tuple(levels), None)
        # Leaves hold (hash, key hash); the value hash comes from the value index
        # and must reproduce the leaf hash the tree committed to.
        leaf_kh = slot[32:64]
        value = self._value_by_hash(leaf_kh, version)
        if value is None:
            raise self._corrupt("value index lacks a key the tree holds")
        vh = blake3(value).digest()
        if blake3(_LEAF + leaf_kh + vh).digest() != slot[:32]:
            raise self._corrupt("value index disagrees with the tree")
        proof = Proof(tuple(levels), (leaf_kh, vh))
        return (value if leaf_kh == kh else None), proof

    def _value_by_hash(self, kh: bytes, version: int | None) -> bytes | None:
        prefix = keys.STATE_VALUE + kh
        stop = None if version is None else prefix + keys.u64(version) + b"\x00"
        item = next(self.kv.iterate(prefix, stop=stop, reverse=True), None)
        return None if item is None else self._decode_value(item[1])

    # -- writes -------------------------------------------------------------------

    def _promote(self) -> None:
        """Move the nodes of a staged version into the cache once it is committed;
        drop the nodes it replaced."""
        pending = self._pending
        if pending is None:
            return
        self._pending = None
        if self.kv.get(keys.state_root_key(pending.version)) != pending._root_slot:
            return
        cache = self._cache
        used = self._cache_used
        for nk in pending._stale_nodes:
            rec = cache.pop(nk, None)
            if rec is not None:
                used -= len(rec) + len(nk) + 120
        limit = self._cache_limit
        new_nodes = pending._new_nodes
        need = sum(len(rec) + len(nk) + 120 for nk, rec in new_nodes)
        if used + need <= limit:
            cache.update(new_nodes)
            used += need
        else:
            # Upper nodes first: when the cache is full it keeps the hottest ones.
            new_nodes.sort(key=lambda item: item[0][10])
            for nk, rec in new_nodes:
                size = len(rec) + len(nk) + 120
                if used + size > limit:
                    break
                cache[nk] = rec
                used += size
        self._cache_used = used

    def stage(
        self, version: int, puts: Mapping[bytes, bytes], deletes: Iterable[bytes] = ()
    ) -> StagedVersion:
        """Compute `version` from the latest one; writes nothing. A key both put and
        deleted is put. `version` must be latest + 1 (any version >= 0 when empty)."""
        self._promote()
        latest = self.latest_version
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise VersionError(f"bad version {version!r}")
        if latest is not None and version != latest + 1:
            raise VersionError(f"cannot stage version {version}: latest is {latest}")
        if not isinstance(puts, Mapping):
            raise StateKeyError(f"puts must be a mapping of bytes to bytes, got {type(puts).__name__}")
        if isinstance(deletes, (bytes, str)) or not isinstance(deletes, Iterable):
            raise StateKeyError("deletes must be an iterable of bytes keys")
        # key hash -> (key, value or None, leaf slot or None)
        ops: dict[bytes, tuple[bytes, bytes | None, bytes | None]] = {}
        for key in deletes:
            _check_bytes("key", key)
            ops[blake3(key).digest()] = (key, None, None)
        for key, value in puts.items():
            if type(key) is not bytes or type(value) is not bytes:
                _check_bytes("key", key)
                _check_bytes("value", value)
            if len(key) > MAX_KEY_LEN:
                raise StateKeyError(f"state key of {len(key)} bytes exceeds {MAX_KEY_LEN}")
            kh = blake3(key).digest()
            ops[kh] = (key, value, blake3(_LEAF + kh + blake3(value).digest()).digest() + kh)
        khs = sorted(ops)
        leaves = [ops[kh][2] for kh in khs]
        old_root = EMPTY if latest is None else self._root_slot(latest)[1]
        run = _Update(self, version, khs, leaves)
        new_root = run.update(old_root, 0, 0, len(khs))
        vbytes = keys.u64(version)
        # Sorted keys make LevelDB's memtable inserts ~25% cheaper than random order:
        # node keys (S n) sort before the root pointer (S r), the stale record (S s)
        # and the value records (S v), which come out in key-hash order already.
        out: list[tuple[bytes, bytes | None]] = sorted(run.nodes)
        out.append((keys.STATE_ROOT + vbytes, new_root))
        changed = [khs[i] for i in run.changed]
        if run.stale or changed:
            stale = [len(run.stale).to_bytes(4, "big")]
            stale.extend(nk[2:] for nk in run.stale)
            stale.extend(changed)
            out.append((keys.STATE_STALE + vbytes, b"".join(stale)))
        value_prefix = keys.STATE_VALUE
        for kh in changed:
            key, new_value, _vh = ops[kh]
            if new_value is None:
                out.append((value_prefix + kh + vbytes, _VALUE_DELETED))
            else:
                out.append((value_prefix + kh + vbytes, b"".join((_VALUE_PRESENT, _U16[len(key)], key, new_value))))
        staged = StagedVersion(version, new_root, out, run.nodes, run.stale)
        self._pending = staged
        return staged

    def apply(
        self, version: int, puts: Mapping[bytes, bytes], deletes: Iterable[bytes] = ()
    ) -> bytes:
        """Stage `version` and write it with one synced batch; returns its root."""
        staged = self.stage(version, puts, deletes)
        batch = WriteBatch()
        staged.write_into(batch)
        self.kv.write(batch, sync=True)
        self._latest_seen = version
        if self._oldest is None:
            self._oldest = version
        self._promote()
        return staged.root

    def prune(self, below_version: int) -> None:
        """Drop every version older than `below_version`; it and later ones stay
        readable and provable. One batch per stale record, each also deleting the
        root pointers it makes unreadable, so a crash leaves a consistent store."""
        latest = self.latest_version
        if latest is None:
            return
        if not isinstance(below_version, int) or below_version < 0:
            raise VersionError(f"bad version {below_version!r}")
        if below_version > latest:
            raise VersionError(f"cannot prune below {below_version}: latest is {latest}")
        stop = keys.state_stale_key(below_version) + b"\x00"
        todo = [k for k, _ in self.kv.iterate(keys.STATE_STALE, stop=stop)]
        for sk in todo:
            v = keys.decode_u64(sk[2:])
            raw = self.kv.get(sk)
            if raw is None:
                continue
            batch = WriteBatch()
            for rk, _ in self.kv.iterate(keys.STATE_ROOT, stop=keys.state_root_key(v)):
                batch.delete(rk)
            self._prune_record(v, raw, batch)
            batch.delete(sk)
            self.kv.write(batch, sync=True)
        batch = WriteBatch()
        for rk, _ in self.kv.iterate(keys.STATE_ROOT, stop=keys.state_root_key(below_version)):
            batch.delete(rk)
        self.kv.write(batch, sync=True)
        self._refresh_bounds()

    def _prune_record(self, version: int, raw: bytes, batch: WriteBatch) -> None:
        bad = self._corrupt(f"bad stale record at version {version}")
        if len(raw) < 4:
            raise bad
        count = int.from_bytes(raw[:4], "big")
        pos = 4
        for _ in range(count):
            if pos + 9 > len(raw):
                raise bad
            end = pos + 9 + ((raw[pos + 8] + 1) >> 1)
            if end > len(raw):
                raise bad
            batch.delete(keys.STATE_NODE + raw[pos:end])
            pos = end
        rest = raw[pos:]
        if len(rest) % HASH_LEN:
            raise bad
        vbytes = keys.u64(version)
        for i in range(0, len(rest), HASH_LEN):
            prefix = keys.STATE_VALUE + rest[i : i + HASH_LEN]
            for k, _ in self.kv.iterate(prefix, stop=prefix + vbytes):
                batch.delete(k)
            if self.kv.get(prefix + vbytes) == _VALUE_DELETED:
                batch.delete(prefix + vbytes)

    def iter_items(self, version: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) at `version`, in key-hash order (for state export)."""
        if version is None:
            version = self.latest_version
            if version is None:
                return
        else:
            self._check_version(version)
        current: bytes | None = None
        best: bytes | None = None
        for k, rec in self.kv.iterate(keys.STATE_VALUE):
            kh = k[2:34]
            if kh != current:
                if best is not None:
                    yield self._split_record(best)
                current, best = kh, None
            if keys.decode_u64(k[34:]) <= version:
                best = rec if rec != _VALUE_DELETED else None
        if best is not None:
            yield self._split_record(best)

    def _split_record(self, rec: bytes) -> tuple[bytes, bytes]:
        if rec[:1] != _VALUE_PRESENT or len(rec) < 3:
            raise self._corrupt("bad value record")
        klen = (rec[1] << 8) | rec[2]
        return rec[3 : 3 + klen], rec[3 + klen :]


class _Update:
    """One staging pass: recursive update of the tree over sorted key hashes.

    `update` works on a slot at an even depth (a group, a leaf or nothing); a group's
    head is rewritten by `_head`, its inline odd-depth children by `_inner`, and new
    subtrees are made by `_build_group` (even depth) and `_build_inner` (odd depth).
    """

    __slots__ = (
        "cache", "changed", "hexes", "khs", "leaves", "nodes", "stale", "tree", "vbytes", "version",
    )

    def __init__(
        self, tree: StateTree, version: int, khs: list[bytes], leaves: list[bytes | None]
    ) -> None:
        self.tree = tree
        self.cache = tree._cache
        self.version = version
        self.vbytes = version.to_bytes(8, "big")
        self.khs = khs
        self.hexes = [kh.hex() for kh in khs]
        self.leaves = leaves
        self.nodes: list[tuple[bytes, bytes]] = []
        self.stale: list[bytes] = []
        self.changed: list[int] = []

    def _runs(self, depth: int, lo: int, hi: int) -> Iterator[tuple[int, int, int]]:
        """(nibble, start, end) of the runs of khs[lo:hi] sharing the nibble at `depth`."""
        hexes = self.hexes
        i = lo
        while i < hi:
            c = hexes[i][depth]
            if hi - i > 24:
                j = bisect.bisect_right(hexes, hexes[i][: depth + 1] + "g", i, hi)
            else:
                j = i + 1
                while j < hi and hexes[j][depth] == c:
                    j += 1
            yield _HEX[c], i, j
            i = j

    def _build_group(self, items: list[tuple[bytes, bytes]], depth: int) -> bytes:
        """Slot of a new subtree at even `depth` holding `items` (sorted (key hash,
        leaf slot) pairs, at least two): writes its group and the groups below."""
        if len(items) == 2:
            pair = _leaf_pair(items, depth)
            if pair:
                path = encode_path(items[0][0], depth)
                group = b"\x00" + _U16[3 + len(pair[0])] + pair[0]
                self.nodes.append((_NODE_PREFIX + self.vbytes + path, group))
                return pair[1] + self.vbytes
        slots = [EMPTY] * 16
        subs: list[bytes] = []
        n_items = len(items)
        start = 0
        while start < n_items:
            nib = _nibble(items[start][0], depth)
            end = start + 1
            while end < n_items and _nibble(items[end][0], depth) == nib:
                end += 1
            if end - start == 1:
                slots[nib] = items[start][1]
            else:
                slots[nib], sub = self._build_inner(items[start:end], depth + 1)
                subs.append(sub)
            start = end
        head, h = make_node(slots)
        path = encode_path(items[0][0], depth)
        self.nodes.append((_NODE_PREFIX + self.vbytes + path, join_group(head, subs)))
        return h + self.vbytes

    def _build_inner(self, items: list[tuple[bytes, bytes]], depth: int) -> tuple[bytes, bytes]:
        """(slot, record) of a new node at odd `depth` holding at least two `items`."""
        if len(items) == 2:
            pair = _leaf_pair(items, depth)
            if pair:
                return pair[1] + INLINE_VERSION, pair[0]
        slots = [EMPTY] * 16
        n_items = len(items)
        start = 0
        while start < n_items:
            nib = _nibble(items[start][0], depth)
            end = start + 1
            while end < n_items and _nibble(items[end][0], depth) == nib:
                end += 1
            if end - start == 1:
                slots[nib] = items[start][1]
            else:
                slots[nib] = self._build_group(items[start:end], depth + 1)
            start = end
        record, h = make_node(slots)
        return h + INLINE_VERSION, record

    def _merge_small(self, slot: bytes, lo: int, hi: int) -> list[tuple[bytes, bytes]] | None:
        """The sorted (key hash, leaf slot) items of a subtree that is a leaf or empty
        after the ops khs[lo:hi]; None when the ops change nothing."""
        khs, leaves, changed = self.khs, self.leaves, self.changed
        items: list[tuple[bytes, bytes]] = []
        if not slot:
            for i in range(lo, hi):
                leaf = leaves[i]
                if leaf is not None:
                    items.append((khs[i], leaf))
                    changed.append(i)
            return items or None
        lk = slot[32:64]
        keep_old = True
        touched = False
        for i in range(lo, hi):
            kh, leaf = khs[i], leaves[i]
            if kh == lk:
                keep_old = False
                if leaf != slot:
                    changed.append(i)
                    touched = True
                if leaf is not None:
                    items.append((kh, leaf))
            elif leaf is not None:
                items.append((kh, leaf))
                changed.append(i)
                touched = True
        if not touched:
            return None
        if keep_old:
            bisect.insort(items, (lk, slot))
        return items

    def _small_even(self, slot: bytes, depth: int, lo: int, hi: int) -> bytes:
        items = self._merge_small(slot, lo, hi)
        if items is None:
            return slot
        if len(items) > 1:
            return self._build_group(items, depth)
        return items[0][1] if items else EMPTY

    def _meet_even(self, child: bytes, depth: int, i: int) -> bytes:
        """New slot at even `depth` where the one op khs[i] meets an empty slot or a
        leaf (`_small_even` for one key, without the item lists)."""
        leaf = self.leaves[i]
        if not child:
            if leaf is None:
                return child
            self.changed.append(i)
            return leaf
        kh = self.khs[i]
        if child[32:] == kh:
            if leaf == child:
                return child
            self.changed.append(i)
            return EMPTY if leaf is None else leaf
        if leaf is None:
            return child
        self.changed.append(i)
        pair = [(child[32:], child), (kh, leaf)]
        pair.sort()
        return self._build_group(pair, depth)

    def update(self, slot: bytes, depth: int, lo: int, hi: int) -> bytes:
        """New slot for the subtree at even `depth` after the ops khs[lo:hi]."""
        if lo == hi:
            return slot
        if len(slot) != INTERNAL_SLOT:
            return self._small_even(slot, depth, lo, hi)
        if hi - lo == 1:
            return self._one(slot, depth, lo)
        kh0 = self.khs[lo]
        path = _DEPTH[depth] + kh0[: depth >> 1]
        nk = _NODE_PREFIX + slot[32:40] + path
        group = self.cache.get(nk)
        if group is None:
            group = self.tree._load_cached(nk)
        result = self._head(group, depth, lo, hi)
        if result is None:
            return slot
        self.stale.append(nk)
        record, h, single = result
        if not record:
            return single
        self.nodes.append((_NODE_PREFIX + self.vbytes + path, record))
        return h + self.vbytes

    def _head(self, group: bytes, depth: int, lo: int, hi: int) -> tuple[bytes, bytes, bytes] | None:
        """Rewrite a group after the ops khs[lo:hi]: (group record, head hash, single
        leaf) as rewrite_node gives for the head, or None if nothing changed."""
        k = group[0]
        ends = _ENDS[k].unpack_from(group, 1)
        head = group[3 + 2 * k : ends[0]]
        bm = (head[0] << 8) | head[1]
        ib = bm & ~((head[2] << 8) | head[3])
        changes: list[tuple[int, bytes]] = []
        new_subs: dict[int, bytes] = {}
        c = self.hexes[lo][depth]
        runs = ((_HEX[c], lo, hi),) if c == self.hexes[hi - 1][depth] else self._runs(depth, lo, hi)
        for nib, i, j in runs:
            child = node_child(head, nib)
            if len(child) == INTERNAL_SLOT:
                at = _POP[ib & ((1 << nib) - 1)]
                result = self._inner(group[ends[at] : ends[at + 1]], depth + 1, i, j)
                if result is None:
                    continue
                record, h, single = result
                if record:
                    new = h + INLINE_VERSION
                    new_subs[nib] = record
                else:
                    new = single
            else:
                items = self._merge_small(child, i, j)
                if items is None:
                    continue
                if len(items) > 1:
                    new, new_subs[nib] = self._build_inner(items, depth + 1)
                else:
                    new = items[0][1] if items else EMPTY
            changes.append((nib, new))
        if not changes:
            return None
        record, h, single = rewrite_node(head, changes)
        if not record:
            return EMPTY, EMPTY, single
        return _assemble(group, k, ends, ib, record, new_subs), h, EMPTY

    def _one(self, slot: bytes, depth: int, i: int) -> bytes:
        """`update` of a group at even `depth` by the one op khs[i] (the common case
        below the top levels): no runs, no change lists."""
        kh = self.khs[i]
        leaf = self.leaves[i]
        path = _DEPTH[depth] + kh[: depth >> 1]
        nk = _NODE_PREFIX + slot[32:40] + path
        group = self.cache.get(nk)
        if group is None:
            group = self.tree._load_cached(nk)
        k = group[0]
        ends = _ENDS[k].unpack_from(group, 1)
        head = group[3 + 2 * k : ends[0]]
        bm = (head[0] << 8) | head[1]
        lm = (head[2] << 8) | head[3]
        ib = bm & ~lm
        b = kh[depth >> 1]
        nib = b >> 4
        bit = 1 << nib
        new_subs: dict[int, bytes] = {}
        if not bm & bit:
            if leaf is None:
                return slot
            new = leaf
            self.changed.append(i)
        elif lm & bit:
            child = node_child(head, nib)
            if child[32:] == kh:
                if leaf == child:
                    return slot
                new = EMPTY if leaf is None else leaf
                self.changed.append(i)
            elif leaf is None:
                return slot
            else:
                self.changed.append(i)
                pair = [(child[32:], child), (kh, leaf)]
                pair.sort()
                new, new_subs[nib] = self._build_inner(pair, depth + 1)
        else:
            at = _POP[ib & (bit - 1)]
            sub = group[ends[at] : ends[at + 1]]
            nib2 = b & 0x0F
            child = node_child(sub, nib2)
            if len(child) == INTERNAL_SLOT:
                new = self._one(child, depth + 2, i)
                if new == child:
                    return slot
            else:
                new = self._meet_even(child, depth + 2, i)
                if new == child:
                    return slot
            record, h, single = splice_node(sub, nib2, new)
            if record:
                new = h + INLINE_VERSION
                new_subs[nib] = record
            else:
                new = single
        record, h, single = splice_node(head, nib, new)
        self.stale.append(nk)
        if not record:
            return single
        self.nodes.append((_NODE_PREFIX + self.vbytes + path, _assemble(group, k, ends, ib, record, new_subs)))
        return h + self.vbytes

    def _inner(self, rec: bytes, depth: int, lo: int, hi: int) -> tuple[bytes, bytes, bytes] | None:
        """Rewrite an inline node at odd `depth` after the ops khs[lo:hi] (rewrite_node's
        result), or None if nothing changed."""
        if hi - lo == 1:
            nib = _HEX[self.hexes[lo][depth]]
            child = node_child(rec, nib)
            if len(child) == INTERNAL_SLOT:
                new = self._one(child, depth + 1, lo)
            else:
                new = self._meet_even(child, depth + 1, lo)
            return None if new == child else splice_node(rec, nib, new)
        changes: list[tuple[int, bytes]] = []
        c = self.hexes[lo][depth]
        runs = ((_HEX[c], lo, hi),) if c == self.hexes[hi - 1][depth] else self._runs(depth, lo, hi)
        for nib, i, j in runs:
            child = node_child(rec, nib)
            if len(child) == INTERNAL_SLOT:
                new = self.update(child, depth + 1, i, j)
            else:
                new = self._small_even(child, depth + 1, i, j)
            if new != child:
                changes.append((nib, new))
        if not changes:
            return None
        return rewrite_node(rec, changes)
