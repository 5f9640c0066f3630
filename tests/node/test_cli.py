"""The blackhole CLI through click's CliRunner: everything that needs no running node."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from chain import crypto
from chain import tx as txm
from chain.genesis import GenesisDoc
from chain.state import State, init_state
from node import content
from node.cli import card_ids_of, card_matches, cli
from node.config import load_config
from node.keyring import Keyring
from storage.kv import LevelKV
from storage.state import StateTree


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


def test_init_writes_home_and_refuses_to_overwrite(tmp_path: Path) -> None:
    home = tmp_path / "h"
    r = run("init", "--home", home, "--chain-id", "my-chain", "--moniker", "alpha")
    assert r.exit_code == 0, r.output
    cfg = load_config(home / "config" / "config.toml")
    assert cfg.base.moniker == "alpha"
    doc = GenesisDoc.load(home / "config" / "genesis.json")
    assert doc.chain_id == "my-chain" and len(doc.validators) == 1
    for name in ("node_key.json", "priv_validator_key.json"):
        assert stat.S_IMODE((home / "config" / name).stat().st_mode) == 0o600
    pv = json.loads((home / "config" / "priv_validator_key.json").read_text())
    assert doc.validators[0].pubkey.hex() == pv["pub_key"]
    assert doc.accounts[0].address.hex() == pv["pub_key"]
    again = run("init", "--home", home)
    assert again.exit_code == 1
    assert again.output.count("\n") == 1 and "refusing to overwrite" in again.output
    forced = run("init", "--home", home, "--force")
    assert forced.exit_code == 0
    assert json.loads((home / "config" / "priv_validator_key.json").read_text()) != pv


def test_init_bad_chain_id_and_moniker_are_one_line_errors(tmp_path: Path) -> None:
    r = run("init", "--home", tmp_path / "a", "--chain-id", "bad chain!")
    assert r.exit_code == 1 and r.output.startswith("Error: ") and "chain_id" in r.output
    r = run("init", "--home", tmp_path / "b", "--moniker", "no spaces")
    assert r.exit_code == 1 and "base.moniker" in r.output


def test_testnet_homes_ports_and_peers(tmp_path: Path) -> None:
    out = tmp_path / "net"
    r = run("testnet", "--v", "3", "--n", "1", "-o", out, "--starting-port", "31000", "--chain-id", "tn",
            "--set", "consensus.timeout_commit_ms=100", "--seed", "s")  # fmt: skip
    assert r.exit_code == 0, r.output
    ids = []
    for i in range(4):
        home = out / f"node{i}"
        cfg = load_config(home / "config" / "config.toml")
        assert cfg.p2p.laddr == f"udp://127.0.0.1:{31000 + 3 * i}"
        assert cfg.rpc.laddr == f"tcp://127.0.0.1:{31001 + 3 * i}"
        assert len(cfg.p2p.persistent_peers) == 3
        assert all(not p.endswith(f":{31000 + 3 * i}") for p in cfg.p2p.persistent_peers)
        ids.append(json.loads((home / "config" / "node_key.json").read_text())["pub_key"])
        doc = GenesisDoc.load(home / "config" / "genesis.json")
        assert doc.chain_id == "tn" and len(doc.validators) == 3
        assert doc.consensus_params.timeout_commit_ms == 100
    peers0 = load_config(out / "node0" / "config" / "config.toml").p2p.persistent_peers
    assert {p.split("@")[0] for p in peers0} == set(ids[1:])
    # the same seed gives the same keys
    r2 = run("testnet", "--v", "3", "--n", "1", "-o", tmp_path / "net2", "--chain-id", "tn",
             "--set", "consensus.timeout_commit_ms=100", "--seed", "s")  # fmt: skip
    assert r2.exit_code == 0
    assert (tmp_path / "net2" / "node0" / "config" / "node_key.json").read_text() == (
        out / "node0" / "config" / "node_key.json"
    ).read_text()
    again = run("testnet", "-o", out)
    assert again.exit_code == 1 and "not empty" in again.output
    bad = run("testnet", "-o", tmp_path / "n3", "--set", "consensus.nope=1")
    assert bad.exit_code == 1 and "nope" in bad.output
    assert run("testnet", "--v", "0", "-o", tmp_path / "n4").exit_code == 2


def test_keys_lifecycle(tmp_path: Path) -> None:
    h = tmp_path
    r = run("keys", "create", "alice", "--home", h)
    assert r.exit_code == 0
    addr = r.output.split(": ")[1].strip()
    assert run("keys", "show", "alice", "--address", "--home", h).output.strip() == addr
    assert run("keys", "create", "alice", "--home", h).exit_code == 1
    exported = run("keys", "export", "alice", "--home", h).output
    assert json.loads(exported)["pub_key"] == addr
    out = tmp_path / "alice.json"
    assert run("keys", "export", "alice", "--out", out, "--home", h).exit_code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert run("keys", "import", "bob", out, "--home", tmp_path / "o").exit_code == 0
    assert run("keys", "import", "carol", "--seed-hex", "22" * 32, "--home", h).exit_code == 0
    assert run("keys", "import", "dave", "--home", h).exit_code == 2
    listed = json.loads(run("keys", "list", "-o", "json", "--home", h).output)
    assert [k["name"] for k in listed] == ["alice", "carol"]
    assert run("keys", "delete", "carol", "--home", h, input="n\n").exit_code == 1
    assert run("keys", "delete", "carol", "--yes", "--home", h).exit_code == 0
    missing = run("keys", "show", "carol", "--home", h)
    assert missing.exit_code == 1 and "no key named 'carol'" in missing.output
    assert run("keys", "create", "../x", "--home", h).exit_code == 1


def _home_with_key(tmp_path: Path) -> tuple[Path, crypto.PrivateKey]:
    home = tmp_path / "h"
    assert run("init", "--home", home, "--chain-id", "dry").exit_code == 0
    key = crypto.PrivateKey.generate()
    Keyring(home).add("me", key)
    return home, key


def _dry(home: Path, *args: str) -> tuple[dict, txm.Tx]:  # type: ignore[type-arg]
    r = run("tx", *args, "--from", "me", "--home", home, "--dry-run", "--nonce", "4", "-o", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    tx = txm.Tx.decode_untrusted(bytes.fromhex(out["tx"]))
    assert tx.verify_signature("dry") and tx.nonce == 4 and tx.fee == out["fee"]
    return out, tx


def test_every_tx_command_builds_a_signed_transaction(tmp_path: Path) -> None:
    home, key = _home_with_key(tmp_path)
    other = crypto.PrivateKey.generate()
    h, o = "ab" * 32, other.public_key.hex()
    ck = tmp_path / "k.key"
    ck.write_text("cd" * 32)
    cases = [
        (["transfer", o, "7"], txm.Transfer),
        (["publish-card", "--title", "t", "--type", "text", "--content-root", h, "--size", "100",
          "--tag", "x", "--price", "5", "--rule", "hold_blocks", "--rule-param", "3"], txm.PublishCard),
        (["update-card", h, "--title", "n"], txm.UpdateCard),
        (["react", h, "like"], txm.React),
        (["follow", o], txm.Follow),
        (["unfollow", o], txm.Unfollow),
        (["announce-seed", h, "--address", "127.0.0.1:5000", "--ranges", "0-4", "--expiry-height", "50"],
         txm.Announce),
        (["withdraw-seed", h], txm.Withdraw),
        (["buy-key", h, "--max-price", "9"], txm.BuyKey),
        (["deliver-key", h, "1", "--buyer", o, "--content-key", ck], txm.DeliverKey),
        (["list-key", h, "1", "3"], txm.ListKey),
        (["transfer-key", h, "1", o, "--content-key", ck], txm.TransferKey),
        (["bond", "1000000"], txm.Bond),
        (["unbond", "5"], txm.Unbond),
        (["generic", "app.note", "--payload", "hi"], txm.Generic),
    ]  # fmt: skip
    for args, kind in cases:
        _, tx = _dry(home, *[str(a) for a in args])
        assert type(tx.body) is kind, args
        assert tx.sender == key.public_key.raw
    _, tx = _dry(home, "deliver-key", h, "1", "--buyer", o, "--content-key", str(ck))
    assert isinstance(tx.body, txm.DeliverKey)
    assert crypto.unseal(other, tx.body.sealed_key) == bytes.fromhex("cd" * 32)


def test_publish_card_encrypts_a_file(tmp_path: Path) -> None:
    home, key = _home_with_key(tmp_path)
    src = tmp_path / "song.txt"
    src.write_bytes(b"la " * 5000)
    out, tx = _dry(home, "publish-card", "--file", str(src), "--title", "Song", "--type", "audio",
                   "--chunk-size", "4096", "--preview", "la la")  # fmt: skip
    body = tx.body
    assert isinstance(body, txm.PublishCard)
    assert out["card_id"] == txm.compute_card_id(key.public_key.raw, 4).hex()
    key_path, ct_path = Path(out["content_key"]), Path(out["ciphertext"])
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    ct = ct_path.read_bytes()
    assert body.size == len(ct) and body.chunk_size == 4096 and body.preview == b"la la"
    assert body.content_root.hex() == out["content_root"] == ct_path.stem
    plain = content.decrypt_bytes(ct, bytes.fromhex(key_path.read_text().strip()), 4096,
                                  expected_root=body.content_root)  # fmt: skip
    assert plain == src.read_bytes()
    # the same key file then serves deliver-key by content root
    other = crypto.PrivateKey.generate()
    _, d = _dry(home, "deliver-key", "ee" * 32, "1", "--buyer", other.public_key.hex(),
                "--content-root", body.content_root.hex())  # fmt: skip
    assert isinstance(d.body, txm.DeliverKey)
    assert crypto.unseal(other, d.body.sealed_key) == bytes.fromhex(key_path.read_text().strip())


@pytest.mark.parametrize(
    "args, code, text",
    [
        (["transfer", "z z", "1"], 1, "neither"),
        (["react", "ab", "like"], 1, "32 bytes"),
        (["transfer", "ab" * 32, "-1"], 2, ""),
        (["publish-card", "--title", "t", "--type", "text"], 2, "--file or --content-root"),
        (["publish-card", "--title", "t", "--type", "text", "--content-root", "ab" * 32, "--size", "1",
          "--price", "1", "--rule", "nope"], 1, "rule"),
        (["publish-card", "--title", "t", "--type", "text", "--content-root", "ab" * 32, "--size", "1",
          "--chunk-size", "1000"], 1, "chunk size"),
        (["deliver-key", "ab" * 32, "1", "--buyer", "ab" * 32, "--content-key", "/nonexistent"], 1, "cannot read"),
        (["generic", "k" * 40], 1, "kind"),
    ],
)
def test_tx_errors_are_one_line(tmp_path: Path, args: list[str], code: int, text: str) -> None:
    home, _ = _home_with_key(tmp_path)
    r = run("tx", *args, "--from", "me", "--home", home, "--dry-run", "--nonce", "0")
    assert r.exit_code == code, r.output
    assert text in r.output
    if code == 1:
        assert r.output.startswith("Error: ") and r.output.count("\n") == 1


def test_tx_needs_a_known_signer_and_a_nonce(tmp_path: Path) -> None:
    home, _ = _home_with_key(tmp_path)
    r = run("tx", "bond", "5", "--from", "ghost", "--home", home, "--dry-run", "--nonce", "0")
    assert r.exit_code == 1 and "no key named 'ghost'" in r.output
    r = run("tx", "bond", "5", "--from", "me", "--home", home, "--dry-run")
    assert r.exit_code == 1 and "--nonce" in r.output


def test_queries_report_an_unreachable_node_in_one_line(tmp_path: Path) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()
    for args in (["status"], ["query", "account", "ab" * 32], ["query", "block"]):
        r = run(*args, "--node", url, "--home", tmp_path)
        assert r.exit_code == 1 and "cannot reach the node" in r.output and r.output.count("\n") == 1


def test_start_without_a_home_fails_cleanly(tmp_path: Path) -> None:
    r = run("start", "--home", tmp_path / "none")
    assert r.exit_code == 1 and "blackhole init" in r.output


def test_genesis_validate_fork(tmp_path: Path) -> None:
    home = tmp_path / "h"
    run("init", "--home", home, "--chain-id", "orig")
    g = home / "config" / "genesis.json"
    r = run("genesis", "validate", g)
    assert r.exit_code == 0 and "chain orig" in r.output
    out = tmp_path / "fork.json"
    r = run("genesis", "fork", g, out, "--chain-id", "forked", "--set", "app.min_fee=7",
            "--set", "consensus.timeout_commit_ms=250", "--initial-height", "10")  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = GenesisDoc.load(out)
    assert (doc.chain_id, doc.app_params.min_fee, doc.consensus_params.timeout_commit_ms, doc.initial_height) == (
        "forked", 7, 250, 10)
    assert run("genesis", "fork", g, out, "--chain-id", "again").exit_code == 1  # exists
    r = run("genesis", "fork", g, tmp_path / "x.json", "--chain-id", "orig")
    assert r.exit_code == 1 and "different" in r.output
    r = run("genesis", "fork", g, tmp_path / "y.json", "--chain-id", "z", "--set", "bogus")
    assert r.exit_code == 1 and "section.name=value" in r.output
    bad = tmp_path / "bad.json"
    bad.write_text('{"chain_id": "x"}')
    r = run("genesis", "validate", bad)
    assert r.exit_code == 1 and "genesis_time" in r.output


def test_genesis_export_reproduces_the_state(tmp_path: Path) -> None:
    home = tmp_path / "h"
    run("init", "--home", home, "--chain-id", "orig")
    doc = GenesisDoc.load(home / "config" / "genesis.json")
    cfg = load_config(home / "config" / "config.toml")
    kv = LevelKV.open(cfg.path(cfg.storage.db_path), create=True)
    root = init_state(StateTree(kv), doc)
    State.from_genesis(StateTree(kv), doc)
    kv.close()
    out = tmp_path / "exported.json"
    r = run("genesis", "export", "--home", home, "--height", "0", "--chain-id", "next", out)
    assert r.exit_code == 0, r.output
    new = GenesisDoc.load(out)
    assert new.chain_id == "next" and new.initial_height == 1
    assert new.accounts == doc.accounts and new.validators == doc.validators
    kv2 = LevelKV.open(tmp_path / "db2", create=True)
    assert init_state(StateTree(kv2), new) == root
    kv2.close()
    same = run("genesis", "export", "--home", home, "--chain-id", "orig", tmp_path / "o2.json")
    assert same.exit_code == 1 and "new chain id" in same.output
    future = run("genesis", "export", "--home", home, "--height", "5", "--chain-id", "n2", tmp_path / "o3.json")
    assert future.exit_code == 1 and future.output.count("\n") == 1


def test_export_refuses_a_missing_database(tmp_path: Path) -> None:
    home = tmp_path / "h"
    run("init", "--home", home)
    r = run("genesis", "export", "--home", home, "--chain-id", "n", tmp_path / "o.json")
    assert r.exit_code == 1 and "no such directory" in r.output


def test_config_toml_is_valid_toml(tmp_path: Path) -> None:
    run("init", "--home", tmp_path)
    tomllib.loads((tmp_path / "config" / "config.toml").read_text())


def test_feed_filters() -> None:
    paid = {"card_id": "a", "created_height": 5, "offer": {"price": 3}, "creator": "c1",
            "content_type": "video", "tags": ["x"]}  # fmt: skip
    free = {"card_id": "b", "created_height": 9, "offer": None, "creator": "c2", "content_type": "text", "tags": []}
    kw = {"from_height": None, "to_height": None, "creator": None, "content_type": None, "tag": None}
    assert card_matches(paid, free=False, **kw) and not card_matches(paid, free=True, **kw)
    assert card_matches(free, free=True, **kw)
    assert not card_matches(paid, free=None, **{**kw, "from_height": 6})
    assert card_matches(free, free=None, **{**kw, "from_height": 6, "to_height": 9})
    assert not card_matches(free, free=None, **{**kw, "tag": "x"})
    assert card_ids_of({"items": ["a", {"card_id": "b"}]}) == ["a", "b"]
    assert card_ids_of([{"card_id": "z"}]) == ["z"]


def test_help_lists_every_command() -> None:
    r = run("--help")
    for name in ("init", "start", "testnet", "keys", "tx", "query", "status", "genesis"):
        assert name in r.output
    r = run("tx", "--help")
    for name in ("transfer", "publish-card", "update-card", "react", "follow", "unfollow", "announce-seed",
                 "withdraw-seed", "buy-key", "deliver-key", "transfer-key", "bond", "unbond", "generic"):  # fmt: skip
        assert name in r.output
    r = run("query", "--help")
    for name in ("account", "card", "feed", "seeders", "key", "keys-of", "may-decrypt", "block", "tx"):
        assert name in r.output


def test_content_encrypt_and_decrypt(tmp_path: Path) -> None:
    src = tmp_path / "doc.txt"
    src.write_bytes(b"secret words " * 700)
    out = json.loads(run("content", "encrypt", src, "--chunk-size", "2048", "-o", "json", "--home", tmp_path).output)
    assert stat.S_IMODE(Path(out["content_key"]).stat().st_mode) == 0o600
    plain = tmp_path / "plain.txt"
    r = run("content", "decrypt", out["ciphertext"], plain, "--key", out["content_key"], "--chunk-size", "2048",
            "--root", out["content_root"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert plain.read_bytes() == src.read_bytes()
    # a truncated ciphertext fails in one line and leaves no output behind
    cut = tmp_path / "cut.bin"
    cut.write_bytes(Path(out["ciphertext"]).read_bytes()[:2048])
    r = run("content", "decrypt", cut, tmp_path / "p2", "--key", out["content_key"], "--chunk-size", "2048")
    assert r.exit_code == 1 and "truncated" in r.output and not (tmp_path / "p2").exists()
    r = run("content", "decrypt", out["ciphertext"], tmp_path / "p3", "--key", out["content_key"],
            "--chunk-size", "2048", "--root", "00" * 32)  # fmt: skip
    assert r.exit_code == 1 and "does not match" in r.output
