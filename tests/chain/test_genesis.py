"""Genesis documents: JSON loading with field-naming errors, the generic params loader, the hash."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain.encoding import pack, unpack_untrusted
from chain.errors import ChainError, GenesisError, InvalidParams
from chain.genesis import (
    AppStateRecord,
    GenesisAccount,
    GenesisDoc,
    GenesisValidator,
    format_time_ms,
    override_params,
    params_from_dict,
    parse_time,
)
from chain.params import AppParams, ConsensusParams, param, params_to_list, validate_params
from tests.chain.vectors.codec import genesis_vector_doc

VECTOR = json.loads((Path(__file__).parent / "vectors" / "genesis.json").read_text())
BASE: dict[str, Any] = VECTOR["json"]


def load(obj: dict[str, Any], **kw: Any) -> GenesisDoc:
    return GenesisDoc.from_json(json.dumps(obj), **kw)


def mutated(path: list[Any], value: Any = None, *, delete: bool = False) -> dict[str, Any]:
    obj = copy.deepcopy(BASE)
    target = obj
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return obj


# --- the golden vector ---


def test_genesis_vector_loads_to_the_built_document() -> None:
    doc = load(BASE)
    assert doc == genesis_vector_doc()
    assert doc.to_dict() == BASE


def test_genesis_vector_encoding_and_hash() -> None:
    """The recorded encoding, with parameter arrays cut to the names recorded then.

    Parameters may only be APPENDED (with defaults); this also checks that.
    """
    doc = load(BASE)
    c_names = [f.name for f in dataclasses.fields(ConsensusParams)]
    a_names = [f.name for f in dataclasses.fields(AppParams)]
    assert c_names[: len(VECTOR["consensus_param_names"])] == VECTOR["consensus_param_names"]
    assert a_names[: len(VECTOR["app_param_names"])] == VECTOR["app_param_names"]
    fields = doc.to_list()
    fields[3] = fields[3][: len(VECTOR["consensus_param_names"])]
    fields[4] = fields[4][: len(VECTOR["app_param_names"])]
    assert pack(fields).hex() == VECTOR["hex"]
    assert blake3.blake3(bytes.fromhex(VECTOR["hex"])).hexdigest() == VECTOR["hash"]
    # The layout by hand: 8 fields, params as arrays in declaration order.
    decoded = unpack_untrusted(doc.encode(), 1 << 20)
    assert decoded[:3] == ["blackhole-vectors", 1_767_225_600_123, 5]
    assert decoded[3] == params_to_list(doc.consensus_params)
    assert decoded[5] == [[v.pubkey, v.power, v.name] for v in doc.validators]
    assert decoded[7] == [["test.record", b"\x91\x01"]]
    assert doc.hash() == blake3.blake3(doc.encode()).digest()


def test_hash_ignores_json_layout_and_order() -> None:
    doc = load(BASE)
    shuffled = copy.deepcopy(BASE)
    shuffled["accounts"].reverse()
    shuffled["validators"].reverse()
    reordered = dict(reversed(list(shuffled.items())))
    text = json.dumps(reordered, indent=None, separators=(",", ":"))
    assert GenesisDoc.from_json(text).hash() == doc.hash()


def test_hash_covers_every_field() -> None:
    doc = load(BASE)
    variants = [
        mutated(["chain_id"], "other"),
        mutated(["genesis_time"], "2026-01-01T00:00:00.124Z"),
        mutated(["initial_height"], 6),
        mutated(["consensus_params", "timeout_commit_ms"], 701),
        mutated(["app_params", "min_fee"], 43),
        mutated(["validators", 0, "power"], 99),
        mutated(["validators", 0, "name"], "renamed"),
        mutated(["accounts", 0, "balance"], 1),
        mutated(["app_state", 0, "data"], "9102"),
    ]
    hashes = {load(v).hash() for v in variants}
    assert doc.hash() not in hashes and len(hashes) == len(variants)


def test_dump_and_load_round_trip(tmp_path: Path) -> None:
    doc = load(BASE)
    path = tmp_path / "genesis.json"
    doc.dump(path)
    again = GenesisDoc.load(path)
    assert again == doc and again.hash() == doc.hash()
    assert again.validator_set().total_power == 5 + 6
    assert again.total_supply() == 1000 + 2000 + 3000


# --- errors name the field ---


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        (mutated(["chain_id"], "has space"), "chain_id"),
        (mutated(["chain_id"], ""), "chain_id"),
        (mutated(["chain_id"], 5), "chain_id"),
        (mutated(["chain_id"], delete=True), "chain_id"),
        (mutated(["genesis_time"], "yesterday"), "genesis_time"),
        (mutated(["genesis_time"], "2026-01-01T00:00:00"), "genesis_time"),
        (mutated(["genesis_time"], "2026-01-01"), "genesis_time"),
        (mutated(["genesis_time"], "1969-12-31T23:59:59Z"), "genesis_time"),
        (mutated(["genesis_time"], "2026-01-01T00:00:00.0001Z"), "genesis_time"),
        (mutated(["genesis_time"], 1700000000000), "genesis_time"),
        (mutated(["initial_height"], 0), "initial_height"),
        (mutated(["initial_height"], 1.0), "initial_height"),
        (mutated(["initial_height"], True), "initial_height"),
        (mutated(["initial_height"], "1"), "initial_height"),
        (mutated(["consensus_params"], []), "consensus_params"),
        (
            mutated(["consensus_params", "timeout_commit_ms"], -1),
            "consensus_params.timeout_commit_ms",
        ),
        (
            mutated(["consensus_params", "timeout_propose_ms"], 0),
            "consensus_params.timeout_propose_ms",
        ),
        (
            mutated(["consensus_params", "max_block_bytes"], "big"),
            "consensus_params.max_block_bytes",
        ),
        (mutated(["consensus_params", "bogus"], 1), "consensus_params.bogus"),
        (mutated(["app_params", "min_fee"], None), "app_params.min_fee"),
        (
            mutated(["app_params", "max_generic_kind_bytes"], 33),
            "app_params.max_generic_kind_bytes",
        ),
        (mutated(["app_params", "typo_fee"], 1), "app_params.typo_fee"),
        (mutated(["app_params", "max_tx_bytes"], 8 * 1024 * 1024), "app_params.max_tx_bytes"),
        (mutated(["validators"], {}), "validators"),
        (mutated(["validators"], delete=True), "validators"),
        (mutated(["validators"], []), "validators"),
        (mutated(["validators", 1, "pub_key"], "00"), "validators[1].pub_key"),
        (mutated(["validators", 1, "pub_key"], "zz" * 32), "validators[1].pub_key"),
        (mutated(["validators", 1, "pub_key"], "AB" * 32), "validators[1].pub_key"),
        (mutated(["validators", 1, "pub_key"], "ff" * 32), "validators[1].pub_key"),
        (mutated(["validators", 0, "power"], 0), "validators[0].power"),
        (mutated(["validators", 0, "power"], 2**61), "validators[0].power"),
        (mutated(["validators", 0, "power"], delete=True), "validators[0].power"),
        (mutated(["validators", 0, "name"], 7), "validators[0].name"),
        (mutated(["validators", 0, "name"], "x" * 65), "validators[0].name"),
        (mutated(["validators", 0, "extra"], 7), "validators[0].extra"),
        (mutated(["validators", 0], "v0"), "validators[0]"),
        (mutated(["accounts", 2, "address"], "00" * 31), "accounts[2].address"),
        (mutated(["accounts", 2, "balance"], -5), "accounts[2].balance"),
        (mutated(["accounts", 2, "balance"], 2**63), "accounts[2].balance"),
        (mutated(["accounts"], "none"), "accounts"),
        (mutated(["app_state", 0, "kind"], "Bad Kind"), "app_state[0].kind"),
        (mutated(["app_state", 0, "kind"], ""), "app_state[0].kind"),
        (mutated(["app_state", 0, "data"], "abc"), "app_state[0].data"),
        (mutated(["app_state", 0, "data"], 5), "app_state[0].data"),
        (mutated(["surprise"], 1), "surprise"),
    ],
)
def test_load_errors_name_the_field(obj: dict[str, Any], field: str) -> None:
    with pytest.raises(GenesisError) as info:
        load(obj)
    assert info.value.field == field, str(info.value)
    assert str(info.value).startswith(f"genesis: {field}: ")


def test_duplicates_and_supply_limits() -> None:
    obj = copy.deepcopy(BASE)
    obj["validators"].append(dict(obj["validators"][0]))
    with pytest.raises(GenesisError, match="duplicate validator"):
        load(obj)
    obj = copy.deepcopy(BASE)
    obj["accounts"].append(dict(obj["accounts"][0]))
    with pytest.raises(GenesisError, match="duplicate account"):
        load(obj)
    obj = copy.deepcopy(BASE)
    for a in obj["accounts"]:
        a["balance"] = 2**62
    with pytest.raises(GenesisError) as info:
        load(obj)
    assert info.value.field == "accounts"
    obj = mutated(["consensus_params", "max_validators"], 1)
    with pytest.raises(GenesisError) as info:
        load(obj)
    assert info.value.field == "validators"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("", "(file)"),
        ("{", "(file)"),
        ("[]", "(top level)"),
        ('{"chain_id": "a", "chain_id": "b"}', "chain_id"),
        ('{"initial_height": NaN}', "(file)"),
        (b"\xff\xfe", "(file)"),
    ],
)
def test_malformed_json(text: str | bytes, field: str) -> None:
    with pytest.raises(GenesisError) as info:
        GenesisDoc.from_json(text)
    assert info.value.field == field


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(GenesisError, match="cannot read"):
        GenesisDoc.load(tmp_path / "absent.json")


def test_template_allows_no_validators() -> None:
    obj = mutated(["validators"], [])
    doc = load(obj, template=True)
    assert doc.validators == ()
    with pytest.raises(GenesisError):
        doc.replace()


def test_defaults_fill_missing_params_and_optional_sections() -> None:
    obj = copy.deepcopy(BASE)
    del obj["consensus_params"]
    obj["app_params"] = {"min_fee": 1}
    del obj["accounts"], obj["app_state"], obj["initial_height"]
    doc = load(obj)
    assert doc.consensus_params == ConsensusParams()
    assert doc.app_params == AppParams(min_fee=1)
    assert doc.accounts == () and doc.app_state == () and doc.initial_height == 1


def test_build_sorts_and_validates() -> None:
    doc = genesis_vector_doc()
    rebuilt = GenesisDoc.build(
        chain_id=doc.chain_id,
        genesis_time_ms=doc.genesis_time_ms,
        initial_height=doc.initial_height,
        consensus_params=doc.consensus_params,
        app_params=doc.app_params,
        validators=reversed(doc.validators),
        accounts=reversed(doc.accounts),
        app_state=doc.app_state,
    )
    assert rebuilt == doc
    with pytest.raises(GenesisError) as info:
        doc.replace(validators=(GenesisValidator(b"\x01" * 31, 1),))
    assert info.value.field == "validators[0].pub_key"
    with pytest.raises(GenesisError) as info:
        doc.replace(accounts=(GenesisAccount(b"\x01" * 32, -1),))
    assert info.value.field == "accounts[0].balance"
    with pytest.raises(GenesisError) as info:
        doc.replace(app_state=(AppStateRecord("ok", "not bytes"),))  # type: ignore[arg-type]
    assert info.value.field == "app_state[0].data"
    unsorted = dataclasses.replace(doc, validators=tuple(reversed(doc.validators)))
    with pytest.raises(GenesisError, match="sorted"):
        unsorted.validate()


# --- parameters ---


def test_params_validate_on_construction() -> None:
    with pytest.raises(InvalidParams, match=r"consensus_params\.timeout_propose_ms"):
        ConsensusParams(timeout_propose_ms=0)
    with pytest.raises(InvalidParams, match=r"app_params\.min_fee"):
        AppParams(min_fee=True)
    with pytest.raises(InvalidParams):
        AppParams(max_generic_kind_bytes=33)
    assert issubclass(InvalidParams, ChainError)


def test_every_param_has_a_docstring_and_a_range() -> None:
    for cls in (ConsensusParams, AppParams):
        source = Path(__import__(cls.__module__).__file__ or "").parent / "params.py"
        text = source.read_text()
        for f in dataclasses.fields(cls):
            assert "lo" in f.metadata and "hi" in f.metadata, f.name
            lo, hi = f.metadata["lo"], f.metadata["hi"]
            assert lo <= f.default <= hi, f.name  # type: ignore[operator]
            after = text.split(f"    {f.name}: ", 1)[1].split("\n", 2)[1]
            assert after.strip().startswith('"""'), f"{f.name} has no docstring"


