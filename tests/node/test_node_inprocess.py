"""Four validators in one process over real QUIC and real LevelDB."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from chain.sigverify import SignatureVerifier
from tests.node.harness import InProcessNode, make_testnet, wait_until


@pytest.fixture(scope="module")
def verifier() -> SignatureVerifier:
    v = SignatureVerifier(1, kind="thread")
    yield v
    v.close()


def test_four_validators_make_blocks(tmp_path: Path, verifier: SignatureVerifier) -> None:
    homes = make_testnet(tmp_path / "net", 4)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nodes = [InProcessNode(h, verifier) for h in homes.nodes]
            for n in nodes:
                await n.start(nursery)
            await wait_until(lambda: min(n.height for n in nodes) >= 3, 30, "height 3")
            hashes = {n.node.blocks.get_block_hash(3) for n in nodes}
            assert len(hashes) == 1
            for n in nodes:
                await n.stop()
            nursery.cancel_scope.cancel()

    trio.run(main)
