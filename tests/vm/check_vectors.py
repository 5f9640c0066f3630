"""Evaluate the golden vectors and print the verdicts as JSON (one line).

Run in a fresh interpreter by tests/vm/test_vectors.py so that the results do
not depend on anything the test process did first (caches, hash seeds).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import vm


def context_of(fields: dict[str, Any]) -> vm.Context:
    return vm.Context(
        height=fields["height"],
        time_ms=fields["time_ms"],
        seller=bytes.fromhex(fields["seller"]),
        buyer=bytes.fromhex(fields["buyer"]),
        price=fields["price"],
        serial=fields["serial"],
        times_resold=fields["times_resold"],
        acquired_height=fields["acquired_height"],
        creator=bytes.fromhex(fields["creator"]),
        royalty_bps=fields["royalty_bps"],
        params=tuple(fields["params"]),
    )


def results(vectors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for vector in vectors:
        verdict = vm.evaluate(bytes.fromhex(vector["program"]), context_of(vector["context"]),
                              vector["gas_limit"], mode=vector["mode"])
        out.append({"allow": verdict.allow, "royalty": verdict.royalty,
                    "reason": verdict.reason, "gas_used": verdict.gas_used})
    return out


if __name__ == "__main__":
    data = json.loads(Path(sys.argv[1]).read_text())
    print(json.dumps(results(data)))
