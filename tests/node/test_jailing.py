"""Four validators in one process: an equivocating validator is jailed and leaves the set.

Validator 3 does not run a node; the test signs two conflicting prevotes for it
and sends them over real QUIC. The evidence is detected, committed, the chain
jails the validator (out of the set two heights later, tombstoned) and the
three others go on.
"""

from __future__ import annotations

from pathlib import Path

import trio

from chain import statekeys as sk
from chain import tx as txm
from chain.sigverify import SignatureVerifier
from chain.types import DuplicateVoteEvidence, Vote, VoteType
from p2p import Host, NodeKey
from tests.node.harness import (
    InProcessNode,
    equivocate_until_seen,
    make_testnet,
    start_all,
    wait_until,
)


def test_an_equivocating_validator_is_jailed_and_the_chain_goes_on(
        tmp_path: Path, verifier: SignatureVerifier) -> None:
    homes = make_testnet(tmp_path / "net", 4)
    cheat_key = homes.nodes[3].validator_key
    cheat = cheat_key.public_key.raw

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nodes = await start_all(nursery, homes.nodes[:3], verifier, height=1)
            target = nodes[0]
            assert target.node.state.validator_set(target.node.state.height + 1).index_of(cheat) is not None
            async with Host.open(NodeKey.generate(), ("127.0.0.1", 0)) as fake:
                await fake.connect(bytes.fromhex(homes.nodes[0].node_id),
                                   ("127.0.0.1", target.daemon.p2p_port), timeout=10)
                driver = target.daemon.consensus
                await equivocate_until_seen(fake, target, cheat_key, homes.chain_id)
            assert driver.evidence_seen, "no evidence detected"

            def jailed_at(n: InProcessNode) -> int | None:
                raw = n.node.state.get(sk.jailed(cheat))
                return None if raw is None else int.from_bytes(raw, "big")

            await wait_until(lambda: all(jailed_at(n) is not None for n in nodes), 20,
                             "the validator jailed on every node")
            h = jailed_at(nodes[0])
            assert h is not None and {jailed_at(n) for n in nodes} == {h}
            # out of the set from h+2 on, with its stake slashed and unbonded
            await wait_until(lambda: min(n.height for n in nodes) >= h + 4, 30,
                             "the chain goes on without the jailed validator")
            for n in nodes:
                state = n.node.state
                assert state.validator_set(h + 1).index_of(cheat) is not None
                for height in (h + 2, h + 3, h + 4):
                    vset = state.validator_set(height)
                    assert vset.index_of(cheat) is None and len(vset) == 3
                assert state.get(sk.stake(cheat)) is None
            assert len({n.node.blocks.get_block_hash(h + 4) for n in nodes}) == 1
            for n in nodes:
                await n.stop()
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_pooled_evidence_the_chain_already_handled_is_not_proposed(
        tmp_path: Path, verifier: SignatureVerifier) -> None:
    """Evidence committed through a SubmitEvidence transaction stays in the pools (they only
    see block evidence): a proposal carrying it again would be refused by every validator,
    so proposers leave out what the state marks as handled and the chain goes on."""
    homes = make_testnet(tmp_path / "net", 4)
    cid = homes.chain_id
    cheat_key = homes.nodes[3].validator_key

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nodes = await start_all(nursery, homes.nodes, verifier, height=2)
            vset = nodes[0].node.state.validator_set(1)
            idx = vset.index_of(cheat_key.public_key.raw)
            votes = [Vote(VoteType.PREVOTE, 1, 0, bh, 5, idx).signed(cheat_key, cid)
                     for bh in (b"\x01" * 32, b"\x02" * 32)]
            ev = DuplicateVoteEvidence.from_votes(*votes)
            raw = txm.Tx.create(homes.nodes[0].validator_key, cid, 0, 20_000,
                                txm.SubmitEvidence(ev.encode())).encode()
            await nodes[0].node.submit_tx(raw)
            for n in nodes:
                assert await n.node.wait_tx_committed(txm.tx_hash(raw), 20) is not None
            assert nodes[0].node.state.get(sk.evidence_seen(ev.hash())) is not None
            # the same evidence reaches every pool afterwards (a late gossip, a restart)
            for n in nodes:
                assert n.node.evidence.add(ev, vset, n.node.state.height + 1)
            start = max(n.height for n in nodes)
            await wait_until(lambda: min(n.height for n in nodes) >= start + 3, 30,
                             "blocks after the handled evidence was pooled")
            for n in nodes:
                await n.stop()
            nursery.cancel_scope.cancel()

    trio.run(main)
