"""The trusted store: verified light blocks and the client's settings on disk.

Plain files, one per record, each ``MAGIC ‖ blake3(payload) ‖ payload`` and
written atomically (temporary file, fsync, rename), so a crash leaves the old
file or the new one, never half of one, and a damaged file is reported as
:class:`CorruptStore` instead of being trusted. Layout under the store dir::

    meta                  settings: chain id, root, primary, witnesses, halt reason
    blocks/<height:020>   verified light blocks (LightBlock.encode())
    evidence/<hash>.ev    light-client attack evidence the client produced

Pruning keeps the newest ``keep`` blocks (and never the newest one).
"""

from __future__ import annotations

import bisect
import contextlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import blake3
import msgpack

from chain import errors as chain_errors
from light.errors import CorruptStore, NotInitialised, StoreError
from light.verifier import LightBlock

MAGIC = b"BHL1"
_HEAD = len(MAGIC) + 32
MAX_FILE_BYTES = 32 * 1024 * 1024


def write_file(path: Path, payload: bytes) -> None:
    """Write ``payload`` with its checksum, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    data = MAGIC + blake3.blake3(payload).digest() + payload
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc}") from exc


def read_file(path: Path) -> bytes:
    """The payload of a file written by :func:`write_file`; CorruptStore if damaged."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc
    if len(data) < _HEAD or len(data) > MAX_FILE_BYTES or data[: len(MAGIC)] != MAGIC:
        raise CorruptStore(f"{path}: not a light store file (bad size or magic)")
    payload = data[_HEAD:]
    if blake3.blake3(payload).digest() != data[len(MAGIC) : _HEAD]:
        raise CorruptStore(f"{path}: checksum mismatch")
    return payload


@dataclass(frozen=True, slots=True)
class Meta:
    """The client's settings and state besides the blocks."""

    chain_id: str
    root_height: int
    root_hash: bytes
    primary: str
    witnesses: tuple[str, ...] = ()
    halted: str = ""
    """Why the client halted (an attack was detected); empty while running."""
    options: dict[str, Any] = field(default_factory=dict)
    """trusting_period_ms, max_clock_drift_ms, mode ("skipping" or "sequential")."""

    def encode(self) -> bytes:
        out: bytes = msgpack.packb([self.chain_id, self.root_height, self.root_hash, self.primary,
                              list(self.witnesses), self.halted, self.options])
        return out

    @classmethod
    def decode(cls, data: bytes, where: str) -> Meta:
        try:
            f = msgpack.unpackb(data)
            chain_id, height, root, primary, witnesses, halted, options = f
            if not (isinstance(chain_id, str) and isinstance(height, int) and isinstance(root, bytes)
                    and isinstance(primary, str) and isinstance(witnesses, list)
                    and all(isinstance(w, str) for w in witnesses) and isinstance(halted, str)
                    and isinstance(options, dict)):
                raise ValueError("field types")
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise CorruptStore(f"{where}: meta does not decode: {exc}") from exc
        return cls(chain_id, height, root, primary, tuple(witnesses), halted, options)


class TrustedStore:
    """Verified light blocks by height, the meta record and recorded evidence."""

    def __init__(self, path: Path | str, *, keep: int = 10_000) -> None:
        self.path = Path(path)
        self.keep = keep
        self.blocks_dir = self.path / "blocks"
        self.evidence_dir = self.path / "evidence"
        try:
            self.blocks_dir.mkdir(parents=True, exist_ok=True)
            self.evidence_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store at {self.path}: {exc}") from exc
        self._heights = sorted(self._scan())
        self._cache: dict[int, LightBlock] = {}

    def _scan(self) -> list[int]:
        out = []
        for name in os.listdir(self.blocks_dir):
            if name.endswith(".tmp"):
                continue
            if not (len(name) == 20 and name.isdigit()):
                raise CorruptStore(f"{self.blocks_dir}: unexpected file {name!r}")
            out.append(int(name))
        return out

    # -- meta ----------------------------------------------------------------------

    def meta(self) -> Meta:
        path = self.path / "meta"
        if not path.exists():
            raise NotInitialised(f"no light client at {self.path}: run `blackhole light init` first")
        return Meta.decode(read_file(path), str(path))

    def save_meta(self, meta: Meta) -> None:
        write_file(self.path / "meta", meta.encode())

    def set_halted(self, reason: str) -> None:
        self.save_meta(replace(self.meta(), halted=reason))

    # -- blocks --------------------------------------------------------------------

    def heights(self) -> list[int]:
        return list(self._heights)

    def _block_path(self, height: int) -> Path:
        return self.blocks_dir / f"{height:020d}"

    def save(self, block: LightBlock) -> None:
        write_file(self._block_path(block.height), block.encode())
        if block.height not in self._heights:
            bisect.insort(self._heights, block.height)
        self._cache[block.height] = block
        if len(self._heights) > self.keep:
            self.prune(self.keep)

    def get(self, height: int) -> LightBlock | None:
        found = self._cache.get(height)
        if found is not None:
            return found
        if height not in self._heights:
            return None
        path = self._block_path(height)
        payload = read_file(path)
        try:
            block = LightBlock.decode_untrusted(payload)
        except chain_errors.DecodeError as exc:
            raise CorruptStore(f"{path}: light block does not decode: {exc}") from exc
        if block.height != height:
            raise CorruptStore(f"{path}: holds height {block.height}")
        if len(self._cache) > 1024:
            self._cache.clear()
        self._cache[height] = block
        return block

    def latest(self) -> LightBlock:
        if not self._heights:
            raise NotInitialised(f"no trusted header at {self.path}: run `blackhole light init` first")
        block = self.get(self._heights[-1])
        if block is None:  # pragma: no cover - the list and the files agree
            raise CorruptStore(f"{self.path}: block {self._heights[-1]} vanished")
        return block

    def nearest_below(self, height: int) -> LightBlock | None:
        """The trusted block with the greatest height <= ``height``."""
        i = bisect.bisect_right(self._heights, height)
        return None if i == 0 else self.get(self._heights[i - 1])

    def nearest_above(self, height: int) -> LightBlock | None:
        """The trusted block with the smallest height >= ``height``."""
        i = bisect.bisect_left(self._heights, height)
        return None if i == len(self._heights) else self.get(self._heights[i])

    def prune(self, keep: int) -> int:
        """Delete all but the newest ``keep`` (>= 1) blocks; returns how many went."""
        keep = max(1, keep)
        doomed = self._heights[:-keep]
        for h in doomed:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._block_path(h))
            self._cache.pop(h, None)
        self._heights = self._heights[len(doomed):]
        return len(doomed)

    def clear(self) -> None:
        """Forget every block (a new trusted root)."""
        self.prune(1)
        for h in list(self._heights):
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._block_path(h))
        self._heights = []
        self._cache.clear()

    # -- evidence ------------------------------------------------------------------

    def record_evidence(self, evidence_hash: bytes, payload: bytes) -> Path:
        path = self.evidence_dir / f"{evidence_hash.hex()}.ev"
        write_file(path, payload)
        return path

    def evidence(self) -> list[bytes]:
        return [read_file(self.evidence_dir / n) for n in sorted(os.listdir(self.evidence_dir))
                if n.endswith(".ev")]
