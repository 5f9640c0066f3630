"""Every chain RPC method through a real RpcServer on 127.0.0.1, called with a raw
HTTP client, answering from a real chain on LevelDB (tests/node/chainfixture.py).
Proofs in answers are checked against the app_hash of the header the RPC serves."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio

from chain import merkle
from chain import statekeys as sk
from chain import tx as txm
from chain.crypto import seal
from chain.queries import FeedPage, Read, verify_feed_page, verify_reads
from chain.types import Block, Commit, Header, ValidatorSet
from node.http import RpcServer, serve
from node.jsonrpc import Registry
from node.rpc_methods import register_methods
from storage.proof import Proof, verify_proof
from tests.chain.helpers import offer, publish_body, root_of
from tests.node.chainfixture import CHAIN_ID, ChainFixture, FixtureView
from tests.node.rpcclient import http, post

pytestmark = pytest.mark.trio


class World:
    """The populated chain: who published, bought and seeded what."""

    def __init__(self, path: Path) -> None:
        fx = self.fx = ChainFixture(path / "db")
        self.view = FixtureView(fx, path)
        a, b, c, d = (fx.addr(n) for n in ("alice", "bob", "carol", "dave"))
        self.alice, self.bob, self.carol, self.dave = a, b, c, d
        self.paid_card = txm.compute_card_id(a, 0)
        self.free_card = txm.compute_card_id(b, 0)
        self.root = root_of("film")
        # height 1: a paid video card, a free image card, a generic note, a transfer
        self.transfer = fx.tx("alice", txm.Transfer(d, 777), nonce=1)
        self.note1 = fx.tx("carol", txm.Generic(b"note", b"first"))
        fx.commit([
            fx.tx("alice", publish_body("film", offer=offer(1000)), nonce=0),
            fx.tx("bob", publish_body("photo", content_type="image", tags=("art", "sun")), nonce=0),
            self.note1, self.transfer,
        ])  # fmt: skip
        # height 2: dave buys a key, bob seeds the film, carol comments on it
        self.comment = txm.compute_card_id(c, 1)
        fx.commit([
            fx.tx("dave", txm.BuyKey(self.paid_card, 0, 1000)),
            fx.tx("bob", txm.Announce(self.root, ("127.0.0.1:4433",), ((0, 10),), 50)),
            fx.tx("carol", publish_body("reply", content_type="text", tags=(), parent=self.paid_card)),
        ])  # fmt: skip
        # height 3: alice delivers key 1 to dave; another note
        self.note2 = fx.tx("carol", txm.Generic(b"note", b"second"))
        fx.commit([fx.tx("alice", txm.DeliverKey(self.paid_card, 1, seal(d, b"k" * 32))), self.note2])
        fx.commit([])  # height 4: empty
        self.latest = 4


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("rpcworld"))
    yield w
    w.fx.close()


async def start(nursery: trio.Nursery, view: FixtureView) -> int:
    registry = Registry()
    register_methods(registry, view)
    server = RpcServer(registry, host="127.0.0.1", port=0, bus=view.events,
                       metrics_registry=view.metrics.registry)
    port: int = await nursery.start(serve, server)
    return port


@pytest.fixture
async def port(nursery: trio.Nursery, world: World) -> AsyncIterator[int]:
    yield await start(nursery, world.view)


async def call(port: int, method: str, params: Any = None) -> dict[str, Any]:
    req: dict[str, Any] = {"jsonrpc": "2.0", "id": 7, "method": method}
    if params is not None:
        req["params"] = params
    resp = await http(port, post(json.dumps(req)))
    assert resp.status == 200, resp.body
    out: dict[str, Any] = resp.json()
    assert out["id"] == 7
    return out


async def ok(port: int, method: str, params: Any = None) -> Any:
    out = await call(port, method, params)
    assert "error" not in out, out
    return out["result"]


async def err(port: int, method: str, params: Any = None) -> dict[str, Any]:
    out = await call(port, method, params)
    assert "error" in out, out
    error: dict[str, Any] = out["error"]
    return error


async def header_at(port: int, height: int) -> Header:
    res = await ok(port, "header", {"height": height})
    return Header.decode_untrusted(bytes.fromhex(res["header_bytes"]))


def reads_of(answer: dict[str, Any]) -> list[Read]:
    return [
        Read(bytes.fromhex(r["key"]), None if r["value"] is None else bytes.fromhex(r["value"]),
             Proof.decode_untrusted(bytes.fromhex(r["proof"])))
        for r in answer["reads"]
    ]  # fmt: skip


async def verified(port: int, answer: dict[str, Any]) -> list[Read]:
    """The answer's reads, checked against the app hash of header `height`."""
    header = await header_at(port, answer["height"])
    reads = reads_of(answer)
    assert reads and verify_reads(header.app_hash, reads)
    return reads


