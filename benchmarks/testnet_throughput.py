"""Throughput of a 4-validator testnet on this machine, load stepped up.

Four ``python -m node`` processes (tests/node/harness.py homes, 127.0.0.1) run
one testnet; tools/loadgen's ``run`` sends signed transactions of every lane at
each rate of ``--rates`` for ``--step-seconds`` (60 s by default), split over
the four RPC endpoints, then waits ``--drain`` seconds for stragglers. A rate
is *sustained* when nothing accepted was lost or rejected and commits kept up:
committed transactions per second of the window from the first submission to
the last commit reached ``--keep-up`` (0.9) of the rate, so no backlog grew.

The yardstick is measured in the same run, before every step: plain pynacl
verification (``crypto_sign_open``) of transaction signatures over the same
domain-separated digests, on one core. ``ratio`` is max_sustained_tx_per_s /
verify_per_s_one_core (median of the per-step yardsticks), which is what to
compare across runs on a machine whose speed swings.

The last line is one JSON object. Every node is stopped by the benchmark itself
(SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nacl.bindings

from chain import crypto
from chain import tx as txm
from chain.crypto import DOMAIN_TX, digest
from node import txbuild
from node.config import CONFIG_FILE, RpcConfig, load_config, write_config
from tests.node.harness import FAST_TIMEOUTS, ProcessNode, make_testnet, wait_heights
from tools import loadgen

DEFAULT_RATES = (250, 500, 750, 1000, 1250, 1500, 2000, 3000)


def verify_per_s_one_core(chain_id: str, n: int = 2000, min_s: float = 1.0) -> float:
    """Plain pynacl verifications per second of ``n`` signed transactions, one thread."""
    key = crypto.PrivateKey.generate()
    raws = [txbuild.sign(key, chain_id, i, txbuild.transfer(b"\x01" * 32, 1))[1] for i in range(n)]
    items = [(r[3:35], txm.signature_of(r), digest(DOMAIN_TX, chain_id, txm.signed_payload(r))) for r in raws]
    sign_open = nacl.bindings.crypto_sign_open
    done = 0
    t0 = time.perf_counter()
    while True:
        for pub, sig, dig in items:
            sign_open(sig + dig, pub)
        done += len(items)
        elapsed = time.perf_counter() - t0
        if elapsed >= min_s:
            return done / elapsed


def stop_all(nodes: list[ProcessNode]) -> None:
    for n in nodes:
        if n.alive() and n.proc is not None:
            n.proc.terminate()
    deadline = time.monotonic() + 20
    for n in nodes:
        if n.proc is None:
            continue
        try:
            n.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:  # SIGKILL whatever did not stop
            n.kill()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default=",".join(map(str, DEFAULT_RATES)),
                    help="comma-separated tx/s steps, ascending")
    ap.add_argument("--step-seconds", type=float, default=60.0)
    ap.add_argument("--drain", type=float, default=20.0, help="seconds to wait for stragglers per step")
    ap.add_argument("--accounts", type=int, default=200)
    ap.add_argument("--keep-up", type=float, default=0.9)
    ap.add_argument("--max-p50-ms", type=float, default=None,
                    help="also require this commit latency p50 to call a rate sustained")
    ap.add_argument("--timeout-commit-ms", type=int, default=FAST_TIMEOUTS["timeout_commit_ms"],
                    help="the testnet genesis's timeout_commit (block interval vs block size)")
    ap.add_argument("--timeout-propose-ms", type=int, default=FAST_TIMEOUTS["timeout_propose_ms"],
                    help="the testnet genesis's timeout_propose")
    ap.add_argument("--all-rates", action="store_true",
                    help="run every rate even after one is not sustained (for comparisons)")
    ap.add_argument("--rpc-batch", type=int, default=loadgen.MAX_BATCH,
                    help="calls per JSON-RPC batch from the load generator (the nodes' [rpc] "
                         "max_batch_size is raised to match)")
    ap.add_argument("--send-tick-ms", type=float, default=loadgen.SEND_TICK_S * 1000,
                    help="how often each load-generator sender sends what fell due")
    ap.add_argument("--keep", type=Path, default=None, help="keep the testnet homes here")
    ap.add_argument("--log-level", default=None,
                    help="the nodes' [base] log_level (e.g. consensus:debug,*:info; with --keep)")
    args = ap.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",") if r]

    tmp = None
    if args.keep is not None:
        out = args.keep
        out.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bh-tput-")
        out = Path(tmp.name)
    timeouts = {**FAST_TIMEOUTS, "timeout_commit_ms": args.timeout_commit_ms,
                "timeout_propose_ms": args.timeout_propose_ms}
    net = make_testnet(out, validators=4, seed=b"throughput", timeouts=timeouts)
    for h in net.nodes:
        cfg = load_config(h.home / CONFIG_FILE, h.home)
        if args.rpc_batch > RpcConfig().max_batch_size:
            cfg = dataclasses.replace(cfg, rpc=dataclasses.replace(cfg.rpc, max_batch_size=args.rpc_batch))
        if args.log_level:
            cfg = dataclasses.replace(cfg, base=dataclasses.replace(cfg.base, log_level=args.log_level))
        write_config(cfg)
    nodes = [ProcessNode(h) for h in net.nodes]
    steps: list[dict[str, object]] = []
    yardsticks: list[float] = []
    best: dict[str, object] | None = None
    try:
        for n in nodes:
            n.start()
        wait_heights(nodes, 2, timeout=60)
        doc = net.net.genesis
        funder = net.nodes[0].validator_key
        urls = [f"http://127.0.0.1:{h.rpc_port}" for h in net.nodes]
        for rate in rates:
            one_core = verify_per_s_one_core(doc.chain_id)
            yardsticks.append(one_core)
            res = loadgen.run(urls, funder, doc, rate, args.step_seconds, args.accounts, args.drain,
                              setup_timeout=60, max_batch=args.rpc_batch,
                              send_tick=args.send_tick_ms / 1000)  # fmt: skip
            tps = float(res["tps"])  # type: ignore[arg-type]
            p50 = res["latency_ms_p50"]
            ok = (res["lost"] == 0 and res["rejected"] == 0 and tps >= args.keep_up * rate
                  and (args.max_p50_ms is None or (p50 is not None and float(p50) <= args.max_p50_ms)))  # type: ignore[arg-type]
            step = {**res, "verify_per_s_one_core": round(one_core), "sustained": ok}
            steps.append(step)
            print(json.dumps(step), flush=True)
            if ok and (best is None or rate > float(best["rate"])):  # type: ignore[arg-type]
                best = step
            if not ok and not args.all_rates:
                break
    finally:
        stop_all(nodes)
        if tmp is not None:
            tmp.cleanup()
    one_core = statistics.median(yardsticks) if yardsticks else verify_per_s_one_core("bh-test")
    top = float(best["rate"]) if best else 0.0  # type: ignore[arg-type]
    print(json.dumps({
        "max_sustained_tx_per_s": top,
        "committed_tx_per_s_at_max": best["tps"] if best else None,
        "commit_latency_ms_p50": best["latency_ms_p50"] if best else None,
        "commit_latency_ms_p99": best["latency_ms_p99"] if best else None,
        "verify_per_s_one_core": round(one_core),
        "ratio": round(top / one_core, 4),
        "validators": 4,
        "timeout_commit_ms": args.timeout_commit_ms,
        "timeout_propose_ms": args.timeout_propose_ms,
        "rpc_batch": args.rpc_batch,
        "send_tick_ms": args.send_tick_ms,
        "step_seconds": args.step_seconds,
        "steps": [{k: s[k] for k in ("rate", "tps", "lost", "rejected", "latency_ms_p50", "latency_ms_p99",
                                     "sustained")} for s in steps],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
