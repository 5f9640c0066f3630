"""Light client: header verification and state-proof checking rates.

Before any timing the script builds a synthetic signed chain (light/synth.py:
real Ed25519 keys, real headers, real precommits) of --heights headers (10,000
by default) with 4 validators. Two of the four are replaced every --rotate
heights (1,000), so after two rotations none of the trusted signers is left
and skipping verification has to bisect.

* headers_per_s_sequential: light.verifier.verify_adjacent over every height
  (validator set chaining, header hash = commit block hash, every signature
  of the commit checked: 4 Ed25519 verifications a header).
* headers_per_s_skipping: heights covered / seconds for light.verifier.verify_to
  from height 1 to the last height (bisection included; the light blocks are
  already in memory, so this is verification, not network).
* proofs_verified_per_s: storage.proof.verify_proof of inclusion proofs drawn
  from a real StateTree of --keys keys (MemoryKV), the light client's per-read
  check.

Baseline in the same run, interleaved: bare Ed25519 verifications per second
(nacl.bindings.crypto_sign_open): `seq_ratio` = sequential headers/s
times 4 over that rate (1.0 = the header checks cost nothing beyond the
signatures). Repeats alternate; medians are reported.

    .venv/bin/python benchmarks/light.py [--heights 10000] [--repeats 3]

The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import itertools

import nacl.bindings

from light import verifier as vf
from light.synth import build_chain, key
from storage.kv import MemoryKV
from storage.proof import verify_proof
from storage.state import StateTree

CHAIN = "bench-light"


def ed25519_rate(n: int = 2000) -> float:
    """Bare pynacl verifications per second (the primitive chain.crypto.verify wraps)."""
    pub, secret = nacl.bindings.crypto_sign_seed_keypair(b"\x01" * 32)
    msg = b"x" * 32
    signed = nacl.bindings.crypto_sign(msg, secret)
    t = time.perf_counter()
    for _ in range(n):
        nacl.bindings.crypto_sign_open(signed, pub)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heights", type=int, default=10_000)
    ap.add_argument("--rotate", type=int, default=1_000)
    ap.add_argument("--keys", type=int, default=20_000)
    ap.add_argument("--proofs", type=int, default=5_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    t0 = time.perf_counter()
    keys = [key(f"v{i}") for i in range(4)]
    changes = {}
    current = list(keys)
    for n, h in enumerate(range(args.rotate, args.heights + 1, args.rotate)):
        current = [*current[2:], key(f"r{n}a"), key(f"r{n}b")]
        changes[h] = list(current)
    chain = build_chain(CHAIN, args.heights, keys, changes)
    now = chain[-1].time_ms + 1000
    print(f"built {len(chain)} signed headers in {time.perf_counter() - t0:.1f}s", file=sys.stderr)

    rng = random.Random(7)
    tree = StateTree(MemoryKV())
    puts = {rng.randbytes(34): rng.randbytes(rng.randint(8, 200)) for _ in range(args.keys)}
    tree.apply(1, puts, ())
    root = tree.root(1)
    sample = rng.sample(sorted(puts), min(args.proofs, len(puts)))
    proofs = [(k, *tree.get_with_proof(k, 1)) for k in sample]

    seq_rates, skip_rates, proof_rates, base_rates, hops = [], [], [], [], 0
    for _ in range(args.repeats):
        base_rates.append(ed25519_rate())
        t = time.perf_counter()
        for a, b in itertools.pairwise(chain):
            vf.verify_adjacent(a, b, CHAIN, now_ms=now)
        seq_rates.append((len(chain) - 1) / (time.perf_counter() - t))

        base_rates.append(ed25519_rate())
        t = time.perf_counter()
        trace = vf.verify_to(chain[0], lambda h: chain[h - 1], args.heights, CHAIN, now_ms=now)
        skip_rates.append((args.heights - 1) / (time.perf_counter() - t))
        hops = len(trace)

        t = time.perf_counter()
        for k, value, proof in proofs:
            if not verify_proof(root, k, value, proof):
                raise SystemExit("a valid proof did not verify")
        proof_rates.append(len(proofs) / (time.perf_counter() - t))

    seq = statistics.median(seq_rates)
    base = statistics.median(base_rates)
    out = {
        "benchmark": "light",
        "heights": args.heights,
        "validators": 4,
        "headers_per_s_sequential": round(seq, 1),
        "headers_per_s_skipping": round(statistics.median(skip_rates), 1),
        "skipping_trace_len": hops,
        "proofs_verified_per_s": round(statistics.median(proof_rates), 1),
        "ed25519_verify_per_s": round(base, 1),
        "seq_ratio": round(seq * 4 / base, 3),
        "targets_met": seq >= 2000 and statistics.median(proof_rates) >= 10_000,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