# --- node --------------------------------------------------------------------------


async def test_status_net_info_genesis_health(port: int, world: World) -> None:
    s = await ok(port, "status")
    assert s["node_info"]["chain_id"] == CHAIN_ID and s["node_info"]["id"] == world.view.node_id
    si = s["sync_info"]
    assert si["latest_block_height"] == world.latest and si["earliest_block_height"] == 1
    assert si["latest_block_hash"] == world.fx.state.last_block_hash.hex()
    assert si["latest_app_hash"] == world.fx.tree.root().hex() and si["catching_up"] is False
    assert s["validator_info"] == {"pub_key": world.view.validator_pubkey.hex(), "voting_power": 1_000_000}
    n = await ok(port, "net_info")
    assert n == {"listening": True, "n_peers": 0, "peers": []}
    g = await ok(port, "genesis")
    assert g["genesis"]["chain_id"] == CHAIN_ID and g["genesis_hash"] == world.fx.genesis.hash().hex()
    assert await ok(port, "health") == {}


async def test_discover_documents_every_method_with_params(port: int) -> None:
    doc = await ok(port, "rpc.discover")
    by_name = {m["name"]: m for m in doc["methods"]}
    for name in ("status", "net_info", "genesis", "block", "header", "commit", "validators", "blockchain",
                 "tx", "tx_search", "broadcast_tx_async", "broadcast_tx_sync", "broadcast_tx_commit",
                 "check_tx", "unconfirmed_txs", "num_unconfirmed_txs", "query", "account", "card", "cards",
                 "seeders", "key", "keys_of", "may_decrypt", "generic"):
        assert name in by_name, name
    assert [p["name"] for p in by_name["cards"]["params"]] == [
        "feed", "name", "start", "limit", "paid", "from_height", "to_height", "height", "prove"]
    assert by_name["key"]["params"][1]["schema"]["oneOf"][0] == {"type": "integer"}


# --- blocks -----------------------------------------------------------------------------


async def test_header_block_blockchain(port: int, world: World) -> None:
    h2 = await header_at(port, 2)
    blk = await ok(port, "block", {"height": 2})
    block = Block.decode_untrusted(bytes.fromhex(blk["block_bytes"]))
    assert block.header == h2 and blk["block_id"] == h2.hash().hex()
    assert blk["block"]["num_txs"] == 3 and blk["block"]["lanes"]["keys"]["count"] == 1
    assert blk["block"]["header"]["height"] == 2
    by_hash = await ok(port, "block", {"hash": blk["block_id"]})
    assert by_hash["block_bytes"] == blk["block_bytes"]
    latest = await ok(port, "block")
    assert latest["block"]["header"]["height"] == world.latest
    chain = await ok(port, "blockchain", {"min_height": 2, "max_height": 3})
    assert [m["header"]["height"] for m in chain["block_metas"]] == [3, 2]
    assert chain["last_height"] == world.latest and chain["block_metas"][1]["num_txs"] == 3
    everything = await ok(port, "blockchain")
    assert [m["header"]["height"] for m in everything["block_metas"]] == [4, 3, 2, 1]
    for m in everything["block_metas"]:
        assert Header.decode_untrusted(bytes.fromhex(m["header_bytes"])).hash().hex() == m["block_id"]


