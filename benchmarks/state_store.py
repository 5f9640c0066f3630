"""Authenticated state store vs raw plyvel batched puts, on real LevelDB directories.

Writes N keys (32-byte keys, 100-byte values) in blocks of 5,000 updates, each
block as one synced batch. The baseline writes the same keys and values with plain
plyvel batched puts into its own directory, in a child process (so its LevelDB does
not count in the store's peak RSS); the two alternate block by block, in lockstep,
so that the machine's speed swings hit both equally. Then samples
proofs at the latest version. The last line printed is one JSON object.

    python benchmarks/state_store.py [--keys 1000000] [--block 5000] [--proofs 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import plyvel

from storage.kv import LevelKV, WriteBatch
from storage.proof import Proof, verify_proof
from storage.state import StateTree

VALUE_LEN = 100
KEY_LEN = 32


def block_items(seed: int, index: int, size: int) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed * 1_000_003 + index)
    return [(rng.randbytes(KEY_LEN), rng.randbytes(VALUE_LEN)) for _ in range(size)]


def anon_rss_kb() -> int:
    """Anonymous resident memory now (heap and LevelDB's own buffers), without the
    file-backed pages of the table files LevelDB maps into memory."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def dir_bytes(path: str) -> int:
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def raw_worker(path: str, seed: int, block: int, keys: int) -> None:
    """The raw plyvel baseline, in its own process so that its LevelDB (and the
    table files LevelDB maps) do not count in the store's resident set. Reads one
    block number a line, writes that block with plain batched puts, answers with
    the seconds the write took; on "q" answers with its peak RSS in MB."""
    raw = plyvel.DB(path, create_if_missing=True)
    for line in sys.stdin:
        if line.strip() == "q":
            break
        b = int(line)
        items = block_items(seed, b, min(block, keys - b * block))
        t0 = time.perf_counter()
        wb = raw.write_batch(sync=True)
        for k, v in items:
            wb.put(k, v)
        wb.write()
        print(time.perf_counter() - t0, flush=True)
    raw.close()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, flush=True)


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--raw-worker":
        raw_worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--block", type=int, default=5_000)
    ap.add_argument("--proofs", type=int, default=5_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--dir", default=None, help="parent of the two database directories")
    ap.add_argument("--max-open-files", type=int, default=None, help="LevelKV.open override")
    ap.add_argument("--write-buffer-mb", type=int, default=None, help="LevelKV.open override")
    ap.add_argument("--cache-mb", type=int, default=None, help="StateTree node cache override")
    args = ap.parse_args()

    base = tempfile.mkdtemp(prefix="bh-bench-", dir=args.dir)
    tree_dir, raw_dir = os.path.join(base, "tree"), os.path.join(base, "raw")
    try:
        options = {}
        if args.max_open_files is not None:
            options["max_open_files"] = args.max_open_files
        if args.write_buffer_mb is not None:
            options["write_buffer_mb"] = args.write_buffer_mb
        kv = LevelKV.open(tree_dir, create=True, **options)
        tree = StateTree(kv) if args.cache_mb is None else StateTree(kv, cache_bytes=args.cache_mb << 20)
        raw = subprocess.Popen(
            [sys.executable, __file__, "--raw-worker", raw_dir, str(args.seed), str(args.block),
             str(args.keys)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert raw.stdin is not None and raw.stdout is not None
        blocks = (args.keys + args.block - 1) // args.block
        auth_s: list[float] = []
        stage_s: list[float] = []
        write_s: list[float] = []
        # CPU time of this thread while staging: on a loaded 2-core host it moves
        # far less than wall time, so it shows staging work from run to run.
        stage_cpu_s: list[float] = []
        writes_per_block: list[int] = []
        peak_anon = 0
        raw_s: list[float] = []
        for b in range(blocks):
            size = min(args.block, args.keys - b * args.block)
            items = block_items(args.seed, b, size)
            # Alternate which side goes first so neither always follows a GC pause.
            order = (0, 1) if b % 2 == 0 else (1, 0)
            for side in order:
                if side == 0:
                    raw.stdin.write(f"{b}\n")
                    raw.stdin.flush()
                    raw_s.append(float(raw.stdout.readline()))
                else:
                    t0 = time.perf_counter()
                    c0 = time.thread_time()
                    staged = tree.stage(b, dict(items), ())
                    stage_cpu_s.append(time.thread_time() - c0)
                    t1 = time.perf_counter()
                    batch = WriteBatch()
                    staged.write_into(batch)
                    writes_per_block.append(len(batch))
                    kv.write(batch, sync=True)
                    t2 = time.perf_counter()
                    auth_s.append(t2 - t0)
                    stage_s.append(t1 - t0)
                    write_s.append(t2 - t1)
            peak_anon = max(peak_anon, anon_rss_kb())
            if b % 20 == 19:
                print(
                    f"block {b + 1}/{blocks}: auth {size / auth_s[-1]:,.0f}/s "
                    f"raw {size / raw_s[-1]:,.0f}/s",
                    file=sys.stderr,
                )
        raw.stdin.write("q\n")
        raw.stdin.flush()
        raw_peak_rss = float(raw.stdout.readline())
        raw.wait()

        # Per-segment ratios (10 blocks a segment) and their median, beside the totals.
        seg = 10
        seg_ratios = [
            sum(raw_s[i : i + seg]) / sum(auth_s[i : i + seg]) for i in range(0, blocks, seg)
        ]

        rng = random.Random(args.seed)
        sample_keys = []
        for _ in range(args.proofs):
            b = rng.randrange(blocks)
            size = min(args.block, args.keys - b * args.block)
            items = block_items(args.seed, b, size)
            sample_keys.append(items[rng.randrange(size)][0])
        missing = [rng.randbytes(KEY_LEN) for _ in range(args.proofs // 10)]
        root = tree.root()
        t0 = time.perf_counter()
        answers = [tree.get_with_proof(k) for k in sample_keys]
        gen_s = time.perf_counter() - t0
        encoded = [p.encode() for _, p in answers]
        t0 = time.perf_counter()
        ok = all(
            verify_proof(root, k, v, p) for k, (v, p) in zip(sample_keys, answers, strict=True)
        )
        verify_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ok_decoded = all(
            verify_proof(root, k, v, Proof.decode_untrusted(e))
            for k, (v, _), e in zip(sample_keys, answers, encoded, strict=True)
        )
        decode_verify_s = time.perf_counter() - t0
        absent = [tree.get_with_proof(k) for k in missing]
        ok_absent = all(
            v is None and verify_proof(root, k, None, p) for k, (v, p) in zip(missing, absent, strict=True)
        )
        if not (ok and ok_decoded and ok_absent) or any(v is None for v, _ in answers):
            raise SystemExit("proof check failed")
        t0 = time.perf_counter()
        for k in sample_keys:
            tree.get(k)
        get_s = time.perf_counter() - t0
        kv.close()

        result = {
            "keys": args.keys,
            "block_size": args.block,
            "auth_updates_per_s": round(args.keys / sum(auth_s)),
            "raw_plyvel_puts_per_s": round(args.keys / sum(raw_s)),
            "ratio": round(sum(raw_s) / sum(auth_s), 4),
            "ratio_median_of_segments": round(statistics.median(seg_ratios), 4),
            "block_commit_ms_p50": round(percentile(auth_s, 0.5) * 1000, 2),
            "block_commit_ms_p99": round(percentile(auth_s, 0.99) * 1000, 2),
            "stage_ms_p50": round(percentile(stage_s, 0.5) * 1000, 2),
            "stage_cpu_ms_p50": round(percentile(stage_cpu_s, 0.5) * 1000, 2),
            "writes_per_block_p50": int(statistics.median(writes_per_block)),
            "write_ms_p50": round(percentile(write_s, 0.5) * 1000, 2),
            "write_ms_p99": round(percentile(write_s, 0.99) * 1000, 2),
            "proof_gen_per_s": round(len(sample_keys) / gen_s),
            "proof_verify_per_s": round(len(sample_keys) / verify_s),
            "proof_decode_verify_per_s": round(len(sample_keys) / decode_verify_s),
            "proof_bytes_p50": int(statistics.median(len(e) for e in encoded)),
            "get_per_s": round(len(sample_keys) / get_s),
            "node_cache_misses_per_block": round(tree.cache_misses / blocks, 1),
            "node_cache_mb": round(tree.cache_size[1] / (1 << 20), 1),
            "disk_bytes_per_key": round(dir_bytes(tree_dir) / args.keys, 1),
            "raw_disk_bytes_per_key": round(dir_bytes(raw_dir) / args.keys, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "peak_anon_rss_mb": round(peak_anon / 1024, 1),
            "raw_process_peak_rss_mb": round(raw_peak_rss, 1),
        }
        print(json.dumps(result))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
