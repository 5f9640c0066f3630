"""The consensus write-ahead log.

Theory of operation
-------------------
Everything that can change the consensus core's state is appended here *before*
the core sees it: peers' proposals and votes, fired timeouts, block verdicts,
and this validator's own signed proposals and votes. After a crash the driver
rebuilds the core for the height it was working on and feeds it the same entries
again, so it ends up in the state it had (the sign-state guard, not the WAL, is
what makes double-signing impossible; the WAL makes restarts quick and lets the
validator keep its lock and re-send its votes).

File format (one file)::

    header : b"BHWAL\\x00\\x01\\n"                      (8 bytes)
    record : u32 length | u32 crc32(payload) | payload  (big-endian)
    payload: canonical msgpack array [kind, height, *fields]

Durability: own messages and the end-of-height marker are written with fsync;
peers' messages are written with ``os.write`` (they survive a process crash,
and losing them to a power cut costs at most a round: peers re-send).

Opening repairs: records are read from the start; at the first record that is
short (torn write), longer than the limit, fails its checksum, or does not
decode, the file is truncated there, fsynced, and one warning is logged with
the offset and the reason. No manual repair tool is needed. A file whose header
is damaged is renamed to ``<name>.corrupt`` (kept for inspection) and a fresh
log started. Either way the driver replays what survived of the height.

Growth is bounded: after an end-of-height marker the file is compacted (when
above ``rotate_bytes``) by writing a fresh file holding only that marker to a
temporary name, fsyncing it and renaming it over the log.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from chain.encoding import pack, unpack_untrusted
from chain.errors import DecodeError
from consensus.errors import UsageError, WALError

log = logging.getLogger(__name__)

HEADER = b"BHWAL\x00\x01\n"
_FRAME = struct.Struct(">II")
DEFAULT_MAX_RECORD_BYTES = 128 * 1024 * 1024
DEFAULT_ROTATE_BYTES = 4 * 1024 * 1024


class EntryKind(IntEnum):
    """What a WAL entry holds; the fields are listed per kind."""

    PROPOSAL = 1
    """A peer's proposal: now_ms, proposal bytes, block bytes or None."""
    VOTE = 2
    """A peer's vote: now_ms, vote bytes."""
    TIMEOUT = 3
    """A fired timeout: now_ms, step, round."""
    VERDICT = 4
    """A block verdict: now_ms, block hash, valid (bool)."""
    BLOCK = 5
    """A block that arrived without its proposal: now_ms, block bytes."""
    COMMIT = 6
    """A peer's commit for the current height: now_ms, commit bytes, block bytes or None."""
    OWN_PROPOSAL = 7
    """Our own signed proposal (fsynced): now_ms, proposal bytes, block bytes."""
    OWN_VOTE = 8
    """Our own signed vote (fsynced): now_ms, vote bytes."""
    OWN_BLOCK = 9
    """The block we built as proposer: now_ms, block bytes."""
    END_HEIGHT = 10
    """The height was decided and the block stored (fsynced): no fields."""


Field = bytes | int | bool | None


@dataclass(frozen=True, slots=True)
class WALEntry:
    """One record of the log."""

    kind: EntryKind
    """What the entry holds."""
    height: int
    """The consensus height the entry belongs to."""
    fields: tuple[Field, ...]
    """Kind-specific fields (see :class:`EntryKind`)."""

    def encode(self) -> bytes:
        return pack([int(self.kind), self.height, *self.fields])

    @classmethod
    def decode(cls, data: bytes, max_size: int) -> WALEntry:
        """Decode one payload; raises :class:`chain.errors.DecodeError`."""
        obj = unpack_untrusted(data, max_size)
        if type(obj) is not list or len(obj) < 2:
            raise DecodeError("WAL entry is not an array [kind, height, ...]")
        kind, height, *rest = obj
        if type(kind) is not int or kind not in EntryKind._value2member_map_:
            raise DecodeError(f"WAL entry has an unknown kind {kind!r}")
        if type(height) is not int or height < 0:
            raise DecodeError("WAL entry has a bad height")
        for f in rest:
            if f is not None and type(f) not in (bytes, int, bool):
                raise DecodeError("WAL entry field of a wrong type")
        return cls(EntryKind(kind), height, tuple(rest))


@dataclass(frozen=True, slots=True)
class Repair:
    """What opening the log had to fix (None fields: nothing)."""

    truncated_at: int | None
    """Byte offset where a torn or corrupt tail was cut off."""
    dropped_bytes: int
    """How many bytes were cut."""
    reason: str
    """Why (short, for the log line)."""
    moved_to: Path | None
    """Where a file with a damaged header was moved."""