async def test_commit_and_validators_verify(port: int, world: World) -> None:
    for height, canonical in ((2, True), (world.latest, False)):
        res = await ok(port, "commit", {"height": height})
        assert res["canonical"] is canonical and res["height"] == height
        header = Header.decode_untrusted(bytes.fromhex(res["header_bytes"]))
        commit = Commit.decode_untrusted(bytes.fromhex(res["commit_bytes"]))
        vals = await ok(port, "validators", {"height": height})
        vset = ValidatorSet.decode_untrusted(bytes.fromhex(vals["valset_bytes"]))
        assert vset.hash() == header.validators_hash and vals["total_voting_power"] == 1_000_000
        vset.verify_commit(CHAIN_ID, commit, height=height, block_hash=header.hash())
    assert (await ok(port, "validators"))["block_height"] == world.latest


# --- transactions ----------------------------------------------------------------------------


async def test_tx_with_lane_inclusion_proof(port: int, world: World) -> None:
    tx_hash = txm.tx_hash(world.transfer)
    res = await ok(port, "tx", {"hash": tx_hash.hex(), "prove": True})
    assert (res["height"], res["lane"], res["index"], res["block_index"]) == (1, "txs", 1, 3)
    assert bytes.fromhex(res["tx_bytes"]) == world.transfer
    assert res["tx"]["body"] == {"type": "Transfer", "to": world.dave.hex(), "amount": 777}
    header = await header_at(port, 1)
    proof = merkle.MerkleProof.decode_untrusted(bytes.fromhex(res["proof"]["proof_bytes"]))
    assert bytes.fromhex(res["proof"]["lane_root"]) == header.txs_root
    assert merkle.verify_inclusion(header.txs_root, tx_hash, proof)
    assert not merkle.verify_inclusion(header.cards_root, tx_hash, proof)
    plain = await ok(port, "tx", {"hash": tx_hash.hex()})
    assert "proof" not in plain and plain["gas_used"] == 0


async def test_tx_search_by_sender_and_kind_paged(port: int, world: World) -> None:
    res = await ok(port, "tx_search", {"sender": world.carol.hex()})
    assert res["total_count"] == 3 and [t["height"] for t in res["txs"]] == [1, 2, 3]
    page2 = await ok(port, "tx_search", {"sender": world.carol.hex(), "per_page": 2, "page": 2})
    assert [t["height"] for t in page2["txs"]] == [3] and page2["total_count"] == 3
    desc = await ok(port, "tx_search", {"sender": world.carol.hex(), "order_by": "desc", "per_page": 1})
    assert desc["txs"][0]["height"] == 3
    notes = await ok(port, "tx_search", {"kind": "note"})
    assert [t["hash"] for t in notes["txs"]] == [txm.tx_hash(world.note1).hex(), txm.tx_hash(world.note2).hex()]
    assert notes["txs"][0]["lane"] == "txs"
    assert (await ok(port, "tx_search", {"kind": "0x" + b"note".hex()}))["total_count"] == 2
    assert (await ok(port, "tx_search", {"kind": "other"}))["txs"] == []


async def test_unconfirmed_and_check_tx_leave_the_pool_alone(port: int, world: World) -> None:
    assert await ok(port, "num_unconfirmed_txs") == {"n_txs": 0, "total": 0, "total_bytes": 0}
    raw = world.fx.tx("bob", txm.Transfer(world.alice, 1))
    res = await ok(port, "check_tx", {"tx": raw.hex()})
    assert res["code"] == 0 and res["check"]["sender"] == world.bob.hex() and res["hash"] == txm.tx_hash(raw).hex()
    bad = await ok(port, "check_tx", {"tx": world.transfer.hex()})
    assert (bad["code"], bad["error"], bad["reason"]) == (1, "TxInvalid", "WrongNonce")
    assert (await ok(port, "unconfirmed_txs"))["txs"] == []


