"""Forking a genesis and building one from exported state."""

from __future__ import annotations

from pathlib import Path

import pytest

from chain.crypto import PrivateKey
from chain.errors import GenesisError
from chain.genesis import AppStateRecord, GenesisAccount, GenesisDoc, GenesisValidator
from chain.types import Validator
from genesis.errors import OverrideError
from genesis.fork import build_genesis, fork_genesis, main, parse_overrides
from genesis.testnet import build_testnet_genesis, load_devnet_template

KEYS = [PrivateKey(bytes([i + 1]) * 32) for i in range(4)]
T0 = 1_767_225_600_000


def base() -> GenesisDoc:
    return build_testnet_genesis(load_devnet_template(), KEYS, genesis_time_ms=T0)


def test_fork_changes_chain_id_and_params_and_keeps_the_rest() -> None:
    src = base()
    forked = fork_genesis(
        src,
        chain_id="blackhole-fork-1",
        consensus_overrides={"timeout_commit_ms": 50},
        app_overrides={"min_fee": 1, "seeder_max_ttl": 77},
        initial_height=1000,
    )
    assert forked.chain_id == "blackhole-fork-1" and forked.initial_height == 1000
    assert forked.consensus_params.timeout_commit_ms == 50
    assert forked.app_params.min_fee == 1 and forked.app_params.seeder_max_ttl == 77
    assert forked.consensus_params.timeout_propose_ms == src.consensus_params.timeout_propose_ms
    assert (forked.validators, forked.accounts, forked.app_state) == (
        src.validators,
        src.accounts,
        src.app_state,
    )
    assert forked.genesis_time_ms == src.genesis_time_ms and forked.hash() != src.hash()


def test_fork_requires_a_new_chain_id_and_valid_overrides() -> None:
    src = base()
    with pytest.raises(GenesisError) as info:
        fork_genesis(src, chain_id=src.chain_id)
    assert info.value.field == "chain_id"
    with pytest.raises(GenesisError) as info:
        fork_genesis(src, chain_id="x", consensus_overrides={"timeout_commit_ms": -1})
    assert info.value.field == "consensus_params.timeout_commit_ms"
    with pytest.raises(GenesisError) as info:
        fork_genesis(src, chain_id="x", app_overrides={"no_such_param": 1})
    assert info.value.field == "app_params.no_such_param"
    with pytest.raises(GenesisError):
        fork_genesis(src, chain_id="bad id")


def test_fork_can_replace_validators_and_accounts() -> None:
    src = base()
    new_val = GenesisValidator(KEYS[0].public_key.raw, 100, "solo")
    forked = fork_genesis(src, chain_id="solo-net", validators=[new_val], accounts=[])
    assert forked.validators == (new_val,) and forked.accounts == ()


def test_build_genesis_from_exported_parts() -> None:
    doc = build_genesis(
        chain_id="exported-1",
        genesis_time_ms=T0,
        initial_height=5001,
        validators=[Validator(k.public_key.raw, 3) for k in KEYS],
        accounts=[(k.public_key.raw, 10 * i) for i, k in enumerate(KEYS)]
        + [GenesisAccount(b"\x07" * 32, 1)],
        app_state=[("card", b"\x93\x01\x02\x03"), AppStateRecord("seeder", b"\xc0")],
    )
    assert doc.initial_height == 5001 and doc.validator_set().total_power == 12
    assert [v.pubkey for v in doc.validators] == sorted(k.public_key.raw for k in KEYS)
    assert [r.kind for r in doc.app_state] == ["card", "seeder"]
    assert GenesisDoc.from_json(doc.to_json()) == doc


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"validators": ["not a validator"]}, "validators[0]"),
        ({"accounts": [(b"\x01" * 32,)]}, "accounts[0]"),
        ({"app_state": [("kind",)]}, "app_state[0]"),
        ({"app_state": [("Bad", b"")]}, "app_state[0].kind"),
        ({"validators": []}, "validators"),
    ],
)
def test_build_genesis_errors(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {
        "chain_id": "e",
        "genesis_time_ms": T0,
        "validators": [Validator(KEYS[0].public_key.raw, 1)],
        "accounts": [],
    }
    args.update(kwargs)
    with pytest.raises(GenesisError) as info:
        build_genesis(**args)  # type: ignore[arg-type]
    assert info.value.field == field


def test_parse_overrides() -> None:
    consensus, app = parse_overrides(
        ["consensus.timeout_commit_ms=500", "app.min_fee = 1_000", "app.flag=true"]
    )
    assert consensus == {"timeout_commit_ms": 500} and app == {"min_fee": 1000, "flag": True}
    for bad in [
        "nosection=1",
        "consensus.x",
        "vm.x=1",
        "app.min_fee=1.5",
        "app.min_fee=abc",
        "app.=1",
    ]:
        with pytest.raises(OverrideError):
            parse_overrides([bad])
    with pytest.raises(OverrideError, match="twice"):
        parse_overrides(["app.min_fee=1", "app.min_fee=2"])


def test_cli_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src_path, out_path = tmp_path / "g.json", tmp_path / "fork.json"
    base().dump(src_path)
    args = [
        str(src_path),
        str(out_path),
        "--chain-id",
        "forked",
        "--set",
        "consensus.timeout_commit_ms=5",
    ]
    assert main([*args, "--genesis-time", "2027-01-01T00:00:00Z", "--initial-height", "9"]) == 0
    forked = GenesisDoc.load(out_path)
    assert forked.chain_id == "forked" and forked.consensus_params.timeout_commit_ms == 5
    assert forked.initial_height == 9 and forked.genesis_time_ms == 1_798_761_600_000
    assert main([str(src_path), str(out_path), "--chain-id", "forked", "--set", "bad"]) == 1
    assert "error:" in capsys.readouterr().err
    assert main([str(tmp_path / "absent.json"), str(out_path), "--chain-id", "f"]) == 1
