"""The authenticated state: a versioned 16-way sparse Merkle tree over LevelDB.

Theory of operation (docs/storage.md has the long form):

* A state key is placed by the 64 nibbles of `blake3(key)`. A subtree with one key
  is just that key's leaf, as high as it is unique; a subtree with two or more keys
  is an internal node with up to 16 children (no extension nodes, as in Jellyfish).
  The shape depends on the key set only, so the root does not depend on the order
  of updates. Hashes are those of storage.proof.
* Internal nodes are immutable records keyed by (version written, nibble path).
  A child is referenced by its hash and version (internal) or held inline as
  (leaf hash, key hash, value hash) (leaf), so updating a key rewrites only the
  internal nodes on its path and no separate leaf records exist.
* A version is one write batch: the new nodes, one root pointer, the value records
  of the keys that changed, and one "stale" record listing the nodes this version
  replaced and the keys it changed. `prune(below)` replays stale records up to
  `below` and deletes what they list, so every retained version stays readable.
* Values live in a second, versioned index keyed by (key hash, version), so `get`
  is one reverse seek and never walks the tree. A deleted key gets a tombstone.
* `stage` computes a version in one recursive pass over the sorted key hashes of
  the block: each touched node is read once, rewritten once and hashed once. A
  bounded cache keeps the upper nodes of the latest committed version decoded;
  nodes of a staged version enter it only once that version is seen committed.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from blake3 import blake3

from storage import keys
from storage.errors import CorruptDatabaseError, StateKeyError, VersionError
from storage.kv import KV, WriteBatch
from storage.proof import EMPTY_ROOT, HASH_LEN, Proof

# A child slot: None, (hash, version) for an internal node, or
# (leaf hash, key hash, value hash) for a leaf.
Slot = tuple[bytes, int] | tuple[bytes, bytes, bytes] | None
Node = list[Any]

MAX_KEY_LEN = 0xFFFF
CACHE_DEPTH = 4
DEFAULT_CACHE_NODES = 80_000

_LEAF = b"\x00"
_NODE = b"\x01"
_VALUE_PRESENT = b"\x01"
_VALUE_DELETED = b"\x00"
_ROOT_NODE = b"\x01"
_ROOT_LEAF = b"\x02"
_POP = tuple(bin(i).count("1") for i in range(1 << 16))


def encode_path(key_hash: bytes, depth: int) -> bytes:
    """u8 nibble count ‖ the nibbles packed two a byte (an odd last one high)."""
    half = depth >> 1
    if depth & 1:
        return bytes([depth]) + key_hash[:half] + bytes([key_hash[half] & 0xF0])
    return bytes([depth]) + key_hash[:half]


def _nibble(kh: bytes, depth: int) -> int:
    b = kh[depth >> 1]
    return b & 0x0F if depth & 1 else b >> 4


def encode_node(node: Node) -> tuple[bytes, bytes]:
    """(record, hash) of an internal node given its 16 slots."""
    bitmap = leafmap = 0
    body: list[bytes] = []
    hashes: list[bytes] = []
    for n in range(16):
        s = node[n]
        if s is None:
            continue
        bitmap |= 1 << n
        hashes.append(s[0])
        if len(s) == 3:
            leafmap |= 1 << n
            body.append(s[0] + s[1] + s[2])
        else:
            body.append(s[0] + s[1].to_bytes(8, "big"))
    bm = bitmap.to_bytes(2, "big")
    record = bm + leafmap.to_bytes(2, "big") + b"".join(body)
    return record, blake3(_NODE + bm + b"".join(hashes)).digest()


def decode_node(data: bytes) -> Node:
    """The 16 slots of a node record. Raises ValueError on a malformed record."""
    if len(data) < 4:
        raise ValueError("node record too short")
    bitmap = (data[0] << 8) | data[1]
    leafmap = (data[2] << 8) | data[3]
    if leafmap & ~bitmap or bitmap == 0:
        raise ValueError("node bitmaps inconsistent")
    node: Node = [None] * 16
    pos = 4
    for n in range(16):
        if not bitmap >> n & 1:
            continue
        if leafmap >> n & 1:
            node[n] = (data[pos : pos + 32], data[pos + 32 : pos + 64], data[pos + 64 : pos + 96])
            pos += 96
        else:
            node[n] = (data[pos : pos + 32], int.from_bytes(data[pos + 32 : pos + 40], "big"))
            pos += 40
    if pos != len(data):
        raise ValueError("node record length does not match its bitmap")
    return node


def encode_root(slot: Slot) -> bytes:
    if slot is None:
        return b""
    if len(slot) == 3:
        return _ROOT_LEAF + slot[0] + slot[1] + slot[2]
    return _ROOT_NODE + slot[0] + slot[1].to_bytes(8, "big")


def decode_root(data: bytes) -> Slot:
    if data == b"":
        return None
    if data[:1] == _ROOT_LEAF and len(data) == 97:
        return (data[1:33], data[33:65], data[65:97])
    if data[:1] == _ROOT_NODE and len(data) == 41:
        return (data[1:33], int.from_bytes(data[33:41], "big"))
    raise ValueError("bad root pointer")


def _slot_hash(slot: Slot) -> bytes:
    return EMPTY_ROOT if slot is None else slot[0]


def _check_bytes(what: str, b: object) -> bytes:
    if type(b) is not bytes:
        raise StateKeyError(f"state {what} must be bytes, got {type(b).__name__}")
    return b


class StagedVersion:
    """A computed but unwritten version: its root and the writes that make it."""

    __slots__ = ("_cacheable", "_ops", "_root_slot", "_stale_nodes", "root", "version")

    def __init__(
        self,
        version: int,
        root_slot: Slot,
        ops: list[tuple[bytes, bytes | None]],
        cacheable: dict[bytes, Node],
        stale_nodes: list[bytes],
    ) -> None:
        self.version = version
        self.root = _slot_hash(root_slot)
        self._root_slot = root_slot
        self._ops = ops
        self._cacheable = cacheable
        self._stale_nodes = stale_nodes

    def write_into(self, batch: WriteBatch) -> None:
        """Append this version's writes to `batch` (the caller writes it, sync=True)."""
        batch.ops.extend(self._ops)

    @property
    def write_count(self) -> int:
        return len(self._ops)


