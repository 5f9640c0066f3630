"""The daemon: one Node run under one trio nursery.

Tasks (all children of :func:`run_node`'s nursery):

* the p2p ``Host`` (its own driver task) and the **router**, which reads the
  host's events, decodes every frame with :mod:`node.wire` (a peer whose frame
  does not decode is reported with ``host.report_violation``) and hands it to
  the consensus driver, the sync driver or the mempool;
* the **consensus driver** (:mod:`node.consensus_driver`) and the **sync
  driver** (:mod:`node.sync_driver`); the node starts in block sync and hands
  over to consensus once caught up;
* the **RPC server** (``node.http.RpcServer``; methods from
  ``node.rpc_methods.register_methods`` when that module exists) and, with
  ``[instrumentation] prometheus``, a metrics listener;
* the **pruner** when ``[storage] retain_blocks`` / ``retain_state_versions``
  are set;
* a **signal** watcher: SIGINT or SIGTERM cancels the nursery; the WAL and
  LevelDB are closed on the way out.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import signal
import sys
import time
from collections import deque
from functools import partial
from pathlib import Path
from typing import Any

import trio

from chain import tx as txm
from chain.sigverify import SignatureVerifier
from node import wire
from node.config import parse_host_port, parse_peer
from node.consensus_driver import ConsensusDriver
from node.log import get_logger, setup_logging
from node.node import ConsensusFailure, HomeError, Node, PeerState
from node.sync_driver import SyncDriver
from node.txgossip import FLUSH_DELAY
from p2p import (
    BLOCKS,
    CONSENSUS,
    MEMPOOL,
    PEX,
    ChannelSpec,
    Host,
    HostConfig,
    NotConnected,
    Overflow,
    P2PError,
    PeerConnected,
    PeerDisconnected,
    PeerPolicy,
    Received,
)
from p2p.gossip import message_id

log = get_logger("node")

MIB = 1024 * 1024
METRICS_INTERVAL = 2.0
"""Seconds between copies of the p2p byte counters into the metrics."""
MIN_RETAIN = 2
"""Fewest blocks and state versions the pruner keeps, whatever the config says."""
INTAKE_MAX = 20_000
"""Peers' transactions waiting for the mempool at most (more are dropped: gossip is
best effort, and the senders' own nodes keep them)."""
INTAKE_CHUNK = 32
"""Transactions checked between two yields of the intake task, so consensus
messages and RPC requests queued meanwhile are not held up behind a gossip burst."""


def channel_specs(limits: wire.Limits) -> tuple[ChannelSpec, ...]:
    """The p2p channels with frame limits sized from the chain's parameters.

    None uses p2p's forward-before-validate gossip: the node relays a consensus
    or mempool frame itself once it decoded and checked it (``Node.relay``), so
    an honest node never forwards garbage and never gets banned for a bad
    peer's frames.
    """
    cons = limits.frame_limit(CONSENSUS)
    blocks = limits.frame_limit(BLOCKS)
    mem = limits.frame_limit(MEMPOOL)
    return (
        ChannelSpec(CONSENSUS, "consensus", 0, cons, max(16 * MIB, 4 * cons), Overflow.DISCONNECT),
        ChannelSpec(BLOCKS, "blocksync", 1, blocks, max(64 * MIB, 8 * blocks), Overflow.DISCONNECT),
        ChannelSpec(MEMPOOL, "mempool", 2, mem, max(4 * MIB, 4 * mem), Overflow.DROP),
        ChannelSpec(PEX, "pex", 3, 64 * 1024, 256 * 1024, Overflow.DROP),
    )


def host_config(node: Node) -> HostConfig:
    p2p = node.config.p2p
    peers = []
    for text in p2p.persistent_peers:
        pid, host, port = parse_peer(text)
        if pid != node.node_id:
            peers.append((bytes.fromhex(pid), (host, port)))
    seeds = []
    for text in p2p.seeds:
        pid, host, port = parse_peer(text)
        seeds.append((bytes.fromhex(pid), (host, port)))
    policy = PeerPolicy(max_inbound=p2p.max_inbound_peers, max_outbound=p2p.max_outbound_peers,
                        ban_seconds=p2p.ban_duration)
    return HostConfig(channels=channel_specs(node.limits), policy=policy,
                      persistent_peers=tuple(peers), seeds=tuple(seeds),
                      handshake_timeout=p2p.dial_timeout)


