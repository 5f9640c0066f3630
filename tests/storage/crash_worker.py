"""Child process of the crash test, and the block contents both sides agree on.

    python -m tests.storage.crash_worker DIR SEED MAX_VERSIONS

opens the store in DIR, then commits one block after another (each block's state
version, block bytes, commit and an index entry in one synced batch), printing each
committed version, until it has committed MAX_VERSIONS or is killed. Every 7th
version it also prunes old state and blocks. The contents of version v are a pure
function of (seed, v), so the parent can recompute any version from scratch.
"""

from __future__ import annotations

import random
import sys

from blake3 import blake3

from storage import keys
from storage.blocks import BlockStore
from storage.kv import LevelKV, WriteBatch
from storage.state import StateTree

KEY_SPACE = 300
KEEP_VERSIONS = 5


def block_ops(seed: int, version: int) -> tuple[dict[bytes, bytes], list[bytes]]:
    rng = random.Random(seed * 1_000_003 + version)
    puts: dict[bytes, bytes] = {}
    deletes: list[bytes] = []
    for _ in range(rng.randrange(1, 40)):
        key = b"acct/%d" % rng.randrange(KEY_SPACE)
        if rng.random() < 0.25:
            deletes.append(key)
            puts.pop(key, None)
        else:
            puts[key] = rng.randbytes(rng.randrange(0, 200))
            if key in deletes:
                deletes.remove(key)
    return puts, deletes


def block_bytes(seed: int, version: int) -> bytes:
    puts, deletes = block_ops(seed, version)
    body = b"".join(k + v for k, v in sorted(puts.items())) + b"".join(sorted(deletes))
    return b"block %d %d " % (seed, version) + blake3(body).digest()


def block_hash(seed: int, version: int) -> bytes:
    return blake3(block_bytes(seed, version)).digest()


def prunes_at(version: int) -> bool:
    return version % 7 == 6


def main() -> None:
    path, seed, max_versions = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    kv = LevelKV.open(path, create=True, write_buffer_mb=1)
    tree = StateTree(kv)
    store = BlockStore(kv)
    for _ in range(max_versions):
        latest = tree.latest_version
        version = 0 if latest is None else latest + 1
        puts, deletes = block_ops(seed, version)
        staged = tree.stage(version, puts, deletes)
        extra = WriteBatch()
        extra.put(keys.index_key("crash", keys.u64(version)), staged.root)
        store.commit_block(
            version, block_hash(seed, version), block_bytes(seed, version), b"c%d" % version,
            staged, extra,
        )
        print(version, flush=True)
        if prunes_at(version):
            tree.prune(version - KEEP_VERSIONS)
            store.prune_blocks(version - KEEP_VERSIONS)
    kv.close()


if __name__ == "__main__":
    main()
