"""A misbehaving peer against in-process nodes over real QUIC: an equivocating
validator is caught (evidence detected, gossiped and put in a block), and a
peer sending a frame that does not decode is reported and banned."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import trio

from chain.sigverify import SignatureVerifier
from node import wire
from node.config import CONFIG_FILE, load_config, write_config
from p2p import CONSENSUS, Host, NodeKey
from tests.node.harness import (
    equivocate_until_seen,
    make_testnet,
    start_all,
    wait_until,
)


def test_equivocation_is_committed_as_evidence_and_a_bad_frame_gets_the_peer_banned(
        tmp_path: Path, verifier: SignatureVerifier) -> None:
    homes = make_testnet(tmp_path / "net", 4)
    cheat_key = homes.nodes[3].validator_key  # validator 3 never runs: the test signs for it

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nodes = await start_all(nursery, homes.nodes[:3], verifier, height=1)
            target = nodes[0]
            async with Host.open(NodeKey.generate(), ("127.0.0.1", 0)) as fake:
                await fake.connect(bytes.fromhex(homes.nodes[0].node_id),
                                   ("127.0.0.1", target.daemon.p2p_port), timeout=10)
                driver = target.daemon.consensus
                await equivocate_until_seen(fake, target, cheat_key, homes.chain_id)
                assert driver.evidence_seen, "no evidence detected"
                ev_height = driver.evidence_seen[0].height

                def in_a_block() -> bool:
                    node = target.node
                    for h in range(ev_height, node.state.height + 1):
                        raw = node.blocks.get_block(h)
                        if raw is not None and wire.decode_block(raw, node.limits).evidence:
                            return True
                    return False

                await wait_until(in_a_block, 20, "a block carrying the evidence")
                # the evidence was gossiped: every node saw it and none was refused
                await wait_until(lambda: all(n.daemon.consensus.evidence_seen for n in nodes),
                                 10, "evidence on every node")
                # committed once: every node's pool marks it, no block repeats it
                ev = driver.evidence_seen[0]
                await wait_until(lambda: all(n.node.evidence.is_committed(ev) for n in nodes),
                                 10, "evidence marked committed everywhere")
                # a frame that is not a message: the peer is reported and banned
                fake.send(target.node.node_key.peer_id, CONSENSUS, b"\xc1not a message")
                await wait_until(lambda: target.daemon.host.is_banned(fake.peer_id), 10,
                                 "the bad peer banned")
            start = min(n.height for n in nodes)
            await wait_until(lambda: min(n.height for n in nodes) >= start + 2, 20,
                             "the chain goes on without the jailed validator")
            for n in nodes:
                await n.stop()
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_a_partitioned_validator_falls_back_to_block_sync(tmp_path: Path,
                                                          verifier: SignatureVerifier) -> None:
    homes = make_testnet(tmp_path / "net", 4)
    lone = homes.nodes[3]
    cfg = load_config(lone.home / CONFIG_FILE, lone.home)
    write_config(dataclasses.replace(cfg, p2p=dataclasses.replace(cfg.p2p, ban_duration=4.0)))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nodes = await start_all(nursery, homes.nodes, verifier, height=2)
            cut = nodes[3]
            assert cut.daemon.sync.episodes == 1
            # partition: the node bans its peers for a moment (bans hold both directions)
            for h in homes.nodes[:3]:
                cut.daemon.host.report_violation(bytes.fromhex(h.node_id), "test partition")
            start = cut.height
            await wait_until(lambda: min(n.height for n in nodes[:3]) >= start + 6, 30,
                             "the others move on")
            # back in touch, it sees peers more than 3 heights ahead and syncs blocks
            await wait_until(lambda: cut.daemon.sync.episodes >= 2, 30, "a block sync episode")
            await wait_until(lambda: cut.height >= max(n.height for n in nodes[:3]), 30,
                             "caught up")
            assert cut.daemon.sync.blocks_synced >= 1
            assert cut.daemon.consensus.running
            top = max(n.height for n in nodes)
            await wait_until(lambda: min(n.height for n in nodes) >= top + 2, 20,
                             "all four go on together")
            for n in nodes:
                await n.stop()
            nursery.cancel_scope.cancel()

    trio.run(main)
