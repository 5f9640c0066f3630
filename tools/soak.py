"""Soak: load on a 4-validator testnet while a random validator is SIGKILLed and restarted.

Theory of operation. Four ``python -m node`` processes (tests/node/harness.py
homes on 127.0.0.1) run one testnet. A funder (node0's validator key) funds
``--accounts`` fresh accounts with tools/loadgen's ``setup``. Sender threads
then submit signed transactions of every lane (loadgen's mix) with
``broadcast_tx_sync`` at ``--rate`` overall, spread over the nodes that are up.
Each account has at most one transaction outstanding: its next nonce is signed
only after the previous one was seen committed, so every acknowledged
transaction can commit. An account whose submission ended without a clear
answer (the node died mid-request) is retired: its transaction was not
acknowledged and nothing signed later could depend on it.

Every ``--kill-every`` seconds a validator chosen by the seeded RNG is taken
out of the senders' rotation, SIGKILLed ``--quiesce`` seconds later (a node's
mempool is not durable: a transaction acknowledged a moment before the kill,
not yet gossiped, would die with it), restarted ``--down`` seconds later, and
put back into rotation once it answers RPC. A watcher follows the chain on any
live node, matching committed transactions with the acknowledged ones and
counting duplicate-vote evidence in committed blocks.

After ``--duration`` seconds the load stops; the soak waits up to ``--drain``
seconds for every acknowledged transaction to commit, then checks:

* forks: two nodes with different block hashes at one height (every height any
  two nodes both hold, via the ``blockchain`` RPC);
* lost_txs: acknowledged but not committed once the drain ended;
* double_signs: duplicate-vote evidence committed, plus ``evidence of double
  signing`` warnings in any node's log.

The last line is ``soak heights_gained=N forks=N lost_txs=N double_signs=N
duration_s=N kills=N``; the exit code is 1 if forks, lost_txs or double_signs
is non-zero (2 when the testnet did not come up). Every loop is bounded by a
deadline, and every node process is stopped by the soak itself (SIGTERM, then
SIGKILL).
"""

from __future__ import annotations

import argparse
import http.client
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from chain import crypto
from chain import tx as txm
from chain.genesis import GenesisDoc
from chain.types import LANES, Block
from node import txbuild
from node.client import RpcClient, RpcClientError, RpcTransportError
from tests.node.harness import ProcessNode, make_testnet, rpc_call, wait_heights
from tools import loadgen

DOUBLE_SIGN_LOG = "evidence of double signing"


@dataclass
class Shared:
    """State shared by the sender threads, the watcher and the killer (under `lock`)."""

    live: list[int]
    """Indexes of nodes that take load."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[bytes, int] = field(default_factory=dict)
    """Hash of an acknowledged, not yet committed transaction -> account index."""
    acked_total: int = 0
    committed: int = 0
    free: set[int] = field(default_factory=set)
    """Accounts with nothing outstanding."""
    retired: int = 0
    rejected: int = 0
    evidence: int = 0
    block_hash: dict[int, str] = field(default_factory=dict)
    stop_load: threading.Event = field(default_factory=threading.Event)
    stop_all: threading.Event = field(default_factory=threading.Event)


def sender(me: int, senders: int, urls: list[str], accounts: list[crypto.PrivateKey], nonces: list[int],
           doc: GenesisDoc, card_id: bytes, creator: bytes, expiry: int, rate: float, sh: Shared,
           rng: random.Random) -> None:  # fmt: skip
    """Submit transactions of this thread's accounts (index % senders == me) at `rate`."""
    mine = [i for i in range(len(accounts)) if i % senders == me]
    clients = {u: RpcClient(u, timeout=5) for u in urls}
    t0 = time.monotonic()
    sent = 0
    while not sh.stop_load.is_set():
        due = t0 + sent / rate
        now = time.monotonic()
        if now < due:
            time.sleep(min(due - now, 0.05))
            continue
        with sh.lock:
            ready = [i for i in mine if i in sh.free]
            live = list(sh.live)
        if not ready or not live:
            time.sleep(0.02)
            continue
        acct = ready[rng.randrange(len(ready))]
        node = live[rng.randrange(len(live))]
        body = loadgen.make_body(nonces[acct], sent, card_id, creator, expiry)
        _, data = txbuild.sign(accounts[acct], doc.chain_id, nonces[acct], body, app=doc.app_params)
        h = txm.tx_hash(data)
        with sh.lock:
            sh.free.discard(acct)
        sent += 1
        try:
            res = clients[urls[node]].call("broadcast_tx_sync", tx=data.hex())
        except (RpcTransportError, OSError):
            with sh.lock:  # no clear answer: never use this account again
                sh.retired += 1
            continue
        except RpcClientError:
            res = {"code": -1}
        ok = isinstance(res, dict) and not res.get("code", 0)
        with sh.lock:
            if ok:
                sh.acked[h] = acct
                sh.acked_total += 1
                nonces[acct] += 1
            else:  # refused by check_tx: the nonce stays free, the account too
                sh.rejected += 1
                sh.free.add(acct)
    for c in clients.values():
        c.close()


