"""A real single-validator chain on a real LevelDB directory, and a NodeView over it.

`ChainFixture` builds a genesis (chain.genesis.GenesisDoc), writes its state with
chain.state.init_state, and commits blocks the way the node does, minus consensus
and p2p: a block is drafted like a proposer's (lane roots, the previous commit,
BFT time), finished with chain.state.finish_block (app hash), signed by the one
validator, and written with BlockStore.commit_block together with the
transaction indexes of node.indexer.index_writes; the canonical commit of the
previous height is set from the new block's last_commit.

`FixtureView` satisfies node.view.NodeView over it, so RPC methods run against
real stores. With `auto_commit`, `wait_tx_committed` commits a block of the
mempool's reap (a validator that proposes when asked), so tests never wait on
a clock. The light client's tests may reuse both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import blake3

from chain import state as st
from chain import tx as txm
from chain.checktx import CheckResult
from chain.crypto import PrivateKey
from chain.genesis import GenesisAccount, GenesisDoc, GenesisValidator
from chain.params import AppParams, ConsensusParams
from chain.sigverify import SignatureVerifier
from chain.types import (
    Block,
    Commit,
    Vote,
    VoteType,
)
from consensus.evidence import EvidencePool
from node import evidence_intake, indexer
from node.config import Config
from node.events import EventBus
from node.mempool import Mempool
from node.metrics import NodeMetrics
from node.view import PeerInfo, SyncInfo, TxLocation
from storage.blocks import BlockStore
from storage.kv import LevelKV
from storage.state import StateTree

CHAIN_ID = "blackhole-rpc-test"
GENESIS_TIME_MS = 1_750_000_000_000
BALANCE = 10**12
POWER = 1_000_000
USERS = ("alice", "bob", "carol", "dave")
VERIFIER = SignatureVerifier(1, kind="thread")
"""One thread verifies the fixture's blocks (no process pool to spawn in tests)."""


def user_key(name: str) -> PrivateKey:
    """A deterministic key for a test user or validator."""
    return PrivateKey(blake3.blake3(b"chainfixture:" + name.encode()).digest())


class ChainFixture:
    """A committed chain on LevelDB; see the module docstring."""

    def __init__(
        self,
        path: Path,
        *,
        users: Sequence[str] = USERS,
        app_params: AppParams | None = None,
        consensus_params: ConsensusParams | None = None,
    ) -> None:
        self.kv = LevelKV.open(str(path), create=True)
        self.tree = StateTree(self.kv)
        self.blocks = BlockStore(self.kv)
        self.users = {name: user_key(name) for name in users}
        self.validator = user_key("validator")
        self.genesis = GenesisDoc.build(
            chain_id=CHAIN_ID,
            genesis_time_ms=GENESIS_TIME_MS,
            consensus_params=consensus_params,
            app_params=app_params,
            validators=[GenesisValidator(self.validator.public_key.raw, POWER, "v0")],
            accounts=[GenesisAccount(k.public_key.raw, BALANCE) for k in self.users.values()],
        )
        st.init_state(self.tree, self.genesis)
        self.state = st.State.from_genesis(self.tree, self.genesis)
        self.last_commit: Commit | None = None
        self.mempool: Mempool | None = None
        self.results: dict[int, st.BlockResult] = {}

    # -- accounts and transactions -------------------------------------------------

    def addr(self, name: str) -> bytes:
        return self.users[name].public_key.raw

    def nonce_of(self, name: str) -> int:
        """The next nonce: after the sender's pooled transactions, else the account's."""
        address = self.addr(name)
        if self.mempool is not None:
            pooled = self.mempool.next_nonce(address)
            if pooled is not None:
                return pooled
        from chain.queries import get_account

        return get_account(self.tree, address).nonce

    def tx(self, who: str, body: Any, *, nonce: int | None = None, fee: int | None = None) -> bytes:
        """A signed transaction paying the minimum fee (unless `fee`)."""
        k = self.users[who]
        if nonce is None:
            nonce = self.nonce_of(who)
        if fee is None:
            fee = self.genesis.app_params.min_fee
            for _ in range(3):  # the fee's own size may grow the transaction
                size = len(txm.Tx(k.public_key.raw, nonce, fee, body, bytes(64)).encode())
                fee = st.compute_min_fee(self.genesis.app_params, size)
        return txm.Tx.create(k, CHAIN_ID, nonce, fee, body).encode()

    # -- blocks ------------------------------------------------------------------------

    @property
    def height(self) -> int:
        return self.state.height

    def draft(self, lanes: dict[str, list[bytes]], evidence: Sequence[bytes] = ()) -> Block:
        return st.draft_block(self.state, lanes, last_commit=self.last_commit, evidence=evidence,
                              proposer=self.validator.public_key.raw)

    def sign_commit(self, block: Block) -> Commit:
        vote = Vote(VoteType.PRECOMMIT, block.header.height, 0, block.hash(), block.header.time_ms + 1000, 0)
        return Commit.from_votes([vote.signed(self.validator, CHAIN_ID)])

    def commit(self, txs: Iterable[bytes] = (), *, lanes: dict[str, list[bytes]] | None = None) -> tuple[Block, st.BlockResult]:
        """Apply and commit the next block (txs sorted into their lanes, in order)."""
        if lanes is None:
            lanes = {name: [] for name in txm.LANE_NAMES}
            for raw in txs:
                lanes[txm.LANE_NAMES[txm.Tx.decode_untrusted(raw).lane]].append(raw)
        block, result = st.finish_block(self.state, self.draft(lanes), verifier=VERIFIER)
        commit = self.sign_commit(block)
        h = block.header.height
        self.blocks.commit_block(
            h, block.hash(), block.encode(), commit.encode(), result.staged,
            extra=indexer.index_writes(block, result),
        )  # fmt: skip
        self.state.mark_committed(result)
        if block.last_commit is not None:
            self.blocks.set_commit(h - 1, block.last_commit.encode())
        self.last_commit = commit
        self.results[h] = result
        if self.mempool is not None:
            self.mempool.update(h, result)
        return block, result

    def commit_pool(self) -> tuple[Block, st.BlockResult]:
        """Commit a block of what the mempool reaps."""
        if self.mempool is None:
            raise RuntimeError("no mempool attached")
        return self.commit(lanes=self.mempool.reap(self.state.consensus))

    def close(self) -> None:
        self.kv.close()


