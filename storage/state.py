"""The authenticated state: a versioned 16-way sparse Merkle tree over LevelDB.

Theory of operation (docs/storage.md has the long form):

* A state key is placed by the 64 nibbles of `blake3(key)`. A subtree with one key
  is just that key's leaf, as high as it is unique; a subtree with two or more keys
  is an internal node with up to 16 children (no extension nodes, as in Jellyfish).
  The shape depends on the key set only, so the root does not depend on the order
  of updates. Hashes are those of storage.proof.
* Internal nodes are immutable records keyed by (version written, nibble path).
  A child is referenced by its hash and version (internal) or held inline as
  (leaf hash, key hash) (leaf), so updating a key rewrites only the
  internal nodes on its path and no separate leaf records exist.
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
from collections.abc import Iterable, Iterator, Mapping

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

EMPTY = b""
INTERNAL_SLOT = 40
LEAF_SLOT = 64
MAX_KEY_LEN = 0xFFFF
DEFAULT_CACHE_BYTES = 128 << 20

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
        seen = self._latest_seen
        if seen is not None and self.kv.get(keys.state_root_key(seen)) is not None:
            # Root pointers are contiguous (every version is latest + 1 and pruning
            # keeps the latest), so two point reads, the second answered by the
            # bloom filters, replace a reverse seek through every table.
            while self.kv.get(keys.state_root_key(seen + 1)) is not None:
                seen += 1
            self._latest_seen = seen
            return seen
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
            check_node(rec)
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
        while len(slot) == INTERNAL_SLOT:
            rec = self._load(keys.STATE_NODE + slot[32:40] + encode_path(kh, depth))
            bm = (rec[0] << 8) | rec[1]
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
    """One staging pass: recursive update of the tree over sorted key hashes."""

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
        record, h = make_node(slots)
        self.nodes.append((_NODE_PREFIX + self.vbytes + encode_path(items[0][0], depth), record))
        return h + self.vbytes

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
        nk = _NODE_PREFIX + slot[32:40] + path
        rec = self.cache.get(nk)
        if rec is None:
            rec = self.tree._load_cached(nk)
        hexes = self.hexes
        first = hexes[lo][depth]
        if first != hexes[hi - 1][depth]:
            return self._update_many(slot, nk, rec, path, depth, lo, hi)
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
        self.stale.append(nk)
        if new:
            nbm = bm | bit
            nlm = lm | bit if len(new) == LEAF_SLOT else lm & ~bit
            hs = rec[4:h_at] + new[:32] + rec[h_end:xs]
            extras = rec[xs:x_at] + new[32:] + rec[x_end:]
        else:
            nbm = bm & ~bit
            nlm = lm & ~bit
            if nbm == 0:
                return EMPTY
            hs = rec[4:h_at] + rec[h_end:xs]
            extras = rec[xs:x_at] + rec[x_end:]
        if nlm == nbm and _POP[nbm] == 1:
            return hs + extras
        head = _U16[nbm]
        self.nodes.append((_NODE_PREFIX + self.vbytes + path, head + _U16[nlm] + hs + extras))
        return blake3(_NODE + head + hs).digest() + self.vbytes

    def _update_many(
        self, slot: bytes, nk: bytes, rec: bytes, path: bytes, depth: int, lo: int, hi: int
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
        self.stale.append(nk)
        record, h, single_leaf = rewrite_node(rec, changes)
        if not record:
            return single_leaf
        self.nodes.append((_NODE_PREFIX + self.vbytes + path, record))
        return h + self.vbytes
