"""The interpreter: opcode semantics, traps as DENY verdicts, gas accounting."""

from __future__ import annotations

import pytest

import vm
from tests.vm.helpers import BUYER, CREATOR, SELLER, make_ctx, raw
from vm.errors import (
    REASON_DIVISION_BY_ZERO,
    REASON_INVALID_PROGRAM,
    REASON_MISSING_PARAM,
    REASON_OUT_OF_GAS,
    REASON_OVERFLOW,
    REASON_ROYALTY_EXCEEDS_PRICE,
    REASON_UNDERFLOW,
    ContextError,
    UsageError,
)
from vm.opcodes import OPCODES, UINT_MAX

GAS = 100_000


def value_of(source: str, ctx: vm.Context | None = None) -> int:
    """Run `source` (which leaves one integer) and return the integer it ALLOWs."""
    program = vm.assemble(source + "\nALLOW")
    verdict = vm.evaluate(program, ctx or make_ctx(price=UINT_MAX), GAS)
    assert verdict.allow, verdict
    return verdict.royalty


def deny_of(source: str, gas: int = GAS, ctx: vm.Context | None = None) -> vm.Verdict:
    verdict = vm.evaluate(vm.assemble(source), ctx or make_ctx(), gas)
    assert not verdict.allow
    return verdict


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("PUSH 7\nPUSH 5\nSUB", 2),
        ("PUSH 7\nPUSH 5\nADD", 12),
        ("PUSH 7\nPUSH 5\nMUL", 35),
        ("PUSH 7\nPUSH 2\nDIV", 3),
        ("PUSH 7\nPUSH 2\nMOD", 1),
        ("PUSH 7\nPUSH 2\nMIN", 2),
        ("PUSH 7\nPUSH 2\nMAX", 7),
        ("PUSH 7\nPUSH 2\nLT", 0),
        ("PUSH 2\nPUSH 7\nLT", 1),
        ("PUSH 7\nPUSH 2\nGT", 1),
        ("PUSH 7\nPUSH 7\nLE", 1),
        ("PUSH 6\nPUSH 7\nGE", 0),
        ("PUSH 7\nPUSH 7\nEQ", 1),
        ("PUSH 7\nPUSH 7\nNE", 0),
        ("PUSH 3\nPUSH 0\nAND", 0),
        ("PUSH 3\nPUSH 9\nAND", 1),
        ("PUSH 0\nPUSH 9\nOR", 1),
        ("PUSH 0\nPUSH 0\nOR", 0),
        ("PUSH 0\nNOT", 1),
        ("PUSH 5\nNOT", 0),
        ("PUSH 1\nPUSH 2\nPUSH 3\nDUP 3\nSWAP 3\nPOP\nPOP\nPOP", 1),
        ("PUSH 1\nPUSH 2\nPUSH 3\nSWAP 2\nPOP\nPOP", 3),
        ("PUSH4 0xffffffff\nPUSH2 0xffff\nADD", 0xFFFFFFFF + 0xFFFF),
        ("CTX seller\nCTX seller\nEQ", 1),
        ("CTX seller\nCTX buyer\nEQ", 0),
        ("CTX seller\nCTX buyer\nNE", 1),
        ("NPARAMS", 0),
        ("CTX mode", 0),
    ],
)
def test_opcode_semantics(source: str, expected: int) -> None:
    assert value_of(source) == expected


def test_context_loads() -> None:
    ctx = make_ctx(price=UINT_MAX, params=(11, 22, UINT_MAX))
    assert value_of("CTX height", ctx) == 1_000
    assert value_of("CTX time_ms", ctx) == 1_700_000_000_000
    assert value_of("CTX serial", ctx) == 7
    assert value_of("CTX times_resold", ctx) == 0
    assert value_of("CTX acquired_height", ctx) == 900
    assert value_of("CTX royalty_bps", ctx) == 250
    assert value_of("CTX price", ctx) == UINT_MAX
    assert value_of("PARAM 1", ctx) == 22
    assert value_of("PARAM 2", ctx) == UINT_MAX
    assert value_of("NPARAMS", ctx) == 3
    assert value_of(f".const me bytes 0x{CREATOR.hex()}\nCTX creator\nCONST me\nEQ", ctx) == 1


