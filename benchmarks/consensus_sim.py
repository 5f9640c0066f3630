"""Heights per second of the pure consensus engine, 4 validators, real Ed25519.

Four :class:`consensus.core.ConsensusCore` instances exchange proposals and votes
over an in-memory FIFO network with no loss. Every vote and proposal is signed
with Ed25519 (pynacl, through chain.crypto) and every core verifies every
signature it receives (no cache). Block verdicts are immediate (block execution
is the chain's cost, not the engine's) and the commit timeout is zero.

Following PERFORMANCE-NOTES.md, the baseline - bare Ed25519 verification in the
same process - is timed in short repeats interleaved with the engine, and the
median of the per-repeat ratio ``votes_verified_per_s / baseline_verify_per_s``
is reported beside the raw figures: it says how much of the machine's
verification throughput the engine keeps (the rest is the engine's own cost).

Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chain import crypto
from chain.crypto import PrivateKey
from chain.encoding import pack
from chain.params import ConsensusParams
from chain.types import (
    Block,
    Header,
    Validator,
    ValidatorSet,
    commit_hash,
    compute_evidence_hash,
    compute_lane_root,
)
from consensus import core as c

CHAIN_ID = "bench"
T0 = 1_700_000_000_000
N = 4
EMPTY = compute_lane_root(())


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def verify(self, pub: bytes, sig: bytes, dg: bytes) -> bool:
        self.n += 1
        return crypto.verify(pub, sig, dg)


def build(keys: list[PrivateKey], vs: ValidatorSet, height: int, rnd: int, prev: Block | None,
          core: c.ConsensusCore) -> Block:
    last = core.last_commit() if prev is not None else None
    txs = (pack([b"tx", height, rnd]),)
    header = Header(
        CHAIN_ID, height, T0 + height, b"" if prev is None else prev.hash(), commit_hash(last),
        EMPTY, EMPTY, EMPTY, compute_lane_root(txs), compute_evidence_hash(()), vs.hash(), vs.hash(),
        bytes(32), bytes(32),
    )
    return Block(header, (), (), (), txs, last, ())


def run_engine(heights: int) -> tuple[float, int]:
    """Decide ``heights`` heights; return (seconds, signatures verified)."""
    keys = sorted((PrivateKey(bytes([i + 1]) * 32) for i in range(N)), key=lambda k: k.public_key.raw)
    vs = ValidatorSet(tuple(Validator(k.public_key.raw, 1) for k in keys))
    params = ConsensusParams(timeout_commit_ms=0)
    counter = Counter()
    cores = [c.ConsensusCore(CHAIN_ID, params, k.public_key.raw, verify=counter.verify) for k in keys]
    net: deque[tuple[int, c.Action | tuple[str, object, object]]] = deque()
    decided = [0] * N
    prev: list[Block | None] = [None] * N
    now = T0

    def handle(i: int, actions: list[c.Action]) -> None:
        core = cores[i]
        for a in actions:
            if isinstance(a, c.SignVote):
                v = a.vote.signed(keys[i], CHAIN_ID)
                for j in range(N):
                    net.append((j, ("vote", v, None)))
            elif isinstance(a, c.SignProposal):
                p = a.proposal.signed(keys[i], CHAIN_ID)
                for j in range(N):
                    net.append((j, ("proposal", p, a.block)))
            elif isinstance(a, c.CreateBlock):
                blk = build(keys, vs, a.height, a.round, prev[i], core)
                handle(i, core.on_own_block(blk, now_ms=now))
            elif isinstance(a, c.ValidateBlock):
                handle(i, core.on_block_verdict(a.block.hash(), True, now_ms=now))
            elif isinstance(a, c.Decide):
                decided[i] = a.height
                prev[i] = a.block
                handle(i, core.set_next_validators(a.height + 1, vs, now_ms=now))
                handle(i, core.on_timeout(c.Step.COMMIT, a.height, a.round, now_ms=now))

    t0 = time.perf_counter()
    for i in range(N):
        handle(i, cores[i].start_height(1, vs, now_ms=now))
    steps = 0
    while min(decided) < heights:
        if not net:
            raise RuntimeError("the engine stalled without loss: a bug")
        j, (kind, msg, blk) = net.popleft()  # type: ignore[misc]
        if kind == "vote":
            handle(j, cores[j].on_vote(msg, now_ms=now))  # type: ignore[arg-type]
        else:
            handle(j, cores[j].on_proposal(msg, blk, now_ms=now))  # type: ignore[arg-type]
        steps += 1
        if steps > heights * 1000:
            raise RuntimeError("too many steps")
    return time.perf_counter() - t0, counter.n


def run_baseline(count: int) -> float:
    """Seconds for ``count`` bare Ed25519 verifications of distinct digests."""
    key = PrivateKey(b"\x07" * 32)
    pub = key.public_key.raw
    items = [(bytes([i % 256, i // 256 % 256]) * 16, None) for i in range(min(count, 512))]
    signed = [(d, key.sign(d)) for d, _ in items]
    t0 = time.perf_counter()
    for k in range(count):
        d, s = signed[k % len(signed)]
        crypto.verify(pub, s, d)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--heights", type=int, default=100, help="heights per repeat")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    hps, vps, base, ratios = [], [], [], []
    run_engine(5)  # warm-up
    for r in range(args.repeats):
        secs, verified = run_engine(args.heights)
        bsecs = run_baseline(verified)
        hps.append(args.heights / secs)
        vps.append(verified / secs)
        base.append(verified / bsecs)
        ratios.append((verified / secs) / (verified / bsecs))
        print(f"repeat {r}: {args.heights / secs:.1f} heights/s, {verified / secs:.0f} votes "
              f"verified/s, baseline {verified / bsecs:.0f} verify/s", file=sys.stderr)
    result = {
        "benchmark": "consensus_sim",
        "validators": N,
        "heights_per_repeat": args.heights,
        "repeats": args.repeats,
        "heights_per_s": round(statistics.median(hps), 1),
        "heights_per_s_best": round(max(hps), 1),
        "votes_verified_per_s": round(statistics.median(vps)),
        "signatures_verified_per_height": round(verified / args.heights, 1),
        "baseline_ed25519_verify_per_s": round(statistics.median(base)),
        "ratio_to_bare_verify_median": round(statistics.median(ratios), 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
