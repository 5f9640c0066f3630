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
  the block: each touched node is read once, rewritten once and hashed once. That
  pass lives in storage.treekernel (compiled by mypyc when built; storage.accel).
  A bounded cache keeps the node records of the latest committed version keyed by
  path; nodes of a staged version replace theirs only once that version is seen
  committed.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator, Mapping

from blake3 import blake3

from storage import accel, keys
from storage import treekernel as _pure
from storage.errors import CorruptDatabaseError, StateKeyError, VersionError
from storage.kv import KV, WriteBatch
from storage.proof import EMPTY_ROOT, HASH_LEN, Proof

# The staging pass and node-record helpers: the mypyc-compiled build of
# storage.treekernel when one built from the current source is present, else the
# module itself (storage.accel decides, once, at import).
_kernel = accel.load(_pure)
KERNEL: str = accel.describe(_kernel)
"""'compiled' or 'pure': which build of storage.treekernel this process runs."""
Updater: type[_pure.Updater] = _kernel.Updater
hash_updates: Callable[
    [Iterable[tuple[object, object]], Iterable[object]],
    dict[bytes, tuple[bytes, bytes | None, bytes | None]],
] = _kernel.hash_updates
promote: Callable[
    [dict[bytes, bytes], list[bytes], list[bytes], list[int], list[bytes], int, int], int
] = _kernel.promote
stage_writes: Callable[
    [_pure.Updater, int, bytes, dict[bytes, tuple[bytes, bytes | None, bytes | None]]],
    tuple[list[bytes], list[bytes]],
] = _kernel.stage_writes
CACHE_ENTRY_OVERHEAD = _pure.CACHE_ENTRY_OVERHEAD
check_node = _pure.check_node
node_hash = _pure.node_hash
node_child = _pure.node_child
encode_path = _pure.encode_path

EMPTY = _pure.EMPTY
INTERNAL_SLOT = _pure.INTERNAL_SLOT
LEAF_SLOT = _pure.LEAF_SLOT
DEFAULT_CACHE_BYTES = 96 << 20

_LEAF = _pure._LEAF
_VALUE_PRESENT = _pure._VALUE_PRESENT
_VALUE_DELETED = _pure._VALUE_DELETED
_POP = _pure._POP
_nibble = _pure._nibble


def _slot_hash(slot: bytes) -> bytes:
    return slot[:32] if slot else EMPTY_ROOT


def _check_bytes(what: str, b: object) -> bytes:
    if type(b) is not bytes:
        raise StateKeyError(f"state {what} must be bytes, got {type(b).__name__}")
    return b


class StagedVersion:
    """A computed but unwritten version: its root and the writes that make it."""

    __slots__ = (
        "_keys", "_olds", "_paths", "_records", "_removed", "_root_slot", "_tree", "_values", "root",
        "version",
    )

    def __init__(
        self,
        version: int,
        root_slot: bytes,
        writes: tuple[list[bytes], list[bytes]],
        run: _pure.Updater | None = None,
        tree: StateTree | None = None,
    ) -> None:
        self._tree = tree
        self.version = version
        self.root = _slot_hash(root_slot)
        self._root_slot = root_slot
        self._keys, self._values = writes
        # What the cache update needs from the pass (see treekernel.promote).
        self._paths: list[bytes] = [] if run is None else run.paths
        self._records: list[bytes] = [] if run is None else run.records
        self._olds: list[int] = [] if run is None else run.olds
        self._removed: list[bytes] = [] if run is None else run.removed

    def write_into(self, batch: WriteBatch) -> None:
        """Append this version's writes to `batch` (the caller writes it, sync=True).

        Also hands the batch the tree's cache update for this version, which the
        store runs while it writes the batch (see storage.kv)."""
        batch.keys.extend(self._keys)
        batch.values.extend(self._values)
        tree = self._tree
        if tree is not None:
            batch.meanwhile.append(lambda: tree._promote_written(self))



