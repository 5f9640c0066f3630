"""The block store: block bytes and commit bytes by height and by hash.

`commit_block` writes the block, its commit, its hash index, the state version the
block produces and the caller's extra index writes in ONE LevelDB batch with
sync=True, so after a crash either all of height h is there or none of it.
The block store's latest height and the state tree's latest version therefore move
together.
"""

from __future__ import annotations

from storage import keys
from storage.errors import BlockStoreError
from storage.kv import KV, WriteBatch
from storage.state import StagedVersion


def _check_bytes(what: str, value: object) -> bytes:
    if type(value) is not bytes:
        raise BlockStoreError(f"{what} must be bytes, got {type(value).__name__}")
    return value


class BlockStore:
    """Blocks and commits over a KV store (the same store as the state tree)."""

    def __init__(self, kv: KV) -> None:
        self.kv = kv

    @property
    def latest_height(self) -> int | None:
        last = next(self.kv.iterate(keys.BLOCK, reverse=True), None)
        return None if last is None else keys.decode_u64(last[0][2:])

    @property
    def base_height(self) -> int | None:
        """Lowest height still stored (after pruning)."""
        first = next(self.kv.iterate(keys.BLOCK), None)
        return None if first is None else keys.decode_u64(first[0][2:])

    def commit_block(
        self,
        height: int,
        block_hash: bytes,
        block_bytes: bytes,
        commit_bytes: bytes | None,
        staged: StagedVersion | None,
        extra: WriteBatch | None = None,
    ) -> None:
        """Store block `height` (latest + 1, any height when empty), the commit seen
        for it, the state version it produces (its version must equal `height`) and
        `extra` in one synced batch."""
        _check_bytes("block bytes", block_bytes)
        if commit_bytes is not None:
            _check_bytes("commit bytes", commit_bytes)
        latest = self.latest_height
        if latest is not None and height != latest + 1:
            raise BlockStoreError(f"cannot commit height {height}: latest is {latest}")
        batch = WriteBatch()
        batch.put(keys.block_key(height), block_bytes)
        batch.put(keys.block_hash_key(height), _check_bytes("block hash", block_hash))
        batch.put(keys.block_height_key(block_hash), keys.u64(height))
        if commit_bytes is not None:
            batch.put(keys.commit_key(height), commit_bytes)
        if staged is not None:
            if staged.version != height:
                raise BlockStoreError(
                    f"state version {staged.version} staged for block at height {height}"
                )
            staged.write_into(batch)
        if extra is not None:
            batch.extend(extra)
        self.kv.write(batch, sync=True)

    def get_block(self, height: int) -> bytes | None:
        return self.kv.get(keys.block_key(height))

    def get_block_hash(self, height: int) -> bytes | None:
        return self.kv.get(keys.block_hash_key(height))

    def get_height_by_hash(self, block_hash: bytes) -> int | None:
        raw = self.kv.get(keys.block_height_key(block_hash))
        return None if raw is None else keys.decode_u64(raw)

    def get_block_by_hash(self, block_hash: bytes) -> bytes | None:
        height = self.get_height_by_hash(block_hash)
        return None if height is None else self.get_block(height)

    def get_commit(self, height: int) -> bytes | None:
        return self.kv.get(keys.commit_key(height))

    def set_commit(self, height: int, commit_bytes: bytes) -> None:
        """Replace the commit of a stored block (the canonical commit for h arrives
        in block h + 1)."""
        _check_bytes("commit bytes", commit_bytes)
        if self.kv.get(keys.block_key(height)) is None:
            raise BlockStoreError(f"no block at height {height} to set a commit for")
        batch = WriteBatch()
        batch.put(keys.commit_key(height), commit_bytes)
        self.kv.write(batch, sync=True)

    def prune_blocks(self, below_height: int) -> int:
        """Delete blocks, commits and hash entries below `below_height` (the latest
        block is always kept). Returns how many blocks were deleted."""
        latest = self.latest_height
        if latest is None:
            return 0
        below = min(below_height, latest)
        batch = WriteBatch()
        count = 0
        for k, _ in self.kv.iterate(keys.BLOCK, stop=keys.block_key(below)):
            height = keys.decode_u64(k[2:])
            batch.delete(k)
            batch.delete(keys.commit_key(height))
            bh = self.kv.get(keys.block_hash_key(height))
            if bh is not None:
                batch.delete(keys.block_height_key(bh))
            batch.delete(keys.block_hash_key(height))
            count += 1
        self.kv.write(batch, sync=True)
        return count
