"""Prometheus metrics of the node, in CometBFT's vocabulary with the `blackhole_` prefix.

One `NodeMetrics` object per node, on its own `CollectorRegistry` (never the
process-global one, so several nodes in one test process do not collide). The
node updates it from its event handlers; `/metrics` renders it. Label sets are
bounded: the only labels are the p2p channel (from a fixed list given at
construction; anything else counts as "other") and the node-info labels.

prometheus_client appends ``_total`` to counter names on exposition, so the
counters below are exported as ``blackhole_mempool_failed_txs_total`` and so on;
docs/rpc.md lists every exported name.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

NAMESPACE = "blackhole"
DEFAULT_CHANNELS = ("consensus", "votes", "blocksync", "mempool", "evidence", "pex", "content")
OTHER_CHANNEL = "other"
CONTENT_TYPE = CONTENT_TYPE_LATEST

_BLOCK_INTERVAL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 20.0, 60.0)
_PROCESSING_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_TX_SIZE_BUCKETS = (64, 128, 256, 512, 1024, 4096, 16384, 65536, 262144, 1048576)


class NodeMetrics:
    """Every metric of the node. Attributes are prometheus_client metric objects;
    the `record_*` / `set_*` helpers cover the updates the node makes per event."""

    def __init__(
        self,
        *,
        channels: Iterable[str] = DEFAULT_CHANNELS,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.channels = frozenset(channels) | {OTHER_CHANNEL}
        r, ns = self.registry, NAMESPACE

        self.node_info = Info("node", "Node identity: chain id, moniker, version.", namespace=ns, registry=r)

        def gauge(sub: str, name: str, doc: str) -> Gauge:
            return Gauge(name, doc, namespace=ns, subsystem=sub, registry=r)

        def counter(sub: str, name: str, doc: str) -> Counter:
            return Counter(name, doc, namespace=ns, subsystem=sub, registry=r)

        # consensus
        self.consensus_height = gauge("consensus", "height", "Height of the chain.")
        self.consensus_rounds = gauge("consensus", "rounds", "Number of rounds at the current height.")
        self.consensus_validators = gauge("consensus", "validators", "Number of validators.")
        self.consensus_validators_power = gauge(
            "consensus", "validators_power", "Total voting power of all validators."
        )
        self.consensus_missing_validators = gauge(
            "consensus", "missing_validators", "Validators that did not sign the last commit."
        )
        self.consensus_missing_validators_power = gauge(
            "consensus", "missing_validators_power", "Voting power of the missing validators."
        )
        self.consensus_byzantine_validators = gauge(
            "consensus", "byzantine_validators", "Validators that equivocated in the last block."
        )
        self.consensus_byzantine_validators_power = gauge(
            "consensus", "byzantine_validators_power", "Voting power of the byzantine validators."
        )
        self.consensus_block_interval_seconds = Histogram(
            "block_interval_seconds",
            "Time between this and the last block.",
            namespace=ns,
            subsystem="consensus",
            buckets=_BLOCK_INTERVAL_BUCKETS,
            registry=r,
        )
        self.consensus_num_txs = gauge("consensus", "num_txs", "Transactions in the latest block.")
        self.consensus_total_txs = gauge("consensus", "total_txs", "Transactions committed so far.")
        self.consensus_block_size_bytes = gauge(
            "consensus", "block_size_bytes", "Size of the latest block in bytes."
        )
        self.consensus_latest_block_height = gauge(
            "consensus", "latest_block_height", "Height of the latest committed block."
        )
        self.consensus_fast_syncing = gauge(
            "consensus", "fast_syncing", "1 while the node catches up by block sync, else 0."
        )
        # state
        self.state_block_processing_time = Histogram(
            "block_processing_time",
            "Seconds to execute and commit one block.",
            namespace=ns,
            subsystem="state",
            buckets=_PROCESSING_BUCKETS,
            registry=r,
        )
        # mempool
        self.mempool_size = gauge("mempool", "size", "Uncommitted transactions in the mempool.")
        self.mempool_tx_size_bytes = Histogram(
            "tx_size_bytes",
            "Sizes of transactions accepted into the mempool.",
            namespace=ns,
            subsystem="mempool",
            buckets=_TX_SIZE_BUCKETS,
            registry=r,
        )
        self.mempool_failed_txs = counter("mempool", "failed_txs", "Transactions rejected by check_tx.")
        self.mempool_recheck_times = counter(
            "mempool", "recheck_times", "Transactions rechecked after a block."
        )
        # p2p
        self.p2p_peers = gauge("p2p", "peers", "Connected peers.")
        self.p2p_peer_receive_bytes_total = Counter(
            "peer_receive_bytes",
            "Bytes received from peers, by channel.",
            ["channel"],
            namespace=ns,
            subsystem="p2p",
            registry=r,
        )
        self.p2p_peer_send_bytes_total = Counter(
            "peer_send_bytes",
            "Bytes sent to peers, by channel.",
            ["channel"],
            namespace=ns,
            subsystem="p2p",
            registry=r,
        )
        # content
        self.cards_published_total = counter("", "cards_published", "Hash cards committed.")
        self.seeders_active = gauge("", "seeders_active", "Live seeder-map entries.")
        self.keys_sold_total = counter("", "keys_sold", "Key NFTs sold (primary sales and resales).")

    # -- helpers the node calls -------------------------------------------------

    def set_node_info(self, *, chain_id: str, moniker: str, version: str) -> None:
        self.node_info.info({"chain_id": chain_id, "moniker": moniker, "version": version})

    def record_block(
        self,
        *,
        height: int,
        num_txs: int,
        size_bytes: int,
        interval_seconds: float | None,
        processing_seconds: float,
        rounds: int = 0,
    ) -> None:
        """After a block is committed."""
        self.consensus_height.set(height + 1)
        self.consensus_latest_block_height.set(height)
        self.consensus_num_txs.set(num_txs)
        self.consensus_total_txs.inc(num_txs)
        self.consensus_block_size_bytes.set(size_bytes)
        self.consensus_rounds.set(rounds)
        if interval_seconds is not None:
            self.consensus_block_interval_seconds.observe(max(0.0, interval_seconds))
        self.state_block_processing_time.observe(max(0.0, processing_seconds))

    def set_validators(
        self,
        *,
        count: int,
        power: int,
        missing: int = 0,
        missing_power: int = 0,
        byzantine: int = 0,
        byzantine_power: int = 0,
    ) -> None:
        self.consensus_validators.set(count)
        self.consensus_validators_power.set(power)
        self.consensus_missing_validators.set(missing)
        self.consensus_missing_validators_power.set(missing_power)
        self.consensus_byzantine_validators.set(byzantine)
        self.consensus_byzantine_validators_power.set(byzantine_power)

    def channel_label(self, channel: str) -> str:
        """The bounded label for a channel name."""
        return channel if channel in self.channels else OTHER_CHANNEL

    def add_peer_bytes(self, channel: str, *, received: int = 0, sent: int = 0) -> None:
        label = self.channel_label(channel)
        if received:
            self.p2p_peer_receive_bytes_total.labels(label).inc(received)
        if sent:
            self.p2p_peer_send_bytes_total.labels(label).inc(sent)

    def render(self) -> bytes:
        """The text exposition format (content type `CONTENT_TYPE`)."""
        return generate_latest(self.registry)