# --- state ------------------------------------------------------------------------------------


async def test_account_and_query_proofs(port: int, world: World) -> None:
    res = await ok(port, "account", {"address": world.dave.hex(), "prove": True, "height": 1})
    assert res["height"] == 1 and res["value"]["balance"] == 10**12 + 777 and res["value"]["nonce"] == 0
    reads = await verified(port, res)
    assert reads[0].key == sk.account(world.dave)
    later = await ok(port, "account", {"address": world.dave.hex()})
    assert later["height"] == world.latest and later["value"]["nonce"] == 1
    assert all("proof" not in r for r in later["reads"])
    # a tampered value fails the same proof
    bad = [Read(reads[0].key, msgpack.packb([1, 0]), reads[0].proof)]
    assert not verify_reads((await header_at(port, 1)).app_hash, bad)
    q = await ok(port, "query", {"key": sk.account(world.dave).hex(), "height": "1", "prove": True})
    assert q["value"] == reads[0].value.hex()
    await verified(port, q)
    absent = await ok(port, "query", {"key": sk.card(bytes(32)).hex(), "prove": True})
    assert absent["value"] is None
    await verified(port, absent)


async def test_card_present_and_proven_absent(port: int, world: World) -> None:
    res = await ok(port, "card", {"card_id": world.paid_card.hex(), "prove": True})
    v = res["value"]
    assert v["creator"] == world.alice.hex() and v["offer"]["price"] == 1000 and v["free"] is False
    assert v["comments"] == 1 and v["keys_sold"] == 1 and v["content_root"] == world.root.hex()
    await verified(port, res)
    missing = await ok(port, "card", {"card_id": "ab" * 32, "prove": True})
    assert missing["value"] is None
    reads = await verified(port, missing)
    assert reads[0].value is None


def page_of(fp: dict[str, Any], height: int) -> FeedPage:
    head = fp["head"]
    return FeedPage(
        bytes.fromhex(fp["feed_id"]), fp["length"], bytes.fromhex(fp["root"]), fp["start"], fp["stop"],
        tuple(bytes.fromhex(x) for x in fp["items"]), tuple(bytes.fromhex(x) for x in fp["mmr_proof"]),
        Read(bytes.fromhex(head["key"]), None if head["value"] is None else bytes.fromhex(head["value"]),
             Proof.decode_untrusted(bytes.fromhex(head["proof"]))),
        height,
    )  # fmt: skip


