"""The proposer of the next height builds its block during timeout_commit and
proposes it as soon as the round starts; the chain commits those blocks."""

from __future__ import annotations

from pathlib import Path

import trio

from chain import tx as txm
from chain.sigverify import SignatureVerifier
from node import txbuild
from tests.node.harness import make_testnet, start_all, wait_until


def test_blocks_built_during_timeout_commit_are_proposed_and_committed(
        tmp_path: Path, verifier: SignatureVerifier) -> None:
    homes = make_testnet(tmp_path / "net", 3)
    funder = homes.nodes[0].validator_key
    signed = [txbuild.sign(funder, homes.chain_id, n, txbuild.transfer(b"\x01" * 32, 1))[1]
              for n in range(20)]

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nodes = await start_all(nursery, homes.nodes, verifier, height=2)
            for i, raw in enumerate(signed):
                await nodes[0].node.submit_tx(raw)
                if i % 5 == 4:
                    await trio.sleep(0.2)
            for n in nodes:
                for raw in signed:
                    assert await n.node.wait_tx_committed(txm.tx_hash(raw), 30) is not None
            start = min(n.height for n in nodes)
            await wait_until(lambda: min(n.height for n in nodes) >= start + 3, 20, "3 more heights")
            used = [n.daemon.consensus.prebuilt_used for n in nodes]
            assert sum(used) >= 3, used
            hashes = {n.node.blocks.get_block_hash(start) for n in nodes}
            assert len(hashes) == 1
            for n in nodes:
                await n.stop()
            nursery.cancel_scope.cancel()

    trio.run(main)
