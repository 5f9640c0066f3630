"""Real node processes (`python -m node --home ...`) on 127.0.0.1.

Each test starts a 4-validator testnet as child processes, polls their heights
over RPC with deadlines and stops them with SIGKILL or SIGTERM. Double signing
is checked from the logs: every node logs any equivocation evidence it detects
("evidence of double signing"), and the tests assert no node ever did.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chain import tx as txm
from chain.types import Commit
from storage.blocks import BlockStore
from storage.kv import LevelKV
from tests.node.harness import (
    REPO,
    NetHomes,
    ProcessNode,
    make_testnet,
    rpc_call,
    wait_heights,
    wait_log,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def net(tmp_path: Path) -> Iterator[tuple[NetHomes, list[ProcessNode]]]:
    homes = make_testnet(tmp_path / "net", 4, full_nodes=1)
    procs = [ProcessNode(h) for h in homes.nodes]
    try:
        yield homes, procs
    finally:
        for p in procs:
            p.kill()


def _check_logs(procs: list[ProcessNode]) -> None:
    for p in procs:
        text = p.log_text()
        assert "evidence of double signing" not in text, p.home.name
        assert "Traceback" not in text, f"{p.home.name}:\n{text[-3000:]}"


def _top(procs: list[ProcessNode]) -> int:
    return max(h for h in (p.height() for p in procs) if h is not None)


def test_sigkilled_validator_catches_up_and_a_fresh_full_node_syncs(
        net: tuple[NetHomes, list[ProcessNode]]) -> None:
    homes, procs = net
    validators, full = procs[:4], procs[4]
    for p in validators:
        p.start()
    wait_heights(validators, 3, timeout=40)
    victim = validators[3]
    sender = homes.nodes[0].validator_key
    payee = homes.nodes[1].validator_key.public_key.raw
    txs = [txm.Tx.create(sender, homes.chain_id, n, 20_000, txm.Transfer(payee, 1 + n)).encode()
           for n in range(12)]
    for raw in txs[:6]:
        check = rpc_call(homes.nodes[0].rpc_port, "broadcast_tx_sync", {"tx": raw.hex()})
        assert check["code"] == 0, check
    victim.kill()
    for raw in txs[6:]:  # under load while a validator is down
        check = rpc_call(homes.nodes[0].rpc_port, "broadcast_tx_sync", {"tx": raw.hex()})
        assert check["code"] == 0, check
    target = _top(validators[:3]) + 4
    wait_heights(validators[:3], target, timeout=20)  # 3 of 4 keep the chain going
    # the kill may have torn the WAL's last record; make sure the tail is torn
    with open(victim.home.home / "data" / "cs.wal" / "wal", "ab") as wal:
        wal.write(b"\x00\x00\x01\x00torn")
    victim.start()
    wait_heights([victim], target, timeout=20)
    rejoined_at = target
    restarted = victim.logs[-1].read_text()
    assert "block sync started" in restarted
    assert "truncated the tail" in restarted
    # it votes again: the chain moves with it, and it keeps up
    target = _top(validators) + 3
    wait_heights(validators, target, timeout=20)
    # a full node started now syncs every block from genesis
    full.start()
    wait_heights([full], target, timeout=25)
    assert 'msg="block sync started" next_height=1' in full.log_text()
    # caught up, it follows the chain through consensus (as a non-voting node)
    wait_log(full, "block sync done", timeout=20)
    wait_heights([full], _top(validators) + 2, timeout=20)
    # every transaction committed once, answered alike by every node (the full node too)
    for raw in txs:
        answers = {_tx_answer(p, txm.tx_hash(raw)) for p in procs}
        assert len(answers) == 1, answers
    for p in procs:
        assert p.terminate() == 0, p.home.name
    _check_logs(procs)
    # the restarted validator signs again: its precommits are in later commits
    victim_index = homes.net.genesis.validator_set().index_of(
        victim.home.validator_key.public_key.raw)
    assert victim_index is not None
    assert victim_index in _signers_since(validators[0], rejoined_at)


def _tx_answer(p: ProcessNode, tx_hash: bytes, timeout: float = 15.0) -> str:
    """Where ``p`` says the transaction is, once it knows (polled with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = rpc_call(p.home.rpc_port, "tx", {"hash": tx_hash.hex()})
            return json.dumps({k: found[k] for k in ("height", "lane", "index", "tx_bytes")},
                              sort_keys=True)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _signers_since(p: ProcessNode, height: int) -> set[int]:
    kv = LevelKV.open(str(p.home.home / "data" / "blackhole.db"))
    try:
        blocks = BlockStore(kv)
        top = blocks.latest_height or 0
        signers: set[int] = set()
        for h in range(height, top + 1):
            raw = blocks.get_commit(h)
            if raw is not None:
                signers |= {s.validator_index for s in Commit.decode_untrusted(raw).signatures}
        return signers
    finally:
        kv.close()


def test_two_of_four_stopped_halts_and_one_returning_resumes(
        net: tuple[NetHomes, list[ProcessNode]]) -> None:
    _, procs = net
    validators = procs[:4]
    for p in validators:
        p.start()
    wait_heights(validators, 2, timeout=40)
    assert validators[2].terminate() == 0
    assert validators[3].terminate() == 0
    halted = _top(validators[:2])
    # without +2/3 of the power no block is decided; at most one already in flight lands
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        assert _top(validators[:2]) <= halted + 1
        time.sleep(0.2)
    halted = _top(validators[:2])
    validators[2].start()
    wait_heights(validators[:3], halted + 3, timeout=30)
    # the whole network crashes at once and comes back from its stores and WALs
    for p in validators[:3]:
        p.kill()
    top = max(_stored_height(p) for p in validators)
    for p in validators:
        p.start()
    wait_heights(validators, top + 3, timeout=30)
    for p in validators:
        assert p.terminate() == 0
    _check_logs(validators)


def _stored_height(p: ProcessNode) -> int:
    kv = LevelKV.open(str(p.home.home / "data" / "blackhole.db"))
    try:
        return BlockStore(kv).latest_height or 0
    finally:
        kv.close()


def test_python_m_node_reports_a_bad_home_in_one_line(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "node", "--home", str(tmp_path / "missing")],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 1
    assert out.stderr.strip().startswith("error: home ")
    assert "Traceback" not in out.stderr


def test_python_m_node_reports_a_port_in_use_in_one_line(tmp_path: Path) -> None:
    homes = make_testnet(tmp_path / "net", 1)
    home = homes.nodes[0]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", home.rpc_port))
        taken.listen()
        out = subprocess.run([sys.executable, "-m", "node", "--home", str(home.home)],
                             capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 1, out.stderr[-2000:]
    assert "error:" in out.stderr and "Traceback" not in out.stderr