def test_big_constants_and_sets() -> None:
    source = f".const big int {UINT_MAX}\nCONST big\nPUSH 0\nADD"
    assert value_of(source) == UINT_MAX
    members = " ".join("0x" + a.hex() for a in sorted([SELLER, CREATOR]))
    assert value_of(f".const s addrset {members}\nCTX seller\nINSET s") == 1
    assert value_of(f".const s addrset {members}\nCTX buyer\nINSET s") == 0
    assert value_of(".const e addrset\nCTX buyer\nINSET e") == 0


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        (f".const big int {UINT_MAX}\nCONST big\nPUSH 1\nADD\nALLOW", REASON_OVERFLOW),
        (f".const big int {1 << 128}\nCONST big\nDUP 1\nMUL\nALLOW", REASON_OVERFLOW),
        ("PUSH 1\nPUSH 2\nSUB\nALLOW", REASON_UNDERFLOW),
        ("PUSH 1\nPUSH 0\nDIV\nALLOW", REASON_DIVISION_BY_ZERO),
        ("PUSH 1\nPUSH 0\nMOD\nALLOW", REASON_DIVISION_BY_ZERO),
    ],
)
def test_arithmetic_traps_deny_and_burn_gas(source: str, reason: int) -> None:
    assert deny_of(source, gas=500) == vm.Verdict(False, 0, reason, 500)


def test_mul_at_the_edge_does_not_trap() -> None:
    source = f".const half int {(1 << 128) - 1}\nCONST half\nDUP 1\nMUL"
    assert value_of(source) == ((1 << 128) - 1) ** 2


def test_missing_param_denies_with_gas_spent() -> None:
    # PARAM costs 2; the failing instruction's gas is charged.
    assert deny_of("PARAM 3\nALLOW", gas=500, ctx=make_ctx(params=(1, 2, 3))) == vm.Verdict(
        False, 0, REASON_MISSING_PARAM, 2
    )


def test_royalty_above_price_denies() -> None:
    source = "CTX price\nPUSH 1\nADD\nALLOW"
    assert deny_of(source) == vm.Verdict(False, 0, REASON_ROYALTY_EXCEEDS_PRICE, 6)
    assert vm.evaluate(vm.assemble("CTX price\nALLOW"), make_ctx(), GAS).royalty == 10_000


def test_program_deny_reason_and_gas() -> None:
    assert deny_of("PUSH 1\nPOP\nDENY 4242") == vm.Verdict(False, 0, 4242, 3)
    assert deny_of("DENY 65535").reason == 65535


def test_gas_is_charged_per_instruction_from_the_table() -> None:
    program = vm.verify(vm.assemble("PUSH 4\nPUSH 6\nMUL\nCTX height\nPOP\nJUMP end\nend:\nALLOW"))
    expected = sum(OPCODES[ins.opcode].gas for ins in program.instructions)
    assert vm.evaluate(program, make_ctx(), GAS).gas_used == expected == 1 + 1 + 4 + 2 + 1 + 3 + 1


def test_out_of_gas_exactly_at_the_boundary() -> None:
    program = vm.assemble("PUSH 4\nPUSH 6\nMUL\nALLOW")  # 1 + 1 + 4 + 1 = 7
    assert vm.evaluate(program, make_ctx(), 7) == vm.Verdict(True, 24, 0, 7)
    assert vm.evaluate(program, make_ctx(), 6) == vm.Verdict(False, 0, REASON_OUT_OF_GAS, 6)
    assert vm.evaluate(program, make_ctx(), 0) == vm.Verdict(False, 0, REASON_OUT_OF_GAS, 0)


def test_infinite_loop_stops_at_the_gas_limit() -> None:
    program = vm.assemble("top:\nJUMP top")
    for limit in (1, 2, 3, 1_000, 99_999):
        assert vm.evaluate(program, make_ctx(), limit) == vm.Verdict(
            False, 0, REASON_OUT_OF_GAS, limit
        )


