"""docs/vm.md states the opcode table and the context fields; they must match the code."""

from __future__ import annotations

import re
from pathlib import Path

import vm
from tests.vm import reference
from vm.opcodes import CONTEXT_FIELDS, CONTEXT_TYPES

DOC = (Path(__file__).resolve().parents[2] / "docs" / "vm.md").read_text()


def test_opcode_table_matches_the_code() -> None:
    rows = re.findall(r"^\| `0x([0-9a-f]{2})` \| `(\w+)` \| [^|]+ \| (\d+) \|", DOC, re.M)
    documented = {int(byte, 16): (name, int(gas)) for byte, name, gas in rows}
    actual = {code: (op.mnemonic, op.gas) for code, op in vm.OPCODES.items()}
    assert documented == actual
    # The reference interpreter's own gas copy agrees too.
    assert {name: gas for name, gas in actual.values()} == reference.GAS


def test_context_field_table_matches_the_code() -> None:
    rows = re.findall(r"^\| (\d+) \| `(\w+)` \| ([IB]) \|", DOC, re.M)
    assert [(int(n), name, kind) for n, name, kind in rows] == [
        (k, name, CONTEXT_TYPES[k]) for k, name in enumerate(CONTEXT_FIELDS)
    ]


def test_stdlib_reasons_are_documented() -> None:
    for name, code in vm.stdlib.REASONS.items():
        assert f"{code} {name}" in DOC


def test_documented_resale_bytes() -> None:
    assert vm.stdlib.program("resale").hex() == "4248564d01000a4004400912022710135000"
    assert "4248564d 01 000a  40 04  40 09  12  02 2710  13  50  00" in DOC
