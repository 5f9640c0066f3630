"""Compact proposals (node.wire.CompactProposal): the block travels as a shell plus
transaction hashes; peers rebuild it from their mempool, a peer missing transactions
fetches the block, and hashes that do not match the signed header are the sender's
fault."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import trio

from chain import tx as txm
from chain.crypto import PrivateKey
from chain.params import AppParams, ConsensusParams
from chain.sigverify import SignatureVerifier
from chain.types import (
    Block,
    Header,
    Proposal,
    commit_hash,
    compute_evidence_hash,
    compute_lane_root,
)
from node import txbuild, wire
from node.config import CONFIG_FILE, load_config, write_config
from p2p import CONSENSUS
from tests.node.harness import make_testnet, start_all

LIMITS = wire.Limits.from_params(ConsensusParams(), AppParams())
KEY = PrivateKey(bytes(range(32)))
CHAIN = "bh-test"


def _block(lanes: dict[str, tuple[bytes, ...]]) -> Block:
    header = Header(
        chain_id=CHAIN, height=5, time_ms=1_700_000_000_000, prev_block_hash=b"\x01" * 32,
        last_commit_hash=commit_hash(None), cards_root=compute_lane_root(lanes.get("cards", ())),
        seeders_root=compute_lane_root(lanes.get("seeders", ())),
        keys_root=compute_lane_root(lanes.get("keys", ())),
        txs_root=compute_lane_root(lanes.get("txs", ())), evidence_hash=compute_evidence_hash(()),
        validators_hash=b"\x02" * 32, next_validators_hash=b"\x02" * 32, app_hash=b"\x03" * 32,
        proposer=b"\x04" * 32)
    return Block(header, lanes.get("cards", ()), lanes.get("seeders", ()), lanes.get("keys", ()),
                 lanes.get("txs", ()), None, ())


def _txs(n: int) -> tuple[bytes, ...]:
    return tuple(txbuild.sign(KEY, CHAIN, i, txbuild.transfer(b"\x05" * 32, 1))[1] for i in range(n))


def _proposal(block: Block) -> Proposal:
    return Proposal(5, 0, -1, block.hash(), 1_700_000_000_000, 0, b"\x06" * 64)


def test_a_compact_proposal_roundtrips_and_rebuilds_the_block() -> None:
    txs = _txs(5)
    block = _block({"cards": txs[:2], "txs": txs[2:]})
    msg = wire.CompactProposal.from_block(_proposal(block), block)
    frame = wire.encode(msg)
    assert len(frame) < len(wire.encode(wire.ProposalMessage(msg.proposal, block.encode())))
    got = wire.decode_untrusted(CONSENSUS, frame, LIMITS)
    assert got == msg
    assert isinstance(got, wire.CompactProposal)
    pool = {txm.tx_hash(t): t for t in txs}
    rebuilt, missing = wire.expand_compact(got, LIMITS, pool.get)
    assert missing == 0 and rebuilt == block and rebuilt.encode() == block.encode()
    del pool[txm.tx_hash(txs[3])]
    _, missing = wire.expand_compact(got, LIMITS, pool.get)
    assert missing == 1


def test_hashes_that_do_not_match_the_header_are_refused() -> None:
    txs = _txs(3)
    block = _block({"txs": txs})
    msg = wire.CompactProposal.from_block(_proposal(block), block)
    other = _txs(4)[3]
    swapped = dataclasses.replace(msg, lane_hashes=(b"", b"", b"", msg.lane_hashes[3][:64] + txm.tx_hash(other)))
    pool = {txm.tx_hash(t): t for t in (*txs, other)}
    with pytest.raises(wire.WireError, match="txs_root"):
        wire.expand_compact(swapped, LIMITS, pool.get)
    # a shell that carries transactions is not a shell
    bad_shell = dataclasses.replace(msg, shell_bytes=block.encode())
    with pytest.raises(wire.WireError, match="shell"):
        wire.expand_compact(bad_shell, LIMITS, pool.get)


@pytest.mark.parametrize("cut", [1, 31, 33])
def test_hash_lists_must_be_whole_hashes(cut: int) -> None:
    block = _block({"txs": _txs(2)})
    msg = wire.CompactProposal.from_block(_proposal(block), block)
    frame = wire.encode(dataclasses.replace(msg, lane_hashes=(b"", b"", b"\x07" * cut, msg.lane_hashes[3])))
    with pytest.raises(wire.WireError, match="hashes"):
        wire.decode_untrusted(CONSENSUS, frame, LIMITS)


def test_a_validator_without_the_transactions_fetches_the_block(
        tmp_path: Path, verifier: SignatureVerifier) -> None:
    homes = make_testnet(tmp_path / "net", 2)
    # node 0 keeps its transactions to itself: node 1 can rebuild none of its proposals
    cfg = load_config(homes.nodes[0].home / CONFIG_FILE, homes.nodes[0].home)
    write_config(dataclasses.replace(cfg, mempool=dataclasses.replace(cfg.mempool, broadcast=False)))
    funder = homes.nodes[0].validator_key
    signed = [txbuild.sign(funder, homes.chain_id, n, txbuild.transfer(b"\x01" * 32, 1))[1]
              for n in range(6)]
    # node 1's transactions are gossiped: whichever of the two validators proposes the
    # block that takes one, node 0 rebuilds node 1's proposals; one transaction a height
    # until node 1 has proposed a non-empty block (proposers alternate)
    gossiped = [txbuild.sign(homes.nodes[1].validator_key, homes.chain_id, n,
                             txbuild.transfer(b"\x01" * 32, 1))[1] for n in range(8)]

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nodes = await start_all(nursery, homes.nodes, verifier, height=1)
            for raw in signed:
                await nodes[0].node.submit_tx(raw)
            for n in nodes:
                for raw in signed:
                    assert await n.node.wait_tx_committed(txm.tx_hash(raw), 30) is not None
            assert nodes[1].daemon.consensus.compact_missing >= 1
            # node 1 gossips: node 0 rebuilds node 1's proposal from its mempool
            for raw in gossiped:
                await nodes[1].node.submit_tx(raw)
                for n in nodes:
                    assert await n.node.wait_tx_committed(txm.tx_hash(raw), 30) is not None
                if nodes[0].daemon.consensus.compact_rebuilt >= 1:
                    break
            assert nodes[0].daemon.consensus.compact_rebuilt >= 1
            for n in nodes:
                await n.stop()
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_unrelayed_compact_proposals_of_past_heights_are_dropped() -> None:
    """A compact proposal whose block never arrives must not stay in memory forever."""
    from types import SimpleNamespace

    from node.consensus_driver import ConsensusDriver

    driver = ConsensusDriver.__new__(ConsensusDriver)
    driver._unrelayed = {}
    core = SimpleNamespace(height=4)
    driver.replica = SimpleNamespace(core=core)

    def proposal(height: int, tag: bytes) -> object:
        return SimpleNamespace(height=height, block_hash=tag * 32)

    driver._remember_unrelayed(proposal(4, b"a"), b"f1")
    driver._remember_unrelayed(proposal(4, b"b"), b"f2")
    assert len(driver._unrelayed) == 2
    core.height = 5
    driver._remember_unrelayed(proposal(5, b"c"), b"f3")
    assert list(driver._unrelayed) == [b"c" * 32]