def test_counting_loop_gas() -> None:
    source = "PUSH 0\nloop:\nPUSH 1\nADD\nPUSH 10\nDUP 2\nGT\nJUMPI loop\nALLOW"
    verdict = vm.evaluate(vm.assemble(source), make_ctx(price=100), GAS)
    assert verdict == vm.Verdict(True, 10, 0, 1 + 10 * (1 + 2 + 1 + 1 + 2 + 3) + 1)


def test_unverifiable_bytes_give_invalid_program() -> None:
    assert vm.evaluate(raw("ADD", "ALLOW"), make_ctx(), GAS) == vm.Verdict(
        False, 0, REASON_INVALID_PROGRAM, 0
    )
    assert vm.evaluate(b"junk", make_ctx(), GAS).reason == REASON_INVALID_PROGRAM
    assert not vm.entitled(b"junk", make_ctx(), GAS)


def test_bytes_and_program_agree() -> None:
    program = vm.stdlib.program("price_band")
    ctx = make_ctx(params=(1, 20_000))
    assert vm.evaluate(program, ctx, GAS) == vm.evaluate(vm.verify(program), ctx, GAS)


def test_entitlement_mode() -> None:
    reads_mode = vm.assemble("CTX mode\nALLOW")
    assert vm.evaluate(reads_mode, make_ctx(), GAS).royalty == 0
    verdict = vm.evaluate(reads_mode, make_ctx(price=0), GAS, mode=vm.MODE_ENTITLEMENT)
    assert verdict == vm.Verdict(True, 0, 0, 3)  # the royalty of an entitlement ALLOW is ignored
    assert vm.entitled(reads_mode, make_ctx(price=0), GAS)
    assert not vm.entitled(vm.assemble("DENY 64"), make_ctx(), GAS)


def test_usage_errors() -> None:
    program = vm.stdlib.program("resale")
    for bad in (-1, 1 << 63, 1.5, True):
        with pytest.raises(UsageError):
            vm.evaluate(program, make_ctx(), bad)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        vm.evaluate(program, object(), GAS)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        vm.evaluate(program, make_ctx(), GAS, mode=2)
    assert vm.evaluate("x", make_ctx(), GAS).reason == REASON_INVALID_PROGRAM  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes",
    [
        {"height": -1},
        {"height": 1 << 256},
        {"price": 1.0},
        {"price": True},
        {"serial": "7"},
        {"seller": b"\x01" * 31},
        {"buyer": "ab" * 32},
        {"creator": bytearray(32)},
        {"royalty_bps": 10_001},
        {"royalty_bps": -1},
        {"params": [1, 2]},
        {"params": (1, -2)},
        {"params": (1 << 256,)},
        {"params": tuple(range(257))},
    ],
)
def test_context_rejects_bad_fields(changes: dict[str, object]) -> None:
    with pytest.raises(ContextError):
        make_ctx(**changes)


def test_context_is_frozen_and_compares_by_value() -> None:
    a, b = make_ctx(params=(1,)), make_ctx(params=(1,))
    assert a == b
    assert make_ctx(buyer=SELLER) != make_ctx(buyer=BUYER)
    with pytest.raises(AttributeError):
        a.height = 5  # type: ignore[misc]


def test_error_classes_carry_documented_reasons() -> None:
    from vm import errors

    table = {
        errors.OutOfGas: (2, True),
        errors.Overflow: (3, True),
        errors.Underflow: (4, True),
        errors.DivisionByZero: (5, True),
        errors.MissingParam: (6, False),
        errors.RoyaltyExceedsPrice: (7, False),
    }
    for cls, (reason, burns) in table.items():
        assert issubclass(cls, errors.ExecutionError)
        assert issubclass(cls, errors.VMError)
        assert (cls.reason, cls.burns_gas) == (reason, burns)
    for other in (errors.VerifyError, errors.AssemblyError, errors.ContextError, errors.UsageError):
        assert issubclass(other, errors.VMError)
        assert not issubclass(other, errors.ExecutionError)
