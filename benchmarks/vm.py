"""Key-rule VM speed: a metered counting loop against py-evm, and stdlib rule latency.

Loop: the same loop shape in both VMs, a counter pushed, incremented, compared
with a limit and branched on, gas metered on every instruction:

    ours   PUSH1 0; L: PUSH1 1; ADD; PUSH4 N; DUP 2; GT; JUMPI L; POP; PUSH1 0; ALLOW
    EVM    PUSH1 0; L: JUMPDEST; PUSH1 1; ADD; DUP1; PUSH3 N; GT; PUSH1 L; JUMPI; STOP

(6 instructions an iteration for us, 8 for the EVM: its JUMPDEST and its
jump-target PUSH are extra). py-evm's interpreter (Shanghai computation, the
real gas table) runs in the same process, in alternating repeats; `ratio` is
the median of the per-repeat ratios of instructions per second, `iter_ratio`
the same for loop iterations per second (the stricter comparison).

Rules: every standard rule on contexts that take its ALLOW and its DENY
paths, each `vm.evaluate` call timed on its own (a verified `vm.Program`, the
way the chain keeps one per key class); p50 and p99 in microseconds.

Last line: one JSON object. `--quick` runs a small slice.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import vm

OUR_OPS_PER_ITER = 6
EVM_OPS_PER_ITER = 8


def our_loop(iterations: int) -> vm.Program:
    source = f"""
        PUSH1 0
    loop:
        PUSH1 1
        ADD
        PUSH4 {iterations}
        DUP 2
        GT
        JUMPI loop
        POP
        PUSH1 0
        ALLOW
    """
    return vm.verify(vm.assemble(source))


def evm_loop(iterations: int) -> bytes:
    return (
        bytes([0x60, 0x00, 0x5B, 0x60, 0x01, 0x01, 0x80, 0x62])
        + iterations.to_bytes(3, "big")
        + bytes([0x11, 0x60, 0x02, 0x57, 0x00])
    )


class PyEvm:
    """Runs bytecode through py-evm's interpreter with a throwaway state."""

    def __init__(self) -> None:
        from eth.constants import BLANK_ROOT_HASH
        from eth.db.atomic import AtomicDB
        from eth.vm.execution_context import ExecutionContext
        from eth.vm.forks.shanghai.computation import ShanghaiComputation
        from eth.vm.forks.shanghai.state import ShanghaiState
        from eth.vm.message import Message

        context = ExecutionContext(
            coinbase=b"\0" * 20, timestamp=1, block_number=1, difficulty=0,
            mix_hash=b"\0" * 32, gas_limit=10**12, prev_hashes=(), chain_id=1,
            base_fee_per_gas=0,
        )
        self.state = ShanghaiState(AtomicDB(), context, BLANK_ROOT_HASH)
        self.tx = self.state.get_transaction_context_class()(gas_price=1, origin=b"\1" * 20)
        self.message_class = Message
        self.computation = ShanghaiComputation

    def run(self, code: bytes, gas: int) -> Any:
        message = self.message_class(gas=gas, to=b"\2" * 20, sender=b"\1" * 20, value=0,
                                     data=b"", code=code)
        result = self.computation.apply_computation(self.state, message, self.tx)
        if not result.is_success:
            raise RuntimeError(f"py-evm loop failed: {result.error}")
        return result


def bench_loop(iterations: int, repeats: int) -> dict[str, Any]:
    program = our_loop(iterations)
    code = evm_loop(iterations)
    evm = PyEvm()
    ctx = vm.Context(1, 1, b"\1" * 32, b"\2" * 32, 0, 0, 0, 0, b"\3" * 32, 0)
    our_ops = OUR_OPS_PER_ITER * iterations + 4
    evm_ops = EVM_OPS_PER_ITER * iterations + 2
    ours: list[float] = []
    theirs: list[float] = []
    verdict = None
    for _ in range(repeats):
        start = time.perf_counter()
        verdict = vm.evaluate(program, ctx, 10 * iterations + 100)
        ours.append(our_ops / (time.perf_counter() - start))
        start = time.perf_counter()
        evm.run(code, 30 * iterations + 100)
        theirs.append(evm_ops / (time.perf_counter() - start))
        print(f"  loop repeat: ours {ours[-1]:,.0f} ops/s, py-evm {theirs[-1]:,.0f} ops/s",
              file=sys.stderr)
    if verdict is None or not verdict.allow:
        raise RuntimeError(f"our loop did not finish: {verdict}")
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    iter_ratios = [r * EVM_OPS_PER_ITER / OUR_OPS_PER_ITER for r in ratios]
    return {
        "loop_iterations": iterations,
        "ops": our_ops,
        "ops_per_s": round(statistics.median(ours)),
        "pyevm_ops_per_s": round(statistics.median(theirs)),
        "ratio": round(statistics.median(ratios), 2),
        "iter_ratio": round(statistics.median(iter_ratios), 2),
        "loop_gas_used": verdict.gas_used,
    }