class FixtureView:
    """node.view.NodeView over a ChainFixture (no p2p, no consensus)."""

    def __init__(self, fx: ChainFixture, home: Path, *, config: Config | None = None, auto_commit: bool = True) -> None:
        self.fx = fx
        self.config = config or Config(home=home)
        self.genesis = fx.genesis
        self.blocks = fx.blocks
        self.state = fx.state
        self.mempool = Mempool(fx.state, self.config.mempool)
        fx.mempool = self.mempool
        self.events = EventBus()
        self.metrics = NodeMetrics()
        self.node_id = fx.validator.public_key.raw.hex()
        self.validator_pubkey: bytes | None = fx.validator.public_key.raw
        self.peers: list[PeerInfo] = []
        self.catching_up = False
        self.auto_commit = auto_commit
        self.submitted: list[bytes] = []
        self.home = home
        self.consensus: Any = None
        """No consensus driver: submitted evidence goes straight to `evidence`."""
        self.evidence = EvidencePool(fx.genesis.chain_id, fx.genesis.consensus_params.evidence_max_age_heights)

    def sync_info(self) -> SyncInfo:
        s = self.state
        return SyncInfo(
            latest_block_hash=s.last_block_hash,
            latest_app_hash=s.tree.root(s.height),
            latest_block_height=s.height,
            latest_block_time_ms=s.time_ms,
            earliest_block_height=self.blocks.base_height or self.genesis.initial_height,
            catching_up=self.catching_up,
        )

    def net_info(self) -> list[PeerInfo]:
        return list(self.peers)

    def consensus_info(self) -> dict[str, Any]:
        return {"height": self.state.height + 1, "round": 0, "step": "propose"}

    async def submit_tx(self, tx_bytes: bytes) -> CheckResult:
        result = self.mempool.add(tx_bytes)
        self.submitted.append(tx_bytes)
        return result

    async def submit_evidence(self, evidence_bytes: bytes) -> list[bytes]:
        return await evidence_intake.submit_evidence(self, evidence_bytes)

    async def wait_tx_committed(self, tx_hash: bytes, timeout_s: float) -> TxLocation | None:
        found = indexer.get_tx(self.blocks.kv, tx_hash)
        if found is None and self.auto_commit and tx_hash in self.mempool:
            self.fx.commit_pool()
            found = indexer.get_tx(self.blocks.kv, tx_hash)
        return None if found is None else found.location