async def test_cards_feeds_filters_and_page_proofs(port: int, world: World) -> None:
    art = await ok(port, "cards", {"feed": "tag", "name": "art", "prove": True})
    assert art["value"]["length"] == 2
    assert art["value"]["items"] == [world.paid_card.hex(), world.free_card.hex()]
    header = await header_at(port, art["height"])
    assert verify_feed_page(header.app_hash, page_of(art["feed_proof"], art["height"]))
    await verified(port, art)
    # a page with an item dropped no longer verifies
    short = dict(art["feed_proof"], items=art["feed_proof"]["items"][:1], stop=1)
    assert not verify_feed_page(header.app_hash, page_of(short, art["height"]))
    free = await ok(port, "cards", {"feed": "tag", "name": "art", "paid": "free"})
    assert [c["card_id"] for c in free["value"]["cards"]] == [world.free_card.hex()]
    assert free["value"]["items"] == art["value"]["items"]  # the page itself stays complete
    paid = await ok(port, "cards", {"feed": "tag", "name": "art", "paid": "paid"})
    assert [c["card_id"] for c in paid["value"]["cards"]] == [world.paid_card.hex()]
    mine = await ok(port, "cards", {"feed": "creator", "name": world.carol.hex()})
    assert [c["card_id"] for c in mine["value"]["cards"]] == [world.comment.hex()]
    replies = await ok(port, "cards", {"feed": "comments", "name": world.paid_card.hex(), "from_height": 2,
                                       "to_height": 2})
    assert [c["card_id"] for c in replies["value"]["cards"]] == [world.comment.hex()]
    assert (await ok(port, "cards", {"feed": "tag", "name": "art", "from_height": 2}))["value"]["cards"] == []
    videos = await ok(port, "cards", {"feed": "type", "name": "video", "height": 1, "prove": True})
    assert videos["height"] == 1 and len(videos["value"]["cards"]) == 1
    assert verify_feed_page((await header_at(port, 1)).app_hash, page_of(videos["feed_proof"], 1))
    one = await ok(port, "cards", {"feed": "tag", "name": "art", "start": 1, "limit": 5})
    assert one["value"]["items"] == [world.free_card.hex()] and one["feed_proof"]["start"] == 1
    newest = await ok(port, "cards", {"feed": "tag", "name": "art", "limit": 1})
    assert newest["value"]["items"] == [world.free_card.hex()]
    empty = await ok(port, "cards", {"feed": "tag", "name": "nothing", "prove": True})
    assert empty["value"]["length"] == 0 and empty["value"]["cards"] == []
    await verified(port, empty)


async def test_seeders_key_keys_of_may_decrypt_generic(port: int, world: World) -> None:
    s = await ok(port, "seeders", {"content_root": world.root.hex(), "prove": True})
    assert [e["seeder"] for e in s["value"]["seeders"]] == [world.bob.hex()]
    assert s["value"]["seeders"][0]["addresses"] == ["127.0.0.1:4433"]
    await verified(port, s)
    k = await ok(port, "key", {"card_id": world.paid_card.hex(), "serial": 1, "prove": True})
    assert k["value"]["owner"] == world.dave.hex() and k["value"]["acquired_height"] == 3
    await verified(port, k)
    before = await ok(port, "key", {"card_id": world.paid_card.hex(), "serial": "1", "height": 2, "prove": True})
    assert before["value"] is None
    await verified(port, before)
    ko = await ok(port, "keys_of", {"owner": world.dave.hex(), "prove": True})
    assert [(t["card_id"], t["serial"]) for t in ko["value"]["tokens"]] == [(world.paid_card.hex(), 1)]
    await verified(port, ko)
    md = await ok(port, "may_decrypt", {"address": world.dave.hex(), "card_id": world.paid_card.hex(),
                                        "prove": True})
    assert md["value"]["allowed"] is True and md["value"]["why"] == "holder"
    await verified(port, md)
    no = await ok(port, "may_decrypt", {"address": world.carol.hex(), "card_id": world.paid_card.hex(),
                                        "height": 2, "prove": True})
    assert no["value"]["allowed"] is False and no["value"]["why"] == "no key"
    await verified(port, no)
    g = await ok(port, "generic", {"kind": "note", "prove": True})
    assert [t["payload"] for t in g["value"]["txs"]] == [b"first".hex(), b"second".hex()]
    header = await header_at(port, g["height"])
    assert verify_feed_page(header.app_hash, page_of(g["feed_proof"], g["height"]))
    await verified(port, g)
    first = await ok(port, "generic", {"kind": "note", "start": 0, "limit": 1})
    assert [t["payload"] for t in first["value"]["txs"]] == [b"first".hex()]


async def test_every_read_of_an_answer_is_bound_to_its_key(port: int, world: World) -> None:
    res = await ok(port, "seeders", {"content_root": world.root.hex(), "prove": True})
    header = await header_at(port, res["height"])
    for r in reads_of(res):
        assert verify_proof(header.app_hash, r.key, r.value, r.proof)
        assert not verify_proof(header.app_hash, r.key + b"x", r.value, r.proof)


# --- errors ------------------------------------------------------------------------------------

