"""Errors of the storage package.

Every error is one line. Database errors name the path of the database (or of the
damaged file inside it) so an operator knows what to look at.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every error raised by storage/."""


class DatabaseError(StorageError):
    """A database could not be used. The operator's problem (or the disk's), not a bug."""

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        self.detail = " ".join(str(detail).split())
        super().__init__(f"{self.kind}: {path}: {self.detail}")

    kind = "database error"


class MissingDatabaseError(DatabaseError):
    """Raised when opening without `create=True` a path that holds no database."""

    kind = "no database"


class DatabaseLockedError(DatabaseError):
    """Raised when another process (or another handle in this one) holds the database lock."""

    kind = "database locked"


class TruncatedDatabaseError(DatabaseError):
    """Raised when a file of the database is shorter than its own structure says."""

    kind = "truncated database"


class CorruptDatabaseError(DatabaseError):
    """Raised when LevelDB reports a checksum or format failure, or when our own
    records in the database contradict each other."""

    kind = "corrupt database"


class UnsupportedLayoutError(DatabaseError):
    """Raised when a store was written with another on-disk layout of storage/ (its
    store marker names another layout version than this build's). The operator's
    problem: there is no migration; re-create the store and re-sync."""

    kind = "unsupported store layout"


class DatabaseIOError(DatabaseError):
    """Raised on an I/O failure reported by LevelDB (disk full, permission denied, ...)."""

    kind = "database I/O error"


class DatabaseClosedError(StorageError):
    """Raised when a closed store is used: a bug of the caller."""


class ProofDecodeError(StorageError):
    """Raised by `Proof.decode_untrusted` for malformed proof bytes: the sender's fault."""


class VersionError(StorageError):
    """Raised for a state version that is not available: pruned, not yet written,
    or not the successor of the latest one when staging. The caller's fault."""


class BlockStoreError(StorageError):
    """Raised when a block commit breaks the block store's order (wrong height,
    state version that does not match the height, unknown height for a commit)."""


class KeyLayoutError(StorageError, ValueError):
    """Raised by storage.keys for arguments that have no key (negative or too large
    integers, hashes of the wrong length, over-long names). The caller's fault."""


class StateKeyError(StorageError, ValueError):
    """Raised for a state key or value the tree cannot hold (not bytes, too long)."""
