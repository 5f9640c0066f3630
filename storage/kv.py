"""The key-value store protocol and its two implementations.

`MemoryKV` keeps a dict and a sorted key list (unit tests); `LevelKV` is plyvel
(LevelDB) and is what the node and every integration test use. Both apply a
`WriteBatch` atomically; `LevelKV.write(..., sync=True)` returns only after LevelDB
has synced its log, which is what a block commit uses.

A batch can carry `meanwhile` callbacks: work the writer has to do once the batch
is written and that needs nothing from the store (the state tree moving a
version's nodes into its cache). `LevelKV.write` runs them in the calling thread
while LevelDB writes and syncs the batch in another (LevelDB releases the
interpreter lock for that), so the two overlap; `MemoryKV.write` runs them after
the write. They run only for a batch that is written, and even when the write
fails: a callback must leave its owner correct if the batch never lands (the
state tree does: its cache is emptied when the store's latest version is not the
cache's).

plyvel is imported by `LevelKV.open` only, so importing this module (or
storage.proof) never loads LevelDB.
"""

from __future__ import annotations

import bisect
import os
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from storage.errors import (
    CorruptDatabaseError,
    DatabaseClosedError,
    DatabaseError,
    DatabaseIOError,
    DatabaseLockedError,
    MissingDatabaseError,
    StorageError,
    TruncatedDatabaseError,
    UnsupportedLayoutError,
)
from storage.keys import STORE_MARKER, STORE_MARKER_FAMILY, STORE_MARKER_KEY, prefix_end


