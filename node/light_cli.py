"""`blackhole light ...`: the light client's commands (a click group).

    blackhole light init --trust-height H --trust-hash HASH --primary URL [--witness URL ...]
    blackhole light update | account ADDR | card ID | feed FEED NAME | seeders ROOT
    blackhole light may-decrypt ADDR CARD_ID | proxy [--laddr 127.0.0.1:8889]

Every command prints one JSON object (the verified value in the node's answer
shape, with the height and header hash it was proven under). A refused answer
or a detected attack is one line on stderr and exit status 1.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import click
import trio

from light import errors as le
from light.client import LightClient, Options, Provider
from light.queries import Verified, VerifiedQueries
from light.rpc import parse_address
from light.store import TrustedStore

DEFAULT_HOME = "~/.blackhole-light"


class LightGroup(click.Group):
    """Turns the light client's deliberate errors into one-line failures."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except le.LightError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc


def _hex32(value: str, what: str) -> bytes:
    text = value[2:] if value[:2].lower() == "0x" else value
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise click.BadParameter(f"{what} must be 64 hex digits")
    return raw


def _home(ctx: click.Context) -> Path:
    return Path(ctx.obj["home"]).expanduser()


def _client(ctx: click.Context) -> LightClient:
    return LightClient.open(TrustedStore(_home(ctx)), timeout=ctx.obj["timeout"])


def _print(v: Verified) -> None:
    out = {"height": v.height, "header_hash": v.block.hash().hex(), "app_hash": v.block.header.app_hash.hex(),
           "verified_reads": len(v.reads), "value": v.json}
    click.echo(json.dumps(out, indent=2))


height_option = click.option("--height", type=click.IntRange(min=1), default=None,
                             help="Height to prove at (default: the latest, verified first).")


@click.group("light", cls=LightGroup)
@click.option("--home", default=DEFAULT_HOME, show_default=True, envvar="BLACKHOLE_LIGHT_HOME",
              help="The light client's directory (trusted store, settings, evidence).")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds to wait for a node.")
@click.pass_context
def group(ctx: click.Context, home: str, timeout: float) -> None:
    """A light client: verifies headers and proves every answer against them."""
    ctx.ensure_object(dict)
    ctx.obj["home"] = home
    ctx.obj["timeout"] = timeout


@group.command()
@click.option("--trust-height", type=click.IntRange(min=1), required=True, help="Height of the trusted root.")
@click.option("--trust-hash", required=True, help="Block hash at that height (hex), from a source you trust.")
@click.option("--primary", required=True, help="The node to ask (http://host:port).")
@click.option("--witness", "witnesses", multiple=True, help="A node to cross-check with (repeatable).")
@click.option("--trusting-period-s", type=click.IntRange(min=1), default=14 * 24 * 3600, show_default=True,
              help="How long a verified header stays trusted (shorter than the unbonding period).")
@click.option("--mode", type=click.Choice(["skipping", "sequential"]), default="skipping", show_default=True)
@click.pass_context
def init(ctx: click.Context, trust_height: int, trust_hash: str, primary: str, witnesses: tuple[str, ...],
         trusting_period_s: int, mode: str) -> None:
    """Start from a trusted root (replaces any earlier state of this home)."""
    timeout = ctx.obj["timeout"]
    client = LightClient.init(
        TrustedStore(_home(ctx)), Provider.at(primary, timeout=timeout),
        [Provider.at(w, timeout=timeout) for w in witnesses], trust_height=trust_height,
        trust_hash=_hex32(trust_hash, "--trust-hash"),
        options=Options(trusting_period_ms=trusting_period_s * 1000, mode=mode),
    )
    b = client.latest_trusted()
    click.echo(json.dumps({"chain_id": client.chain_id, "trusted_height": b.height,
                           "trusted_hash": b.hash().hex(), "primary": primary, "witnesses": list(witnesses)}))


@group.command()
@click.pass_context
def update(ctx: click.Context) -> None:
    """Verify up to the primary's latest header."""
    b = _client(ctx).update()
    click.echo(json.dumps({"height": b.height, "hash": b.hash().hex(), "app_hash": b.header.app_hash.hex(),
                           "time_ms": b.time_ms}))


@group.command()
@click.argument("address")
@height_option
@click.pass_context
def account(ctx: click.Context, address: str, height: int | None) -> None:
    """Balance, nonce and stake of an account."""
    _print(VerifiedQueries(_client(ctx)).account(_hex32(address, "ADDRESS"), height))


@group.command()
@click.argument("card_id")
@height_option
@click.pass_context
def card(ctx: click.Context, card_id: str, height: int | None) -> None:
    """A hash card (null, with its proven absence, if there is none)."""
    _print(VerifiedQueries(_client(ctx)).card(_hex32(card_id, "CARD_ID"), height))


@group.command()
@click.argument("feed", type=click.Choice(["type", "creator", "tag", "comments"]))
@click.argument("name")
@click.option("--start", type=click.IntRange(min=0), default=None, help="First item (default: newest page).")
@click.option("--limit", type=click.IntRange(1, 1000), default=None, help="Items in the page.")
@height_option
@click.pass_context
def feed(ctx: click.Context, feed: str, name: str, start: int | None, limit: int | None,
         height: int | None) -> None:
    """A page of a card feed, proven complete."""
    _print(VerifiedQueries(_client(ctx)).feed(feed, name, start=start, limit=limit, height=height))


@group.command()
@click.argument("content_root")
@height_option
@click.pass_context
def seeders(ctx: click.Context, content_root: str, height: int | None) -> None:
    """Who serves a content at a height (the whole map)."""
    _print(VerifiedQueries(_client(ctx)).seeders(_hex32(content_root, "CONTENT_ROOT"), height))


@group.command("may-decrypt")
@click.argument("address")
@click.argument("card_id")
@height_option
@click.pass_context
def may_decrypt(ctx: click.Context, address: str, card_id: str, height: int | None) -> None:
    """May ADDRESS decrypt CARD_ID at a height?"""
    _print(VerifiedQueries(_client(ctx)).may_decrypt(_hex32(address, "ADDRESS"), _hex32(card_id, "CARD_ID"),
                                                      height))


@group.command()
@click.option("--laddr", default="127.0.0.1:8889", show_default=True, help="Where to listen (host:port).")
@click.pass_context
def proxy(ctx: click.Context, laddr: str) -> None:
    """Serve the node's read methods locally, answering only with verified data."""
    from node.lightproxy import run_proxy

    try:
        host, port = parse_address(laddr)
    except le.UsageError as exc:
        raise click.BadParameter(str(exc)) from exc
    client = _client(ctx)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(lambda task_status: run_proxy(client, host=host, port=port,
                                                                      task_status=task_status))
            click.echo(f"light proxy listening on http://{host}:{bound}")
            sys.stdout.flush()

    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main)
