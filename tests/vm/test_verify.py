"""The static verifier: each rule rejects what it must, with a VerifyError."""

from __future__ import annotations

import pytest

import vm
from tests.vm.helpers import raw
from vm.errors import VerifyError
from vm.program import MAGIC, MAX_CODE, MAX_CONSTANTS, MAX_STACK, AddressSet, encode_program

ADDR = bytes([7]) * 32


def allow0(*prefix: str) -> str:
    return "\n".join([*prefix, "PUSH1 0", "ALLOW"])


def test_minimal_program_verifies() -> None:
    program = vm.verify(vm.assemble("PUSH1 0\nALLOW"))
    assert program.max_stack == 1
    assert program.code == bytes([0x01, 0x00, 0x50])
    assert program.constants == ()
    assert program.raw.startswith(MAGIC + b"\x01")


@pytest.mark.parametrize(
    ("description", "data", "message"),
    [
        ("empty", b"", "bad magic"),
        ("wrong magic", b"EVM!\x01\x00\x01\x50\x00", "bad magic"),
        ("unknown version", MAGIC + b"\x02\x00\x03\x01\x00\x50\x00", "version 2"),
        ("truncated header", MAGIC + b"\x01\x00", "bad magic"),
        ("empty code", MAGIC + b"\x01\x00\x00\x00", "empty code"),
        ("code length beyond data", MAGIC + b"\x01\x00\x09\x01\x00\x50", "truncated code"),
        ("code length over cap", MAGIC + b"\x01\x10\x01" + b"\x50" * 4097 + b"\x00", "code larger"),
        ("missing constant count", MAGIC + b"\x01\x00\x03\x01\x00\x50", "missing constant count"),
        ("trailing byte", raw("PUSH1", 0, "ALLOW") + b"\x00", "trailing"),
        ("unknown constant tag", raw("PUSH1", 0, "ALLOW")[:-1] + b"\x01\x07", "unknown tag"),
        ("non-minimal int", raw("PUSH1", 0, "ALLOW")[:-1] + b"\x01\x00\x02\x00\x05", "minimally"),
        ("int longer than 32 bytes", raw("PUSH1", 0, "ALLOW")[:-1] + b"\x01\x00\x21" + b"\x01" * 33,
         "longer than 32"),
        ("truncated bytes constant", raw("PUSH1", 0, "ALLOW")[:-1] + b"\x01\x01\x00\x05ab",
         "truncated byte string"),
        ("unsorted address set", raw("PUSH1", 0, "ALLOW")[:-1] + b"\x01\x02\x00\x02"
         + bytes([2]) * 32 + bytes([1]) * 32, "strictly ascending"),
        ("duplicate address", raw("PUSH1", 0, "ALLOW")[:-1] + b"\x01\x02\x00\x02" + ADDR * 2,
         "strictly ascending"),
        ("unknown opcode", raw("PUSH1", 0, 0xFF, "ALLOW"), "unknown opcode 0xff"),
        ("truncated immediate", raw("PUSH1", 0, "ALLOW", "PUSH2", 1), "truncated immediate"),
        ("falls off the end", raw("PUSH1", 0, "PUSH1", 0, "ALLOW", "PUSH1", 1), "last instruction"),
        ("branch falls off", raw("PUSH1", 0, "JUMPI", b"\x00\x00"), "last instruction"),
        ("jump into immediate", raw("PUSH1", 0, "JUMP", b"\x00\x01"), "not an instruction boundary"),
        ("jump past the end", raw("JUMP", b"\x00\x03"), "not an instruction boundary"),
        ("constant out of range", raw("CONST", 0, "ALLOW"), "constant index 0 out of range"),
        ("CONST of an address set", raw("CONST", 0, "ALLOW", constants=(AddressSet((ADDR,)),)),
         "is an address set"),
        ("INSET of an integer", raw("CTX", 3, "INSET", 0, "ALLOW", constants=(5,)),
         "not an address set"),
        ("unknown context field", raw("CTX", 11, "ALLOW"), "unknown context field"),
        ("program reason below 64", raw("DENY", b"\x00\x3f"), "reason 63"),
        ("DUP 0", raw("PUSH1", 0, "DUP", 0, "ALLOW"), "DUP: depth 0"),
        ("SWAP 17", raw("PUSH1", 0, "SWAP", 17, "ALLOW"), "SWAP: depth 17"),
        ("underflow", raw("PUSH1", 0, "ADD", "ALLOW"), "needs 2 operand"),
        ("ALLOW on empty stack", raw("ALLOW"), "needs 1 operand"),
        ("DUP deeper than stack", raw("PUSH1", 0, "DUP", 2, "ALLOW"), "DUP 2 with stack depth 1"),
        ("SWAP deeper than stack", raw("PUSH1", 0, "SWAP", 1, "ALLOW"), "SWAP 1"),
        ("add an address", raw("CTX", 2, "PUSH1", 1, "ADD", "ALLOW"), "must be an integer"),
        ("allow an address", raw("CTX", 2, "ALLOW"), "must be an integer"),
        ("compare address with int", raw("CTX", 2, "PUSH1", 1, "EQ", "ALLOW"), "different types"),
        ("INSET an integer", raw("PUSH1", 1, "INSET", 0, "ALLOW", constants=(AddressSet(()),)),
         "byte string"),
        ("branch on an address", raw("CTX", 2, "JUMPI", b"\x00\x00", "DENY", b"\x00\x40"),
         "must be an integer"),
        ("shapes differ at a join", raw("PUSH1", 1, "JUMPI", b"\x00\x07", "PUSH1", 2,
                                        "PUSH1", 0, "ALLOW"), "stack shapes differ"),
        ("loop that grows the stack", raw("PUSH1", 1, "JUMP", b"\x00\x00"), "stack shapes differ"),
    ],
)
def test_rejects(description: str, data: bytes, message: str) -> None:
    with pytest.raises(VerifyError, match=message):
        vm.verify(data)


