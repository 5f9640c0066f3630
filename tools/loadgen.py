"""Load generator: signed transactions of every lane at a target rate, with commit latency.

Theory of operation. A funder key (a validator key of the testnet, funded in
genesis) first funds ``--accounts`` fresh accounts and publishes one card with a
cheap key offer (so the keys lane has something to buy). Then every
transaction of the run is signed up front (sequential nonces per account,
lanes mixed round-robin: transfer and generic in ``txs``, publish-card and
react in ``cards``, announce in ``seeders``, buy-key in ``keys``), so signing
does not limit the rate. One sender thread per RPC URL submits its accounts'
transactions with ``broadcast_tx_sync`` on a fixed schedule (``--rate`` overall;
every 20 ms what fell due goes as one JSON-RPC batch). The main thread follows the chain on the first URL:
for every new block it decodes the block bytes, hashes each lane's
transactions and matches them against the submission times, so latency is
submission to inclusion in a committed block.

The run is bounded by ``--duration`` plus ``--drain`` seconds of waiting for
stragglers. The last line printed is one JSON object: sent, accepted,
rejected, committed, lost (accepted but never committed), tps (committed per
second of the send window) and latency p50/p99 in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from chain import crypto
from chain import tx as txm
from chain.errors import ChainError
from chain.genesis import GenesisDoc
from chain.params import AppParams
from chain.types import Block
from genesis.keyfile import read_key_file
from node import txbuild
from node.cli import account_from_answer
from node.client import RpcClient, RpcClientError, RpcTransportError
from node.errors import NodeError

LANES = ("cards", "seeders", "keys", "txs")
POLL_S = 0.05
MAX_BATCH = 10
"""The node's default [rpc] max_batch_size."""
SEND_TICK_S = 0.02
"""A sender wakes at most every 20 ms and sends what fell due as one JSON-RPC batch:
one HTTP request per transaction cost the nodes more than checking the transaction."""


class LoadgenError(Exception):
    """Setup failed (unreachable node, rejected funding, timeout)."""


