"""Four validators in one process over real QUIC and real LevelDB."""

from __future__ import annotations

import dataclasses
import http.client
import socket
from pathlib import Path

import trio

from chain import tx as txm
from chain.sigverify import SignatureVerifier
from node.config import (
    CONFIG_FILE,
    InstrumentationConfig,
    StorageConfig,
    load_config,
    write_config,
)
from tests.node.harness import (
    free_port,
    make_testnet,
    rpc_call,
    start_all,
    wait_until,
)


def test_four_validators_make_blocks(tmp_path: Path, verifier: SignatureVerifier) -> None:
    homes = make_testnet(tmp_path / "net", 4)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nodes = await start_all(nursery, homes.nodes, verifier, height=3)
            hashes = {n.node.blocks.get_block_hash(3) for n in nodes}
            assert len(hashes) == 1
            # the RPC server of each node answers status from the same stores
            for n in nodes:
                st = await trio.to_thread.run_sync(rpc_call, n.daemon.rpc_port, "status")
                assert st["node_info"]["id"] == n.node.node_id
                assert st["sync_info"]["latest_block_height"] >= 3
                assert st["sync_info"]["catching_up"] is False
                peers = await trio.to_thread.run_sync(rpc_call, n.daemon.rpc_port, "net_info")
                assert {p["persistent"] for p in peers["peers"]} == {True}
            info = nodes[0].node.consensus_info()
            assert info["height"] >= 3 and info["step"] in ("propose", "prevote", "precommit",
                                                             "commit")
            assert info["evidence_seen"] == 0 and len(info["proposer"]) == 64
            # metrics in CometBFT's vocabulary, p2p bytes per channel copied from the host
            m = nodes[0].node.metrics

            def sent() -> float:
                value = m.registry.get_sample_value(
                    "blackhole_p2p_peer_send_bytes_total", {"channel": "consensus"})
                return value or 0.0

            await wait_until(lambda: sent() > 0, 10, "p2p byte counters")
            text = m.render().decode()
            assert "blackhole_consensus_latest_block_height" in text
            assert m.registry.get_sample_value("blackhole_consensus_latest_block_height") >= 3
            assert m.registry.get_sample_value("blackhole_consensus_validators") == 4
            for n in nodes:
                await n.stop()
            nursery.cancel_scope.cancel()

    trio.run(main)