H = "ab" * 32
MALFORMED: list[tuple[str, Any, str]] = [
    ("header", {"height": 0}, "height"),
    ("header", {"height": "x"}, "height"),
    ("block", {"hash": "zz"}, "hash"),
    ("block", {"hash": "abcd"}, "32 bytes"),
    ("block", {"height": 1, "hash": H}, "not both"),
    ("commit", {"height": -1}, "height"),
    ("validators", {"height": True}, "height"),
    ("blockchain", {"min_height": 3, "max_height": 2}, "min_height"),
    ("blockchain", {"min_height": "a"}, "min_height"),
    ("tx", {}, "missing required parameter 'hash'"),
    ("tx", {"hash": "00"}, "32 bytes"),
    ("tx", {"hash": H, "prove": "yes"}, "prove"),
    ("tx_search", {}, "exactly one of sender and kind"),
    ("tx_search", {"sender": H, "kind": "note"}, "exactly one"),
    ("tx_search", {"kind": "note", "per_page": 1000}, "per_page"),
    ("tx_search", {"kind": "note", "order_by": "sideways"}, "order_by"),
    ("tx_search", {"kind": "0xzz"}, "kind"),
    ("tx_search", {"kind": "k" * 40}, "1..32 bytes"),
    ("broadcast_tx_async", {"tx": "xyz"}, "tx"),
    ("broadcast_tx_sync", {}, "missing required parameter 'tx'"),
    ("broadcast_tx_sync", {"tx": 5}, "hex string"),
    ("broadcast_tx_commit", {"tx": "00", "timeout": 0}, "timeout"),
    ("broadcast_tx_commit", {"tx": "00", "timeout": 10_000}, "timeout"),
    ("check_tx", {"tx": ["00"]}, "tx"),
    ("unconfirmed_txs", {"limit": 0}, "limit"),
    ("num_unconfirmed_txs", {"x": 1}, "unknown parameter 'x'"),
    ("status", [1], "at most 0 positional"),
    ("net_info", {"peer": 1}, "unknown parameter"),
    ("genesis", {"height": 1}, "unknown parameter"),
    ("query", {}, "missing required parameter 'key'"),
    ("query", {"key": ""}, "must not be empty"),
    ("query", {"key": "01", "prove": 1}, "prove"),
    ("account", {"address": "01"}, "32 bytes"),
    ("account", {"address": H, "height": 1.5}, "height"),
    ("card", {"card_id": None}, "card_id"),
    ("cards", {"feed": "title", "name": "x"}, "feed"),
    ("cards", {"feed": "type", "name": "movie"}, "unknown content type"),
    ("cards", {"feed": "creator", "name": "bob"}, "64 hex digits"),
    ("cards", {"feed": "tag", "name": ""}, "must not be empty"),
    ("cards", {"feed": "tag", "name": "art", "limit": 101}, "limit"),
    ("cards", {"feed": "tag", "name": "art", "start": 99}, "past the end"),
    ("cards", {"feed": "tag", "name": "art", "paid": "cheap"}, "paid"),
    ("seeders", {"content_root": "abc"}, "content_root"),
    ("key", {"card_id": H}, "missing required parameter 'serial'"),
    ("key", {"card_id": H, "serial": 0}, "serial"),
    ("keys_of", {"owner": H + "00"}, "32 bytes"),
    ("may_decrypt", {"address": H}, "missing required parameter 'card_id'"),
    ("may_decrypt", {"address": H, "card_id": "0x" + "1" * 63}, "card_id"),
    ("generic", {}, "missing required parameter 'kind'"),
    ("generic", {"kind": "note", "start": -1}, "start"),
]


async def test_malformed_params_get_invalid_params_for_every_method(port: int) -> None:
    for method, params, needle in MALFORMED:
        e = await err(port, method, params)
        assert e["code"] == -32602, (method, params, e)
        assert needle in e["message"], (method, params, e)


