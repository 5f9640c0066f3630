"""tools/devnet.py against real node processes: 4 validators, the demo sale, 3 block lines, clean stop."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.node.harness import free_port_block

ROOT = Path(__file__).resolve().parents[1]


def test_devnet_runs_the_demo_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port_block(12)
    res = subprocess.run(
        [sys.executable, "-m", "tools.devnet", "--dir", str(tmp_path / "dn"), "--starting-port", str(port),
         "--blocks", "3", "--start-timeout", "40", "--set", "consensus.timeout_commit_ms=100"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    logs = "".join(p.read_text()[-2000:] for p in sorted((tmp_path / "dn").glob("node*/node.log")))
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}\n{logs}"
    out = res.stdout
    assert "published card" in out and "decrypted the content" in out
    assert f"http://127.0.0.1:{port + 1}" in out and "blackhole query card" in out
    lines = re.findall(r"^height=(\d+) time=\S+ cards=\d+ seeders=\d+ keys=\d+ txs=\d+ app_hash=[0-9a-f]{12}$", out,
                       re.MULTILINE)  # fmt: skip
    assert len(lines) == 3 and [int(x) for x in lines] == list(range(int(lines[0]), int(lines[0]) + 3))
    assert out.rstrip().endswith("all nodes stopped")
    assert "did not stop" not in out and "stopped with exit code" not in out


def test_ctrl_c_stops_every_node(tmp_path: Path) -> None:
    import signal
    import time

    port = free_port_block(6)
    out_path = tmp_path / "out.txt"
    with open(out_path, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tools.devnet", "--dir", str(tmp_path / "dn"), "--starting-port", str(port),
             "--validators", "2", "--start-timeout", "40", "--set", "consensus.timeout_commit_ms=100"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            if len(re.findall(r"^height=\d+ ", out_path.read_text(), re.MULTILINE)) >= 2:
                break
            time.sleep(0.1)
        assert proc.poll() is None, out_path.read_text()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=40) == 0, out_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    text = out_path.read_text()
    assert "stopping the nodes" in text and text.rstrip().endswith("all nodes stopped")
    assert "stopped with exit code" not in text and "did not stop" not in text


def test_a_dead_node_is_named_with_its_log(tmp_path: Path) -> None:
    from chain.params import AppParams
    from tools.devnet import Devnet, DevnetError, NodeProc

    dead = NodeProc("node7", tmp_path, "http://127.0.0.1:1")
    dead.proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    dead.proc.wait(timeout=20)
    net = Devnet(tmp_path, "c", AppParams(), [dead])
    try:
        net.check_alive()
    except DevnetError as exc:
        assert "node7 exited with code 3" in str(exc) and str(tmp_path / "node.log") in str(exc)
    else:
        raise AssertionError("a dead node went unnoticed")