def watcher(nodes: list[ProcessNode], start_height: int, sh: Shared) -> None:
    """Follow the chain on any live node: committed transactions, evidence, block hashes."""
    height = start_height
    k = 0
    while not sh.stop_all.is_set():
        with sh.lock:
            live = list(sh.live)
        if not live:
            time.sleep(0.1)
            continue
        port = nodes[live[k % len(live)]].home.rpc_port
        try:
            latest = int(rpc_call(port, "status")["sync_info"]["latest_block_height"])
            while height < latest and not sh.stop_all.is_set():
                answer = rpc_call(port, "block", {"height": height + 1}, timeout=5)
                block = Block.decode_untrusted(bytes.fromhex(answer["block_bytes"]))
                with sh.lock:
                    sh.block_hash[height + 1] = answer["block_id"]
                    sh.evidence += len(block.evidence)
                    for lane in LANES:
                        for raw in block.lane(lane):
                            acct = sh.acked.pop(txm.tx_hash(raw), None)
                            if acct is not None:
                                sh.committed += 1
                                sh.free.add(acct)
                height += 1
        except (OSError, http.client.HTTPException, RuntimeError, ValueError, KeyError):
            k += 1  # that node went away: ask another one
        time.sleep(0.05)


def block_ids(port: int, lo: int, hi: int) -> dict[int, str]:
    """Block hashes of heights lo..hi on one node (20 a call)."""
    out: dict[int, str] = {}
    top = hi
    while top >= lo:
        ans = rpc_call(port, "blockchain", {"min_height": max(lo, top - 19), "max_height": top}, timeout=10)
        for meta in ans["block_metas"]:
            out[int(meta["header"]["height"])] = meta["block_id"]
        top -= 20
    return out


def count_forks(nodes: list[ProcessNode], watched: dict[int, str]) -> int:
    """Heights at which two nodes (or a node and the watcher's record) disagree."""
    heights = [n.height() or 0 for n in nodes]
    per_node = [block_ids(n.home.rpc_port, 1, h) for n, h in zip(nodes, heights, strict=True) if h > 0]
    forks = 0
    for height in range(1, max(heights, default=0) + 1):
        seen = {ids[height] for ids in per_node if height in ids}
        if height in watched:
            seen.add(watched[height])
        if len(seen) > 1:
            forks += 1
    return forks