class Daemon:
    """The running pieces of one node (for tests: ``run_node`` hands it out)."""

    def __init__(self, node: Node, host: Host) -> None:
        self.node = node
        self.host = host
        self.consensus = ConsensusDriver(node, host)
        self.sync = SyncDriver(node, host, self.consensus)
        node.host = host
        node.consensus = self.consensus
        self.persistent = {pid for pid, _ in host.config.persistent_peers}
        self.rpc_port: int | None = None
        self.p2p_port = host.listen_address[1]
        self.prunes = 0
        self._intake: deque[tuple[bytes, bytes]] = deque()
        self._intake_wake = trio.Event()
        self._promote_at = -1
        """The height whose commit parked transactions were last promoted after."""
        node.on_commit.append(lambda _block, _result: self._intake_wake.set())
        self.intake_dropped = 0
        """Peers' transactions dropped because the intake queue was full (a counter)."""

    async def route(self) -> None:
        """Read the host's events and hand each message to its owner."""
        node = self.node
        async for event in self.host.events():
            if isinstance(event, PeerConnected):
                node.peers[event.peer_id] = PeerState(
                    f"{event.addr[0]}:{event.addr[1]}", event.outbound, time.monotonic(),
                    persistent=event.peer_id in self.persistent)
                node.metrics.p2p_peers.set(len(node.peers))
                self.sync.on_peer_connected(event.peer_id)
                self.consensus.on_peer_connected(event.peer_id)
            elif isinstance(event, PeerDisconnected):
                node.peers.pop(event.peer_id, None)
                node.tx_gossip.forget_peer(event.peer_id)
                node.metrics.p2p_peers.set(len(node.peers))
                self.sync.on_peer_gone(event.peer_id)
                self.consensus.on_peer_gone(event.peer_id)
            elif isinstance(event, Received):
                self._on_frame(event.peer_id, event.channel, event.frame)

    def _on_frame(self, peer: bytes, channel: int, frame: bytes) -> None:
        node = self.node
        frame_id = b""
        if channel == CONSENSUS:
            frame_id = message_id(frame)
            if not node.observe(frame_id, peer):
                return  # a copy of a frame already handled
        try:
            msg = wire.decode_untrusted(channel, frame, node.limits)
        except wire.WireError as exc:
            log.warning("peer sent a bad frame", peer=peer.hex()[:16], channel=channel,
                        error=str(exc))
            self.host.report_violation(peer, str(exc))
            return
        if channel == CONSENSUS:
            self.consensus.on_peer_message(peer, msg, frame, frame_id)
        elif channel == BLOCKS:
            self.sync.on_message(peer, msg)
        elif isinstance(msg, wire.TxBatchMessage):
            self._on_txs(peer, msg.txs)
        elif isinstance(msg, wire.TxMessage):
            self._on_txs(peer, (msg.tx_bytes,))

    def _on_txs(self, peer: bytes, txs: tuple[bytes, ...]) -> None:
        """Queue a peer's transactions we have not seen for the intake task (the router
        itself never checks them: a gossip burst must not delay consensus messages)."""
        node = self.node
        gossip = node.tx_gossip
        mempool = node.mempool
        now = trio.current_time()
        for tx in txs:
            tx_hash = txm.tx_hash(tx)
            if not gossip.observe(tx_hash, peer, now):
                continue
            gossip.remember(tx_hash, tx)
            if mempool.seen(tx_hash):
                continue
            if len(self._intake) >= INTAKE_MAX:
                self.intake_dropped += 1
                continue
            self._intake.append((tx, tx_hash))
        if self._intake:
            self._intake_wake.set()

    async def tx_intake_loop(self) -> None:
        """Check queued peer transactions into the mempool and queue the accepted ones
        for the peers that lack them, yielding every INTAKE_CHUNK transactions and
        waiting while a block is applied (the GIL is shared with the apply thread)."""
        from node.mempool import MempoolError

        node = self.node
        while True:
            await self._intake_wake.wait()
            self._intake_wake = trio.Event()
            mempool = node.mempool
            if mempool.parked and self._promote_at != node.state.height:
                # a block may have committed the nonce parked transactions waited for
                async with node.apply_lock:
                    pass
                self._promote_at = node.state.height
                mempool.promote_parked()
                node.share_promoted()
            done = 0
            while self._intake:
                if done % INTAKE_CHUNK == 0 and node.apply_lock.locked():
                    # a block is being applied on a worker thread (consensus waits for it):
                    # leave it the interpreter, check the queued transactions after
                    async with node.apply_lock:
                        pass
                tx, tx_hash = self._intake.popleft()
                try:
                    node.mempool.add(tx, park_future=True)
                except MempoolError:
                    continue  # a stale nonce, a duplicate, a full pool: not the peer's fault
                node.share_tx(tx, tx_hash)
                node.share_promoted()
                done += 1
                if done % INTAKE_CHUNK == 0:
                    await trio.lowlevel.checkpoint()

    async def tx_gossip_loop(self) -> None:
        """Send queued transactions, batched per peer, FLUSH_DELAY after the first."""
        node = self.node
        while True:
            await node.tx_gossip_wake.wait()
            await trio.sleep(FLUSH_DELAY)
            node.tx_gossip_wake = trio.Event()
            for peer, frame in node.tx_gossip.take_frames():
                with contextlib.suppress(NotConnected):
                    self.host.send(peer, MEMPOOL, frame)

    async def metrics_loop(self) -> None:
        """Copy the host's per-channel byte counters into the node's metrics."""
        names = {CONSENSUS: "consensus", BLOCKS: "blocksync", MEMPOOL: "mempool", PEX: "pex"}
        last_sent: dict[int, int] = {}
        last_received: dict[int, int] = {}
        while True:
            m = self.host.metrics
            for channel, name in names.items():
                sent = m.bytes_sent.get(channel, 0)
                received = m.bytes_received.get(channel, 0)
                self.node.metrics.add_peer_bytes(
                    name, sent=sent - last_sent.get(channel, 0),
                    received=received - last_received.get(channel, 0))
                last_sent[channel], last_received[channel] = sent, received
            self.node.metrics.p2p_peers.set(len(self.node.peers))
            await trio.sleep(METRICS_INTERVAL)

    async def prune_loop(self) -> None:
        """Keep disk bounded: drop blocks and state versions below the retention."""
        cfg = self.node.config.storage
        if not cfg.retain_blocks and not cfg.retain_state_versions:
            return
        while True:
            await trio.sleep(cfg.prune_interval)
            await self.prune_once()

    async def prune_once(self) -> None:
        node = self.node
        cfg = node.config.storage
        height = node.state.height
        async with node.apply_lock:
            if cfg.retain_state_versions:
                # the next block needs the state of the last height and the set before it
                below = height - max(cfg.retain_state_versions, MIN_RETAIN) + 1
                # the state of the last height is needed to apply the next block
                if below > (node.tree.oldest_version or 0):
                    await trio.to_thread.run_sync(node.tree.prune, below)
            if cfg.retain_blocks:
                # the next proposal may need the stored commit of the last height
                below = height - max(cfg.retain_blocks, MIN_RETAIN) + 1
                if below > (node.blocks.base_height or 0):
                    await trio.to_thread.run_sync(node.blocks.prune_blocks, below)
        self.prunes += 1
        log.info("pruned", height=height, base=node.blocks.base_height,
                 oldest_state=node.tree.oldest_version)


