"""A reusable testnet harness: homes, in-process nodes and real node processes.

* :func:`make_testnet` writes an N-validator (+ M full node) testnet with
  ``genesis.testnet`` into a directory, with fast consensus timeouts and a
  ``config/config.toml`` per node on free 127.0.0.1 ports (every node lists
  every other as a persistent peer).
* :class:`InProcessNode` runs ``node.daemon.run_node`` as a trio task that can
  be stopped (cancelled) and started again on the same home.
* :class:`ProcessNode` runs ``python -m node --home ...`` as a real process;
  stop it with SIGTERM (:meth:`ProcessNode.terminate`) or SIGKILL
  (:meth:`ProcessNode.kill`); :meth:`ProcessNode.height` polls RPC ``status``
  (falling back to the ``/metrics`` page while no ``status`` method exists).

Every wait polls a condition until a deadline; nothing sleeps on real time to
let something happen.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from chain.crypto import PrivateKey
from chain.params import ConsensusParams
from chain.types import Vote, VoteType
from genesis.testnet import Testnet, generate_testnet, load_devnet_template
from node import wire
from node.config import BaseConfig, Config, P2PConfig, RpcConfig, StorageConfig, write_config
from p2p import CONSENSUS, Host, NodeKey

REPO = Path(__file__).resolve().parents[2]
CHAIN_ID = "bh-test"

FAST_TIMEOUTS = {
    "timeout_propose_ms": 800,
    "timeout_propose_delta_ms": 200,
    "timeout_prevote_ms": 300,
    "timeout_prevote_delta_ms": 200,
    "timeout_precommit_ms": 300,
    "timeout_precommit_delta_ms": 200,
    "timeout_commit_ms": 150,
}
"""Consensus timeouts of test genesis files (a block every few hundred ms)."""


def free_port(kind: int) -> int:
    """A port the OS just handed out on 127.0.0.1 (SOCK_DGRAM or SOCK_STREAM)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_block(n: int) -> int:
    """A port p with p..p+n-1 free on 127.0.0.1 (UDP and TCP) right now: for tools that
    number their ports from one starting port (`blackhole testnet`, tools/devnet.py)."""
    for _ in range(50):
        base = free_port(socket.SOCK_STREAM)
        if base + n >= 65000:
            continue
        try:
            for p in range(base, base + n):
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    with socket.socket(socket.AF_INET, kind) as t:
                        t.bind(("127.0.0.1", p))
        except OSError:
            continue
        return base
    raise RuntimeError("no block of free ports on 127.0.0.1")


@dataclass
class NodeHome:
    """One generated node home."""

    name: str
    home: Path
    node_id: str
    validator_key: PrivateKey
    is_validator: bool
    p2p_port: int
    rpc_port: int


@dataclass
class NetHomes:
    net: Testnet
    nodes: list[NodeHome]

    @property
    def chain_id(self) -> str:
        return self.net.genesis.chain_id


def make_testnet(out: Path, validators: int = 4, full_nodes: int = 0, *,
                 storage: StorageConfig | None = None, seed: bytes = b"harness",
                 peers_of_full_nodes: bool = True, timeouts: dict[str, int] | None = None,
                 ) -> NetHomes:
    """Generate homes under ``out`` (see the module docstring)."""
    template = load_devnet_template()
    params = {**{f: getattr(template.consensus_params, f)
                 for f in ConsensusParams.__dataclass_fields__},
              **(timeouts or FAST_TIMEOUTS)}
    template = template.replace(consensus_params=ConsensusParams(**params), template=True)
    net = generate_testnet(out, validators=validators, non_validators=full_nodes,
                           chain_id=CHAIN_ID, template=template, seed=seed)
    homes = []
    for n in net.nodes:
        node_id = NodeKey.from_seed(n.node_key.seed).peer_id.hex()
        homes.append(NodeHome(n.name, n.home, node_id, n.validator_key, n.is_validator,
                              free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)))
    for h in homes:
        others = [o for o in homes if o is not h and (peers_of_full_nodes or o.is_validator)]
        cfg = Config(
            home=h.home,
            base=BaseConfig(moniker=h.name, log_level="info"),
            rpc=RpcConfig(laddr=f"tcp://127.0.0.1:{h.rpc_port}"),
            p2p=P2PConfig(
                laddr=f"udp://127.0.0.1:{h.p2p_port}",
                persistent_peers=tuple(f"{o.node_id}@127.0.0.1:{o.p2p_port}" for o in others),
                max_outbound_peers=max(10, len(others)),
                pex=False,
            ),
            storage=storage or StorageConfig(),
        )
        (h.home / "config").mkdir(exist_ok=True)
        write_config(cfg)
    return NetHomes(net, homes)


