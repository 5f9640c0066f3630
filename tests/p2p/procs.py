"""Run node_proc.py processes and watch their JSON output from a sync test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

SCRIPT = Path(__file__).with_name("node_proc.py")
ROOT = Path(__file__).resolve().parents[2]


class NodeProc:
    def __init__(self, seed: bytes, listen: str, persistent: list[str] | None = None,
                 prefix: list[str] | None = None) -> None:
        cmd = [*(prefix or []), sys.executable, str(SCRIPT), "--seed", seed.hex(),
               "--listen", listen]
        for p in persistent or []:
            cmd += ["--persistent", p]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, cwd=ROOT,
        )
        self.lines: list[dict[str, object]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = 0
        self.id = ""

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._lock:
                self.lines.append(json.loads(raw))

    def snapshot(self) -> list[dict[str, object]]:
        with self._lock:
            return list(self.lines)

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_for(lambda: any("ready" in line for line in self.snapshot()), timeout,
                 f"node ready (stderr: {self.stderr_if_dead()})")
        first = next(line for line in self.snapshot() if "ready" in line)
        self.port = int(str(first["ready"]))
        self.id = str(first["id"])

    def peers(self) -> set[str]:
        peers: set[str] = set()
        for line in self.snapshot():
            if "connected" in line:
                peers.add(str(line["connected"]))
            elif "disconnected" in line:
                peers.discard(str(line["disconnected"]))
        return peers

    def received(self) -> list[str]:
        return [str(line["received"]) for line in self.snapshot() if "received" in line]

    def command(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((text + "\n").encode())
        self.proc.stdin.flush()

    def stderr_if_dead(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read().decode(errors="replace")[-2000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def quit(self) -> None:
        if self.proc.poll() is None:
            try:
                self.command("quit")
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()
        self.kill()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` every 20 ms until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
