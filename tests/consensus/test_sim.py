"""The deterministic simulator: a seeded slice of `make sim` (300 seeds) in CI.

Every failure names its seed and the command that replays it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from chain.types import VoteType
from tools import sim

SEEDS_PER_CHUNK = 30
CHUNKS = 10  # 300 seeds


def _check(res: sim.SeedResult, validators: int | None = None) -> None:
    if res.ok:
        return
    extra = f" --validators {validators}" if validators else ""
    lines = [sim.make_scenario(res.seed, validators).describe(), *res.safety]
    if res.liveness:
        lines.append(res.liveness)
    lines.append(f"replay: python -m tools.sim --seed {res.seed}{extra}")
    pytest.fail("\n".join(lines))


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_simulator_seeds(chunk: int) -> None:
    # files in /dev/shm when available (see tools.sim.default_workdir)
    for seed in range(chunk * SEEDS_PER_CHUNK, (chunk + 1) * SEEDS_PER_CHUNK):
        _check(sim.run_seed(seed))


def test_the_seeds_exercise_the_faults() -> None:
    """The 300 CI seeds really contain Byzantine validators of every kind,
    partitions, crashes with damaged WALs, loss and duplication."""
    scs = [sim.make_scenario(s) for s in range(CHUNKS * SEEDS_PER_CHUNK)]
    kinds = {k for sc in scs for k in sc.byzantine.values()}
    assert {sim.SILENT, sim.DOUBLE_VOTE, sim.EQUIVOCATE, sim.INVALID_BLOCK} <= {
        p for k in kinds for p in k.split("+")
    }
    assert sum(1 for sc in scs if sc.partitions) > 50
    damages = {cr.wal_damage for sc in scs for cr in sc.crashes}
    assert damages == {"none", "truncate", "bitflip", "chop"}
    assert sum(1 for sc in scs if sc.drop > 0) > 100
    assert {sc.n for sc in scs} == set(range(4, 11))
    for sc in scs:
        total = sum(sc.powers)
        assert 3 * sum(sc.powers[i] for i in sc.byzantine) < total


def test_fixed_validator_counts() -> None:
    for n in (4, 10):
        for seed in (1, 2):
            _check(sim.run_seed(seed, validators=n), n)


def test_any_seed_replays_identically(tmp_path: Path) -> None:
    a = sim.run_seed(11)
    b = sim.run_seed(11, workdir=tmp_path)  # on disk, with real fsync latency
    assert a.trace_hash == b.trace_hash and a.messages == b.messages and a.end_ms == b.end_ms


def test_trio_mockclock_slice_matches_the_event_queue() -> None:
    """The same seeds driven by trio's MockClock(autojump_threshold=0) give the same
    decisions at the same virtual times as the plain event queue."""
    for seed in (3, 7, 42, 44, 77, 100, 101, 102, 103, 104):
        plain = sim.run_seed(seed)
        under_trio = sim.run_seed(seed, use_trio=True)
        _check(under_trio)
        assert under_trio.trace_hash == plain.trace_hash, seed


def test_trio_driver_runs_inside_a_nursery(tmp_path: Path) -> None:
    async def main() -> sim.SeedResult:
        sc = sim.make_scenario(5)
        s = sim.Simulation(sc, tmp_path / "n")
        result: list[sim.SeedResult] = []

        async def run() -> None:
            result.append(await s.run_trio())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
        return result[0]

    res = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    _check(res)


def test_real_signature_verification_per_node_slice(tmp_path: Path) -> None:
    """The slice above shares one verification cache per run (each distinct
    signature is verified once, with real Ed25519); these seeds verify every vote
    at every node, with their files on disk (real fsync)."""
    for seed in (0, 9, 20, 21):
        _check(sim.run_seed(seed, workdir=tmp_path, cache_verify=False))


def test_the_checks_can_fail(tmp_path: Path) -> None:
    """The safety checker flags a double sign and a disagreement when they happen."""
    sc = sim.make_scenario(1)
    s = sim.Simulation(sc, tmp_path / "x")
    node = s.nodes[0]
    from chain.types import Vote

    v1 = Vote(VoteType.PREVOTE, 1, 0, b"\x01" * 32, 0, 0)
    s.record_vote(node, v1)
    s.record_vote(node, Vote(VoteType.PREVOTE, 1, 0, b"\x02" * 32, 0, 0))
    assert any("double-signed" in x for x in s.result.safety)
    from tests.consensus.helpers import make_block

    s.on_decided(s.nodes[0], make_block(1, "A"), None)  # type: ignore[arg-type]
    s.on_decided(s.nodes[1], make_block(1, "B"), None)  # type: ignore[arg-type]
    assert any("agreement violated" in x for x in s.result.safety)


def test_cli_prints_the_summary_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert sim.main(["--seeds", "2", "--start", "100"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "seeds=2 safety_violations=0 liveness_failures=0"
    assert sim.main(["--seed", "4"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        "seeds=1 safety_violations=0 liveness_failures=0"
    )