async def test_missing_things_and_future_heights_are_not_found(port: int, world: World) -> None:
    for method, params in [
        ("header", {"height": world.latest + 1}),
        ("block", {"hash": H}),
        ("commit", {"height": 99}),
        ("validators", {"height": world.latest + 5}),
        ("tx", {"hash": H}),
        ("account", {"address": H, "height": world.latest + 1}),
        ("cards", {"feed": "tag", "name": "art", "height": 50}),
    ]:
        e = await err(port, method, params)
        assert e["code"] == -32001, (method, e)
        assert e["message"], method


async def test_malformed_transport_input_never_breaks_the_server(port: int) -> None:
    resp = await http(port, post('{"jsonrpc":"2.0","id":1,"method":"cards","params":{"feed":'))
    assert resp.json()["error"]["code"] == -32700
    resp = await http(port, post(json.dumps([{"jsonrpc": "2.0", "id": i, "method": "account",
                                               "params": {"address": "x"}} for i in range(3)])))
    assert [r["error"]["code"] for r in resp.json()] == [-32602] * 3
    assert (await ok(port, "status"))["sync_info"]["latest_block_height"] >= 4


# --- broadcasting (their own chain: they commit blocks) --------------------------------------------


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[FixtureView]:
    fx = ChainFixture(tmp_path / "db")
    yield FixtureView(fx, tmp_path)
    fx.close()


async def test_broadcast_sync_async_and_the_mempool_methods(nursery: trio.Nursery, fresh: FixtureView) -> None:
    port = await start(nursery, fresh)
    fx = fresh.fx
    t0 = fx.tx("alice", txm.Transfer(fx.addr("bob"), 5))
    res = await ok(port, "broadcast_tx_sync", {"tx": t0.hex()})
    assert res["code"] == 0 and res["check"]["nonce"] == 0 and res["hash"] == txm.tx_hash(t0).hex()
    dup = await ok(port, "broadcast_tx_sync", {"tx": t0.hex()})
    assert (dup["code"], dup["error"]) == (2, "DuplicateTx")
    gap = await ok(port, "broadcast_tx_sync", {"tx": fx.tx("alice", txm.Transfer(fx.addr("bob"), 5), nonce=9).hex()})
    assert (gap["code"], gap["reason"]) == (1, "WrongNonce") and "expected 1" in gap["log"]
    junk = await ok(port, "broadcast_tx_sync", {"tx": "c0ffee"})
    assert (junk["code"], junk["reason"]) == (1, "MalformedTx")
    t1 = fx.tx("alice", txm.Transfer(fx.addr("bob"), 6))
    assert await ok(port, "broadcast_tx_async", {"tx": "0x" + t1.hex()}) == {"hash": txm.tx_hash(t1).hex()}
    assert await ok(port, "broadcast_tx_async", {"tx": "c0ffee"}) == {"hash": txm.tx_hash(b"\xc0\xff\xee").hex()}
    assert await ok(port, "num_unconfirmed_txs") == {"n_txs": 2, "total": 2, "total_bytes": len(t0) + len(t1)}
    un = await ok(port, "unconfirmed_txs", {"limit": 1})
    assert un["txs"] == [t0.hex()] and un["total"] == 2
    fx.commit_pool()
    assert (await ok(port, "num_unconfirmed_txs"))["n_txs"] == 0
    assert (await ok(port, "tx", {"hash": txm.tx_hash(t1).hex()}))["height"] == 1


