"""`blackhole light` commands and the verifying proxy, against the node's real RpcServer
over the 4-validator LevelDB chain (and through the tampering proxy)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import blake3
import pytest
import trio
from click.testing import CliRunner

from light.client import LightClient, Options, Provider
from light.store import TrustedStore
from node.light_cli import group
from node.lightproxy import run_proxy
from tests.light.fixtures import Served, TamperProxy, World
from tests.node.rpcclient import http, post

TEN_YEARS_S = 10 * 365 * 24 * 3600


def _init_args(world: World, home: Path, primary: str, *extra: str) -> list[str]:
    return ["--home", str(home), "init", "--trust-height", "1", "--trust-hash", world.header_hash(1).hex(),
            "--primary", primary, "--trusting-period-s", str(TEN_YEARS_S), *extra]


def test_cli_commands(world: World, served: Served, home: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(group, _init_args(world, home, served.address, "--witness", served.address))
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["trusted_height"] == 1
    r = runner.invoke(group, ["--home", str(home), "update"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["height"] == world.fx.height

    def run(*args: str) -> Any:
        out = runner.invoke(group, ["--home", str(home), *args])
        assert out.exit_code == 0, out.output
        return json.loads(out.output)

    assert run("account", world.dave.hex())["value"]["address"] == world.dave.hex()
    assert run("card", world.paid_card.hex(), "--height", "3")["value"]["keys_sold"] == 1
    assert world.free_card.hex() in run("feed", "tag", "art")["value"]["items"]
    assert len(run("seeders", world.root.hex())["value"]["seeders"]) == 2
    assert run("may-decrypt", world.dave.hex(), world.paid_card.hex())["value"]["allowed"] is True


def test_cli_refusal_is_one_line(world: World, served: Served, home: Path) -> None:
    proxy = TamperProxy(served.port)
    try:
        runner = CliRunner()
        assert runner.invoke(group, _init_args(world, home, proxy.address)).exit_code == 0

        def lie(method: str, params: dict[str, Any], result: Any) -> Any:
            if method == "account":
                result["value"]["balance"] = 10**15
            return result

        proxy.tamper = lie
        r = runner.invoke(group, ["--home", str(home), "account", world.dave.hex()])
        assert r.exit_code == 1
        assert "ViewMismatch" in r.output and "Traceback" not in r.output
        r = runner.invoke(group, ["--home", str(home / "none"), "account", world.dave.hex()])
        assert r.exit_code == 1 and "NotInitialised" in r.output
    finally:
        proxy.stop()


async def _call(port: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    resp = await http(port, post(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})))
    assert resp.status == 200, resp.body
    out: dict[str, Any] = resp.json()
    return out


@pytest.mark.trio
async def test_proxy_serves_verified_answers(world: World, served: Served, home: Path) -> None:
    upstream = TamperProxy(served.port)
    client = LightClient.init(TrustedStore(home), Provider.at(upstream.address), [], trust_height=1,
                              trust_hash=world.header_hash(1), options=Options(),
                              clock=lambda: world.fx.state.time_ms + 60_000)
    try:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(lambda task_status: run_proxy(client, task_status=task_status))
            with trio.fail_after(20):
                status = (await _call(port, "status", {}))["result"]
                assert status["sync_info"]["latest_block_height"] == world.fx.height
                header = (await _call(port, "header", {"height": 2}))["result"]
                assert blake3.blake3(bytes.fromhex(header["header_bytes"])).digest() == world.header_hash(2)
                assert header["header"]["height"] == 2
                acct = (await _call(port, "account", {"address": world.dave.hex(), "prove": True}))["result"]
                assert acct["value"]["address"] == world.dave.hex() and all("proof" in r for r in acct["reads"])
                cards = (await _call(port, "cards", {"feed": "tag", "name": "art"}))["result"]
                assert world.free_card.hex() in cards["value"]["items"] and "feed_proof" in cards
                vals = (await _call(port, "validators", {}))["result"]
                assert vals["block_height"] == world.fx.height and vals["total_voting_power"] > 0
                md = (await _call(port, "may_decrypt", {"address": world.dave.hex(),
                                                        "card_id": world.paid_card.hex()}))["result"]
                assert md["value"]["allowed"] is True
                # the node lies about a read: the proxy answers with an error, never the lie
                def lie(method: str, params: dict[str, Any], result: Any) -> Any:
                    if method == "seeders":
                        result["reads"][0]["value"] = "00" + (result["reads"][0]["value"] or "")
                    return result

                upstream.tamper = lie
                err = await _call(port, "seeders", {"content_root": world.root.hex()})
                assert err["error"]["code"] == -32000 and "BadProof" in err["error"]["message"]
            nursery.cancel_scope.cancel()
    finally:
        upstream.stop()
