"""What node modules (RPC methods, the CLI's local commands, tests) may read of a node.

The daemon's `node.node.Node` satisfies `NodeView`; so does the small view over a
real store in tests/node/chainfixture.py, so RPC methods are tested against real
stores without p2p or consensus. The value types below are what the view's
methods return.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from chain.checktx import CheckResult
    from chain.genesis import GenesisDoc
    from chain.state import State
    from node.config import Config
    from node.events import EventBus
    from node.mempool import Mempool
    from node.metrics import NodeMetrics
    from storage.blocks import BlockStore


@dataclass(frozen=True, slots=True)
class SyncInfo:
    """Where the node's chain stands (the `sync_info` of `status`)."""

    latest_block_hash: bytes
    """Hash of the latest committed block (b"" before the first block)."""
    latest_app_hash: bytes
    """State root after the latest block (the genesis app hash before the first block)."""
    latest_block_height: int
    """Height of the latest committed block (initial_height - 1 before the first block)."""
    latest_block_time_ms: int
    """BFT time of the latest block (the genesis time before the first block)."""
    earliest_block_height: int
    """Lowest height whose block is still stored (retention prunes below it)."""
    catching_up: bool
    """True while block sync runs (the node is behind its peers)."""


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """One connected peer (`net_info`)."""

    node_id: str
    """The peer's node public key, hex."""
    address: str
    """host:port of the connection."""
    is_outbound: bool
    """True if we dialled it."""
    moniker: str = ""
    """The name the peer announced, if any."""
    persistent: bool = False
    """Configured in [p2p] persistent_peers."""
    connected_ms: int = 0
    """How long the connection has been up, in ms."""


@dataclass(frozen=True, slots=True)
class TxLocation:
    """Where a committed transaction is."""

    tx_hash: bytes
    """BLAKE3 of the transaction bytes."""
    height: int
    """Height of the block that holds it."""
    lane: str
    """"cards", "seeders", "keys" or "txs"."""
    index: int
    """Position in its lane (the leaf index of the header's lane root)."""


class NodeView(Protocol):
    """The read side of a running node (docs/interfaces.md, node section)."""

    config: Config
    genesis: GenesisDoc
    blocks: BlockStore
    state: State
    """`.tree` is the StateTree; the handle is at the latest committed version."""
    mempool: Mempool
    events: EventBus
    metrics: NodeMetrics
    node_id: str
    """The p2p node id (hex of the node public key)."""
    validator_pubkey: bytes | None
    """The validator's consensus key; None on a full node."""

    def sync_info(self) -> SyncInfo:
        """Latest height, hash, app hash and time; earliest retained height; catching_up."""
        ...

    def net_info(self) -> list[PeerInfo]:
        """The connected peers."""
        ...

    def consensus_info(self) -> dict[str, Any]:
        """Height, round and step of the consensus state machine (for status and dumps)."""
        ...

    async def submit_tx(self, tx_bytes: bytes) -> CheckResult:
        """Add to the mempool and gossip; raises a node.mempool.MempoolError subclass."""
        ...

    async def wait_tx_committed(self, tx_hash: bytes, timeout_s: float) -> TxLocation | None:
        """The location once the transaction is committed, or None after `timeout_s`."""
        ...

    async def submit_evidence(self, evidence_bytes: bytes) -> list[bytes]:
        """Verify evidence (kind 1 duplicate vote, kind 2 light client attack), pool and gossip
        the duplicate-vote evidence it proves; returns their hashes (empty: an amnesia attack,
        recorded). Raises node.evidence_intake.EvidenceRejected."""
        ...
