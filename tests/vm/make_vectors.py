"""Regenerate tests/vm/vectors.json (run by hand after a deliberate change).

    .venv/bin/python -m tests.vm.make_vectors

Each vector is (name, program hex, context, gas limit, mode, verdict). The
verdicts were checked by hand for the standard rules (tests/vm/test_stdlib.py
asserts the same figures) and agree with tests/vm/reference.py; once checked
in, the vectors pin the consensus-visible behaviour: any change to a verdict
or a gas figure fails tests/vm/test_vectors.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import vm

PATH = Path(__file__).with_name("vectors.json")
SELLER = bytes([1]) * 32
BUYER = bytes([2]) * 32
CREATOR = bytes([3]) * 32
OTHER = bytes([4]) * 32
UINT_MAX = (1 << 256) - 1

BASE: dict[str, Any] = dict(
    height=1_000, time_ms=1_700_000_000_000, seller=SELLER, buyer=BUYER, price=10_000,
    serial=7, times_resold=0, acquired_height=900, creator=CREATOR, royalty_bps=250, params=(),
)

# name -> (program source or stdlib name, list of (context changes, gas limit, mode))
CUSTOM = {
    "arith": "PUSH 6\nPUSH 7\nMUL\nPUSH 2\nSUB\nPUSH 3\nDIV\nPUSH 5\nMOD\nPUSH 9\nADD\n"
             "PUSH 4\nMIN\nPUSH 1\nMAX\nALLOW",
    "compare": "PUSH 1\nPUSH 2\nLT\nPUSH 2\nPUSH 1\nGT\nAND\nPUSH 3\nPUSH 3\nLE\nPUSH 3\nPUSH 4\n"
               "GE\nOR\nAND\nPUSH 0\nNOT\nAND\nALLOW",
    "stack": "PUSH 1\nPUSH 2\nPUSH 3\nDUP 3\nSWAP 2\nPOP\nADD\nADD\nALLOW",
    "addresses": f".const friends addrset 0x{BUYER.hex()} 0x{OTHER.hex()}\n"
                 f".const me bytes 0x{CREATOR.hex()}\n"
                 "CTX buyer\nINSET friends\nCTX creator\nCONST me\nEQ\nAND\n"
                 "CTX seller\nCTX buyer\nNE\nAND\nJUMPI ok\nDENY 999\nok:\nNPARAMS\nALLOW",
    "big_constant": f".const big int {UINT_MAX}\nCONST big\nPUSH 1\nSUB\nPUSH 0\nMUL\nALLOW",
    "overflow": f".const big int {UINT_MAX}\nCONST big\nPUSH 1\nADD\nALLOW",
    "mul_overflow": f".const big int {1 << 128}\nCONST big\nDUP 1\nMUL\nALLOW",
    "underflow": "PUSH 1\nPUSH 2\nSUB\nALLOW",
    "div_zero": "PUSH 1\nPUSH 0\nDIV\nALLOW",
    "mod_zero": "PUSH 1\nPUSH 0\nMOD\nALLOW",
    "missing_param": "PARAM 2\nALLOW",
    "royalty_too_big": "CTX price\nPUSH 1\nADD\nALLOW",
    "loop_forever": "top:\nCTX height\nPOP\nJUMP top",
    "count_to_ten": "PUSH 0\nloop:\nPUSH 1\nADD\nPUSH 10\nDUP 2\nGT\nJUMPI loop\nALLOW",
    "mode_switch": "CTX mode\nJUMPI q\nDENY 64\nq:\nCTX time_ms\nALLOW",
}


def ctx_json(changes: dict[str, Any]) -> dict[str, Any]:
    fields = {**BASE, **changes}
    return {k: (v.hex() if isinstance(v, bytes) else list(v) if isinstance(v, tuple) else v)
            for k, v in fields.items()}


def main() -> None:
    allow_friends = [BUYER, OTHER]
    cases: list[tuple[str, bytes, dict[str, Any], int, int]] = []
    std = {name: vm.stdlib.program(name) for name in vm.stdlib.names() if name != "allowlist"}
    std["allowlist"] = vm.stdlib.program("allowlist", allowlist=allow_friends)
    rule_cases: dict[str, list[dict[str, Any]]] = {
        "resale": [{}, {"price": 39}, {"price": 0}, {"royalty_bps": 10_000}, {"price": UINT_MAX, "royalty_bps": 1}],
        "soulbound": [{}, {"price": 0}],
        "hold_blocks": [{"params": (100,)}, {"height": 999, "params": (100,)}, {"params": ()},
                        {"params": (UINT_MAX,)}],
        "max_resales": [{"times_resold": 2, "params": (3,)}, {"times_resold": 3, "params": (3,)}],
        "price_band": [{"params": (100, 20_000)}, {"price": 99, "params": (100, 1_000)},
                       {"price": 1_001, "params": (100, 1_000)}, {"params": (100,)}],
        "allowlist": [{}, {"buyer": SELLER}],
        "expiring": [{"params": (1_001,)}, {"params": (1_000,)}, {"params": ()}],
    }
    for name, changes_list in rule_cases.items():
        for changes in changes_list:
            for mode in (vm.MODE_TRANSFER, vm.MODE_ENTITLEMENT):
                cases.append((f"stdlib/{name}", std[name], changes, 10_000, mode))
    cases.append(("stdlib/resale", std["resale"], {}, 13, vm.MODE_TRANSFER))
    for name, source in CUSTOM.items():
        program = vm.assemble(source)
        cases.append((name, program, {"params": (5, 6)}, 10_000, vm.MODE_TRANSFER))
        if name in ("loop_forever", "count_to_ten", "mode_switch"):
            cases.append((name, program, {}, 57, vm.MODE_TRANSFER))
            cases.append((name, program, {}, 10_000, vm.MODE_ENTITLEMENT))
    cases.append(("not_a_program", b"BHVM\x01\x00\x01\x10\x00", {}, 10_000, vm.MODE_TRANSFER))
    out = []
    for name, program, changes, gas, mode in cases:
        ctx = vm.Context(**{**BASE, **changes})
        verdict = vm.evaluate(program, ctx, gas, mode=mode)
        out.append({
            "name": name,
            "program": program.hex(),
            "context": ctx_json(changes),
            "gas_limit": gas,
            "mode": mode,
            "verdict": {"allow": verdict.allow, "royalty": verdict.royalty,
                        "reason": verdict.reason, "gas_used": verdict.gas_used},
        })
    PATH.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {len(out)} vectors to {PATH}")


if __name__ == "__main__":
    main()
