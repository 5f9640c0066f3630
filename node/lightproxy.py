"""`blackhole light proxy`: a local JSON-RPC endpoint that answers only with verified data.

It offers the node's read methods (status, header, commit, validators, account,
card, cards, seeders, key, may_decrypt) in the node's answer shapes
(docs/rpc.md), served by node.http.RpcServer. Each answer comes from the light
client: headers, commits and validator sets it verified, and state values it
recomputed from reads proven against a verified header's app hash (the reads,
with their proofs when ``prove`` is asked, are passed on so a client of the
proxy can check them too). Anything that fails verification is an RPC error
(-32000) naming the light client's error; nothing unverified is ever passed on.

The light client is synchronous (http.client); its calls run one at a time in a
worker thread so the event loop stays free.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import trio

from light import errors as le
from light.client import LightClient
from light.queries import Verified, VerifiedQueries
from light.verifier import LightBlock
from node import jsonview as jv
from node.errors import InvalidParams, NotFound, ServerError
from node.http import RpcServer, serve
from node.jsonrpc import (
    Method,
    Param,
    ParamType,
    Registry,
    hash32_param,
    height_param,
    need32,
    object_result,
    package_version,
)

T = TypeVar("T")




PROVE = Param("prove", ParamType.BOOLEAN, "Pass on the proofs of the reads.", required=False, default=False)





class LightProxy:
    """The proxy's handlers over one LightClient."""

    def __init__(self, client: LightClient, queries: VerifiedQueries | None = None) -> None:
        self.client = client
        self.queries = queries or VerifiedQueries(client)
        self._limiter = trio.CapacityLimiter(1)

    async def _run(self, fn: Callable[[], T]) -> T:
        try:
            return await trio.to_thread.run_sync(fn, limiter=self._limiter)
        except le.UsageError as exc:
            raise InvalidParams(str(exc)) from exc
        except le.LightError as exc:
            raise ServerError(f"light client refused the answer: {type(exc).__name__}: {exc}",
                              {"error": type(exc).__name__}) from exc

    async def _block(self, height: int | None) -> LightBlock:
        if height is None:
            return await self._run(self.client.update)
        return await self._run(lambda: self.client.verify_to_height(height))

    # -- headers ---------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        latest = await self._block(None)
        meta = self.client.store.meta()
        return {
            "node_info": {"id": "", "moniker": "light-proxy", "chain_id": self.client.chain_id,
                          "network_listen": "", "version": package_version()},
            "sync_info": {
                "latest_block_hash": latest.hash().hex(),
                "latest_app_hash": latest.header.app_hash.hex(),
                "latest_block_height": latest.height,
                "latest_block_time_ms": latest.time_ms,
                "earliest_block_height": meta.root_height,
                "catching_up": False,
            },
            "validator_info": {"pub_key": None, "voting_power": 0},
        }

    async def header(self, height: int | None) -> dict[str, Any]:
        b = await self._block(height)
        return {"header": jv.header_json(b.header), "header_bytes": b.header.encode().hex()}

    async def commit(self, height: int | None) -> dict[str, Any]:
        b = await self._block(height)
        return {"height": b.height, "header": jv.header_json(b.header), "header_bytes": b.header.encode().hex(),
                "commit": jv.commit_json(b.commit), "commit_bytes": b.commit.encode().hex(), "canonical": False}

    async def validators(self, height: int | None) -> dict[str, Any]:
        latest = await self._block(None)
        h = latest.height if height is None else height
        if h == latest.height + 1:
            vset = latest.next_validators
        elif h > latest.height + 1:
            raise NotFound(f"height {h} is beyond the latest verified {latest.height} + 1", {"height": h})
        else:
            vset = (await self._block(h)).validators
        return {"block_height": h, "validators": jv.validators_json(vset), "total_voting_power": vset.total_power,
                "valset_bytes": vset.encode().hex()}

    # -- state -------------------------------------------------------------------------

    @staticmethod
    def _answer(v: Verified, prove: bool, **extra: Any) -> dict[str, Any]:
        reads = []
        for r in v.reads:
            out: dict[str, Any] = {"key": r.key.hex(), "value": jv.hexs(r.value)}
            if prove and r.proof is not None:
                out["proof"] = r.proof.encode().hex()
            reads.append(out)
        return {"height": v.height, "value": v.json, "reads": reads, **extra}

    async def account(self, address: bytes, height: int | None, prove: bool) -> dict[str, Any]:
        need32("address", address)
        return self._answer(await self._run(lambda: self.queries.account(address, height)), prove)

    async def card(self, card_id: bytes, height: int | None, prove: bool) -> dict[str, Any]:
        need32("card_id", card_id)
        return self._answer(await self._run(lambda: self.queries.card(card_id, height)), prove)

    async def cards(self, feed: str, name: str, start: int | None, limit: int | None, height: int | None,
                    prove: bool) -> dict[str, Any]:
        v = await self._run(lambda: self.queries.feed(feed, name, start=start, limit=limit, height=height))
        return self._answer(v, prove, feed_proof=jv.feed_proof_json(v.value.page))

    async def seeders(self, content_root: bytes, height: int | None, prove: bool) -> dict[str, Any]:
        need32("content_root", content_root)
        return self._answer(await self._run(lambda: self.queries.seeders(content_root, height)), prove)

    async def key(self, card_id: bytes, serial: int, height: int | None, prove: bool) -> dict[str, Any]:
        need32("card_id", card_id)
        return self._answer(await self._run(lambda: self.queries.key(card_id, serial, height)), prove)

    async def may_decrypt(self, address: bytes, card_id: bytes, height: int | None,
                          prove: bool) -> dict[str, Any]:
        need32("address", address)
        need32("card_id", card_id)
        return self._answer(await self._run(lambda: self.queries.may_decrypt(address, card_id, height)), prove)

    def register(self, registry: Registry) -> None:
        specs: list[tuple[str, Callable[..., Any], tuple[Param, ...], str]] = [
            ("status", self.status, (), "The latest verified header."),
            ("header", self.header, (height_param("Height (default: the latest verified)."),), "A verified header."),
            ("commit", self.commit, (height_param("Height (default: the latest verified)."),), "A verified header with the commit that verified it."),
            ("validators", self.validators, (height_param("Height whose signers to return."),),
             "The verified validator set of a height (up to latest verified + 1)."),
            ("account", self.account, (hash32_param("address", "Account address"), height_param("Height (default: the latest verified)."), PROVE),
             "A verified account."),
            ("card", self.card, (hash32_param("card_id", "Card id"), height_param("Height (default: the latest verified)."), PROVE), "A verified hash card."),
            ("cards", self.cards,
             (Param("feed", ParamType.STRING, "Feed: type, creator, tag or comments.",
                    enum=("type", "creator", "tag", "comments")),
              Param("name", ParamType.STRING, "Content type, creator address, tag or parent card id.",
                    max_length=256),
              Param("start", ParamType.INTEGER, "First item (default: the newest page).", required=False,
                    minimum=0),
              Param("limit", ParamType.INTEGER, "Items.", required=False, minimum=1, maximum=1000),
              height_param("Height (default: the latest verified)."), PROVE),
             "A feed page proven complete."),
            ("seeders", self.seeders, (hash32_param("content_root", "Content root"), height_param("Height (default: the latest verified)."), PROVE),
             "A verified, complete seeder map."),
            ("key", self.key,
             (hash32_param("card_id", "Card id"),
              Param("serial", ParamType.INTEGER, "Key serial.", minimum=1, maximum=2**64 - 1), height_param("Height (default: the latest verified)."), PROVE),
             "A verified key token."),
            ("may_decrypt", self.may_decrypt,
             (hash32_param("address", "Account address"), hash32_param("card_id", "Card id"), height_param("Height (default: the latest verified)."), PROVE),
             "Whether an address may decrypt a card, verified."),
        ]
        for name, handler, params, summary in specs:
            registry.add(Method(name, handler, params, object_result(summary), summary, summary))


def make_server(client: LightClient, *, host: str = "127.0.0.1", port: int = 0) -> RpcServer:
    """An RpcServer offering the proxy's methods (start it with ``nursery.start(serve, server)``)."""
    registry = Registry()
    LightProxy(client).register(registry)
    return RpcServer(registry, host=host, port=port)


async def run_proxy(client: LightClient, *, host: str = "127.0.0.1", port: int = 0,
                    task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serve until cancelled; reports the bound port through ``task_status``."""
    server = make_server(client, host=host, port=port)
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(serve, server)
        task_status.started(bound)
