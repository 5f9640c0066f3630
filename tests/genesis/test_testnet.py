"""Testnet generation, the shipped devnet template and key files."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from chain.errors import GenesisError
from chain.genesis import GenesisDoc
from chain.params import AppParams, ConsensusParams
from genesis.errors import GenesisToolError, KeyFileError, OutputExistsError
from genesis.keyfile import read_key_file, write_key_file
from genesis.testnet import (
    DEFAULT_BALANCE,
    build_testnet_genesis,
    generate_testnet,
    load_devnet_template,
    main,
)

T0 = 1_767_225_600_000


def test_devnet_template_loads_and_is_tuned_for_a_local_devnet() -> None:
    doc = load_devnet_template()
    assert doc.chain_id == "blackhole-devnet"
    assert doc.validators == ()
    cp = doc.consensus_params
    assert cp.timeout_propose_ms < ConsensusParams().timeout_propose_ms
    assert cp.timeout_commit_ms < ConsensusParams().timeout_commit_ms
    assert cp.max_validators >= 4
    # The shipped file has every top-level section (parameters it omits take their defaults).
    shipped = json.loads((Path(__file__).parents[2] / "genesis" / "devnet.json").read_text())
    assert set(shipped) == set(doc.to_dict())
    with pytest.raises(GenesisError):
        GenesisDoc.load(
            Path(__file__).parents[2] / "genesis" / "devnet.json"
        )  # no validators: template only


def test_generate_four_validator_testnet(tmp_path: Path) -> None:
    out = tmp_path / "net"
    net = generate_testnet(out, validators=4, non_validators=1, genesis_time_ms=T0, seed=b"fixed")
    assert len(net.nodes) == 5 and [n.is_validator for n in net.nodes] == [True] * 4 + [False]
    doc = GenesisDoc.load(out / "genesis.json")
    assert doc == net.genesis
    assert doc.genesis_time_ms == T0 and doc.chain_id == "blackhole-devnet"
    assert len(doc.validators) == 4 and doc.validator_set().total_power == 40
    validator_pubs = {n.validator_key.public_key.raw for n in net.nodes[:4]}
    assert {v.pubkey for v in doc.validators} == validator_pubs
    assert {a.address for a in doc.accounts} == validator_pubs
    assert all(a.balance == DEFAULT_BALANCE for a in doc.accounts)
    assert sorted(v.name for v in doc.validators) == ["node0", "node1", "node2", "node3"]
    for node in net.nodes:
        cfg = node.home / "config"
        assert (node.home / "data").is_dir()
        assert GenesisDoc.load(cfg / "genesis.json").hash() == doc.hash()
        for name, key in (
            ("priv_validator_key.json", node.validator_key),
            ("node_key.json", node.node_key),
        ):
            path = cfg / name
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert read_key_file(path) == key
    keys = [n.validator_key.seed for n in net.nodes] + [n.node_key.seed for n in net.nodes]
    assert len(set(keys)) == len(keys)


def test_seeded_generation_is_deterministic_and_unseeded_is_not(tmp_path: Path) -> None:
    a = generate_testnet(tmp_path / "a", validators=2, genesis_time_ms=T0, seed=b"s")
    b = generate_testnet(tmp_path / "b", validators=2, genesis_time_ms=T0, seed=b"s")
    c = generate_testnet(tmp_path / "c", validators=2, genesis_time_ms=T0)
    assert a.genesis.hash() == b.genesis.hash() != c.genesis.hash()


def test_output_problems_are_typed_errors(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(OutputExistsError):
        generate_testnet(a_file, validators=1, genesis_time_ms=T0)
    with pytest.raises(GenesisToolError):
        generate_testnet(a_file / "below", validators=1, genesis_time_ms=T0)


def test_refuses_non_empty_output_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "net"
    first = generate_testnet(out, validators=1, genesis_time_ms=T0, seed=b"1")
    with pytest.raises(OutputExistsError):
        generate_testnet(out, validators=1, genesis_time_ms=T0, seed=b"2")
    assert GenesisDoc.load(out / "genesis.json") == first.genesis
    second = generate_testnet(out, validators=1, genesis_time_ms=T0, seed=b"2", overwrite=True)
    assert read_key_file(out / "node0" / "config" / "node_key.json") == second.nodes[0].node_key


@pytest.mark.parametrize(("v", "n"), [(0, 0), (-1, 0), (1, -1), (1001, 0), (4, 997)])
def test_rejects_bad_counts(tmp_path: Path, v: int, n: int) -> None:
    with pytest.raises(GenesisError):
        generate_testnet(tmp_path / "x", validators=v, non_validators=n, genesis_time_ms=T0)
    assert not (tmp_path / "x").exists()


def test_custom_template_chain_id_and_too_many_validators(tmp_path: Path) -> None:
    template = GenesisDoc.build(
        chain_id="tiny",
        genesis_time_ms=0,
        consensus_params=ConsensusParams(max_validators=2),
        app_params=AppParams(min_fee=7),
        template=True,
    )
    net = generate_testnet(
        tmp_path / "a",
        validators=2,
        template=template,
        chain_id="tiny-2",
        genesis_time_ms=T0,
        seed=b"t",
    )
    assert net.genesis.chain_id == "tiny-2" and net.genesis.app_params.min_fee == 7
    with pytest.raises(GenesisError) as info:
        generate_testnet(tmp_path / "b", validators=3, template=template, genesis_time_ms=T0)
    assert info.value.field == "validators"


def test_build_testnet_genesis_is_pure() -> None:
    from chain.crypto import PrivateKey

    keys = [PrivateKey(bytes([i + 1]) * 32) for i in range(3)]
    doc = build_testnet_genesis(
        load_devnet_template(), keys, genesis_time_ms=T0, power=3, balance=5
    )
    assert doc.validator_set().total_power == 9 and doc.total_supply() == 15
    assert doc == build_testnet_genesis(
        load_devnet_template(), keys, genesis_time_ms=T0, power=3, balance=5
    )


def test_cli_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert main(["--v", "2", "--o", str(out), "--chain-id", "cli-net"]) == 0
    assert GenesisDoc.load(out / "genesis.json").chain_id == "cli-net"
    assert "genesis" in capsys.readouterr().out
    assert main(["--v", "2", "--o", str(out)]) == 1
    assert "not empty" in capsys.readouterr().err


# --- key files ---


def test_key_file_round_trip_and_mode(tmp_path: Path) -> None:
    from chain.crypto import PrivateKey

    key = PrivateKey(b"\x05" * 32)
    path = tmp_path / "k.json"
    write_key_file(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_file(path) == key
    with pytest.raises(KeyFileError, match="exists"):
        write_key_file(path, key)
    os.chmod(path, 0o644)
    write_key_file(path, PrivateKey(b"\x06" * 32), overwrite=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "content",
    [
        "",
        "[]",
        '{"type": "ed25519"}',
        '{"type": "rsa", "pub_key": "' + "00" * 32 + '", "priv_key": "' + "00" * 32 + '"}',
        '{"type": "ed25519", "pub_key": "' + "00" * 32 + '", "priv_key": "' + "05" * 32 + '"}',
        '{"type": "ed25519", "pub_key": "xyz", "priv_key": "' + "05" * 32 + '"}',
        '{"type": "ed25519", "pub_key": "' + "00" * 32 + '", "priv_key": 5}',
        '{"type": "ed25519", "pub_key": "'
        + "00" * 32
        + '", "priv_key": "'
        + "05" * 32
        + '", "x": 1}',
    ],
)
def test_bad_key_files(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(KeyFileError):
        read_key_file(path)


def test_missing_and_huge_key_files(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError):
        read_key_file(tmp_path / "absent.json")
    huge = tmp_path / "huge.json"
    huge.write_text(" " * 10_000)
    with pytest.raises(KeyFileError, match="larger"):
        read_key_file(huge)
    with pytest.raises(KeyFileError):
        write_key_file(
            tmp_path / "no" / "dir" / "k.json",
            __import__("chain.crypto").crypto.PrivateKey(b"\x01" * 32),
        )