async def wait_until(cond: Callable[[], bool], timeout: float, what: str,
                     poll: float = 0.05) -> None:
    """Poll ``cond`` on trio's clock until it holds; AssertionError after ``timeout``."""
    with trio.move_on_after(timeout):
        while not cond():
            await trio.sleep(poll)
        return
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class InProcessNode:
    """A node run as a trio task of the test (real QUIC, real LevelDB)."""

    def __init__(self, home: NodeHome, verifier: Any = None) -> None:
        self.home = home
        self.verifier = verifier
        self.daemon: Any = None
        self._scope: trio.CancelScope | None = None
        self._done: trio.Event | None = None

    async def start(self, nursery: trio.Nursery) -> Any:
        from node.daemon import run_node

        self._done = trio.Event()
        done = self._done

        async def runner(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            with trio.CancelScope() as scope:
                self._scope = scope
                try:
                    await run_node(self.home.home, task_status=task_status,
                                   verifier=self.verifier, handle_signals=False)
                finally:
                    done.set()

        self.daemon = await nursery.start(runner)
        return self.daemon

    async def stop(self) -> None:
        if self._scope is not None and self._done is not None:
            self._scope.cancel()
            await self._done.wait()
        self.daemon = None

    @property
    def node(self) -> Any:
        return None if self.daemon is None else self.daemon.node

    @property
    def height(self) -> int:
        return -1 if self.daemon is None else int(self.daemon.node.state.height)


async def start_all(nursery: trio.Nursery, homes: list[NodeHome], verifier: Any = None,
                    height: int | None = None) -> list[InProcessNode]:
    """Start one in-process node per home; with ``height``, wait until all reach it."""
    nodes = [InProcessNode(h, verifier) for h in homes]
    for n in nodes:
        await n.start(nursery)
    if height is not None:
        await wait_until(lambda: min(n.height for n in nodes) >= height, 30, f"height {height}")
    return nodes


# --- real processes ----------------------------------------------------------------------


def rpc_call(port: int, method: str, params: dict[str, Any] | None = None,
             timeout: float = 2.0) -> Any:
    """One JSON-RPC call over HTTP to 127.0.0.1:port; raises OSError or RuntimeError."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/", body, {"Content-Type": "application/json"})
        reply = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


def metrics_value(port: int, name: str, timeout: float = 2.0) -> float | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    m = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    return None if m is None else float(m.group(1))


@dataclass
class ProcessNode:
    """``python -m node --home HOME`` as a child process."""

    home: NodeHome
    proc: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    def start(self) -> None:
        log_path = self.home.home / f"node-{len(self.logs)}.log"
        self.logs.append(log_path)
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        with open(log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "node", "--home", str(self.home.home)],
                stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def height(self) -> int | None:
        """The latest committed height over RPC, None while it does not answer."""
        if not self.alive():
            return None
        try:
            st = rpc_call(self.home.rpc_port, "status", timeout=1.0)
            return int(st["sync_info"]["latest_block_height"])
        except RuntimeError:
            value = metrics_value(self.home.rpc_port, "blackhole_consensus_latest_block_height")
            return None if value is None else int(value)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait for the exit code."""
        self._signal(signal.SIGTERM)
        if self.proc is None:
            return 0
        return self.proc.wait(timeout=timeout)

    def _signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            if sig == signal.SIGKILL:
                self.proc.wait(timeout=10)

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())


def wait_log(node: ProcessNode, text: str, timeout: float) -> None:
    """Poll the node's log until ``text`` appears."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in node.log_text():
            return
        time.sleep(0.2)
    raise AssertionError(f"{node.home.name}: {text!r} not logged within {timeout}s")


def wait_heights(nodes: list[ProcessNode], height: int, timeout: float) -> list[int | None]:
    """Poll until every node reports ``height`` or more (real time: processes)."""
    deadline = time.monotonic() + timeout
    seen: list[int | None] = []
    while time.monotonic() < deadline:
        seen = [n.height() for n in nodes]
        if all(h is not None and h >= height for h in seen):
            return seen
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for height {height}: {seen}")


async def equivocate_until_seen(fake: Host, target: InProcessNode, cheat_key: PrivateKey,
                                chain_id: str, timeout_s: float = 20.0) -> None:
    """From `fake` (a host connected to `target`), send two conflicting prevotes signed by
    `cheat_key` for target's current height and round, again every 0.1 s (rounds move
    on), until target's consensus driver reports the equivocation or `timeout_s` passes.
    The caller asserts on ``target.daemon.consensus.evidence_seen``."""
    driver = target.daemon.consensus
    with trio.move_on_after(timeout_s):
        while not driver.evidence_seen:
            core = driver.replica.core
            idx = core.valset.index_of(cheat_key.public_key.raw)
            if idx is None:
                raise AssertionError("the cheating key is not in the target's validator set")
            for block_hash in (b"\x01" * 32, b"\x02" * 32):
                vote = Vote(VoteType.PREVOTE, core.height, core.round, block_hash,
                            1, idx, b"").signed(cheat_key, chain_id)
                fake.send(target.node.node_key.peer_id, CONSENSUS, wire.encode(wire.VoteMessage(vote)))
            await trio.sleep(0.1)