async def test_broadcast_commit_waits_for_the_block(nursery: trio.Nursery, fresh: FixtureView) -> None:
    port = await start(nursery, fresh)
    fx = fresh.fx
    raw = fx.tx("carol", txm.Generic(b"note", b"hi"))
    res = await ok(port, "broadcast_tx_commit", {"tx": raw.hex()})
    assert res["committed"] is True and (res["height"], res["lane"], res["index"]) == (1, "txs", 0)
    assert res["check_tx"]["code"] == 0
    # committed already: answered from the index
    again = await ok(port, "broadcast_tx_commit", {"tx": raw.hex()})
    assert again["committed"] is True and again["height"] == 1
    refused = await ok(port, "broadcast_tx_commit", {"tx": fx.tx("carol", txm.Transfer(fx.addr("bob"), 10**15)).hex()})
    assert refused["committed"] is False and refused["check_tx"]["reason"] == "InsufficientBalance"
    fresh.auto_commit = False  # nobody proposes: the wait times out with a clear error
    pending = fx.tx("carol", txm.Transfer(fx.addr("bob"), 1))
    e = await err(port, "broadcast_tx_commit", {"tx": pending.hex(), "timeout": 0.01})
    assert e["code"] == -32000 and "timed out" in e["message"] and e["data"]["hash"] == txm.tx_hash(pending).hex()
    assert txm.tx_hash(pending) in fresh.mempool


async def test_uri_calls_and_peers(port: int, world: World) -> None:
    from tests.node.rpcclient import get

    resp = await http(port, get('/cards?feed="tag"&name="art"&limit=1&paid="any"'))
    assert resp.status == 200 and resp.json()["result"]["value"]["items"] == [world.free_card.hex()]
    resp = await http(port, get(f"/account?address=0x{world.alice.hex()}&height=1&prove=true"))
    assert resp.json()["result"]["value"]["nonce"] == 2
    resp = await http(port, get("/tx?hash=00"))
    assert resp.status == 400 and resp.json()["error"]["code"] == -32602
    from node.view import PeerInfo

    world.view.peers.append(PeerInfo("cd" * 32, "127.0.0.1:26656", True, moniker="peer-1", persistent=True))
    try:
        n = await ok(port, "net_info")
        assert n["n_peers"] == 1 and n["peers"][0] == {
            "node_id": "cd" * 32, "address": "127.0.0.1:26656", "is_outbound": True, "moniker": "peer-1",
            "persistent": True, "connected_ms": 0}
    finally:
        world.view.peers.clear()


async def test_tx_bodies_of_every_lane_render(port: int, world: World) -> None:
    blk = await ok(port, "block", {"height": 2})
    kinds = []
    for lane, info in blk["block"]["lanes"].items():
        for h in info["tx_hashes"]:
            res = await ok(port, "tx", {"hash": h})
            assert res["lane"] == lane and res["tx"]["lane"] == lane
            kinds.append(res["tx"]["body"]["type"])
    assert sorted(kinds) == ["Announce", "BuyKey", "PublishCard"]
    first = await ok(port, "block", {"height": 1})
    card_tx = await ok(port, "tx", {"hash": first["block"]["lanes"]["cards"]["tx_hashes"][0]})
    assert card_tx["tx"]["body"]["offer"]["price"] == 1000 and card_tx["tx"]["body"]["tags"] == ["art"]


async def test_seeded_garbage_params_never_reach_an_internal_error(port: int, world: World) -> None:
    import random

    doc = await ok(port, "rpc.discover")
    methods = {m["name"]: [p["name"] for p in m["params"]] for m in doc["methods"]
               if m["name"] not in ("broadcast_tx_commit", "rpc.discover")}
    junk: list[Any] = [None, "", "0x", "zz", -1, 0, 1, 2**70, "9" * 70, [], {}, True, 1.5, H, "ab" * 33,
                       world.paid_card.hex(), "tag", "type", "note", "\u00e9\u0000", "0x" + "f" * 64]
    rnd = random.Random(1234)
    for i in range(300):
        name = rnd.choice(sorted(methods))
        names = methods[name]
        params = {p: rnd.choice(junk) for p in rnd.sample(names, rnd.randint(0, len(names)))} if names else {}
        out = await call(port, name, params)
        code = out.get("error", {}).get("code")
        assert code != -32603, (i, name, params, out)
