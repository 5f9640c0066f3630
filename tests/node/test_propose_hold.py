"""A proposal that arrived before timeout_propose is judged on its verdict even when
validating its block outlasts the timeout (as in CometBFT, where the complete
proposal is validated before the next timeout is looked at): no nil round."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from chain.sigverify import SignatureVerifier
from chain.types import Commit
from tests.node.harness import FAST_TIMEOUTS, make_testnet, start_all, wait_until

SLOW_S = FAST_TIMEOUTS["timeout_propose_ms"] / 1000 + 0.3
"""Each validation waits this long: longer than a whole round-0 propose timeout."""


def _slow_validations(node: Any) -> None:
    apply = node.apply

    async def slow_apply(block: Any, *, finish: bool = False) -> Any:
        if not finish:  # a peer's proposal being validated (our own are finished)
            await trio.sleep(SLOW_S)
        return await apply(block, finish=finish)

    node.apply = slow_apply


def test_slow_validation_of_a_timely_proposal_does_not_cost_a_round(
        tmp_path: Path, verifier: SignatureVerifier) -> None:
    homes = make_testnet(tmp_path / "net", 4)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nodes = await start_all(nursery, homes.nodes, verifier, height=2)
            for n in nodes:
                _slow_validations(n.node)
            start = max(n.height for n in nodes) + 1
            await wait_until(lambda: min(n.height for n in nodes) >= start + 3, 60, "3 more heights")
            rounds = []
            for h in range(start + 1, start + 3):  # the commit of h is stored with h + 1
                raw = nodes[0].node.blocks.get_commit(h)
                assert raw is not None
                rounds.append(Commit.decode_untrusted(raw).round)
            assert rounds == [0, 0], rounds
            assert sum(n.daemon.consensus.propose_timeouts_held for n in nodes) > 0
            for n in nodes:
                await n.stop()
            nursery.cancel_scope.cancel()

    trio.run(main)