class KV(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def iterate(
        self,
        prefix: bytes = b"",
        *,
        start: bytes | None = None,
        stop: bytes | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[bytes, bytes]]: ...

    def write(self, batch: WriteBatch, *, sync: bool = False) -> None: ...

    def close(self) -> None: ...


class WriteBatch:
    """An ordered list of puts and deletes, applied atomically by `KV.write`.
    When a key appears twice the later operation wins.

    Keys and values are kept in two lists side by side (`values[i]` None is a
    delete): a block's batch holds tens of thousands of operations, and pairs
    would be as many tuples for the cyclic collector to scan."""

    __slots__ = ("keys", "meanwhile", "values")

    def __init__(self) -> None:
        self.keys: list[bytes] = []
        self.values: list[bytes | None] = []
        self.meanwhile: list[Callable[[], None]] = []
        """Callbacks `KV.write` runs while (LevelKV) or after (MemoryKV) it writes."""

    def put(self, key: bytes, value: bytes) -> None:
        if type(key) is not bytes or type(value) is not bytes:
            raise StorageError("WriteBatch.put takes bytes key and bytes value")
        self.keys.append(key)
        self.values.append(value)

    def delete(self, key: bytes) -> None:
        if type(key) is not bytes:
            raise StorageError("WriteBatch.delete takes a bytes key")
        self.keys.append(key)
        self.values.append(None)

    def extend(self, other: WriteBatch) -> None:
        self.keys.extend(other.keys)
        self.values.extend(other.values)
        self.meanwhile.extend(other.meanwhile)

    @property
    def ops(self) -> list[tuple[bytes, bytes | None]]:
        """The operations as (key, value or None) pairs, in order."""
        return list(zip(self.keys, self.values, strict=True))

    def __len__(self) -> int:
        return len(self.keys)


def _bounds(prefix: bytes, start: bytes | None, stop: bytes | None) -> tuple[bytes, bytes | None]:
    lo = prefix if start is None or start < prefix else start
    hi = prefix_end(prefix)
    if stop is not None and (hi is None or stop < hi):
        hi = stop
    return lo, hi


class MemoryKV:
    """In-memory KV for unit tests. Same semantics as LevelKV, no durability."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []
        self._closed = False

    def _check(self) -> None:
        if self._closed:
            raise DatabaseClosedError("memory store is closed")

    def get(self, key: bytes) -> bytes | None:
        self._check()
        return self._data.get(key)

    def iterate(
        self,
        prefix: bytes = b"",
        *,
        start: bytes | None = None,
        stop: bytes | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[bytes, bytes]]:
        self._check()
        lo, hi = _bounds(prefix, start, stop)
        i = bisect.bisect_left(self._keys, lo)
        j = len(self._keys) if hi is None else bisect.bisect_left(self._keys, hi)
        keys = self._keys[i:j]
        if reverse:
            keys.reverse()
        data = self._data
        return iter([(k, data[k]) for k in keys])

    def write(self, batch: WriteBatch, *, sync: bool = False) -> None:
        self._check()
        data, keys = self._data, self._keys
        for key, value in zip(batch.keys, batch.values, strict=True):
            if value is None:
                if key in data:
                    del data[key]
                    del keys[bisect.bisect_left(keys, key)]
            else:
                if key not in data:
                    bisect.insort(keys, key)
                data[key] = value
        for callback in batch.meanwhile:
            callback()

    def close(self) -> None:
        self._closed = True

    def __len__(self) -> int:
        return len(self._data)


# A LevelDB table file ends with a 48-byte footer whose last 8 bytes are this magic
# number (little-endian); a table cut short loses it.
_TABLE_MAGIC = struct.pack("<Q", 0xDB4775248B80FB57)
_FOOTER_LEN = 48


_LOG_BLOCK = 32768
_LOG_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


class _ManifestFormatError(Exception):
    """The manifest is not in the format this reader knows; LevelDB will judge it."""


def _manifest_records(data: bytes) -> tuple[list[bytes], bool]:
    """Records of a LevelDB log-format file (the MANIFEST), and whether the last one
    is cut short. LevelDB itself reads a cut-short tail as a clean end of file, so a
    truncated manifest would silently forget the tables its lost records listed."""
    records: list[bytes] = []
    pending: list[bytes] | None = None
    pos, n = 0, len(data)
    while pos < n:
        left_in_block = _LOG_BLOCK - pos % _LOG_BLOCK
        if left_in_block < _LOG_HEADER:
            pos += left_in_block
            continue
        if n - pos < _LOG_HEADER:
            return records, any(data[pos:])
        length = data[pos + 4] | (data[pos + 5] << 8)
        kind = data[pos + 6]
        if kind == 0 and length == 0:
            pos += left_in_block  # zero padding: the rest of the block is unused
            continue
        end = pos + _LOG_HEADER + length
        if end > n:
            return records, True
        payload = data[pos + _LOG_HEADER : end]
        if kind == _FULL:
            records.append(payload)
        elif kind == _FIRST:
            pending = [payload]
        elif kind in (_MIDDLE, _LAST) and pending is not None:
            pending.append(payload)
            if kind == _LAST:
                records.append(b"".join(pending))
                pending = None
        else:
            raise _ManifestFormatError(f"record type {kind}")
        pos = end
    return records, pending is not None


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _ManifestFormatError("bad varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _live_tables(records: list[bytes]) -> dict[int, int]:
    """File number -> size of every table the manifest's version edits leave live."""
    live: dict[int, int] = {}
    for rec in records:
        pos = 0
        while pos < len(rec):
            tag, pos = _varint(rec, pos)
            if tag == 1:  # comparator name
                size, pos = _varint(rec, pos)
                pos += size
            elif tag in (2, 3, 4, 9):  # log number, next file, last sequence, prev log
                _, pos = _varint(rec, pos)
            elif tag == 5:  # compact pointer: level, internal key
                _, pos = _varint(rec, pos)
                size, pos = _varint(rec, pos)
                pos += size
            elif tag == 6:  # deleted file: level, number
                _, pos = _varint(rec, pos)
                number, pos = _varint(rec, pos)
                live.pop(number, None)
            elif tag == 7:  # new file: level, number, size, smallest, largest
                _, pos = _varint(rec, pos)
                number, pos = _varint(rec, pos)
                size, pos = _varint(rec, pos)
                for _ in range(2):
                    klen, pos = _varint(rec, pos)
                    pos += klen
                live[number] = size
            else:
                raise _ManifestFormatError(f"version edit tag {tag}")
            if pos > len(rec):
                raise _ManifestFormatError("version edit overruns its record")
    return live


def _check_files(path: str) -> None:
    """Structural checks LevelDB itself defers until a table is first read."""
    names = os.listdir(path)
    current = os.path.join(path, "CURRENT")
    if "CURRENT" not in names:
        if any(n.endswith((".ldb", ".sst", ".log")) or n.startswith("MANIFEST-") for n in names):
            raise CorruptDatabaseError(path, "CURRENT file is missing but database files exist")
        raise MissingDatabaseError(path, "not a LevelDB directory (no CURRENT file)")
    with open(current, "rb") as f:
        manifest = f.read(4096)
    if not manifest.endswith(b"\n"):
        raise TruncatedDatabaseError(current, "CURRENT does not end with a newline")
    manifest_path = os.path.join(path, manifest.strip().decode("ascii", "replace"))
    if not os.path.isfile(manifest_path):
        raise CorruptDatabaseError(path, f"CURRENT names a missing manifest {manifest_path}")
    with open(manifest_path, "rb") as f:
        manifest_data = f.read()
    if not manifest_data:
        raise TruncatedDatabaseError(manifest_path, "manifest is empty")
    try:
        records, cut_short = _manifest_records(manifest_data)
        live = _live_tables(records)
    except _ManifestFormatError:
        return  # not a format we know: LevelDB's own checks decide
    if cut_short:
        raise TruncatedDatabaseError(manifest_path, "last manifest record is cut short")
    # Only tables the manifest lists are checked: a table a crash left half-written
    # is not live and LevelDB deletes it on open.
    for number, expected in sorted(live.items()):
        for ext in (".ldb", ".sst"):
            file_path = os.path.join(path, f"{number:06d}{ext}")
            if os.path.exists(file_path):
                break
        else:
            continue  # LevelDB reports missing tables itself
        with open(file_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            if size != expected:
                raise TruncatedDatabaseError(
                    file_path, f"table file is {size} bytes, the manifest says {expected}"
                )
            f.seek(size - len(_TABLE_MAGIC))
            if size < _FOOTER_LEN or f.read(len(_TABLE_MAGIC)) != _TABLE_MAGIC:
                raise TruncatedDatabaseError(file_path, "table file lost its footer")


def _translate(path: str, exc: BaseException) -> DatabaseError:
    import plyvel

    arg = exc.args[0] if exc.args else exc
    text = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
    low = text.lower()
    if isinstance(exc, plyvel.CorruptionError) or "corruption" in low:
        if "truncated" in low or "too short" in low:
            return TruncatedDatabaseError(path, text)
        return CorruptDatabaseError(path, text)
    if "lock" in low:
        return DatabaseLockedError(path, text)
    if "does not exist" in low or "no such file" in low:
        return MissingDatabaseError(path, text)
    if isinstance(exc, plyvel.IOError):
        return DatabaseIOError(path, text)
    return DatabaseError(path, text)


class LevelKV:
    """KV over a LevelDB directory (plyvel). Reads verify block checksums, writes
    with `sync=True` return after the log is synced."""

    def __init__(self, db: Any, path: str) -> None:
        self._db: Any = db
        self.path = path

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        create: bool = False,
        cache_mb: int = 8,
        write_buffer_mb: int = 8,
        max_open_files: int = 48,
    ) -> LevelKV:
        """Open (or with `create=True` create) the database at `path`.

        Raises MissingDatabaseError, DatabaseLockedError, TruncatedDatabaseError or
        CorruptDatabaseError (all DatabaseError), each one line naming the path.
        """
        import plyvel

        try:
            p = os.path.abspath(os.fspath(path))
        except TypeError:
            raise StorageError(f"database path must be a str or path, got {type(path).__name__}") from None
        if os.path.exists(p) and not os.path.isdir(p):
            raise MissingDatabaseError(p, "path is not a directory")
        if not create and not os.path.isdir(p):
            raise MissingDatabaseError(p, "no such directory")
        if os.path.isdir(p) and (not create or os.path.exists(os.path.join(p, "CURRENT"))):
            _check_files(p)
        try:
            db = plyvel.DB(
                p,
                create_if_missing=create,
                paranoid_checks=True,
                bloom_filter_bits=10,
                lru_cache_size=cache_mb << 20,
                write_buffer_size=write_buffer_mb << 20,
                max_open_files=max_open_files,
                # Nearly everything stored is hashes, signatures or ciphertext:
                # Snappy found nothing to save and took ~20% of the CPU of a
                # 1M-key state benchmark in the compaction thread.
                compression=None,
            )
        except plyvel.Error as exc:
            raise _translate(p, exc) from None
        kv = cls(db, p)
        try:
            kv._check_marker(create)
        except BaseException:
            kv.close()
            raise
        return kv

    def _check_marker(self, create: bool) -> None:
        """Every store we create holds a marker key; a store that lost it (tables
        dropped, wrong directory) is refused instead of opening empty."""
        marker = self.get(STORE_MARKER_KEY)
        if marker == STORE_MARKER:
            return
        if marker is None and create and next(self.iterate(), None) is None:
            batch = WriteBatch()
            batch.put(STORE_MARKER_KEY, STORE_MARKER)
            self.write(batch, sync=True)
            return
        if marker is None:
            raise CorruptDatabaseError(self.path, "store marker missing: not a Blackhole store or its tables were lost")
        if marker.startswith(STORE_MARKER_FAMILY):
            raise UnsupportedLayoutError(
                self.path,
                f"written with layout {marker.decode('ascii', 'replace')}, this build reads"
                f" {STORE_MARKER.decode()}; there is no migration: re-create the store and re-sync",
            )
        raise CorruptDatabaseError(self.path, f"unknown store marker {marker!r}")

    def _closed(self) -> DatabaseClosedError:
        return DatabaseClosedError(f"database is closed: {self.path}")

    def get(self, key: bytes) -> bytes | None:
        db = self._db
        if db is None:
            raise self._closed()
        try:
            value: bytes | None = db.get(key, verify_checksums=True)
        except Exception as exc:
            raise self._wrap(exc) from None
        return value

    def _wrap(self, exc: BaseException) -> StorageError:
        import plyvel

        if isinstance(exc, plyvel.Error):
            return _translate(self.path, exc)
        if isinstance(exc, RuntimeError) and "closed" in str(exc):
            return self._closed()
        if isinstance(exc, TypeError):
            return StorageError(f"keys and values must be bytes: {exc}")
        raise exc

    def iterate(
        self,
        prefix: bytes = b"",
        *,
        start: bytes | None = None,
        stop: bytes | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[bytes, bytes]]:
        db = self._db
        if db is None:
            raise self._closed()
        lo, hi = _bounds(prefix, start, stop)
        try:
            # The raw iterator checks LevelDB's status after every move; plyvel's
            # high-level iterator ends silently when a block fails its checksum.
            it = db.raw_iterator(verify_checksums=True)
        except Exception as exc:
            raise self._wrap(exc) from None
        return self._walk(it, lo, hi, reverse)

    def _walk(
        self, it: Any, lo: bytes, hi: bytes | None, reverse: bool
    ) -> Iterator[tuple[bytes, bytes]]:
        try:
            if not reverse:
                it.seek(lo)
                while it.valid():
                    k = it.key()
                    if hi is not None and k >= hi:
                        return
                    yield k, it.value()
                    it.next()
            else:
                if hi is None:
                    it.seek_to_last()
                else:
                    it.seek(hi)
                    if it.valid():
                        it.prev()
                    else:
                        it.seek_to_last()
                while it.valid():
                    k = it.key()
                    if k < lo:
                        return
                    yield k, it.value()
                    it.prev()
        except Exception as exc:
            raise self._wrap(exc) from None
        finally:
            it.close()

    def write(self, batch: WriteBatch, *, sync: bool = False) -> None:
        db = self._db
        if db is None:
            raise self._closed()
        try:
            wb = db.write_batch(sync=sync)
            put, delete = wb.put, wb.delete
            for key, value in zip(batch.keys, batch.values, strict=True):
                if value is None:
                    delete(key)
                else:
                    put(key, value)
            if not batch.meanwhile:
                wb.write()
                return
        except Exception as exc:
            raise self._wrap(exc) from None
        failed: list[BaseException] = []

        def write() -> None:
            try:
                wb.write()
            except BaseException as exc:  # handed to the caller below
                failed.append(exc)

        writer = threading.Thread(target=write, name="leveldb-write")
        writer.start()
        try:
            for callback in batch.meanwhile:
                callback()
        finally:
            writer.join()
            if failed:
                raise self._wrap(failed[0]) from None

    def verify(self) -> int:
        """Read every entry with checksums on; returns the count. Raises
        CorruptDatabaseError (or TruncatedDatabaseError) naming the path."""
        n = 0
        for _ in self.iterate():
            n += 1
        return n

    def compact(self) -> None:
        db = self._db
        if db is None:
            raise self._closed()
        try:
            db.compact_range()
        except Exception as exc:
            raise self._wrap(exc) from None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> LevelKV:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
