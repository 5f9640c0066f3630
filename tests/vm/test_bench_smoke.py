"""benchmarks/vm.py runs (a small slice) and ends with the promised JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_quick_slice_prints_json_last() -> None:
    pytest.importorskip("eth", reason="py-evm is in the bench extra only; `make bench` installs it")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "vm.py"), "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for key in ("ops_per_s", "pyevm_ops_per_s", "ratio", "rule_eval_us_p50", "rule_eval_us_p99"):
        assert result[key] > 0, key
    assert result["loop_gas_used"] == 10 * result["loop_iterations"] + 4
