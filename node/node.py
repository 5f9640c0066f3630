"""The Node object: one home directory opened, its stores reconciled, the commit path.

Theory of operation. ``Node.open(home)`` reads ``config/config.toml`` (defaults
when absent), the genesis, the node key and the validator key (absent: a full
node), opens ONE LevelDB store holding blocks, state versions and the tx
indexes, and builds ``chain.state.State`` over it, writing the genesis state on
the first start. It then reconciles what survived the last run:

* block store height == state version (one batch writes both; after genesis
  the state is at ``initial_height - 1`` with no block);
* the genesis the store was created from (its hash is kept in the store) is the
  genesis in the home;
* the consensus WAL never ended a height the store does not hold;
* the sign state exists unless the store is fresh.

Any disagreement raises a :class:`HomeError` subclass naming the files: the node
refuses to start on a guessed state (that is how validators double-sign).

The commit path (:meth:`Node.apply_and_commit`) is shared by the consensus and
block-sync drivers: block, commit, staged state version and the tx index
entries in one synced batch, then the in-memory state, the previous height's
canonical commit, the mempool, events and metrics. Applying blocks runs on a
worker thread, one at a time (:attr:`Node.apply_lock`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from chain import tx as txm
from chain.crypto import PrivateKey
from chain.errors import ChainError
from chain.genesis import GenesisDoc
from chain.state import BlockResult, State, apply_block, finish_block, init_state
from chain.types import LANES, Block, Commit, DuplicateVoteEvidence, decode_evidence_untrusted
from consensus.errors import ConsensusError
from consensus.evidence import EvidencePool
from consensus.signguard import SignGuard
from consensus.wal import WAL
from genesis.errors import KeyFileError
from genesis.keyfile import read_key_file
from node.config import CONFIG_FILE, Config, default_config, load_config
from node.errors import NodeError
from node.events import EventBus
from node.indexer import get_tx, index_writes
from node.log import get_logger
from node.metrics import NodeMetrics
from node.sigcache import CachedVerifier, VerifiedTxs
from node.txgossip import TxGossip
from node.view import PeerInfo, SyncInfo, TxLocation
from node.wire import Limits
from p2p import NodeKey, NotConnected, format_peer_id
from p2p.gossip import SeenCache, message_id
from storage import keys
from storage.blocks import BlockStore
from storage.errors import StorageError
from storage.kv import LevelKV, WriteBatch
from storage.state import KERNEL as STATE_KERNEL
from storage.state import StateTree

log = get_logger("node")

VERSION = "0.1.0"
GENESIS_HASH_META = "genesis_hash"


class HomeError(NodeError):
    """The home directory cannot be opened as a node (the operator's to fix)."""


class MissingFileError(HomeError):
    """A file the node needs (genesis, node key) is missing or unreadable."""


class InconsistentHomeError(HomeError):
    """The stores of the home disagree with each other or with the genesis."""


class ConsensusFailure(NodeError):
    """A block decided by +2/3 of the validators does not apply here: this node's
    state differs from the network's. The node halts rather than diverge."""


@dataclass(slots=True)
class PeerState:
    """What we know about a connected peer."""

    address: str
    outbound: bool
    connected_at: float
    persistent: bool = False
    height: int = 0
    """The peer's stored height as it last reported it (Status)."""
    base: int = 0


@dataclass(slots=True)
class _Waiters:
    events: dict[bytes, trio.Event] = field(default_factory=dict)


class Node:
    """A node over one home directory; see the module docstring."""

    def __init__(
        self,
        *,
        config: Config,
        genesis: GenesisDoc,
        kv: LevelKV,
        node_key: NodeKey,
        validator_key: PrivateKey | None,
        verifier: Any = None,
    ) -> None:
        self.config = config
        self.home = config.home
        self.genesis = genesis
        self.kv = kv
        self.tree = StateTree(kv)
        self.blocks = BlockStore(kv)
        self.node_key = node_key
        self.node_id = format_peer_id(node_key.peer_id)
        self.validator_key = validator_key
        self.validator_pubkey: bytes | None = (
            None if validator_key is None else validator_key.public_key.raw
        )
        self.verified_txs = VerifiedTxs()
        """Hashes of transactions whose signature check_tx verified (apply skips them)."""
        self.verifier = CachedVerifier(verifier, self.verified_txs)
        self.limits = Limits.from_params(genesis.consensus_params, genesis.app_params)
        self.events = EventBus()
        self.metrics = NodeMetrics()
        self.metrics.set_node_info(chain_id=genesis.chain_id, moniker=config.base.moniker,
                                   version=VERSION)
        self.evidence = EvidencePool(genesis.chain_id,
                                     genesis.consensus_params.evidence_max_age_heights)
        self.apply_lock = trio.Lock()
        self.results: dict[bytes, BlockResult] = {}
        self.finished_blocks: dict[bytes, Block] = {}
        self.staged_hash: bytes | None = None
        self.peers: dict[bytes, PeerState] = {}
        self.catching_up = True
        self.host: Any = None
        """The p2p Host once the daemon opened it."""
        self.consensus: Any = None
        """The ConsensusDriver once the daemon started it."""
        self.wal: WAL | None = None
        self.guard: SignGuard | None = None
        self.state = self._open_state()
        self.mempool = self._make_mempool()
        self._tx_waiters = _Waiters()
        self._last_block_wall: float | None = None
        self._next_valset: tuple[int, Any] = (-1, None)
        """(height, its validator set) as read at the last commit (metrics)."""
        self.on_commit: list[Callable[[Block, BlockResult], None]] = []
        """Hooks run after each commit (the drivers' bookkeeping)."""
        self.seen = SeenCache(capacity=100_000, ttl=120.0)
        """Ids of consensus frames seen, with who sent them (relay)."""
        self.tx_gossip = TxGossip(self.limits)
        """Transactions queued for peers, and which peers have which (node.txgossip)."""
        self.tx_gossip_wake = trio.Event()
        """Set when a transaction is queued for gossip (the daemon's flusher waits on it)."""

    # --- opening ---------------------------------------------------------------------

    @classmethod
    def open(cls, home: str | Path, *, verifier: Any = None) -> Node:
        """Open (and on the first start initialise) the node of ``home``."""
        home = Path(home)
        if not home.is_dir():
            raise MissingFileError(f"home {home} is not a directory")
        cfg_path = home / CONFIG_FILE
        config = load_config(cfg_path, home) if cfg_path.exists() else default_config(home)
        genesis_path = config.path(config.base.genesis_file)
        try:
            genesis = GenesisDoc.load(genesis_path)
        except ChainError as exc:
            raise MissingFileError(f"genesis {genesis_path}: {exc}") from exc
        node_key = _load_node_key(config.path(config.base.node_key_file))
        val_path = config.path(config.base.priv_validator_key_file)
        validator_key = _read_key(val_path) if val_path.exists() else None
        db_path = config.path(config.storage.db_path)
        fresh = not db_path.exists()
        try:
            db_path.parent.mkdir(parents=True, exist_ok=True)
            kv = LevelKV.open(str(db_path), create=fresh)
        except (StorageError, OSError) as exc:
            raise HomeError(f"cannot open the store {db_path}: {exc}") from exc
        # Which build of the state tree's staging kernel runs ('pure' is ~1.7x slower:
        # `make accel` compiles it; see docs/storage.md).
        log.info("opened the store", path=str(db_path), state_kernel=STATE_KERNEL)
        try:
            node = cls(config=config, genesis=genesis, kv=kv, node_key=node_key,
                       validator_key=validator_key, verifier=verifier)
            node._open_consensus_files(fresh=node.blocks.latest_height is None)
        except BaseException:
            kv.close()
            raise
        return node

    def _open_state(self) -> State:
        g = self.genesis
        stored = self.kv.get(keys.meta_key(GENESIS_HASH_META))
        blocks_h = self.blocks.latest_height
        version = self.tree.latest_version
        if version is None:
            if blocks_h is not None:
                raise InconsistentHomeError(
                    f"the store holds blocks up to {blocks_h} but no state: remove "
                    f"{self.config.storage.db_path} and sync again")
            init_state(self.tree, g)
            batch = WriteBatch()
            batch.put(keys.meta_key(GENESIS_HASH_META), g.hash())
            self.kv.write(batch, sync=True)
            log.info("initialised the state from genesis", chain_id=g.chain_id,
                     app_hash=self.tree.root().hex())
        elif stored is not None and stored != g.hash():
            raise InconsistentHomeError(
                f"the store was created from genesis {stored.hex()[:16]}, the home's genesis is "
                f"{g.hash().hex()[:16]}: wrong genesis.json or a stale data directory")
        expected = g.initial_height - 1 if blocks_h is None else blocks_h
        version = self.tree.latest_version
        if version != expected:
            raise InconsistentHomeError(
                f"block store height {blocks_h} and state version {version} disagree")
        last_hash = b"" if blocks_h is None else (self.blocks.get_block_hash(blocks_h) or b"")
        if blocks_h is not None and not last_hash:
            raise InconsistentHomeError(f"block {blocks_h} has no hash entry")
        try:
            return State.from_genesis(self.tree, g, last_block_hash=last_hash)
        except ChainError as exc:
            raise InconsistentHomeError(f"the stored state does not load: {exc}") from exc

    def _open_consensus_files(self, *, fresh: bool) -> None:
        wal_path = self.config.path(self.config.consensus.wal_file)
        try:
            wal_path.parent.mkdir(parents=True, exist_ok=True)
            self.wal = WAL.open(wal_path)
        except (ConsensusError, OSError) as exc:
            raise HomeError(f"cannot open the consensus WAL {wal_path}: {exc}") from exc
        ended = self.wal.last_ended_height()
        height = self.state.height
        if ended is not None and ended > height:
            self.wal.close()
            raise InconsistentHomeError(
                f"the consensus WAL ended height {ended} but the store holds only {height}: "
                "the data directory was replaced or lost writes")
        if self.validator_key is None:
            return
        guard_path = self.config.path(self.config.base.priv_validator_state_file)
        try:
            guard_path.parent.mkdir(parents=True, exist_ok=True)
            self.guard = SignGuard.open(guard_path, create=fresh)
        except ConsensusError as exc:
            self.wal.close()
            raise InconsistentHomeError(
                f"{exc} (the store is not fresh, so a missing sign state is not assumed empty)"
            ) from exc
        st = self.guard.state
        if st is not None and st.height > height + 1:
            log.warning("the sign state is ahead of the store: signing resumes above it",
                        signed_height=st.height, stored_height=height)

    def _make_mempool(self) -> Any:
        from node.mempool import Mempool

        return Mempool(self.state, self.config.mempool, metrics=self.metrics,
                       verified=self.verified_txs)

    def close(self) -> None:
        """Close the WAL and the store (idempotent)."""
        if self.wal is not None:
            self.wal.close()
        with contextlib.suppress(StorageError):
            self.kv.close()

    # --- applying and committing ---------------------------------------------------------

    async def apply(self, block: Block, *, finish: bool = False) -> BlockResult:
        """``apply_block`` (``finish_block`` for our own proposal, whose app hash is a
        placeholder) on a worker thread, never two at once; raises InvalidBlock.

        The result is kept by block hash, so a decided block is committed without
        applying it again (unless another block of the height was staged since)."""
        async with self.apply_lock:
            return await self._apply_locked(block, finish=finish)

    async def _apply_locked(self, block: Block, *, finish: bool = False) -> BlockResult:
        self.staged_hash = None
        if finish:
            final, result = await trio.to_thread.run_sync(
                lambda: finish_block(self.state, block, verifier=self.verifier))
            self.finished_blocks[result.block_hash] = final
        else:
            result = await trio.to_thread.run_sync(
                lambda: apply_block(self.state, block, verifier=self.verifier))
        self.staged_hash = result.block_hash
        if len(self.results) > 32:
            self.results.clear()
        self.results[result.block_hash] = result
        return result

    async def apply_and_commit(self, block: Block, commit: Commit) -> bool:
        """Commit a decided block (applying it unless its result is the staged one),
        all under the apply lock so no other staging slips in between. False if the
        height is already stored; raises InvalidBlock if it does not apply."""
        async with self.apply_lock:
            height = block.header.height
            if height <= self.state.height:
                return False
            if height != self.state.height + 1:
                raise ConsensusFailure(f"block {height} does not follow the store at "
                                       f"{self.state.height}")
            result = self.staged_result(block)
            if result is None:
                result = await self._apply_locked(block)
            await self._commit_locked(block, commit, result)
        return True

    def staged_result(self, block: Block) -> BlockResult | None:
        """The result of ``block`` if it is the version the tree has staged last."""
        h = block.hash()
        result = self.results.get(h)
        if result is None or self.staged_hash != h or result.height != self.state.height + 1:
            return None
        return result

    async def _commit_locked(self, block: Block, commit: Commit, result: BlockResult,
                             *, block_bytes: bytes | None = None) -> None:
        """Store block, commit, state version and tx indexes in one synced batch, then
        advance the state, the mempool, events and metrics (apply lock held)."""
        started = time.monotonic()
        height = block.header.height
        raw = block_bytes if block_bytes is not None else block.encode()
        extra = index_writes(block, result)
        located = _locate(block, result, decode=self.events.subscriber_count > 0)
        await trio.to_thread.run_sync(lambda: self.blocks.commit_block(
            height, result.block_hash, raw, commit.encode(), result.staged, extra))
        self.state.mark_committed(result)
        self.results.clear()
        self.finished_blocks.clear()
        self.staged_hash = None
        if block.last_commit is not None and height > self.genesis.initial_height:
            self.blocks.set_commit(height - 1, block.last_commit.encode())
        evs = [e for e in (_decode_evidence(b) for b in block.evidence) if e is not None]
        self.evidence.mark_committed(evs)
        self.evidence.prune(height)
        committed = [h for _, _, h, _ in located]
        try:
            self.mempool.update(height, result, committed, recheck_now=False)
        except Exception as exc:  # the mempool must not stop the chain; say so loudly
            log.error("mempool update failed", height=height, error=repr(exc))
        for hook in list(self.on_commit):
            hook(block, result)
        self._publish(block, result, located, len(raw))
        now = time.monotonic()
        interval = None if self._last_block_wall is None else now - self._last_block_wall
        self._last_block_wall = now
        self.metrics.record_block(height=height, num_txs=len(located), size_bytes=len(raw),
                                  interval_seconds=interval, processing_seconds=now - started,
                                  rounds=commit.round)
        self.metrics.mempool_size.set(getattr(self.mempool, "size", 0))
        vs = self.state.validator_set(height + 1)
        signed = {s.validator_index for s in commit.signatures}
        # the set that signed `height` is the one read at the last commit as the next
        # set (a read of a past version costs a LevelDB seek: kept instead)
        kept_height, kept = self._next_valset
        if kept_height == height and kept is not None:
            cur = kept
        else:
            cur = self.state.validator_set(height) if height >= self.genesis.initial_height else vs
        self._next_valset = (height + 1, vs)
        missing = [v for i, v in enumerate(cur.validators) if i not in signed]
        self.metrics.set_validators(count=len(vs.validators), power=vs.total_power,
                                    missing=len(missing),
                                    missing_power=sum(v.power for v in missing))
        for _, _idx, tx_hash, _ in located:
            ev = self._tx_waiters.events.pop(tx_hash, None)
            if ev is not None:
                ev.set()
        log.info("committed block", height=height, hash=result.block_hash.hex()[:16],
                 txs=len(located), round=commit.round, app_hash=result.app_hash.hex()[:16],
                 mempool=getattr(self.mempool, "size", 0), parked=getattr(self.mempool, "parked", 0),
                 commit_ms=round((now - started) * 1000))

    def _publish(self, block: Block, result: BlockResult, located: list[tuple[str, int, bytes, Any]],
                 size: int) -> None:
        h = block.header
        bus = self.events
        bus.publish("NewBlock", {"height": h.height, "hash": result.block_hash.hex(),
                                 "num_txs": len(located), "size": size,
                                 "app_hash": result.app_hash.hex(), "time_ms": h.time_ms})
        bus.publish("NewBlockHeader", {"height": h.height, "hash": result.block_hash.hex(),
                                       "time_ms": h.time_ms, "proposer": h.proposer.hex(),
                                       "app_hash": h.app_hash.hex()})
        for r in result.tx_results:
            if r.kind == "PublishCard":
                self.metrics.cards_published_total.inc()
            elif r.kind == "BuyKey":
                self.metrics.keys_sold_total.inc()
        for lane, index, tx_hash, tx in located:
            if tx is None:
                continue
            body = tx.body
            kind = type(body).__name__
            bus.publish("Tx", {"height": h.height, "index": index, "hash": tx_hash.hex(),
                               "lane": lane, "sender": tx.sender.hex(), "nonce": tx.nonce,
                               "fee": tx.fee, "kind": kind,
                               "generic_kind": body.kind.hex() if isinstance(body, txm.Generic)
                               else ""})
            if isinstance(body, txm.PublishCard):
                bus.publish("NewCard", {
                    "height": h.height, "card_id": txm.compute_card_id(tx.sender, tx.nonce).hex(),
                    "creator": tx.sender.hex(), "card_type": body.content_type,
                    "content_type": body.content_type, "title": body.title,
                    "tags": list(body.tags), "content_root": body.content_root.hex(),
                    "paid": body.offer is not None})
            elif lane == "seeders":
                delta = {"height": h.height, "seeder": tx.sender.hex(), "op": kind,
                         "content_root": getattr(body, "content_root", b"").hex()}
                if isinstance(body, txm.Announce):
                    delta["addresses"] = list(body.addresses)
                    delta["expiry_height"] = body.expiry_height
                bus.publish("SeederDelta", delta)
            elif lane == "keys":
                bus.publish("KeyOp", {"height": h.height, "op": kind, "sender": tx.sender.hex(),
                                      "hash": tx_hash.hex()})
        if result.validator_updates or result.removed_validators:
            bus.publish("ValidatorSetUpdates", {
                "height": h.height, "effective_height": h.height + 2,
                "updates": [{"pub_key": v.pubkey.hex(), "power": v.power}
                            for v in result.validator_updates]
                + [{"pub_key": k.hex(), "power": 0} for k in result.removed_validators]})

    # --- gossip (validate, then relay) --------------------------------------------------

    def observe(self, frame_id: bytes, sender: bytes | None) -> bool:
        """Record a consensus frame; True the first time it is seen."""
        return self.seen.observe(frame_id, sender, trio.current_time())

    def gossip(self, channel: int, frame: bytes) -> None:
        """Send a frame of ours to every peer."""
        if self.host is None:
            return
        self.observe(message_id(frame), None)
        self.host.broadcast(channel, frame)

    def relay(self, channel: int, frame: bytes, frame_id: bytes) -> None:
        """Pass a peer's frame, once checked, to every peer that has not sent it to us."""
        if self.host is None:
            return
        senders = self.seen.senders(frame_id)
        for peer in list(self.peers):
            if peer not in senders:
                with contextlib.suppress(NotConnected):
                    self.host.send(peer, channel, frame)

    def share_tx(self, tx_bytes: bytes, tx_hash: bytes) -> None:
        """Queue a transaction the mempool accepted for every peer that has not sent it
        to us; the daemon's flusher sends it batched (node.txgossip)."""
        if self.host is None or not self.config.mempool.broadcast:
            return
        if self.tx_gossip.queue(tx_bytes, tx_hash, self.peers):
            self.tx_gossip_wake.set()

    def share_promoted(self) -> None:
        """Gossip the peers' transactions the mempool took out of parking since the last
        call (added once the transaction their nonce waited for was)."""
        for tx_bytes, tx_hash in self.mempool.take_promoted():
            self.share_tx(tx_bytes, tx_hash)

    def lookup_tx(self, tx_hash: bytes) -> bytes | None:
        """A transaction this node holds by hash: pooled, or seen lately (compact proposals)."""
        found = self.mempool.get(tx_hash)
        return found if found is not None else self.tx_gossip.recent(tx_hash)

    # --- NodeView --------------------------------------------------------------------------

    def sync_info(self) -> SyncInfo:
        return SyncInfo(
            latest_block_hash=self.state.last_block_hash,
            latest_app_hash=self.tree.root(),
            latest_block_height=self.state.height,
            latest_block_time_ms=self.state.time_ms,
            earliest_block_height=self.blocks.base_height or 0,
            catching_up=self.catching_up,
        )

    def net_info(self) -> list[PeerInfo]:
        now = time.monotonic()
        return [PeerInfo(format_peer_id(pid), p.address, p.outbound, persistent=p.persistent,
                         connected_ms=int((now - p.connected_at) * 1000))
                for pid, p in sorted(self.peers.items())]

    def consensus_info(self) -> dict[str, Any]:
        if self.consensus is None:
            return {"height": self.state.height + 1, "round": 0, "step": "none"}
        return dict(self.consensus.info())

    async def submit_tx(self, tx_bytes: bytes) -> Any:
        """Add to the mempool and gossip; raises the mempool's MempoolError."""
        result = self.mempool.add(tx_bytes)
        self.metrics.mempool_size.set(getattr(self.mempool, "size", 0))
        if self.host is not None:
            self.tx_gossip.observe(result.tx_hash, None, trio.current_time())
            self.tx_gossip.remember(result.tx_hash, tx_bytes)
            self.share_tx(tx_bytes, result.tx_hash)
            self.share_promoted()  # peers' transactions parked for this one's nonce
        return result

    def tx_location(self, tx_hash: bytes) -> TxLocation | None:
        return locate_tx(self.blocks, tx_hash)

    async def wait_tx_committed(self, tx_hash: bytes, timeout_s: float) -> TxLocation | None:
        found = self.tx_location(tx_hash)
        if found is not None:
            return found
        ev = self._tx_waiters.events.setdefault(tx_hash, trio.Event())
        with trio.move_on_after(timeout_s):
            await ev.wait()
        if not ev.is_set() and self._tx_waiters.events.get(tx_hash) is ev:
            del self._tx_waiters.events[tx_hash]
        return self.tx_location(tx_hash)

    async def submit_evidence(self, evidence_bytes: bytes) -> list[bytes]:
        """Verify submitted evidence, pool and gossip what it proves (node.evidence_intake)."""
        from node.evidence_intake import submit_evidence

        return await submit_evidence(self, evidence_bytes)


def locate_tx(blocks: BlockStore, tx_hash: bytes) -> TxLocation | None:
    """Where a committed transaction is, from the tx index (node.indexer)."""
    found = get_tx(blocks.kv, tx_hash)
    return None if found is None else found.location


def _locate(block: Block, result: BlockResult, *, decode: bool) -> list[tuple[str, int, bytes, Any]]:
    """(lane, block index, hash, decoded tx or None) of each transaction of a committed
    block, from the apply result's hashes; transactions are decoded again only when
    some event subscriber may want their bodies."""
    results = result.tx_results
    if len(results) == sum(len(block.lane(lane)) for lane in LANES):
        if not decode:
            return [(r.lane, i, r.tx_hash, None) for i, r in enumerate(results)]
        return [(r.lane, i, r.tx_hash, _decode_tx(block.lane(r.lane)[r.index]))
                for i, r in enumerate(results)]
    located: list[tuple[str, int, bytes, Any]] = []
    for lane in LANES:
        for tx_bytes in block.lane(lane):
            located.append((lane, len(located), txm.tx_hash(tx_bytes),
                            _decode_tx(tx_bytes) if decode else None))
    return located


def _decode_tx(tx_bytes: bytes) -> Any:
    try:
        return txm.Tx.decode_untrusted(tx_bytes)
    except ChainError:
        return None


def _decode_evidence(raw: bytes) -> DuplicateVoteEvidence | None:
    try:
        ev = decode_evidence_untrusted(raw)
    except ChainError:
        return None
    return ev if isinstance(ev, DuplicateVoteEvidence) else None


def _read_key(path: Path) -> PrivateKey:
    try:
        return read_key_file(path)
    except KeyFileError as exc:
        raise MissingFileError(str(exc)) from exc


def _load_node_key(path: Path) -> NodeKey:
    """The node key: a JSON key file as genesis.testnet writes it."""
    if not path.exists():
        raise MissingFileError(f"node key {path} is missing (run init or testnet first)")
    return NodeKey.from_seed(_read_key(path).seed)