def _get_metrics(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def _tx(key, chain_id: str, nonce: int, body) -> bytes:  # type: ignore[no-untyped-def]
    return txm.Tx.create(key, chain_id, nonce, 20_000, body).encode()


def test_every_lane_committed_with_identical_app_hashes(tmp_path: Path,
                                                        verifier: SignatureVerifier) -> None:
    homes = make_testnet(tmp_path / "net", 4)
    cid = homes.chain_id
    k0, k1, k2 = (h.validator_key for h in homes.nodes[:3])
    root = bytes(range(32))
    offer = txm.KeyOffer(price=1000, supply_cap=10, royalty_bps=0, delivery_timeout=100,
                         program=b"", params=())
    card = txm.PublishCard(content_root=root, size=4096, chunk_size=1024,
                           cipher=txm.CIPHERS[0], content_type="video", title="demo",
                           tags=("music",), links=(), preview=b"hi", preview_hash=b"",
                           parent=b"", offer=offer)
    first = [
        _tx(k0, cid, 0, card),
        _tx(k0, cid, 1, txm.Announce(root, ("quic://127.0.0.1:4433",), ((0, 4),), 60)),
        _tx(k0, cid, 2, txm.Transfer(k2.public_key.raw, 5_000)),
        _tx(k0, cid, 3, txm.Generic(b"note", b"hello")),
    ]
    card_id = txm.compute_card_id(k0.public_key.raw, 0)
    buy = _tx(k1, cid, 0, txm.BuyKey(card_id, 0, 1000))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nodes = await start_all(nursery, homes.nodes, verifier)
            events: list[tuple[str, dict]] = []
            for topic in ("Tx", "NewCard", "SeederDelta", "KeyOp", "NewBlock"):
                sub = nodes[1].node.events.subscriber(buffer_size=10_000, max_subscriptions=1)
                sub.subscribe(topic)
                events.append((topic, sub))  # type: ignore[arg-type]
            await wait_until(lambda: min(n.height for n in nodes) >= 1, 20, "height 1")
            for raw in first:
                await nodes[0].node.submit_tx(raw)
            hashes = [txm.tx_hash(raw) for raw in first]
            for n in nodes:
                for h in hashes:
                    assert await n.node.wait_tx_committed(h, 20) is not None
            await nodes[2].node.submit_tx(buy)  # gossip carries it to the proposers
            for n in nodes:
                loc = await n.node.wait_tx_committed(txm.tx_hash(buy), 20)
                assert loc is not None and loc.lane == "keys"
            lanes = {nodes[3].node.tx_location(h).lane for h in hashes}
            assert lanes == {"cards", "seeders", "txs"}
            target = max(n.height for n in nodes) + 2
            await wait_until(lambda: min(n.height for n in nodes) >= target, 20, "two more blocks")
            roots = {n.node.tree.root(target) for n in nodes}
            assert len(roots) == 1
            blocks = {n.node.blocks.get_block_hash(target) for n in nodes}
            assert len(blocks) == 1
            seen = {topic: [d.event for d in sub.pop_all()] for topic, sub in events}  # type: ignore[attr-defined]
            assert {e["kind"] for e in seen["Tx"]} >= {"PublishCard", "Announce", "Transfer",
                                                       "Generic", "BuyKey"}
            assert seen["NewCard"][0]["tags"] == ["music"]
            assert seen["SeederDelta"] and seen["KeyOp"] and seen["NewBlock"]
            # nobody equivocated, nobody was refused a signature
            for n in nodes:
                assert n.daemon.consensus.evidence_seen == []
            for n in nodes:
                await n.stop()
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_retention_prunes_blocks_and_state_while_the_chain_runs(
        tmp_path: Path, verifier: SignatureVerifier) -> None:
    storage = StorageConfig(retain_blocks=3, retain_state_versions=4, prune_interval=0.1)
    homes = make_testnet(tmp_path / "net", 4, storage=storage)
    # node 0 also serves Prometheus on its own listener
    prom_port = free_port(socket.SOCK_STREAM)
    home0 = homes.nodes[0].home
    cfg = load_config(home0 / CONFIG_FILE, home0)
    write_config(dataclasses.replace(cfg, instrumentation=InstrumentationConfig(
        prometheus=True, prometheus_listen_addr=f"127.0.0.1:{prom_port}")))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nodes = await start_all(nursery, homes.nodes, verifier)

            def pruned() -> bool:
                return all((n.node.blocks.base_height or 0) >= 4
                           and (n.node.tree.oldest_version or 0) >= 4 for n in nodes)

            await wait_until(pruned, 30, "pruning on every node")
            target = max(n.height for n in nodes) + 2
            await wait_until(lambda: min(n.height for n in nodes) >= target, 20, "more blocks")
            for n in nodes:
                node = n.node
                await n.daemon.prune_once()
                h = node.state.height
                assert node.blocks.base_height >= h - 3 + 1 - 1  # a block may land meanwhile
                assert node.blocks.get_block(1) is None
                assert node.tree.oldest_version >= h - 4 + 1 - 1
                assert node.sync_info().earliest_block_height == node.blocks.base_height
            text = await trio.to_thread.run_sync(_get_metrics, prom_port)
            assert "blackhole_consensus_latest_block_height" in text
            assert "blackhole_p2p_peers 3.0" in text
            for n in nodes:
                await n.stop()
            nursery.cancel_scope.cancel()

    trio.run(main)
