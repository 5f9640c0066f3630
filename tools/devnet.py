"""``make devnet``: a 4-validator local testnet with a demo card, a seeder and a key sale.

Generates the testnet under ``.devnet/`` with ``blackhole testnet``, starts one
``python -m node.cli start`` process per node (logs in each home's
``node.log``), waits for blocks, then runs the demo through the same library
the CLI uses (node.txbuild, node.client): the first validator's account
publishes an encrypted demo card with a preview and a key offer and announces
itself as a seeder; the second validator's account buys a key; the creator
delivers the content key sealed to the buyer, and the buyer's sealed key is
opened and the content decrypted to prove the sale end to end. Then it prints
one line per block until Ctrl-C (or ``--blocks N``), and stops every node with
SIGTERM, waiting for each.

Every wait polls with a deadline; nothing waits on a fixed sleep.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from chain import crypto
from chain import tx as txm
from chain.errors import ChainError
from chain.genesis import GenesisDoc, format_time_ms
from chain.params import AppParams
from chain.types import Block
from genesis.keyfile import read_key_file
from node import content, txbuild
from node.cli import PORTS_PER_NODE, account_from_answer
from node.client import RpcClient, RpcClientError, RpcTransportError
from node.errors import NodeError

ROOT = Path(__file__).resolve().parent.parent
POLL_S = 0.2
T = TypeVar("T")


class DevnetError(Exception):
    """The devnet could not be brought up or a node died; the message says what to read."""


@dataclass
class NodeProc:
    name: str
    home: Path
    rpc_url: str
    proc: subprocess.Popen[bytes] | None = None
    log: Any = None

    @property
    def log_path(self) -> Path:
        return self.home / "node.log"


@dataclass
class Devnet:
    out: Path
    chain_id: str
    app: AppParams
    nodes: list[NodeProc] = field(default_factory=list)

    def check_alive(self) -> None:
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is not None:
                raise DevnetError(f"{n.name} exited with code {n.proc.returncode}; read {n.log_path}")

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM every node, then wait for each (SIGKILL after ``timeout_s``)."""
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is None:
                n.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for n in self.nodes:
            if n.proc is None:
                continue
            try:
                n.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"{n.name} did not stop within {timeout_s:.0f}s; killing it (see {n.log_path})", flush=True)
                n.proc.kill()
                n.proc.wait(timeout=10)
            else:
                if n.proc.returncode not in (0, -signal.SIGTERM):
                    print(f"{n.name} stopped with exit code {n.proc.returncode}; read {n.log_path}", flush=True)
            if n.log is not None:
                n.log.close()