def test_stack_cap_is_enforced() -> None:
    ok = "\n".join(["PUSH1 1"] * MAX_STACK + ["ALLOW"])
    assert vm.verify(vm.assemble(ok)).max_stack == MAX_STACK
    too_deep = "\n".join(["PUSH1 1"] * (MAX_STACK + 1) + ["ALLOW"])
    with pytest.raises(VerifyError, match=f"exceeds {MAX_STACK}"):
        vm.verify(vm.assemble(too_deep, check=False))


def test_code_cap_is_enforced() -> None:
    body = bytes([0x01, 0x00, 0x08]) * ((MAX_CODE - 3) // 3)
    program = encode_program(body + bytes([0x01, 0x00, 0x50]), ())
    assert len(vm.verify(program).code) <= MAX_CODE
    with pytest.raises(VerifyError, match="code larger"):
        encode_program(bytes(MAX_CODE + 1), ())


def test_constant_pool_cap_is_enforced() -> None:
    fits = [bytes(MAX_CONSTANTS - 4)]  # count byte + tag + u16 length + body
    program = encode_program(bytes([0x01, 0x00, 0x50]), fits)
    assert vm.verify(program).constants == tuple(fits)
    with pytest.raises(VerifyError, match="constant pool larger"):
        encode_program(bytes([0x01, 0x00, 0x50]), [bytes(MAX_CONSTANTS - 3)])
    too_big = program[:-1] + b"\x00\x00"
    with pytest.raises(VerifyError):
        vm.verify(too_big)


def test_unreachable_code_is_allowed_but_must_decode() -> None:
    assert vm.verify(vm.assemble("PUSH1 0\nALLOW\nADD\nALLOW"))
    with pytest.raises(VerifyError, match="unknown opcode"):
        vm.verify(raw("PUSH1", 0, "ALLOW", 0xEE, "ALLOW"))


def test_loop_with_balanced_stack_verifies() -> None:
    program = vm.verify(vm.assemble("top:\nCTX height\nPOP\nJUMP top"))
    assert program.max_stack == 1


def test_non_bytes_rejected() -> None:
    with pytest.raises(VerifyError):
        vm.verify("PUSH1 0")  # type: ignore[arg-type]


def test_error_offsets_point_at_the_instruction() -> None:
    with pytest.raises(VerifyError) as info:
        vm.verify(raw("PUSH1", 0, "PUSH1", 0, "ADD", "ADD", "ALLOW"))
    assert info.value.offset == 5
