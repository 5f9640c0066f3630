"""A tampering HTTP proxy between the light client and the node's real RpcServer (over a
real 4-validator LevelDB chain) alters one thing at a time; every alteration is refused
with a typed error and the untampered path succeeds."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chain.types import Commit, CommitSig, Header, Validator, ValidatorSet
from light import errors as le
from light.client import LightClient, Options, Provider
from light.queries import VerifiedQueries
from light.store import TrustedStore
from tests.light.fixtures import TamperProxy, World

Query = Callable[[VerifiedQueries, World], Any]


def _flip(hex_text: str, at: int = -1) -> str:
    raw = bytearray(bytes.fromhex(hex_text))
    raw[at] ^= 0x01
    return raw.hex()


def _header_field(result: dict[str, Any]) -> dict[str, Any]:
    h = Header.decode_untrusted(bytes.fromhex(result["header_bytes"]))
    result["header_bytes"] = dataclasses.replace(h, app_hash=bytes(32)).encode().hex()
    return result


def _commit_sig(result: dict[str, Any]) -> dict[str, Any]:
    c = Commit.decode_untrusted(bytes.fromhex(result["commit_bytes"]))
    sigs = list(c.signatures)
    s = sigs[0]
    sigs[0] = CommitSig(s.validator_index, s.timestamp_ms, bytes([s.signature[0] ^ 1]) + s.signature[1:])
    result["commit_bytes"] = dataclasses.replace(c, signatures=tuple(sigs)).encode().hex()
    return result


def _valset(result: dict[str, Any]) -> dict[str, Any]:
    v = ValidatorSet.decode_untrusted(bytes.fromhex(result["valset_bytes"]))
    first = v.validators[0]
    members = (Validator(first.pubkey, first.power * 100), *v.validators[1:])
    result["valset_bytes"] = ValidatorSet(members).encode().hex()
    return result


def _on(method: str, change: Callable[[dict[str, Any]], Any]) -> Callable[[str, dict[str, Any], Any], Any]:
    def tamper(m: str, params: dict[str, Any], result: Any) -> Any:
        return change(result) if m == method else result

    return tamper


def _read_value(result: dict[str, Any], index: int = 0) -> dict[str, Any]:
    r = result["reads"][index]
    r["value"] = _flip(r["value"]) if r["value"] else "00"
    return result


def _read_proof(result: dict[str, Any]) -> dict[str, Any]:
    r = result["reads"][0]
    r["proof"] = _flip(r["proof"])
    return result


def _json_balance(result: dict[str, Any]) -> dict[str, Any]:
    result["value"]["balance"] += 1
    return result


def _drop_read(result: dict[str, Any]) -> dict[str, Any]:
    result["reads"].pop()
    return result


def _other_height(result: dict[str, Any]) -> dict[str, Any]:
    result["height"] -= 1
    return result


def _drop_item(result: dict[str, Any]) -> dict[str, Any]:
    fp = result["feed_proof"]
    fp["items"].pop(0)
    fp["start"] += 1
    result["value"]["items"].pop(0)
    result["value"]["cards"].pop(0)
    result["value"]["start"] += 1
    return result


def _add_item(result: dict[str, Any]) -> dict[str, Any]:
    fp = result["feed_proof"]
    fp["items"].append(fp["items"][0])
    fp["stop"] += 1
    fp["length"] += 1
    return result


def _seeder_entry(result: dict[str, Any]) -> dict[str, Any]:
    # the second read is the first seeder's entry record: change its address list
    result["value"]["seeders"][0]["addresses"] = ["10.0.0.1:1"]
    return _read_value(result, 1)


def _seeder_dropped(result: dict[str, Any]) -> dict[str, Any]:
    # drop the last seeder from the list chunk and its entry: the chunk no longer proves
    import msgpack  # noqa: F401  (chunk is raw concatenated addresses)

    chunk = result["reads"][0]
    chunk["value"] = chunk["value"][:-64]
    result["reads"].pop()
    result["value"]["seeders"].pop()
    return result


def _account(q: VerifiedQueries, w: World) -> Any:
    return q.account(w.dave)


def _card(q: VerifiedQueries, w: World) -> Any:
    return q.card(w.paid_card)


def _feed(q: VerifiedQueries, w: World) -> Any:
    return q.feed("tag", "art", start=0, limit=10)


def _seeders(q: VerifiedQueries, w: World) -> Any:
    return q.seeders(w.root)


def _may_decrypt(q: VerifiedQueries, w: World) -> Any:
    return q.may_decrypt(w.dave, w.paid_card)


CASES: list[tuple[str, Query, Callable[[str, dict[str, Any], Any], Any], type[Exception]]] = [
    ("read value", _account, _on("account", _read_value), le.BadProof),
    ("json view", _account, _on("account", _json_balance), le.ViewMismatch),
    ("proof node", _card, _on("card", _read_proof), le.BadProof),
    ("omitted read", _card, _on("card", _drop_read), le.MissingRead),
    ("answer height", _card, _on("card", _other_height), le.WrongHeight),
    ("header field", _account, _on("commit", _header_field), le.InvalidCommit),
    ("commit signature", _account, _on("commit", _commit_sig), le.InvalidCommit),
    ("validator set", _account, _on("validators", _valset), le.InvalidValidatorSet),
    ("feed item dropped", _feed, _on("cards", _drop_item), le.IncompletePage),
    ("feed item added", _feed, _on("cards", _add_item), le.IncompletePage),
    ("seeder entry", _seeders, _on("seeders", _seeder_entry), le.BadProof),
    ("seeder dropped", _seeders, _on("seeders", _seeder_dropped), le.BadProof),
    ("entitlement view", _may_decrypt,
     _on("may_decrypt", lambda r: {**r, "value": {**r["value"], "allowed": False}}), le.ViewMismatch),
]


def _client(world: World, proxy: TamperProxy, home: Path) -> VerifiedQueries:
    client = LightClient.init(
        TrustedStore(home), Provider.at(proxy.address), [], trust_height=1,
        trust_hash=world.header_hash(1), options=Options(),
        clock=lambda: world.fx.state.time_ms + 60_000,
    )
    return VerifiedQueries(client)


@pytest.mark.parametrize(("name", "query", "tamper", "error"), CASES, ids=[c[0] for c in CASES])
def test_alteration_is_refused(world: World, proxy: TamperProxy, home: Path, name: str, query: Query,
                               tamper: Callable[[str, dict[str, Any], Any], Any], error: type[Exception]) -> None:
    q = _client(world, proxy, home)
    proxy.tamper = tamper
    with pytest.raises(error):
        query(q, world)
    assert proxy.tampered > 0, "the proxy altered nothing: the case tests nothing"
    assert issubclass(error, le.LightError)


@pytest.mark.parametrize("query", [_account, _card, _feed, _seeders, _may_decrypt])
def test_untampered_path_succeeds(world: World, proxy: TamperProxy, home: Path, query: Query) -> None:
    q = _client(world, proxy, home)
    proxy.tamper = lambda m, p, r: r
    answer = query(q, world)
    assert answer.height == world.fx.height
    assert proxy.tampered == 0


def test_lying_witness_is_dropped_not_believed(world: World, served: Any, proxy: TamperProxy, home: Path) -> None:
    """A witness that serves a forged header (its commit does not sign it) is faulty: it is
    dropped, the primary's verified header stands, and nothing is reported as an attack."""
    def forge(method: str, params: dict[str, Any], result: Any) -> Any:
        if method in ("header", "commit") and params.get("height", 0) > 1:
            return _header_field(result)
        return result

    proxy.tamper = forge
    client = LightClient.init(
        TrustedStore(home), Provider.at(served.address), [Provider.at(proxy.address)], trust_height=1,
        trust_hash=world.header_hash(1), clock=lambda: world.fx.state.time_ms + 60_000,
    )
    assert client.update().hash() == world.header_hash(world.fx.height)
    assert [a for a, _ in client.dropped_witnesses] == [proxy.address] and client.witnesses == []
    assert client.store.evidence() == [] and not client.store.meta().halted