def poll(what: str, fn: Callable[[], T | None], timeout_s: float, net: Devnet | None = None) -> T:
    """Call ``fn`` until it returns non-None, for at most ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if net is not None:
            net.check_alive()
        try:
            got = fn()
        except (RpcTransportError, RpcClientError) as exc:
            last_error, got = exc, None
        if got is not None:
            return got
        time.sleep(POLL_S)
    detail = f" (last error: {last_error})" if last_error else ""
    raise DevnetError(f"timed out after {timeout_s:.0f}s waiting for {what}{detail}")


def cli(*args: str) -> str:
    """Run ``python -m node.cli ARGS``; its output, or DevnetError with its error line."""
    res = subprocess.run([sys.executable, "-m", "node.cli", *args], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)  # fmt: skip
    if res.returncode != 0:
        raise DevnetError(f"blackhole {' '.join(args)} failed: {(res.stderr or res.stdout).strip()}")
    return res.stdout


def generate(out: Path, validators: int, starting_port: int, overrides: list[str]) -> Devnet:
    if out.exists():
        if not (out / "node0" / "config").is_dir() and any(out.iterdir()):
            raise DevnetError(f"{out} exists and does not look like a devnet; remove it or pick --dir")
        shutil.rmtree(out)
    args = ["testnet", "--v", str(validators), "--output-dir", str(out), "--starting-port", str(starting_port),
            "--chain-id", "blackhole-devnet"]  # fmt: skip
    for o in overrides:
        args += ["--set", o]
    cli(*args)
    doc = GenesisDoc.load(out / "genesis.json")
    net = Devnet(out, doc.chain_id, doc.app_params)
    for i in range(validators):
        rpc_port = starting_port + PORTS_PER_NODE * i + 1
        net.nodes.append(NodeProc(f"node{i}", out / f"node{i}", f"http://127.0.0.1:{rpc_port}"))
    return net


def start_nodes(net: Devnet) -> None:
    for n in net.nodes:
        n.log = open(n.log_path, "ab")  # noqa: SIM115 - closed in Devnet.stop
        # a session of its own: the terminal's Ctrl-C reaches only us, and we stop the nodes in order
        n.proc = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "start", "--home", str(n.home)],
            stdout=n.log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
        )  # fmt: skip


def height_of(client: RpcClient) -> int:
    return int(client.call("status")["sync_info"]["latest_block_height"])


class Account:
    """A funded key with a locally tracked nonce (several txs per block)."""

    def __init__(self, name: str, key: crypto.PrivateKey, net: Devnet, client: RpcClient) -> None:
        self.name, self.key, self.net, self.client = name, key, net, client
        self.address = key.public_key.raw
        self.nonce = account_from_answer(client.call("account", address=self.address.hex()), self.address)[1]

    def send(self, body: txm.AnyBody) -> int:
        """Broadcast ``body``; returns its nonce."""
        nonce = self.nonce
        _, data = txbuild.sign(self.key, self.net.chain_id, nonce, body, app=self.net.app)
        res = self.client.call("broadcast_tx_sync", tx=data.hex())
        code = res.get("code", 0) if isinstance(res, dict) else 0
        if code:
            raise DevnetError(f"{type(body).__name__} from {self.name} rejected: {res}")
        self.nonce += 1
        return nonce

    def wait_committed(self, nonce: int, timeout_s: float = 60.0) -> None:
        def done() -> bool | None:
            answer = self.client.call("account", address=self.address.hex())
            return True if account_from_answer(answer, self.address)[1] > nonce else None

        poll(f"{self.name}'s transaction {nonce} to commit", done, timeout_s, self.net)


def demo(net: Devnet, client: RpcClient) -> dict[str, str]:
    """Publish, seed and sell a key; returns names of what was made (for the printed hints)."""
    creator = Account("creator", read_key_file(net.nodes[0].home / "config" / "priv_validator_key.json"), net, client)
    buyer = Account("buyer", read_key_file(net.nodes[1].home / "config" / "priv_validator_key.json"), net, client)
    cdir = net.out / "content"
    cdir.mkdir(exist_ok=True)
    plain = cdir / "demo.txt"
    plain.write_text("Hello from the Blackhole devnet.\n" * 200, encoding="utf-8")
    ckey = content.generate_key()
    enc = content.encrypt_file(plain, cdir / "demo.bin", ckey, 4096)
    key_path = cdir / "demo.key"
    key_path.write_text(ckey.hex() + "\n")
    os.chmod(key_path, 0o600)

    offer = txbuild.key_offer(10, supply_cap=100, royalty_bps=500)
    nonce = creator.send(txbuild.publish_card(
        content_root=enc.root, size=enc.size, chunk_size=enc.chunk_size, content_type="text",
        title="Welcome to Blackhole", tags=["demo", "welcome"], preview=b"Hello from the Blackhole devnet.",
        offer=offer,
    ))  # fmt: skip
    card_id = txm.compute_card_id(creator.address, nonce)
    expiry = height_of(client) + 10_000
    seed_nonce = creator.send(txbuild.announce(enc.root, ["127.0.0.1:4433"], ((0, enc.chunks),), expiry))
    creator.wait_committed(seed_nonce)
    print(f"published card {card_id.hex()} (content root {enc.root.hex()[:16]}..., {enc.size} bytes) "
          f"and announced a seeder", flush=True)  # fmt: skip

    buyer.wait_committed(buyer.send(txbuild.buy_key(card_id, max_price=10)))
    serial = 1  # the first key sold of a new card
    creator.wait_committed(creator.send(txbuild.deliver_key(card_id, serial, buyer.address, ckey)))
    token = client.call("key", card_id=card_id.hex(), serial=serial)["value"]
    opened = crypto.unseal(buyer.key, bytes.fromhex(token["sealed_key"]))
    got = content.decrypt_bytes((cdir / "demo.bin").read_bytes(), opened, enc.chunk_size, expected_root=enc.root)
    if got != plain.read_bytes():
        raise DevnetError("the buyer's decrypted content differs from the original")
    print(f"sold key #{serial} to {buyer.address.hex()[:16]}...; the buyer opened the sealed key and "
          f"decrypted the content", flush=True)  # fmt: skip
    return {"card": card_id.hex(), "root": enc.root.hex(), "buyer": buyer.address.hex(),
            "creator": creator.address.hex()}  # fmt: skip


def block_line(client: RpcClient, height: int) -> str:
    answer = client.call("block", height=height)
    block = Block.decode_untrusted(bytes.fromhex(answer["block_bytes"]))
    counts = " ".join(f"{lane}={len(block.lane(lane))}" for lane in ("cards", "seeders", "keys", "txs"))
    h = block.header
    return f"height={h.height} time={format_time_ms(h.time_ms)} {counts} app_hash={h.app_hash.hex()[:12]}"


def follow_blocks(net: Devnet, client: RpcClient, limit: int | None, stall_s: float) -> None:
    """One line per new block; returns after ``limit`` lines (never if None)."""
    shown = 0
    last = height_of(client)
    last_progress = time.monotonic()
    while limit is None or shown < limit:
        net.check_alive()
        try:
            height = height_of(client)
        except RpcTransportError:
            height = last
        if height > last:
            for hh in range(last + 1, height + 1):
                print(block_line(client, hh), flush=True)
                shown += 1
                if limit is not None and shown >= limit:
                    return
            last, last_progress = height, time.monotonic()
        elif time.monotonic() - last_progress > stall_s:
            raise DevnetError(f"no new block for {stall_s:.0f}s; read the logs under {net.out}/node*/node.log")
        time.sleep(POLL_S)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.devnet", description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=ROOT / ".devnet", help="where the testnet goes (replaced)")
    ap.add_argument("--validators", type=int, default=4)
    ap.add_argument("--starting-port", type=int, default=26656)
    ap.add_argument("--blocks", type=int, default=None, help="exit after printing this many blocks")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.NAME=VALUE",
                    help="genesis parameter override (see blackhole testnet --set)")
    ap.add_argument("--start-timeout", type=float, default=90.0, help="seconds to wait for the first blocks")
    args = ap.parse_args(argv)
    if args.validators < 2:
        ap.error("the demo needs at least 2 validators (a seller and a buyer)")

    interrupted = False

    def on_sigint(_signum: int, _frame: Any) -> None:
        nonlocal interrupted
        interrupted = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    signal.signal(signal.SIGTERM, on_sigint)
    net: Devnet | None = None
    try:
        net = generate(args.dir.resolve(), args.validators, args.starting_port, args.overrides)
        print(f"generated {args.validators} validators under {net.out}", flush=True)
        start_nodes(net)
        client = RpcClient(net.nodes[0].rpc_url, timeout=30)
        poll("the first blocks", lambda: True if height_of(client) >= 2 else None, args.start_timeout, net)
        print("the chain is producing blocks", flush=True)
        made = demo(net, client)
        home0 = net.nodes[0].home
        print("\nRPC endpoints:", flush=True)
        for n in net.nodes:
            print(f"  {n.name}: {n.rpc_url}   (log: {n.log_path})")
        node = f"--node {net.nodes[0].rpc_url}"
        print("\nTry:")
        print(f"  blackhole status {node}")
        print(f"  blackhole query card {made['card']} {node}")
        print(f"  blackhole query feed --tag demo {node}")
        print(f"  blackhole query seeders {made['root']} {node}")
        print(f"  blackhole query keys-of {made['buyer']} {node}")
        print(f"  blackhole query may-decrypt {made['buyer']} {made['card']} {node}")
        print(f"  blackhole keys import me {home0}/config/priv_validator_key.json --home {home0}")
        print(f"  blackhole tx transfer {made['buyer']} 1000 --from me --home {home0} {node}")
        print("(`blackhole` is .venv/bin/blackhole: run `source .venv/bin/activate` first, in another terminal)")
        print("\nBlocks (Ctrl-C stops every node):", flush=True)
        follow_blocks(net, client, args.blocks, stall_s=60.0)
        return 0
    except KeyboardInterrupt:
        if not interrupted:
            raise
        print("\nstopping the nodes...", flush=True)
        return 0
    except (DevnetError, NodeError, ChainError, OSError) as exc:
        print(f"devnet: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        if net is not None:
            net.stop()
            print("all nodes stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
