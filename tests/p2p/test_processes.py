"""Real QUIC between separate processes: on 127.0.0.1, and across network namespaces."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import Iterator

import pytest

from p2p import CONSENSUS, MEMPOOL, NodeKey

from .procs import NodeProc, wait_for


def _addr(node: NodeProc, host: str = "127.0.0.1") -> str:
    return f"{node.id}@{host}:{node.port}"


def test_processes_mesh_gossip_and_restart_after_sigkill() -> None:
    seeds = [secrets.token_bytes(32) for _ in range(3)]
    ids = [NodeKey.from_seed(s).peer_id.hex() for s in seeds]
    nodes: list[NodeProc] = []
    try:
        hub = NodeProc(seeds[0], "127.0.0.1:0")
        nodes.append(hub)
        hub.wait_ready()
        for seed in seeds[1:]:
            nodes.append(NodeProc(seed, "127.0.0.1:0", [_addr(hub)]))
        for node in nodes[1:]:
            node.wait_ready()
        # the two leaves find each other through the hub's peer exchange
        wait_for(lambda: all(len(n.peers()) == 2 for n in nodes), 30, "full mesh")
        nodes[2].command(f"broadcast {CONSENSUS} {b'vote-from-2'.hex()}")
        wait_for(lambda: all(b"vote-from-2".hex() in n.received() for n in nodes[:2]), 15,
                 "gossip from node 2")

        # SIGKILL node 1 (no goodbye), restart it with the same key and port
        port1 = nodes[1].port
        nodes[1].kill()
        restarted = NodeProc(seeds[1], f"127.0.0.1:{port1}", [_addr(hub)])
        nodes[1] = restarted
        restarted.wait_ready()
        wait_for(lambda: restarted.peers() == {ids[0], ids[2]}, 30, "restarted node re-admitted")
        wait_for(lambda: ids[1] in nodes[0].peers() and ids[1] in nodes[2].peers(), 30,
                 "others list the restarted node")
        restarted.command(f"broadcast {MEMPOOL} {b'tx-after-restart'.hex()}")
        wait_for(lambda: all(b"tx-after-restart".hex() in n.received()
                             for n in (nodes[0], nodes[2])), 15, "gossip after restart")
    finally:
        for node in nodes:
            node.quit()


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)


@contextlib.contextmanager
def _namespaces() -> Iterator[tuple[str, str, str, str]]:
    """Two fresh namespaces joined by a veth pair; yields (ns_a, ns_b, ip_a, ip_b)."""
    tag = f"{os.getpid() % 10000}{secrets.token_hex(2)}"
    ns_a, ns_b = f"bhp2p-{tag}-a", f"bhp2p-{tag}-b"
    veth_a, veth_b = f"bha{tag}", f"bhb{tag}"  # interface names are at most 15 bytes
    octet = 1 + secrets.randbelow(250)
    ip_a, ip_b = f"10.213.{octet}.1", f"10.213.{octet}.2"
    created: list[str] = []
    try:
        try:
            probe = _ip("netns", "add", ns_a)
        except FileNotFoundError:
            pytest.skip("the `ip` tool is not installed")
        if probe.returncode != 0:
            pytest.skip(f"cannot create network namespaces here: {probe.stderr.strip()}")
        created.append(ns_a)
        steps = [
            ("netns", "add", ns_b),
            ("link", "add", veth_a, "type", "veth", "peer", "name", veth_b),
            ("link", "set", veth_a, "netns", ns_a),
            ("link", "set", veth_b, "netns", ns_b),
            ("-n", ns_a, "addr", "add", f"{ip_a}/24", "dev", veth_a),
            ("-n", ns_b, "addr", "add", f"{ip_b}/24", "dev", veth_b),
            ("-n", ns_a, "link", "set", veth_a, "up"),
            ("-n", ns_b, "link", "set", veth_b, "up"),
            ("-n", ns_a, "link", "set", "lo", "up"),
            ("-n", ns_b, "link", "set", "lo", "up"),
        ]
        for step in steps:
            result = _ip(*step)
            if step[:2] == ("netns", "add") and result.returncode == 0:
                created.append(ns_b)
            if result.returncode != 0:
                raise RuntimeError(f"ip {' '.join(step)} failed: {result.stderr.strip()}")
        yield ns_a, ns_b, ip_a, ip_b
    finally:
        if created:
            _ip("link", "del", veth_a)  # usually gone with its namespace already
        for ns in created:
            _ip("netns", "del", ns)


@pytest.mark.netns
def test_nodes_on_separate_addresses_in_network_namespaces() -> None:
    with _namespaces() as (ns_a, ns_b, ip_a, ip_b):
        seeds = [secrets.token_bytes(32) for _ in range(2)]
        a = NodeProc(seeds[0], f"{ip_a}:0", prefix=["ip", "netns", "exec", ns_a])
        b: NodeProc | None = None
        try:
            a.wait_ready()
            b = NodeProc(seeds[1], f"{ip_b}:0", [_addr(a, ip_a)],
                         prefix=["ip", "netns", "exec", ns_b])
            b.wait_ready()
            wait_for(lambda: a.peers() == {b.id} and b.peers() == {a.id}, 30, "connection")
            b.command(f"broadcast {CONSENSUS} {b'across-namespaces'.hex()}")
            a.command(f"broadcast {MEMPOOL} {b'and-back'.hex()}")
            wait_for(lambda: b"across-namespaces".hex() in a.received()
                     and b"and-back".hex() in b.received(), 15, "frames both ways")
            # each saw the other's own address, not loopback
            a_line = next(x for x in a.snapshot() if "connected" in x)
            b_line = next(x for x in b.snapshot() if "connected" in x)
            assert (a_line["connected"], a_line["addr"]) == (b.id, ip_b)
            assert (b_line["connected"], b_line["addr"]) == (a.id, ip_a)
        finally:
            a.quit()
            if b is not None:
                b.quit()
