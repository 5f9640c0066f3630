"""Crash test: a child process commits blocks on a real LevelDB directory and is
SIGKILLed at random moments; after each kill the store must reopen at the last
fully committed version with the root a from-scratch recomputation gives.

The kill moments are randomized on purpose (that is the point of the test, not a
wait for a condition): some kills land during start-up and recovery, most right
after a reported commit plus a random sub-5 ms delay, i.e. inside the next
block's staging or its synced write, or inside a prune.
"""

from __future__ import annotations

import os
import random
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from storage import keys
from storage.blocks import BlockStore
from storage.kv import LevelKV, MemoryKV
from storage.proof import verify_proof
from storage.state import StateTree
from tests.storage.crash_worker import KEEP_VERSIONS, block_bytes, block_ops, prunes_at

ROOT = Path(__file__).resolve().parents[2]
KILLS = int(os.environ.get("BLACKHOLE_CRASH_KILLS", "120"))
SEED = int(os.environ.get("BLACKHOLE_CRASH_SEED", "20261121"))
LINE_DEADLINE_S = 30.0


class Model:
    """State after each version, replayed from the deterministic block contents."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.states: list[dict[bytes, bytes]] = []

    def at(self, version: int) -> dict[bytes, bytes]:
        while len(self.states) <= version:
            state = dict(self.states[-1]) if self.states else {}
            puts, deletes = block_ops(self.seed, len(self.states))
            for k in deletes:
                state.pop(k, None)
            state.update(puts)
            self.states.append(state)
        return self.states[version]

    def root(self, version: int) -> bytes:
        return StateTree(MemoryKV()).apply(0, self.at(version), [])


def read_line(proc: subprocess.Popen[bytes], sel: selectors.BaseSelector) -> bytes | None:
    """One line from the child, or None at EOF; fails past the deadline."""
    assert proc.stdout is not None
    deadline = time.monotonic() + LINE_DEADLINE_S
    while True:
        left = deadline - time.monotonic()
        assert left > 0, "child printed nothing before the deadline"
        if sel.select(timeout=left):
            return proc.stdout.readline() or None


def check_store(path: Path, model: Model, seed: int, lo: int, hi: int) -> int:
    """Reopen after a kill; the latest version must be in [lo, hi] and intact."""
    kv = LevelKV.open(path)
    try:
        tree = StateTree(kv)
        store = BlockStore(kv)
        latest = tree.latest_version
        assert latest is not None and lo <= latest <= hi, (seed, lo, latest, hi)
        assert store.latest_height == latest, "block and state version diverged"
        state = model.at(latest)
        root = tree.root(latest)
        assert root == model.root(latest), f"seed {seed}: root mismatch at version {latest}"
        assert kv.get(keys.index_key("crash", keys.u64(latest))) == root
        assert store.get_block(latest) == block_bytes(seed, latest)
        assert store.get_commit(latest) == b"c%d" % latest
        rng = random.Random(latest)
        for i in rng.sample(range(300), 12):
            key = b"acct/%d" % i
            value, proof = tree.get_with_proof(key)
            assert value == state.get(key)
            assert verify_proof(root, key, value, proof)
        oldest = tree.oldest_version
        assert oldest is not None
        assert tree.root(oldest) == model.root(oldest)
        return latest
    finally:
        kv.close()


def test_sigkill_at_random_moments(tmp_path: Path) -> None:
    path = tmp_path / "db"
    rng = random.Random(SEED)
    model = Model(SEED)
    committed = -1  # highest version known durable
    started = time.monotonic()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for kill in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.storage.crash_worker", str(path), str(SEED), "100000"],
            cwd=ROOT, stdout=subprocess.PIPE, env=env,
        )
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        reported = committed
        try:
            if kill % 10 == 3:
                # During interpreter start-up, LevelDB recovery or the first block.
                time.sleep(rng.uniform(0.0, 0.25))
            else:
                for _ in range(rng.randrange(1, 6)):
                    line = read_line(proc, sel)
                    assert line is not None, "child exited early"
                    reported = int(line)
                time.sleep(rng.uniform(0.0, 0.005))
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=LINE_DEADLINE_S) == -signal.SIGKILL
            # Lines printed before the kill are durable commits too.
            rest = proc.stdout.read()
            for line in rest.split():
                reported = int(line)
        finally:
            sel.close()
            proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        committed = check_store(path, model, SEED, max(reported, 0), reported + 1)
    elapsed = time.monotonic() - started
    assert committed >= KILLS, f"only {committed} versions in {KILLS} runs"
    print(f"{KILLS} kills, {committed + 1} versions, {elapsed:.1f}s, seed {SEED}")
    # Pruning ran (the oldest kept version moved) and never went past what the
    # child asked for (a kill may skip a prune; the next one catches up).
    kv = LevelKV.open(path)
    try:
        tree = StateTree(kv)
        oldest = tree.oldest_version
        assert oldest is not None and 0 < oldest <= committed - KEEP_VERSIONS
        last_prune = max(v for v in range(committed + 1) if prunes_at(v))
        assert oldest <= last_prune - KEEP_VERSIONS
        for v in range(oldest, committed + 1):
            assert tree.root(v) == model.root(v)
    finally:
        kv.close()