def test_consensus_helpers() -> None:
    cp = ConsensusParams()
    assert cp.timeout_ms("propose", 2) == 3000 + 2 * 500
    assert cp.timeout_ms("prevote", 0) == 1000
    assert cp.timeout_ms("precommit", 1) == 1500
    assert cp.max_lane_txs("seeders") == cp.max_lane_txs_seeders
    with pytest.raises(InvalidParams):
        cp.timeout_ms("commit", 0)
    with pytest.raises(InvalidParams):
        cp.max_lane_txs("nope")


def test_params_loader_is_generic_over_fields() -> None:
    """A dataclass shaped like AppParams with an appended field loads with no loader change."""

    @dataclasses.dataclass(frozen=True, slots=True)
    class Extended:
        a: int = param(1, lo=0, hi=10)
        appended_flag: bool = param(False)
        appended: int = param(7, lo=5, hi=9)

        def __post_init__(self) -> None:
            validate_params(self, "ext")

    assert params_from_dict(Extended, {}, "ext") == Extended()  # type: ignore[type-var]
    assert params_from_dict(Extended, {"appended": 9, "appended_flag": True}, "ext").appended == 9  # type: ignore[type-var]
    for bad, field in [
        ({"appended": 4}, "ext.appended"),
        ({"appended_flag": 1}, "ext.appended_flag"),
        ({"zz": 1}, "ext.zz"),
    ]:
        with pytest.raises(GenesisError) as info:
            params_from_dict(Extended, bad, "ext")  # type: ignore[type-var]
        assert info.value.field == field