class StateTree:
    """Versioned authenticated map from bytes to bytes over a KV store."""

    def __init__(self, kv: KV, *, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.kv = kv
        self._cache: dict[bytes, bytes] = {}
        self._cache_used = 0
        self._cache_limit = cache_bytes
        self._cache_version: int | None = None
        """The version whose nodes `_cache` holds, keyed by path (see Updater)."""
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

    def _clear_cache(self) -> None:
        self._cache.clear()
        self._cache_used = 0
        self._cache_version = None

    def _load(self, slot: bytes, path: bytes) -> bytes:
        """The internal node `slot` (hash ‖ u64 version) points to, at `path`.

        The cache holds one version's node at each path; a cached record is used
        when it hashes to the slot's hash, which makes it the very node asked for
        whatever version is being read, and whatever a concurrent staging pass in
        another thread is doing to the cache."""
        rec = self._cache.get(path)
        if rec is not None and node_hash(rec) == slot[:32]:
            return rec
        return self._read_node(keys.STATE_NODE + slot[32:40] + path)

    def _read_node(self, nk: bytes) -> bytes:
        rec = self.kv.get(nk)
        if rec is None:
            raise self._corrupt(f"missing tree node {nk[2:].hex()}")
        try:
            check_node(rec)
        except ValueError as exc:
            raise self._corrupt(f"tree node {nk[2:].hex()}: {exc}") from None
        return rec

    def _load_cached(self, vbytes: bytes, path: bytes) -> bytes:
        """Read a node of the cached (latest) version the cache lacks, keeping it in
        the cache if there is room."""
        self.cache_misses += 1
        rec = self._read_node(keys.STATE_NODE + vbytes + path)
        size = len(rec) + len(path) + CACHE_ENTRY_OVERHEAD
        if self._cache_used + size <= self._cache_limit:
            self._cache[path] = rec
            self._cache_used += size
        return rec

    def get_with_proof(self, key: bytes, version: int | None = None) -> tuple[bytes | None, Proof]:
        """Value of `key` (or None) at `version` and a proof of it against root(version)."""
        kh = blake3(_check_bytes("key", key)).digest()
        version, slot = self._root_slot(version)
        levels: list[tuple[int, bytes]] = []
        depth = 0
        while len(slot) == INTERNAL_SLOT:
            rec = self._load(slot, encode_path(kh, depth))
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
        """Move the nodes of a staged version into the cache if it was committed
        without its batch's cache update (written by another handle's batch)."""
        pending = self._pending
        if pending is not None and self.kv.get(keys.state_root_key(pending.version)) == pending._root_slot:
            self._promote_written(pending)
        self._pending = None

    def _promote_written(self, staged: StagedVersion) -> None:
        """Move the nodes of `staged` into the cache and drop those it replaced; run
        by the store while it writes the batch holding `staged` (storage.kv).

        It does not wait for the write: if the batch does not land, the cache
        claims a version the store does not have, and the next `stage` (which
        compares the two) empties it. Proofs use a cached node only when it hashes
        to its parent's slot, so readers in other threads stay right meanwhile.
        Rewritten nodes replace their cached predecessors in place; new paths are
        added while there is room. A pass reads nodes root first, so when the tree
        outgrows the cache the upper levels, read by every pass, are the ones kept."""
        if self._pending is not staged:
            return  # staged again since (a new round's block), or already promoted
        self._pending = None
        self._cache_used = promote(
            self._cache,
            staged._paths,
            staged._records,
            staged._olds,
            staged._removed,
            self._cache_used,
            self._cache_limit,
        )
        self._cache_version = staged.version

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
        # The pass allocates tens of thousands of tuples and lists and frees none
        # in a cycle: the cyclic collector would run dozens of times a block for
        # nothing (about 5% of a block's time at 1M keys), so it waits till the end.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._stage_pass(version, latest, puts, deletes)
        finally:
            if gc_was_enabled:
                gc.enable()

    def _stage_pass(
        self, version: int, latest: int | None, puts: Mapping[bytes, bytes], deletes: Iterable[bytes]
    ) -> StagedVersion:
        # key hash -> (key, value or None, leaf slot or None)
        ops = hash_updates(puts.items(), deletes)
        khs = sorted(ops)
        leaves = [ops[kh][2] for kh in khs]
        old_root = EMPTY if latest is None else self._root_slot(latest)[1]
        if self._cache_version != latest:
            # The store moved on without this handle (another writer): start over.
            self._clear_cache()
            self._cache_version = latest
        run = Updater(self._cache, self._load_cached, version, khs, leaves)
        new_root = run.update(old_root, 0, 0, len(khs))
        # Sorted keys make LevelDB's memtable inserts ~25% cheaper than random order.
        out = stage_writes(run, version, new_root, ops)
        staged = StagedVersion(version, new_root, out, run, self)
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