class WAL:
    """An open write-ahead log. Not thread-safe; one writer (the driver)."""

    def __init__(self, path: Path, fd: int, entries: list[WALEntry], size: int,
                 repair: Repair | None, max_record_bytes: int, rotate_bytes: int) -> None:
        self.path = path
        self._fd = fd
        self._entries = entries
        self._size = size
        self.repair = repair
        """What opening repaired, or None if the file was intact."""
        self._max = max_record_bytes
        self._rotate = rotate_bytes

    @classmethod
    def open(cls, path: str | os.PathLike[str], *,
             max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
             rotate_bytes: int = DEFAULT_ROTATE_BYTES) -> WAL:
        """Open (creating if missing) and repair the log at ``path``."""
        p = Path(path)
        repair: Repair | None = None
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            data = b""
        except OSError as exc:
            raise WALError(f"cannot read WAL {p}: {exc}") from exc
        if data and not data.startswith(HEADER) and len(data) >= len(HEADER):
            moved = p.with_name(p.name + ".corrupt")
            try:
                os.replace(p, moved)
            except OSError as exc:
                raise WALError(f"cannot move damaged WAL {p} aside: {exc}") from exc
            log.warning("WAL %s: damaged header; moved to %s and started a fresh log", p, moved)
            repair = Repair(None, len(data), "damaged header", moved)
            data = b""
        if len(data) < len(HEADER):
            if data:
                log.warning("WAL %s: torn header (%d bytes); started a fresh log", p, len(data))
                repair = Repair(0, len(data), "torn header", None)
            cls._write_fresh(p, HEADER)
            data = HEADER
        entries, good_end, reason = cls._scan(data, max_record_bytes)
        try:
            fd = os.open(p, os.O_RDWR | os.O_APPEND)
        except OSError as exc:
            raise WALError(f"cannot open WAL {p}: {exc}") from exc
        if good_end < len(data):
            os.ftruncate(fd, good_end)
            os.fsync(fd)
            log.warning(
                "WAL %s: %s at byte %d of %d; truncated the tail (%d bytes), replaying the height",
                p, reason, good_end, len(data), len(data) - good_end,
            )
            repair = Repair(good_end, len(data) - good_end, reason, None)
        return cls(p, fd, entries, good_end, repair, max_record_bytes, rotate_bytes)

    @staticmethod
    def _scan(data: bytes, max_record: int) -> tuple[list[WALEntry], int, str]:
        entries: list[WALEntry] = []
        pos = len(HEADER)
        n = len(data)
        while pos < n:
            if n - pos < _FRAME.size:
                return entries, pos, "torn record header"
            length, crc = _FRAME.unpack_from(data, pos)
            if length > max_record:
                return entries, pos, f"record length {length} above the limit"
            start = pos + _FRAME.size
            end = start + length
            if end > n:
                return entries, pos, "torn record"
            payload = data[start:end]
            if zlib.crc32(payload) != crc:
                return entries, pos, "checksum mismatch"
            try:
                entries.append(WALEntry.decode(payload, max_record))
            except DecodeError as exc:
                return entries, pos, f"undecodable record ({exc})"
            pos = end
        return entries, pos, ""

    @staticmethod
    def _write_fresh(p: Path, content: bytes) -> None:
        tmp = p.with_name(p.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, content)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, p)
        dfd = os.open(p.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    @property
    def entries(self) -> list[WALEntry]:
        """Every entry read at open plus those appended since (in order)."""
        return list(self._entries)

    def entries_for_height(self, height: int) -> list[WALEntry]:
        """Entries of ``height`` to replay (empty if that height has ended)."""
        out: list[WALEntry] = []
        for e in self._entries:
            if e.height != height:
                continue
            if e.kind == EntryKind.END_HEIGHT:
                return []
            out.append(e)
        return out

    def last_ended_height(self) -> int | None:
        """The highest height with an end marker, if any survived."""
        best: int | None = None
        for e in self._entries:
            if e.kind == EntryKind.END_HEIGHT and (best is None or e.height > best):
                best = e.height
        return best

    def append(self, entry: WALEntry, *, sync: bool) -> None:
        """Append one entry; with ``sync`` return only after fsync."""
        if self._fd < 0:
            raise UsageError("WAL is closed")
        payload = entry.encode()
        if len(payload) > self._max:
            raise WALError(f"WAL entry of {len(payload)} bytes is above the limit")
        frame = _FRAME.pack(len(payload), zlib.crc32(payload)) + payload
        try:
            _write_all(self._fd, frame)
            if sync:
                os.fsync(self._fd)
        except OSError as exc:
            raise WALError(f"cannot write WAL {self.path}: {exc}") from exc
        self._size += len(frame)
        self._entries.append(entry)

    def end_height(self, height: int) -> None:
        """Mark ``height`` decided and stored (fsync); compact the file if large."""
        marker = WALEntry(EntryKind.END_HEIGHT, height, ())
        self.append(marker, sync=True)
        if self._size > self._rotate:
            payload = marker.encode()
            content = HEADER + _FRAME.pack(len(payload), zlib.crc32(payload)) + payload
            os.close(self._fd)
            self._fd = -1
            self._write_fresh(self.path, content)
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
            self._size = len(content)
            self._entries = [marker]
        else:
            self._entries = [e for e in self._entries if e.height >= height]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __iter__(self) -> Iterator[WALEntry]:
        return iter(list(self._entries))

    def __enter__(self) -> WAL:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