def soak(duration: float, kill_every: float, seed: int, rate: float, n_accounts: int, drain: float,
         quiesce: float, down: float, out: Path, senders: int = 4, log: bool = True) -> dict[str, int]:  # fmt: skip
    rng = random.Random(seed)
    net = make_testnet(out, validators=4, seed=b"soak-%d" % seed)
    nodes = [ProcessNode(h) for h in net.nodes]
    urls = [f"http://127.0.0.1:{h.rpc_port}" for h in net.nodes]
    sh = Shared(live=list(range(len(nodes))))
    threads: list[threading.Thread] = []
    kills = 0
    start_height = 0
    try:
        for n in nodes:
            n.start()
        wait_heights(nodes, 2, timeout=60)
        doc = net.net.genesis
        funder = net.nodes[0].validator_key
        client = RpcClient(urls[0], timeout=10)
        accounts, card_id = loadgen.setup(client, funder, doc.chain_id, doc.app_params, n_accounts,
                                          fund_each=10_000_000, timeout_s=60)  # fmt: skip
        start_height = int(client.call("status")["sync_info"]["latest_block_height"])
        client.close()
        nonces = [0] * len(accounts)
        sh.free = set(range(len(accounts)))
        expiry = start_height + doc.app_params.seeder_max_ttl
        threads.append(threading.Thread(target=watcher, args=(nodes, start_height, sh), daemon=True))
        for i in range(senders):
            args = (i, senders, urls, accounts, nonces, doc, card_id, funder.public_key.raw, expiry,
                    rate / senders, sh, random.Random(rng.random()))
            threads.append(threading.Thread(target=sender, args=args, daemon=True))
        for t in threads:
            t.start()
        t0 = time.monotonic()
        end = t0 + duration
        next_kill = t0 + kill_every
        while time.monotonic() < end:
            if time.monotonic() < next_kill:
                time.sleep(min(0.1, max(0.0, next_kill - time.monotonic())))
                continue
            victim = rng.randrange(len(nodes))
            with sh.lock:
                sh.live = [i for i in sh.live if i != victim]
            time.sleep(quiesce)
            nodes[victim].kill()
            kills += 1
            time.sleep(down)
            nodes[victim].start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and nodes[victim].height() is None:
                time.sleep(0.2)
            with sh.lock:
                sh.live = sorted({*sh.live, victim})
            if log:
                with sh.lock:
                    print(f"soak: t={time.monotonic() - t0:.0f}s killed node{victim} (kill {kills});"
                          f" acked={sh.acked_total} committed={sh.committed} pending={len(sh.acked)}"
                          f" retired={sh.retired}", flush=True)  # fmt: skip
            next_kill += kill_every
        sh.stop_load.set()
        elapsed = time.monotonic() - t0
        deadline = time.monotonic() + drain
        while time.monotonic() < deadline:
            with sh.lock:
                if not sh.acked:
                    break
            time.sleep(0.2)
        sh.stop_all.set()
        for t in threads:
            t.join(timeout=15)
        final = [n.height() for n in nodes]
        with sh.lock:
            lost = len(sh.acked)
            watched = dict(sh.block_hash)
            evidence = sh.evidence
            acked, committed = sh.acked_total, sh.committed
        forks = count_forks(nodes, watched)
    finally:
        sh.stop_load.set()
        sh.stop_all.set()
        for n in nodes:
            if n.alive() and n.proc is not None:
                n.proc.terminate()
        for n in nodes:
            if n.proc is not None:
                try:
                    n.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:  # did not stop on SIGTERM
                    n.kill()
    logged = sum(n.log_text().count(DOUBLE_SIGN_LOG) for n in nodes)
    return {
        "heights_gained": min((h or 0) for h in final) - start_height,
        "forks": forks,
        "lost_txs": lost,
        "double_signs": evidence + logged,
        "duration_s": round(elapsed),
        "kills": kills,
        "acked": acked,
        "committed": committed,
    }


def summary_line(r: dict[str, int]) -> str:
    return (f"soak heights_gained={r['heights_gained']} forks={r['forks']} lost_txs={r['lost_txs']}"
            f" double_signs={r['double_signs']} duration_s={r['duration_s']} kills={r['kills']}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.soak", description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=600.0, help="seconds of load and kills")
    ap.add_argument("--kill-every", type=float, default=20.0, help="seconds between SIGKILLs")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rate", type=float, default=50.0, help="transactions per second overall")
    ap.add_argument("--accounts", type=int, default=200)
    ap.add_argument("--drain", type=float, default=60.0, help="seconds to wait for stragglers after the load")
    ap.add_argument("--quiesce", type=float, default=0.5, help="seconds without load before a kill")
    ap.add_argument("--down", type=float, default=1.0, help="seconds a killed validator stays down")
    ap.add_argument("--out", type=Path, default=None, help="keep the testnet homes and logs here")
    args = ap.parse_args(argv)
    if args.duration <= 0 or args.kill_every <= 0 or args.rate <= 0 or args.accounts < 1:
        ap.error("--duration, --kill-every and --rate must be positive, --accounts at least 1")
    tmp = None
    if args.out is None:
        tmp = tempfile.TemporaryDirectory(prefix="bh-soak-")
        out = Path(tmp.name)
    else:
        out = args.out
        out.mkdir(parents=True, exist_ok=True)
    try:
        r = soak(args.duration, args.kill_every, args.seed, args.rate, args.accounts, args.drain,
                 args.quiesce, args.down, out)  # fmt: skip
    except (AssertionError, loadgen.LoadgenError) as exc:
        print(f"soak: the testnet did not come up: {exc}", file=sys.stderr)
        return 2
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(f"soak: acked={r['acked']} committed={r['committed']}", flush=True)
    print(summary_line(r), flush=True)
    return 1 if r["forks"] or r["lost_txs"] or r["double_signs"] else 0


if __name__ == "__main__":
    sys.exit(main())