def rule_cases() -> list[tuple[str, vm.Program, vm.Context]]:
    seller, buyer, creator = b"\1" * 32, b"\2" * 32, b"\3" * 32

    def ctx(**changes: Any) -> vm.Context:
        fields: dict[str, Any] = dict(
            height=1_000, time_ms=1_700_000_000_000, seller=seller, buyer=buyer, price=10_000,
            serial=7, times_resold=1, acquired_height=900, creator=creator, royalty_bps=250,
            params=(),
        )
        fields.update(changes)
        return vm.Context(**fields)

    programs = {
        name: vm.verify(vm.stdlib.program(name, **(
            {"allowlist": [bytes([k]) * 32 for k in range(1, 101)]} if name == "allowlist" else {}
        )))
        for name in vm.stdlib.names()
    }
    contexts = {
        "resale": [ctx()],
        "soulbound": [ctx()],
        "hold_blocks": [ctx(params=(50,)), ctx(params=(500,))],
        "max_resales": [ctx(params=(3,)), ctx(params=(1,))],
        "price_band": [ctx(params=(100, 20_000)), ctx(params=(100, 1_000)), ctx(price=5, params=(100, 1_000))],
        "allowlist": [ctx(), ctx(buyer=b"\xee" * 32)],
        "expiring": [ctx(params=(2_000,)), ctx(params=(1_000,))],
    }
    return [(name, programs[name], c) for name in programs for c in contexts[name]]


def bench_rules(rounds: int) -> dict[str, Any]:
    cases = rule_cases()
    gas = 10_000
    samples: list[float] = []
    per_rule: dict[str, list[float]] = {}
    clock = time.perf_counter_ns
    evaluate = vm.evaluate
    for _ in range(rounds):
        for name, program, ctx in cases:
            start = clock()
            evaluate(program, ctx, gas)
            elapsed = (clock() - start) / 1_000
            samples.append(elapsed)
            per_rule.setdefault(name, []).append(elapsed)
    samples.sort()
    raw_cases = [(p.raw, c) for _, p, c in cases]
    bytes_samples: list[float] = []
    ctx_samples: list[float] = []
    verify_samples: list[float] = []
    for _ in range(max(1, rounds // 4)):
        for raw, ctx in raw_cases:
            start = clock()
            evaluate(raw, ctx, gas)
            bytes_samples.append((clock() - start) / 1_000)
            start = clock()
            vm.Context(ctx.height, ctx.time_ms, ctx.seller, ctx.buyer, ctx.price, ctx.serial,
                       ctx.times_resold, ctx.acquired_height, ctx.creator, ctx.royalty_bps,
                       ctx.params)
            ctx_samples.append((clock() - start) / 1_000)
            start = clock()
            vm.verify(raw)
            verify_samples.append((clock() - start) / 1_000)
    return {
        "rule_eval_us_p50": round(samples[len(samples) // 2], 2),
        "rule_eval_us_p99": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 2),
        "rule_eval_samples": len(samples),
        "rule_eval_us_p50_by_rule": {k: round(statistics.median(v), 2) for k, v in per_rule.items()},
        "rule_eval_from_bytes_us_p50": round(statistics.median(bytes_samples), 2),
        "context_build_us_p50": round(statistics.median(ctx_samples), 2),
        "verify_us_p50": round(statistics.median(verify_samples), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a small slice (for smoke tests)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="loop iterations (default 166,666: ~1M of our instructions)")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    iterations = args.iterations or (5_000 if args.quick else 166_666)
    repeats = args.repeats or (3 if args.quick else 7)
    result: dict[str, Any] = {"bench": "vm"}
    result.update(bench_loop(iterations, repeats))
    result.update(bench_rules(20 if args.quick else 2_000))
    result["targets"] = {"ratio": 4, "rule_eval_us_p50": 20}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