@dataclass
class Stats:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)
    submitted_at: dict[bytes, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[k]


def wait_nonce(client: RpcClient, address: bytes, above: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        nonce = account_from_answer(client.call("account", address=address.hex()), address)[1]
        if nonce > above:
            return
        time.sleep(0.1)
    raise LoadgenError(f"transaction {above} of {address.hex()[:16]} not committed within {timeout_s:.0f}s")


def broadcast(client: RpcClient, data: bytes) -> None:
    res = client.call("broadcast_tx_sync", tx=data.hex())
    if isinstance(res, dict) and res.get("code", 0):
        raise LoadgenError(f"setup transaction rejected: {res}")


def setup(client: RpcClient, funder: crypto.PrivateKey, chain_id: str, app: AppParams, n_accounts: int,
          fund_each: int, timeout_s: float) -> tuple[list[crypto.PrivateKey], bytes]:  # fmt: skip
    """Fund fresh accounts and publish a card whose keys cost 1; returns (accounts, card id)."""
    addr = funder.public_key.raw
    nonce = account_from_answer(client.call("account", address=addr.hex()), addr)[1]
    accounts = [crypto.PrivateKey.generate() for _ in range(n_accounts)]
    card_nonce = nonce
    body = txbuild.publish_card(
        content_root=os.urandom(32), size=1024, chunk_size=1024, content_type="other", title="loadgen",
        offer=txbuild.key_offer(1),
    )  # fmt: skip
    batch = [txbuild.sign(funder, chain_id, nonce, body, app=app)[1]]
    for i, acct in enumerate(accounts):
        batch.append(txbuild.sign(funder, chain_id, nonce + 1 + i, txbuild.transfer(acct.public_key.raw, fund_each),
                                  app=app)[1])  # fmt: skip
    for data in batch:
        broadcast(client, data)
    wait_nonce(client, addr, nonce + len(batch) - 1, timeout_s)
    return accounts, txm.compute_card_id(addr, card_nonce)


def make_body(kind: int, seq: int, card_id: bytes, creator: bytes, expiry: int) -> txm.AnyBody:
    """The k-th kind of the round-robin mix (every lane)."""
    k = kind % 7
    if k == 0:
        return txbuild.transfer(creator, 1)
    if k == 1:
        return txbuild.generic(b"loadgen", seq.to_bytes(8, "big"))
    if k == 2:
        return txbuild.publish_card(content_root=os.urandom(32), size=1024, chunk_size=1024, content_type="other",
                                    title=f"load {seq}", tags=["loadgen"])  # fmt: skip
    if k == 3:
        return txbuild.react(card_id, "like")
    if k == 4:
        return txbuild.announce(os.urandom(32), ["127.0.0.1:4433"], ((0, 1),), expiry)
    if k == 5:
        return txbuild.buy_key(card_id, max_price=1)
    return txbuild.transfer(creator, 2)


def presign(accounts: list[crypto.PrivateKey], start_nonces: list[int], total: int, chain_id: str, app: AppParams,
            card_id: bytes, creator: bytes, expiry: int) -> list[tuple[int, bytes]]:  # fmt: skip
    """``total`` signed transactions as (account index, bytes), accounts round-robin."""
    nonces = list(start_nonces)
    out = []
    for seq in range(total):
        i = seq % len(accounts)
        body = make_body(seq // len(accounts), seq, card_id, creator, expiry)
        _, data = txbuild.sign(accounts[i], chain_id, nonces[i], body, app=app)
        nonces[i] += 1
        out.append((i, data))
    return out


def sender(url: str, txs: list[bytes], rate: float, t0: float, stats: Stats, max_batch: int = MAX_BATCH,
           tick: float = SEND_TICK_S) -> None:  # fmt: skip
    """Submit ``txs`` at ``rate`` per second from ``t0``: every ``tick`` seconds what fell
    due, as one JSON-RPC batch of at most ``max_batch`` calls."""
    client = RpcClient(url, timeout=30)
    k = 0
    while k < len(txs):
        due = t0 + k / rate
        now = time.monotonic()
        if now < due:
            time.sleep(max(min(due - now, POLL_S), tick))
            continue
        behind = int((now - t0) * rate) - k + 1
        chunk = txs[k : k + max(1, min(max_batch, behind))]
        stamp = time.monotonic()
        try:
            results = client.batch([("broadcast_tx_sync", {"tx": d.hex()}) for d in chunk])
        except (RpcTransportError, RpcClientError) as exc:
            results = [exc] * len(chunk)
        with stats.lock:
            for data, res in zip(chunk, results, strict=True):
                stats.sent += 1
                ok = isinstance(res, dict) and not res.get("code", 0)
                if ok:
                    stats.accepted += 1
                    stats.submitted_at[txm.tx_hash(data)] = stamp
                else:
                    stats.rejected += 1
                    if len(stats.errors) < 5:
                        stats.errors.append(str(res)[:200])
        k += len(chunk)
    client.close()


def watch(client: RpcClient, start_height: int, stats: Stats, stop_at: float, done: threading.Event,
          latencies: list[float], committed_at: list[float]) -> None:  # fmt: skip
    """Match committed transactions to their submission times until ``stop_at``."""
    height = start_height
    while time.monotonic() < stop_at:
        try:
            latest = int(client.call("status")["sync_info"]["latest_block_height"])
        except (RpcTransportError, RpcClientError):
            time.sleep(POLL_S)
            continue
        while height < latest:
            height += 1
            answer = client.call("block", height=height)
            seen = time.monotonic()
            block = Block.decode_untrusted(bytes.fromhex(answer["block_bytes"]))
            with stats.lock:
                for lane in LANES:
                    for raw in block.lane(lane):
                        sub = stats.submitted_at.pop(txm.tx_hash(raw), None)
                        if sub is not None:
                            latencies.append((seen - sub) * 1000.0)
                            committed_at.append(seen)
        with stats.lock:
            if done.is_set() and not stats.submitted_at:
                return
        time.sleep(POLL_S)


def run(urls: list[str], funder: crypto.PrivateKey, doc: GenesisDoc, rate: float, duration: float,
        n_accounts: int, drain: float, setup_timeout: float, *, max_batch: int = MAX_BATCH,
        send_tick: float = SEND_TICK_S) -> dict[str, object]:  # fmt: skip
    main_client = RpcClient(urls[0], timeout=30)
    total = max(1, int(rate * duration))
    accounts, card_id = setup(main_client, funder, doc.chain_id, doc.app_params, n_accounts,
                              fund_each=10_000_000, timeout_s=setup_timeout)  # fmt: skip
    height = int(main_client.call("status")["sync_info"]["latest_block_height"])
    signed = presign(accounts, [0] * len(accounts), total, doc.chain_id, doc.app_params, card_id,
                     funder.public_key.raw, height + doc.app_params.seeder_max_ttl)  # fmt: skip
    per_url: list[list[bytes]] = [[] for _ in urls]
    for i, data in signed:
        per_url[i % len(urls)].append(data)
    stats = Stats()
    latencies: list[float] = []
    committed_at: list[float] = []
    done = threading.Event()
    t0 = time.monotonic() + 0.2
    threads = [
        threading.Thread(target=sender, args=(u, txs, rate * len(txs) / total, t0, stats, max_batch, send_tick),
                         daemon=True)
        for u, txs in zip(urls, per_url, strict=True) if txs
    ]  # fmt: skip
    for t in threads:
        t.start()
    watcher = threading.Thread(
        target=watch, args=(main_client, height, stats, t0 + duration + drain, done, latencies, committed_at),
        daemon=True,
    )  # fmt: skip
    watcher.start()
    for t in threads:
        t.join(timeout=duration + drain + 30)
    done.set()
    watcher.join(timeout=duration + drain + 30)
    window = max(1e-9, (max(committed_at) if committed_at else time.monotonic()) - t0)
    return {
        "sent": stats.sent,
        "accepted": stats.accepted,
        "rejected": stats.rejected,
        "committed": len(latencies),
        "lost": stats.accepted - len(latencies),
        "tps": round(len(latencies) / window, 1),
        "latency_ms_p50": None if not latencies else round(percentile(latencies, 0.5) or 0, 1),
        "latency_ms_p99": None if not latencies else round(percentile(latencies, 0.99) or 0, 1),
        "rate": rate,
        "duration_s": duration,
        "accounts": n_accounts,
        "urls": len(urls),
        "first_errors": stats.errors,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.loadgen", description=__doc__.splitlines()[0])
    ap.add_argument("--url", action="append", default=[], help="RPC URL; repeatable (default node0 of .devnet)")
    ap.add_argument("--home", type=Path, default=Path(".devnet/node0"),
                    help="a testnet home: its genesis and validator key fund the run")
    ap.add_argument("--funder-key", type=Path, default=None, help="key file of a funded account")
    ap.add_argument("--rate", type=float, default=50.0, help="transactions per second overall")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of sending")
    ap.add_argument("--accounts", type=int, default=20, help="fresh accounts sending in parallel")
    ap.add_argument("--drain", type=float, default=15.0, help="seconds to wait for stragglers after sending")
    ap.add_argument("--setup-timeout", type=float, default=60.0)
    ap.add_argument("--max-batch", type=int, default=MAX_BATCH,
                    help="most broadcast_tx_sync calls per JSON-RPC batch (the node's [rpc] max_batch_size)")
    ap.add_argument("--send-tick-ms", type=float, default=SEND_TICK_S * 1000,
                    help="a sender sends what fell due at most this often")
    args = ap.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.accounts < 1 or args.drain < 0 or args.max_batch < 1:
        ap.error("--rate and --duration must be positive, --accounts at least 1")
    urls = args.url or ["http://127.0.0.1:26657"]
    try:
        doc = GenesisDoc.load(args.home / "config" / "genesis.json")
        funder = read_key_file(args.funder_key or args.home / "config" / "priv_validator_key.json")
        result = run(urls, funder, doc, args.rate, args.duration, args.accounts, args.drain, args.setup_timeout,
                     max_batch=args.max_batch, send_tick=args.send_tick_ms / 1000)  # fmt: skip
    except (LoadgenError, NodeError, ChainError) as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
