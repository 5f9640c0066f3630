"""Golden vectors (tests/vm/vectors.json): same verdicts here, in a fresh process
and in the reference interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import vm
from tests.vm import reference
from tests.vm.check_vectors import context_of, results

PATH = Path(__file__).with_name("vectors.json")
ROOT = Path(__file__).resolve().parents[2]
VECTORS: list[dict[str, Any]] = json.loads(PATH.read_text())


def test_vectors_cover_every_rule_and_every_vm_reason() -> None:
    names = {v["name"] for v in VECTORS}
    assert {f"stdlib/{n}" for n in vm.stdlib.names()} <= names
    reasons = {v["verdict"]["reason"] for v in VECTORS}
    assert set(range(1, 8)) <= reasons  # INVALID_PROGRAM .. ROYALTY_EXCEEDS_PRICE
    assert set(vm.stdlib.REASONS.values()) <= reasons
    assert {v["mode"] for v in VECTORS} == {vm.MODE_TRANSFER, vm.MODE_ENTITLEMENT}


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_vector_in_process(vector: dict[str, Any]) -> None:
    program = bytes.fromhex(vector["program"])
    ctx = context_of(vector["context"])
    verdict = vm.evaluate(program, ctx, vector["gas_limit"], mode=vector["mode"])
    assert verdict == vm.Verdict(**vector["verdict"])
    if vector["mode"] == vm.MODE_ENTITLEMENT:
        assert vm.entitled(program, ctx, vector["gas_limit"]) == verdict.allow
    if vector["verdict"]["reason"] != 1:
        expected, _ = reference.run(vm.verify(program), ctx, vector["gas_limit"], vector["mode"])
        assert verdict == expected


def test_stdlib_programs_are_byte_identical_to_the_vectors() -> None:
    for vector in VECTORS:
        name = vector["name"]
        if name.startswith("stdlib/") and name != "stdlib/allowlist":
            assert vm.stdlib.program(name.split("/", 1)[1]).hex() == vector["program"]


def test_vectors_in_a_fresh_process() -> None:
    env = {**os.environ, "PYTHONHASHSEED": "4242", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "tests.vm.check_vectors", str(PATH)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    fresh = json.loads(done.stdout.strip().splitlines()[-1])
    assert fresh == [v["verdict"] for v in VECTORS]
    assert fresh == results(VECTORS)