def test_override_params() -> None:
    cp = override_params(ConsensusParams(), {"timeout_commit_ms": 10}, "consensus_params")
    assert cp.timeout_commit_ms == 10
    with pytest.raises(GenesisError) as info:
        override_params(ConsensusParams(), {"nope": 1}, "consensus_params")
    assert info.value.field == "consensus_params.nope"
    with pytest.raises(GenesisError) as info:
        override_params(AppParams(), {"min_fee": -1}, "app_params")
    assert info.value.field == "app_params.min_fee"


# --- time ---


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("2026-01-01T00:00:00.123Z", 1_767_225_600_123),
        ("2026-01-01T01:00:00+01:00", 1_767_225_600_000),
        ("2026-01-01T00:00:00.5+00:00", 1_767_225_600_500),
        ("2026-01-01T00:00:00.123000000Z", 1_767_225_600_123),
        ("2025-12-31T19:00:00-05:00", 1_767_225_600_000),
    ],
)
def test_parse_time(text: str, ms: int) -> None:
    assert parse_time("t", text) == ms


@pytest.mark.parametrize(
    "text",
    [
        "20260101T000000Z",
        "2026-01-01 00:00:00Z",
        "2026-01-01T00:00:00z",
        "2026-13-01T00:00:00Z",
        "2026-01-01T00:00:00+25:00",
        "2026-01-01T00:00:00.1234Z",
        "\u0662026-01-01T00:00:00Z".encode().decode("unicode_escape"),
        "2026-01-01T00:00Z",
    ],
)
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(GenesisError) as info:
        parse_time("genesis_time", text)
    assert info.value.field == "genesis_time"


def test_dump_to_unwritable_path(tmp_path: Path) -> None:
    with pytest.raises(GenesisError, match="cannot write"):
        load(BASE).dump(tmp_path / "missing-dir" / "g.json")


@given(st.integers(min_value=0, max_value=253_402_300_799_999))
def test_time_format_round_trip(ms: int) -> None:
    assert parse_time("t", format_time_ms(ms)) == ms