class StateTree:
    """Versioned authenticated map from bytes to bytes over a KV store."""

    def __init__(self, kv: KV, *, cache_nodes: int = DEFAULT_CACHE_NODES) -> None:
        self.kv = kv
        self._cache: dict[bytes, Node] = {}
        self._cache_limit = cache_nodes
        self._pending: StagedVersion | None = None
        self._oldest: int | None = None
        self._latest_seen: int | None = None
        self._refresh_bounds()

    # -- versions -----------------------------------------------------------------

    def _refresh_bounds(self) -> None:
        first = next(self.kv.iterate(keys.STATE_ROOT), None)
        last = next(self.kv.iterate(keys.STATE_ROOT, reverse=True), None)
        self._oldest = None if first is None else keys.decode_u64(first[0][2:])
        self._latest_seen = None if last is None else keys.decode_u64(last[0][2:])

    @property
    def latest_version(self) -> int | None:
        last = next(self.kv.iterate(keys.STATE_ROOT, reverse=True), None)
        latest = None if last is None else keys.decode_u64(last[0][2:])
        if latest != self._latest_seen:
            self._refresh_bounds()
        return latest

    @property
    def oldest_version(self) -> int | None:
        if self._oldest is None:
            self._refresh_bounds()
        return self._oldest

    def _check_version(self, version: int) -> None:
        if not isinstance(version, int) or version < 0:
            raise VersionError(f"bad version {version!r}")
        if self._latest_seen is None or version > self._latest_seen:
            self._refresh_bounds()
        if self._latest_seen is None:
            raise VersionError(f"version {version} not found: the tree has no versions")
        if version > self._latest_seen:
            raise VersionError(f"version {version} is newer than latest {self._latest_seen}")
        if self._oldest is not None and version < self._oldest:
            raise VersionError(f"version {version} was pruned (oldest kept {self._oldest})")

    def _root_slot(self, version: int | None) -> tuple[int | None, Slot]:
        if version is None:
            version = self.latest_version
            if version is None:
                return None, None
        else:
            self._check_version(version)
        raw = self.kv.get(keys.state_root_key(version))
        if raw is None:
            raise VersionError(f"version {version} not found")
        try:
            return version, decode_root(raw)
        except ValueError:
            raise self._corrupt(f"bad root pointer at version {version}") from None

    def _corrupt(self, detail: str) -> CorruptDatabaseError:
        return CorruptDatabaseError(getattr(self.kv, "path", "<memory>"), detail)

    def root(self, version: int | None = None) -> bytes:
        """Root hash at `version` (default latest); EMPTY_ROOT for an empty tree."""
        return _slot_hash(self._root_slot(version)[1])

    # -- reads --------------------------------------------------------------------

    def get(self, key: bytes, version: int | None = None) -> bytes | None:
        """Value of `key` at `version` (default latest): one reverse seek in the
        versioned value index."""
        kh = blake3(_check_bytes("key", key)).digest()
        prefix = keys.STATE_VALUE + kh
        if version is None:
            item = next(self.kv.iterate(prefix, reverse=True), None)
        else:
            self._check_version(version)
            stop = prefix + keys.u64(version) + b"\x00"
            item = next(self.kv.iterate(prefix, stop=stop, reverse=True), None)
        if item is None:
            return None
        return self._decode_value(item[1])

    def _decode_value(self, record: bytes) -> bytes | None:
        if record[:1] == _VALUE_DELETED and len(record) == 1:
            return None
        if record[:1] != _VALUE_PRESENT or len(record) < 3:
            raise self._corrupt("bad value record")
        klen = (record[1] << 8) | record[2]
        if len(record) < 3 + klen:
            raise self._corrupt("bad value record")
        return record[3 + klen :]

    def _load(self, version: int, path: bytes, cache: bool) -> Node:
        nk = keys.STATE_NODE + version.to_bytes(8, "big") + path
        node = self._cache.get(nk)
        if node is not None:
            return node
        raw = self.kv.get(nk)
        if raw is None:
            raise self._corrupt(f"missing tree node at version {version} depth {path[0]}")
        try:
            node = decode_node(raw)
        except ValueError as exc:
            raise self._corrupt(f"tree node at version {version}: {exc}") from None
        if cache and path[0] <= CACHE_DEPTH and len(self._cache) < self._cache_limit:
            self._cache[nk] = node
        return node

    def get_with_proof(self, key: bytes, version: int | None = None) -> tuple[bytes | None, Proof]:
        """Value of `key` (or None) at `version` and a proof of it against root(version)."""
        kh = blake3(_check_bytes("key", key)).digest()
        version, slot = self._root_slot(version)
        levels: list[tuple[int, bytes]] = []
        leaf: tuple[bytes, bytes] | None = None
        depth = 0
        while slot is not None:
            if len(slot) == 3:
                leaf = (slot[1], slot[2])
                break
            node = self._load(slot[1], encode_path(kh, depth), False)
            nib = _nibble(kh, depth)
            bitmap = 0
            sib: list[bytes] = []
            for n in range(16):
                s = node[n]
                if s is not None:
                    bitmap |= 1 << n
                    if n != nib:
                        sib.append(s[0])
            levels.append((bitmap, b"".join(sib)))
            slot = node[nib]
            depth += 1
        proof = Proof(tuple(levels), leaf)
        if leaf is None or leaf[0] != kh:
            return None, proof
        value = self.get(key, version)
        if value is None or blake3(value).digest() != leaf[1]:
            raise self._corrupt("value index disagrees with the tree")
        return value, proof

    # -- writes -------------------------------------------------------------------

    def _promote(self) -> None:
        """Move the nodes of a staged version into the cache once it is committed."""
        pending = self._pending
        if pending is None:
            return
        self._pending = None
        raw = self.kv.get(keys.state_root_key(pending.version))
        if raw != encode_root(pending._root_slot):
            return
        cache = self._cache
        for nk in pending._stale_nodes:
            cache.pop(nk, None)
        room = self._cache_limit - len(cache)
        for nk, node in pending._cacheable.items():
            if room <= 0:
                break
            if nk not in cache:
                room -= 1
            cache[nk] = node

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
        ops: dict[bytes, tuple[bytes, bytes | None, bytes | None]] = {}
        for key in deletes:
            _check_bytes("key", key)
            ops[blake3(key).digest()] = (key, None, None)
        for key, value in puts.items():
            _check_bytes("key", key)
            _check_bytes("value", value)
            if len(key) > MAX_KEY_LEN:
                raise StateKeyError(f"state key of {len(key)} bytes exceeds {MAX_KEY_LEN}")
            ops[blake3(key).digest()] = (key, value, blake3(value).digest())
        khs = sorted(ops)
        vhs = [ops[kh][2] for kh in khs]
        _, old_root = self._root_slot(latest) if latest is not None else (None, None)
        run = _Update(self, version, khs, vhs)
        new_root = run.update(old_root, 0, 0, len(khs))
        vbytes = keys.u64(version)
        out = run.writes
        stale_keys: list[bytes] = []
        for i in run.changed:
            kh = khs[i]
            key, new_value, _vh = ops[kh]
            if new_value is None:
                out.append((keys.STATE_VALUE + kh + vbytes, _VALUE_DELETED))
            else:
                rec = _VALUE_PRESENT + len(key).to_bytes(2, "big") + key + new_value
                out.append((keys.STATE_VALUE + kh + vbytes, rec))
            stale_keys.append(kh)
        out.append((keys.STATE_ROOT + vbytes, encode_root(new_root)))
        if run.stale or stale_keys:
            stale = [len(run.stale).to_bytes(4, "big")]
            stale.extend(nk[2:] for nk in run.stale)
            stale.extend(stale_keys)
            out.append((keys.STATE_STALE + vbytes, b"".join(stale)))
        out.sort(key=lambda kv: kv[0])
        staged = StagedVersion(version, new_root, out, run.cacheable, run.stale)
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
        readable and provable. One batch per pruned stale record, so a crash
        leaves a consistent (partly pruned) store."""
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
            self._prune_record(v, raw, batch)
            batch.delete(sk)
            for rk, _ in self.kv.iterate(keys.STATE_ROOT, stop=keys.state_root_key(v)):
                batch.delete(rk)
            self.kv.write(batch, sync=True)
        batch = WriteBatch()
        for rk, _ in self.kv.iterate(keys.STATE_ROOT, stop=keys.state_root_key(below_version)):
            batch.delete(rk)
        self.kv.write(batch, sync=True)
        self._refresh_bounds()

    def _prune_record(self, version: int, raw: bytes, batch: WriteBatch) -> None:
        try:
            count = int.from_bytes(raw[:4], "big")
            pos = 4
            for _ in range(count):
                depth = raw[pos + 8]
                end = pos + 9 + ((depth + 1) >> 1)
                if end > len(raw):
                    raise IndexError
                batch.delete(keys.STATE_NODE + raw[pos:end])
                pos = end
        except IndexError:
            raise self._corrupt(f"bad stale record at version {version}") from None
        rest = raw[pos:]
        if len(rest) % HASH_LEN:
            raise self._corrupt(f"bad stale record at version {version}")
        vbytes = keys.u64(version)
        for i in range(0, len(rest), HASH_LEN):
            kh = rest[i : i + HASH_LEN]
            prefix = keys.STATE_VALUE + kh
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
        klen = (rec[1] << 8) | rec[2]
        return rec[3 : 3 + klen], rec[3 + klen :]


class _Update:
    """One staging pass: recursive update of the tree over sorted key hashes."""

    __slots__ = ("cacheable", "changed", "khs", "stale", "tree", "vbytes", "version", "vhs", "writes")

    def __init__(
        self, tree: StateTree, version: int, khs: list[bytes], vhs: list[bytes | None]
    ) -> None:
        self.tree = tree
        self.version = version
        self.vbytes = version.to_bytes(8, "big")
        self.khs = khs
        self.vhs = vhs
        self.writes: list[tuple[bytes, bytes | None]] = []
        self.cacheable: dict[bytes, Node] = {}
        self.stale: list[bytes] = []
        self.changed: list[int] = []

    def _write(self, node: Node, kh: bytes, depth: int) -> Slot:
        record, h = encode_node(node)
        nk = keys.STATE_NODE + self.vbytes + encode_path(kh, depth)
        self.writes.append((nk, record))
        if depth <= CACHE_DEPTH:
            self.cacheable[nk] = node
        return (h, self.version)

    def build(self, items: list[tuple[bytes, bytes]], depth: int) -> Slot:
        """Subtree at `depth` holding exactly `items` (sorted (key hash, value hash))."""
        if not items:
            return None
        if len(items) == 1:
            kh, vh = items[0]
            return (blake3(_LEAF + kh + vh).digest(), kh, vh)
        node: Node = [None] * 16
        start = 0
        n_items = len(items)
        while start < n_items:
            nib = _nibble(items[start][0], depth)
            end = start + 1
            while end < n_items and _nibble(items[end][0], depth) == nib:
                end += 1
            node[nib] = self.build(items[start:end], depth + 1)
            start = end
        return self._write(node, items[0][0], depth)

    def update(self, slot: Slot, depth: int, lo: int, hi: int) -> Slot:
        """New slot for the subtree at `depth` after the ops khs[lo:hi]."""
        if lo == hi:
            return slot
        khs, vhs = self.khs, self.vhs
        if slot is None:
            items = []
            for i in range(lo, hi):
                vh = vhs[i]
                if vh is not None:
                    items.append((khs[i], vh))
                    self.changed.append(i)
            return self.build(items, depth)
        if len(slot) == 3:
            _, lk, lvh = slot
            items = []
            keep_old = True
            for i in range(lo, hi):
                kh, vh = khs[i], vhs[i]
                if kh == lk:
                    keep_old = False
                    if vh != lvh:
                        self.changed.append(i)
                    if vh is not None:
                        items.append((kh, vh))
                elif vh is not None:
                    items.append((kh, vh))
                    self.changed.append(i)
            if keep_old:
                if len(items) == 0:
                    return slot
                bisect.insort(items, (lk, lvh))
            elif len(items) == 1 and items[0] == (lk, lvh):
                return slot
            return self.build(items, depth)
        version: int = slot[1]
        path = encode_path(khs[lo], depth)
        old = self.tree._load(version, path, True)
        node = list(old)
        changed = False
        i = lo
        while i < hi:
            nib = _nibble(khs[i], depth)
            j = i + 1
            while j < hi and _nibble(khs[j], depth) == nib:
                j += 1
            child = old[nib]
            new = self.update(child, depth + 1, i, j)
            if new is not child:
                node[nib] = new
                changed = True
            i = j
        if not changed:
            return slot
        self.stale.append(keys.STATE_NODE + version.to_bytes(8, "big") + path)
        present = [s for s in node if s is not None]
        if not present:
            return None
        if len(present) == 1 and len(present[0]) == 3:
            return present[0]  # type: ignore[no-any-return]
        return self._write(node, khs[lo], depth)
