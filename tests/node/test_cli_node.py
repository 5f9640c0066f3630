"""The CLI's tx, query and status commands against a real node process on 127.0.0.1."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from node.cli import cli
from node.client import RpcClient, RpcTransportError
from tests.node.harness import free_port_block

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 30.0


def run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


class Node:
    def __init__(self, home: Path, url: str, proc: subprocess.Popen[bytes]) -> None:
        self.home, self.url, self.proc = home, url, proc

    def height(self) -> int:
        return int(RpcClient(self.url, timeout=5).call("status")["sync_info"]["latest_block_height"])

    def wait_height(self, h: int) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.home / "node.log").read_text()[-3000:]
            try:
                if self.height() >= h:
                    return
            except RpcTransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"height {h} not reached; log: {(self.home / 'node.log').read_text()[-3000:]}")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    out = tmp_path_factory.mktemp("net")
    port = free_port_block(3)
    r = run("testnet", "--v", "1", "-o", out, "--starting-port", port, "--chain-id", "cli-test",
            "--set", "consensus.timeout_commit_ms=50", "--set", "consensus.timeout_propose_ms=500")  # fmt: skip
    assert r.exit_code == 0, r.output
    home = out / "node0"
    with open(home / "node.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "node.cli", "start", "--home", str(home)],
                                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)  # fmt: skip
    n = Node(home, f"http://127.0.0.1:{port + 1}", proc)
    try:
        n.wait_height(1)
        yield n
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            raise AssertionError("the node did not stop on SIGTERM") from None
        assert code == 0, (home / "node.log").read_text()[-3000:]


def _json(r: Result) -> dict:  # type: ignore[type-arg]
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_status_and_block(node: Node) -> None:
    r = run("status", "--node", node.url, "--home", node.home)
    assert r.exit_code == 0 and "cli-test" in r.output and "height:" in r.output
    # the home's [rpc] laddr is the default node address
    st = _json(run("status", "-o", "json", "--home", node.home))
    assert st["node_info"]["chain_id"] == "cli-test"
    b = _json(run("query", "block", "--height", "1", "-o", "json", "--home", node.home))
    assert "block_bytes" in b
    r = run("query", "block", "--height", "999999", "--home", node.home)
    assert r.exit_code == 1 and r.output.startswith("Error: RPC error")


def test_sale_end_to_end(node: Node, tmp_path: Path) -> None:
    h = node.home
    assert run("keys", "import", "val", h / "config" / "priv_validator_key.json", "--home", h).exit_code == 0
    buyer = run("keys", "create", "buyer", "--home", h).output.split(": ")[1].strip()
    # fund the buyer and wait for the commit
    t = _json(run("tx", "transfer", "buyer", "1000000", "--from", "val", "--wait", "-o", "json", "--home", h))
    assert t["result"]["committed"] is True
    acct = _json(run("query", "account", "buyer", "-o", "json", "--home", h))
    assert acct["value"]["balance"] == 1_000_000
    # publish an encrypted card with a key offer
    src = tmp_path / "movie.txt"
    src.write_bytes(b"frame " * 3000)
    pub = _json(run("tx", "publish-card", "--from", "val", "--file", src, "--title", "Movie", "--type", "video",
                    "--tag", "film", "--preview", "trailer", "--price", "25", "--chunk-size", "4096", "--wait",
                    "-o", "json", "--home", h))  # fmt: skip
    card_id, root = pub["card_id"], pub["content_root"]
    card = _json(run("query", "card", card_id, "-o", "json", "--home", h))["value"]
    assert card["title"] == "Movie" and card["content_root"] == root and card["offer"]["price"] == 25
    feed = _json(run("query", "feed", "--tag", "film", "--paid", "-o", "json", "--home", h))
    assert [c["card_id"] for c in feed["cards"]] == [card_id]
    assert _json(run("query", "feed", "--tag", "film", "--free", "-o", "json", "--home", h))["cards"] == []
    text = run("query", "feed", "--type", "video", "--home", h)
    assert text.exit_code == 0 and card_id in text.output
    # seed it
    _json(run("tx", "announce-seed", root, "--address", "127.0.0.1:4433", "--ranges", "0-2", "--from", "val",
              "--wait", "-o", "json", "--home", h))  # fmt: skip
    seeders = _json(run("query", "seeders", root, "-o", "json", "--home", h))["value"]
    assert seeders["seeders"][0]["addresses"] == ["127.0.0.1:4433"]
    # the buyer pays into escrow; the seller finds the buyer in the escrow and delivers
    _json(run("tx", "buy-key", card_id, "--max-price", "25", "--from", "buyer", "--wait", "-o", "json",
              "--home", h))  # fmt: skip
    d = _json(run("tx", "deliver-key", card_id, "1", "--content-root", root, "--from", "val", "--wait",
                  "-o", "json", "--home", h))  # fmt: skip
    assert d["buyer"] == buyer
    token = _json(run("query", "key", card_id, "1", "-o", "json", "--home", h))["value"]
    assert token["owner"] == buyer
    # the buyer opens the sealed key with the CLI and decrypts the seeded ciphertext
    got_key = tmp_path / "bought.key"
    r = run("content", "unseal", card_id, "1", "--from", "buyer", "--out", got_key, "--home", h)
    assert r.exit_code == 0, r.output
    assert got_key.read_text() == Path(pub["content_key"]).read_text()
    plain = tmp_path / "movie.out"
    r = run("content", "decrypt", pub["ciphertext"], plain, "--key", got_key, "--chunk-size", "4096", "--root", root)
    assert r.exit_code == 0 and plain.read_bytes() == src.read_bytes()
    r = run("content", "unseal", card_id, "1", "--from", "val", "--out", tmp_path / "no.key", "--home", h)
    assert r.exit_code == 1 and "not to val" in r.output
    may = _json(run("query", "may-decrypt", "buyer", card_id, "-o", "json", "--home", h))["value"]
    assert may["allowed"] is True
    keys_of = _json(run("query", "keys-of", "buyer", "--prove", "-o", "json", "--home", h))
    assert keys_of["value"]["tokens"][0]["serial"] == 1 and all("proof" in r for r in keys_of["reads"])
    found = _json(run("query", "tx", d["hash"], "-o", "json", "--home", h))
    assert found["hash"] == d["hash"]
    # a react, a follow and a generic tx go through the same path
    for args in (["react", card_id, "love"], ["follow", "val"], ["generic", "app.note", "--payload", "hi"]):
        assert _json(run("tx", *args, "--from", "buyer", "--wait", "-o", "json", "--home", h))["result"]["committed"]


def test_rejected_transaction_is_an_error(node: Node) -> None:
    h = node.home
    run("keys", "create", "poor", "--home", h)
    r = run("tx", "transfer", "ab" * 32, "5", "--from", "poor", "--home", h)
    assert r.exit_code == 1
    assert "rejected" in r.output.splitlines()[-1]


def test_loadgen_commits_every_lane_it_sends(node: Node) -> None:
    from chain.genesis import GenesisDoc
    from genesis.keyfile import read_key_file
    from tools import loadgen

    doc = GenesisDoc.load(node.home / "config" / "genesis.json")
    funder = read_key_file(node.home / "config" / "priv_validator_key.json")
    out = loadgen.run([node.url], funder, doc, rate=40, duration=2, n_accounts=7, drain=15, setup_timeout=30)
    assert out["sent"] == out["accepted"] == out["committed"] == 80, out
    assert out["lost"] == 0 and out["rejected"] == 0
    assert isinstance(out["latency_ms_p50"], float) and out["latency_ms_p99"] >= out["latency_ms_p50"]  # type: ignore[operator]
    assert loadgen.percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5) == 3.0
    assert loadgen.percentile([1.0, 2.0], 0.99) == 2.0 and loadgen.percentile([], 0.5) is None


def _start(home: Path) -> subprocess.Popen[bytes]:
    with open(home / "node.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "node.cli", "start", "--home", str(home)],
                                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)  # fmt: skip


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=20) == 0
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise


def test_export_a_live_chain_and_restart_from_it(tmp_path: Path) -> None:
    import shutil

    port = free_port_block(3)
    out = tmp_path / "net"
    assert run("testnet", "--v", "1", "-o", out, "--starting-port", port, "--chain-id", "old",
               "--set", "consensus.timeout_commit_ms=50").exit_code == 0  # fmt: skip
    home = out / "node0"
    url = f"http://127.0.0.1:{port + 1}"
    run("keys", "import", "val", home / "config" / "priv_validator_key.json", "--home", home)
    proc = _start(home)
    try:
        n = Node(home, url, proc)
        n.wait_height(1)
        pub = _json(run("tx", "publish-card", "--from", "val", "--content-root", "cd" * 32, "--size", "10",
                        "--title", "kept", "--type", "text", "--wait", "-o", "json", "--home", home))  # fmt: skip
        locked = run("genesis", "export", "--home", home, "--chain-id", "new", tmp_path / "x.json")
        assert locked.exit_code == 1 and locked.output.count("\n") == 1  # the running node holds the database
    finally:
        _stop(proc)
    exported = tmp_path / "exported.json"
    r = run("genesis", "export", "--home", home, "--chain-id", "new", exported)
    assert r.exit_code == 0, r.output
    height = int(re.search(r"at height (\d+)", r.output).group(1))  # type: ignore[union-attr]
    assert run("genesis", "validate", exported).exit_code == 0
    # restart the same validator on the new chain from the exported state
    shutil.rmtree(home / "data")
    (home / "data").mkdir()
    shutil.copy(exported, home / "config" / "genesis.json")
    proc = _start(home)
    try:
        n = Node(home, url, proc)
        n.wait_height(height + 2)
        card = _json(run("query", "card", pub["card_id"], "-o", "json", "--home", home))["value"]
        assert card["title"] == "kept"
        assert _json(run("status", "-o", "json", "--home", home))["node_info"]["chain_id"] == "new"
    finally:
        _stop(proc)