async def _serve_rpc(daemon: Daemon, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    from node.http import RpcServer, serve
    from node.jsonrpc import Registry

    node = daemon.node
    registry = Registry()
    try:
        module = importlib.import_module("node.rpc_methods")
    except ImportError:
        log.warning("node.rpc_methods is missing: the RPC server offers health only")
    else:
        module.register_methods(registry, node)
    server = RpcServer.from_config(node.config.rpc, registry,
                                   metrics_registry=node.metrics.registry, bus=node.events)
    await serve(server, task_status=task_status)


async def _serve_metrics(daemon: Daemon) -> None:
    """A bare Prometheus listener ([instrumentation] prometheus)."""
    node = daemon.node
    host, port = parse_host_port(node.config.instrumentation.prometheus_listen_addr)

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            with trio.move_on_after(5):
                await stream.receive_some(8192)
                body = node.metrics.render()
                head = (f"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
                await stream.send_all(head + body)

    await trio.serve_tcp(handle, port, host=host)


async def _watch_signals(cancel: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("shutting down", signal=signal.Signals(signum).name)
            cancel.cancel()
            return


async def run_node(home: str | Path, *, task_status: Any = trio.TASK_STATUS_IGNORED,
                   verifier: Any = None, handle_signals: bool = True) -> None:
    """Run the node of ``home`` until cancelled (or SIGINT/SIGTERM).

    ``task_status.started`` receives the :class:`Daemon` once p2p listens, the
    RPC server (if configured) answers and the drivers run.
    """
    node = Node.open(home, verifier=verifier)
    try:
        await _run(node, task_status=task_status, handle_signals=handle_signals)
    finally:
        node.close()
        log.info("stopped", height=node.state.height)


async def _run(node: Node, *, task_status: Any, handle_signals: bool) -> None:
    lhost, lport = parse_host_port(node.config.p2p.laddr, scheme="udp")
    with trio.CancelScope() as cancel:
        async with Host.open(node.node_key, (lhost, lport), host_config(node)) as host, \
                trio.open_nursery() as nursery:
            daemon = Daemon(node, host)
            if handle_signals:
                nursery.start_soon(_watch_signals, cancel)
            nursery.start_soon(daemon.route)
            nursery.start_soon(daemon.tx_intake_loop)
            nursery.start_soon(daemon.tx_gossip_loop)
            await nursery.start(daemon.consensus.run)
            await nursery.start(daemon.sync.run)
            nursery.start_soon(daemon.prune_loop)
            nursery.start_soon(daemon.metrics_loop)
            if node.config.rpc.laddr:
                daemon.rpc_port = await nursery.start(_serve_rpc, daemon)
            if node.config.instrumentation.prometheus:
                nursery.start_soon(_serve_metrics, daemon)
            log.info("node started", node_id=node.node_id[:16], chain_id=node.genesis.chain_id,
                     height=node.state.height, p2p_port=daemon.p2p_port, rpc_port=daemon.rpc_port,
                     validator=node.validator_pubkey.hex()[:16] if node.validator_pubkey else "")
            task_status.started(daemon)


_PACKAGE_LOGGERS = {"consensus": logging.INFO, "storage": logging.INFO, "chain": logging.WARNING,
                    "p2p": logging.WARNING, "genesis": logging.WARNING}
"""Loggers of the packages below node/ (plain stdlib loggers) and their levels."""


def _route_package_logs() -> None:
    """Send the lower packages' records (WAL repairs, sign-guard refusals, bans)
    through the node's formatted handler."""
    handlers = logging.getLogger("blackhole").handlers
    for name, level in _PACKAGE_LOGGERS.items():
        logger = logging.getLogger(name)
        logger.handlers = list(handlers)
        logger.setLevel(level)
        logger.propagate = False


SLOW_GC_S = 0.05
"""A garbage collection at least this long is logged (it stops every task of the node)."""
GC_THRESHOLD0 = 50_000
"""Net allocations between two young-generation collections (CPython's default is 700)."""


def _tune_gc() -> None:
    """Fewer full collections, over fewer objects: a loaded node allocates fast (every
    transaction decoded, checked, gossiped) and keeps large bounded caches, so with
    CPython's defaults a full collection ran every ~11 s, found nothing to free and
    stopped the node for 50-200 ms, on all validators at about the same moment. The
    objects made while starting (modules, genesis, stores) are frozen out of every
    collection; the young generation is collected every GC_THRESHOLD0 allocations
    instead of 700 (a few ms each), so a full collection comes ~70x less often."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD0, gen1, gen2)


def _watch_gc() -> None:
    """Log collections of the cyclic garbage collector that stopped the node for
    SLOW_GC_S or more (a full collection walks every object of the process)."""
    started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        took = time.perf_counter() - started[0]
        if took >= SLOW_GC_S:
            log.info("slow garbage collection", generation=info.get("generation"),
                     ms=round(took * 1000), collected=info.get("collected"))

    gc.callbacks.append(on_gc)


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def run(home: str | Path) -> int:
    """Blocking entry (``blackhole start``, ``python -m node``): returns an exit code."""
    from node.config import CONFIG_FILE, load_config

    cfg_path = Path(home) / CONFIG_FILE
    try:
        if cfg_path.exists():
            cfg = load_config(cfg_path, home)
            setup_logging(cfg.base.log_level, cfg.base.log_format)
        else:
            setup_logging()
        _route_package_logs()
        _tune_gc()
        _watch_gc()
        verifier = SignatureVerifier()
        try:
            trio.run(partial(run_node, home, verifier=verifier))
        finally:
            verifier.close()
    except (HomeError, P2PError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BaseExceptionGroup as group:
        # operator-facing failures get one line each: a port in use, a block the
        # validators decided that does not apply here (stop rather than diverge)
        known, rest = group.split((ConsensusFailure, P2PError, OSError))
        if known is None or rest is not None:
            raise
        for failure in _leaves(known):
            print(f"error: {failure}", file=sys.stderr)
        return 2 if any(isinstance(f, ConsensusFailure) for f in _leaves(known)) else 1
    return 0


