"""Batched transaction gossip: the pure per-peer queue (node.txgossip), and over real
QUIC a peer's TxBatchMessage is checked, pooled and relayed batched; our own
submissions leave as batches; a malformed batch gets its sender banned."""

from __future__ import annotations

from pathlib import Path

import trio

from chain import tx as txm
from chain.params import AppParams, ConsensusParams
from chain.sigverify import SignatureVerifier
from node import txbuild, wire
from node.txgossip import TxGossip
from p2p import MEMPOOL, Host, NodeKey, Received
from tests.node.harness import InProcessNode, make_testnet, start_all, wait_until

LIMITS = wire.Limits.from_params(ConsensusParams(), AppParams())
A, B, C = b"\x0a" * 32, b"\x0b" * 32, b"\x0c" * 32


def _txs(frames: list[tuple[bytes, bytes]], peer: bytes) -> list[bytes]:
    out: list[bytes] = []
    for p, frame in frames:
        if p == peer:
            msg = wire.decode_untrusted(MEMPOOL, frame, LIMITS)
            assert isinstance(msg, wire.TxBatchMessage)
            out.extend(msg.txs)
    return out


def test_queue_skips_the_peers_that_sent_it_and_batches_per_peer() -> None:
    g = TxGossip(LIMITS)
    assert g.observe(b"h1", A, 0.0) and not g.observe(b"h1", B, 0.0)
    assert g.queue(b"tx1", b"h1", [A, B, C]) == 1  # only C lacks it
    assert g.observe(b"h2", None, 0.0)
    assert g.queue(b"tx2", b"h2", [A, B, C]) == 3
    assert g.pending
    frames = g.take_frames()
    assert not g.pending and g.take_frames() == []
    assert len(frames) == 3  # one frame per peer
    assert _txs(frames, C) == [b"tx1", b"tx2"]
    assert _txs(frames, A) == [b"tx2"] and _txs(frames, B) == [b"tx2"]


def test_a_full_peer_queue_drops_and_a_gone_peer_is_forgotten() -> None:
    g = TxGossip(LIMITS, max_pending_bytes=10)
    assert g.queue(b"x" * 6, b"h1", [A, B]) == 2
    assert g.queue(b"y" * 6, b"h2", [A, B]) == 0
    assert g.dropped == 2
    g.forget_peer(A)
    frames = g.take_frames()
    assert [p for p, _ in frames] == [B]
    assert _txs(frames, B) == [b"x" * 6]


def test_peer_batches_are_pooled_relayed_batched_and_bad_ones_banned(
        tmp_path: Path, verifier: SignatureVerifier) -> None:
    homes = make_testnet(tmp_path / "net", 2)
    funder = homes.nodes[0].validator_key
    chain_id = homes.chain_id
    signed = [txbuild.sign(funder, chain_id, n, txbuild.transfer(b"\x01" * 32, 1))[1]
              for n in range(14)]

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nodes = await start_all(nursery, homes.nodes, verifier, height=1)
            target = nodes[0]
            async with Host.open(NodeKey.generate(), ("127.0.0.1", 0)) as fake:
                target_id = target.node.node_key.peer_id
                await fake.connect(target_id, ("127.0.0.1", target.daemon.p2p_port), timeout=10)
                got: list[bytes] = []

                async def listen() -> None:
                    async for ev in fake.events():
                        # (the fake may learn of node 1 and connect to it too: count the target's)
                        if isinstance(ev, Received) and ev.channel == MEMPOOL and ev.peer_id == target_id:
                            msg = wire.decode_untrusted(MEMPOOL, ev.frame, target.node.limits)
                            assert isinstance(msg, wire.TxBatchMessage)
                            got.extend(msg.txs)

                nursery.start_soon(listen)
                # transactions are tracked apart from consensus frames (a crafted "transaction"
                # must not mark a vote frame as seen)
                assert target.node.tx_gossip.seen is not target.node.seen
                # our batch: pooled (or committed) on the target and relayed to node 1,
                # but never sent back to us, who sent it
                frame = wire.pack_tx_batches(signed[:8], target.node.limits)
                assert len(frame) == 1
                fake.send(target_id, MEMPOOL, frame[0])

                def known(node: InProcessNode, raw: bytes) -> bool:
                    h = txm.tx_hash(raw)
                    return h in node.node.mempool or node.node.tx_location(h) is not None

                await wait_until(lambda: all(known(n, r) for n in nodes for r in signed[:8]), 20,
                                 "the peer's batch on both nodes")
                # our own submissions go out batched, to us too (we did not send them)
                for raw in signed[8:12]:
                    await target.node.submit_tx(raw)
                await wait_until(lambda: set(signed[8:12]) <= set(got), 10, "our submissions gossiped")
                assert not set(signed[:8]) & set(got)
                # a transaction ahead of its sender's nonce is parked, then pooled and
                # relayed once the one before it arrives
                parked = target.node.mempool.parked_total
                fake.send(target_id, MEMPOOL, wire.pack_tx_batches([signed[13]], target.node.limits)[0])
                await wait_until(lambda: target.node.mempool.parked_total > parked, 10, "parked")
                fake.send(target_id, MEMPOOL, wire.pack_tx_batches([signed[12]], target.node.limits)[0])
                await wait_until(lambda: all(known(n, r) for n in nodes for r in signed[12:]), 20,
                                 "the gap filled on both nodes")
                assert target.node.tx_gossip.frames_built < target.node.tx_gossip.txs_queued * 2
                # a batch that does not decode: the sender is reported and banned
                fake.send(target_id, MEMPOOL, b"\x92\x21\x90")  # [33, []]
                await wait_until(lambda: target.daemon.host.is_banned(fake.peer_id), 10,
                                 "the bad peer banned")
            for n in nodes:
                await n.stop()
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_intake_checks_nothing_while_a_block_is_applied() -> None:
    from collections import deque
    from types import SimpleNamespace

    from node.daemon import INTAKE_CHUNK, Daemon

    added: list[bytes] = []
    shared: list[bytes] = []

    async def main() -> None:
        def add(tx: bytes, park_future: bool = False) -> None:
            added.append(tx)

        node = SimpleNamespace(apply_lock=trio.Lock(),
                               mempool=SimpleNamespace(add=add, parked=0, take_promoted=list),
                               share_tx=lambda tx, h: shared.append(h), share_promoted=lambda: None)
        d = Daemon.__new__(Daemon)
        d.node = node  # type: ignore[assignment]
        d._promote_at = -1
        d._intake = deque()
        d._intake_wake = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(d.tx_intake_loop)
            await node.apply_lock.acquire()
            d._intake.extend((bytes([i]), bytes([i]) * 32) for i in range(INTAKE_CHUNK + 5))
            d._intake_wake.set()
            await trio.sleep(0.05)
            assert added == []  # the apply holds the lock: nothing checked meanwhile
            node.apply_lock.release()
            with trio.fail_after(5):
                while len(added) < INTAKE_CHUNK + 5:
                    await trio.sleep(0.01)
            assert len(shared) == INTAKE_CHUNK + 5
            nursery.cancel_scope.cancel()

    trio.run(main)
