"""A real multi-validator chain on LevelDB served by a real RpcServer, and a
tampering HTTP proxy, for the light client's tests.

`MultiChain` extends tests/node/chainfixture.ChainFixture: the genesis has
several validators, every block's commit carries the precommits of every
member of that height's set (so bond/unbond transactions really change who
signs), and keys of users who bond sign too.

`Served` runs the node's RpcServer over a FixtureView in a thread with its own
trio loop (the light client is synchronous, on http.client). `TamperProxy` is a
stdlib HTTP server between the client and a node that may rewrite one answer
(`tamper(method, params, result) -> result`).
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trio

from chain import state as st
from chain import tx as txm
from chain.crypto import PrivateKey, seal
from chain.genesis import GenesisAccount, GenesisDoc, GenesisValidator
from chain.types import Block, Commit, Vote, VoteType
from node.http import RpcServer, serve
from node.jsonrpc import Registry
from node.rpc_methods import register_methods
from storage.blocks import BlockStore
from storage.kv import LevelKV
from storage.state import StateTree
from tests.chain.helpers import offer, publish_body, root_of
from tests.node.chainfixture import (
    BALANCE,
    CHAIN_ID,
    GENESIS_TIME_MS,
    USERS,
    ChainFixture,
    FixtureView,
    user_key,
)

DEADLINE = 10.0
VALIDATOR_POWER = 1_000_000


class MultiChain(ChainFixture):
    """ChainFixture with ``validators`` genesis validators, all signing every commit."""

    def __init__(self, path: Path, *, validators: int = 4, users: Sequence[str] = USERS) -> None:
        self.kv = LevelKV.open(str(path), create=True)
        self.tree = StateTree(self.kv)
        self.blocks = BlockStore(self.kv)
        self.users = {name: user_key(name) for name in users}
        self.validator_keys = [user_key(f"validator{i}") for i in range(validators)]
        self.validator = self.validator_keys[0]
        self.signers: dict[bytes, PrivateKey] = {k.public_key.raw: k for k in self.validator_keys}
        self.signers.update({k.public_key.raw: k for k in self.users.values()})
        self.genesis = GenesisDoc.build(
            chain_id=CHAIN_ID,
            genesis_time_ms=GENESIS_TIME_MS,
            validators=[GenesisValidator(k.public_key.raw, VALIDATOR_POWER, f"v{i}")
                        for i, k in enumerate(self.validator_keys)],
            accounts=[GenesisAccount(k.public_key.raw, BALANCE)
                      for k in [*self.users.values(), *self.validator_keys]],
        )
        st.init_state(self.tree, self.genesis)
        self.state = st.State.from_genesis(self.tree, self.genesis)
        self.last_commit: Commit | None = None
        self.mempool = None
        self.results: dict[int, st.BlockResult] = {}

    def sign_commit(self, block: Block) -> Commit:
        h = block.header.height
        vset = self.state.validator_set(h)
        votes = []
        for i, v in enumerate(vset.validators):
            vote = Vote(VoteType.PRECOMMIT, h, 0, block.hash(), block.header.time_ms + 1000 + i, i)
            votes.append(vote.signed(self.signers[v.pubkey], CHAIN_ID))
        return Commit.from_votes(votes)


def forked_chains(tmp: Path) -> tuple[MultiChain, MultiChain]:
    """Two chains from one genesis, signed by the same validators, that differ at height 3."""
    chains = []
    for name, text in (("a", b"one"), ("b", b"two")):
        fx = MultiChain(tmp / name)
        fx.commit([fx.tx("alice", txm.Generic(b"note", b"same"))])
        fx.commit([fx.tx("alice", txm.Generic(b"note", b"same again"))])
        fx.commit([fx.tx("bob", txm.Generic(b"note", text))])
        fx.commit([])
        chains.append(fx)
    return chains[0], chains[1]


class World:
    """A populated 4-validator chain: cards, a key sale, seeders, notes, and (optionally)
    validator set changes by bond and unbond."""

    def __init__(self, path: Path, *, changes: bool = True) -> None:
        fx = self.fx = MultiChain(path / "db")
        self.view = FixtureView(fx, path)
        a, b, c, d = (fx.addr(n) for n in ("alice", "bob", "carol", "dave"))
        self.alice, self.bob, self.carol, self.dave = a, b, c, d
        self.paid_card = txm.compute_card_id(a, 0)
        self.free_card = txm.compute_card_id(b, 0)
        self.root = root_of("film")
        fx.commit([
            fx.tx("alice", publish_body("film", offer=offer(1000)), nonce=0),
            fx.tx("bob", publish_body("photo", content_type="image", tags=("art", "sun")), nonce=0),
            fx.tx("carol", txm.Generic(b"note", b"first")),
        ])  # fmt: skip
        fx.commit([
            fx.tx("dave", txm.BuyKey(self.paid_card, 0, 1000)),
            fx.tx("bob", txm.Announce(self.root, ("127.0.0.1:4433",), ((0, 10),), 500)),
            fx.tx("carol", txm.Announce(self.root, ("127.0.0.1:4434",), ((0, 5),), 500)),
        ])  # fmt: skip
        fx.commit([fx.tx("alice", txm.DeliverKey(self.paid_card, 1, seal(d, b"k" * 32)))])
        fx.commit([fx.tx("bob", publish_body("dawn", content_type="image", tags=("art",)))])
        if changes:
            # four users join with large stakes, then three genesis validators unbond: the
            # genesis set keeps 1/4 of its power among the latest signers, so skipping
            # verification from it must bisect
            big = VALIDATOR_POWER * 3
            fx.commit([fx.tx("alice", txm.Bond(big)), fx.tx("bob", txm.Bond(big))])
            for _ in range(3):
                fx.commit([])
            fx.commit([fx.tx("carol", txm.Bond(big)), fx.tx("dave", txm.Bond(big))])
            for _ in range(3):
                fx.commit([])
            fx.commit([self.validator_tx(i, txm.Unbond(VALIDATOR_POWER)) for i in (1, 2, 3)])
            for _ in range(4):
                fx.commit([])
        fx.commit([])

    def validator_tx(self, index: int, body: Any) -> bytes:
        fx = self.fx
        k = fx.validator_keys[index]
        from chain.queries import get_account

        nonce = get_account(fx.tree, k.public_key.raw).nonce
        fee = fx.genesis.app_params.min_fee
        for _ in range(3):
            size = len(txm.Tx(k.public_key.raw, nonce, fee, body, bytes(64)).encode())
            fee = st.compute_min_fee(fx.genesis.app_params, size)
        return txm.Tx.create(k, CHAIN_ID, nonce, fee, body).encode()

    def header_hash(self, height: int) -> bytes:
        raw = self.fx.blocks.get_block(height)
        assert raw is not None
        return Block.decode_untrusted(raw).hash()

    def close(self) -> None:
        self.fx.close()


class Served:
    """The node's RpcServer over a view, on 127.0.0.1, in a thread of its own."""

    def __init__(self, view: Any) -> None:
        self.view = view
        self.port = 0
        self._started = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._started.wait(DEADLINE):
            raise RuntimeError(f"the RPC server did not start: {self._error!r}")
        if self._error is not None:
            raise RuntimeError("the RPC server failed") from self._error

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to the constructor
            self._error = exc
            self._started.set()

    async def _main(self) -> None:
        registry = Registry()
        register_methods(registry, self.view)
        server = RpcServer(registry, host="127.0.0.1", port=0)
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            self._scope = scope
            async with trio.open_nursery() as nursery:
                self.port = await nursery.start(serve, server)
                self._started.set()
                await trio.sleep_forever()

    def stop(self) -> None:
        if self._token is not None and self._scope is not None:
            scope = self._scope
            trio.from_thread.run_sync(scope.cancel, trio_token=self._token)
        self._thread.join(DEADLINE)


Tamper = Callable[[str, dict[str, Any], Any], Any]


class TamperProxy:
    """A JSON-RPC HTTP proxy on 127.0.0.1 that can rewrite answers."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.tamper: Tamper | None = None
        self.tampered = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=DEADLINE)
                try:
                    conn.request("POST", "/", body, {"Content-Type": "application/json"})
                    answer = conn.getresponse().read()
                finally:
                    conn.close()
                if proxy.tamper is not None:
                    req = json.loads(body)
                    out = json.loads(answer)
                    if "result" in out:
                        before = json.dumps(out["result"], sort_keys=True)
                        new = proxy.tamper(req["method"], req.get("params") or {}, json.loads(before))
                        if json.dumps(new, sort_keys=True) != before:
                            proxy.tampered += 1
                        out["result"] = new
                    answer = json.dumps(out).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(DEADLINE)
