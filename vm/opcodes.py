"""The opcode table: one entry per opcode byte, as data.

Each opcode is a plain function `fn(stack, arg, index, env) -> next_index`
operating on the run's stack (a Python list whose top is the end), the
instruction's pre-decoded immediate `arg`, its instruction index and the run's
environment tuple (the context fields, then the class parameters). It returns
the index of the next instruction. Gas is not charged here: the interpreter
charges `Opcode.gas` in one place before calling `fn`.

The static typing columns (`pops`, `pushes`) drive the verifier: `I` is a
256-bit unsigned integer, `B` a byte string (addresses), `X` any one type (the
same type wherever `X` repeats in one entry). Opcodes whose effect depends on
their immediate (DUP, SWAP, CONST, CTX) are typed by the verifier itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vm.errors import DivisionByZero, MissingParam, Overflow, Underflow

UINT_MAX = (1 << 256) - 1

# Context fields in CTX order; the types say which ones are addresses.
CONTEXT_FIELDS: tuple[str, ...] = (
    "height",
    "time_ms",
    "seller",
    "buyer",
    "price",
    "serial",
    "times_resold",
    "acquired_height",
    "creator",
    "royalty_bps",
    "mode",
)
CONTEXT_TYPES: tuple[str, ...] = ("I", "I", "B", "B", "I", "I", "I", "I", "B", "I", "I")
PARAMS_SLOT = len(CONTEXT_FIELDS)  # env[PARAMS_SLOT] is the params tuple

# Immediate kinds: how many bytes follow the opcode and what they mean.
IMM_NONE = "none"
IMM_U8 = "u8"
IMM_U16 = "u16"
IMM_U32 = "u32"
IMM_TARGET = "target"  # u16 byte offset in the code section
IMM_CONST = "const"  # u8 constant-pool index
IMM_FIELD = "field"  # u8 context field index
IMM_REASON = "reason"  # u16 program reason code
IMM_SIZES = {
    IMM_NONE: 0,
    IMM_U8: 1,
    IMM_U16: 2,
    IMM_U32: 4,
    IMM_TARGET: 2,
    IMM_CONST: 1,
    IMM_FIELD: 1,
    IMM_REASON: 2,
}

# Control-flow kinds.
FLOW_NEXT = "next"  # continues with the next instruction
FLOW_JUMP = "jump"  # always jumps to its target
FLOW_BRANCH = "branch"  # jumps or continues
FLOW_HALT = "halt"  # ends the run with a verdict

Op = Callable[[list[Any], Any, int, tuple[Any, ...]], int]


@dataclass(frozen=True, slots=True)
class Opcode:
    """One row of the table."""

    mnemonic: str
    """Assembly name."""
    gas: int
    """Gas charged before the instruction runs."""
    fn: Op
    """Implementation; see the module docstring."""
    imm: str = IMM_NONE
    """Kind of immediate operand that follows the opcode byte."""
    pops: str = ""
    """Operand types popped, deepest first ('' for special-cased opcodes)."""
    pushes: str = ""
    """Result types pushed."""
    flow: str = FLOW_NEXT
    """How control continues after the instruction."""


# --- stack ------------------------------------------------------------------


def op_push(s: list[Any], a: Any, i: int, x: tuple[Any, ...]) -> int:
    s.append(a)
    return i + 1


def op_pop(s: list[Any], a: Any, i: int, x: tuple[Any, ...]) -> int:
    s.pop()
    return i + 1


def op_dup(s: list[Any], a: Any, i: int, x: tuple[Any, ...]) -> int:
    s.append(s[-a])
    return i + 1


def op_swap(s: list[Any], a: Any, i: int, x: tuple[Any, ...]) -> int:
    j = -1 - a
    s[-1], s[j] = s[j], s[-1]
    return i + 1


# --- arithmetic (unsigned 256-bit, trapping) ---------------------------------


def op_add(s: list[Any], a: Any, i: int, x: tuple[Any, ...]) -> int:
    b = s.pop()
    r = s[-1] + b
    if r > UINT_MAX:
        raise Overflow("ADD result exceeds 2**256-1")
    s[-1] = r
    return i + 1


def op_sub(s: list[Any], a: Any, i: int, x: tuple[Any, ...]) -> int:
    b = s.pop()
    r = s[-1] - b
    if r < 0:
        raise Underflow("SUB result below zero")
    s[-1] = r
    return i + 1


def op_mul(s: list[Any], a: Any, i: int, x: tuple[Any, ...]) -> int:
    b = s.pop()
    r = s[-1] * b
    if r > UINT_MAX:
        raise Overflow("MUL result exceeds 2**256-1")
    s[-1] = r
    return i + 1


def op_div(s: list[Any], a: Any, i: int, x: tuple[Any, ...]) -> int:
    b = s.pop()
    if not b:
        raise DivisionByZero("DIV by zero")
    s[-1] //= b
    return i + 1


def op_mod(s: list[Any], a: Any, i: int, x: tuple[Any, ...]) -> int:
    b = s.pop()
    if not b:
        raise DivisionByZero("MOD by zero")
    s[-1] %= b
    return i + 1


def op_min(s: list[Any], a: Any, i: int, x: tuple[Any, ...]) -> int:
    b = s.pop()
    if b < s[-1]:
        s[-1] = b
    return i + 1


def op_max(s: list[Any], a: Any, i: int, x: tuple[Any, ...]) -> int:
    b = s.pop()
    if b > s[-1]:
        s[-1] = b
    return i + 1


# --- comparisons and boolean logic (results are 0 or 1) -----------------------


def op_eq(s: list[Any], a: Any, i: int, x: tuple[Any, ...]) -> int:
    b = s.pop()
    s[-1] = 1 if s[-1] == b else 0
    return i + 1


def op_ne(s: list[Any], a: Any, i: int, x: tuple[Any, ...]) -> int:
    b = s.pop()
    s[-1] = 1 if s[-1] != b else 0
    return i + 1


def op_lt(s: list[Any], a: Any, i: int, x: tuple[Any, ...]) -> int:
    b = s.pop()
    s[-1] = 1 if s[-1] < b else 0
    return i + 1


def op_gt(s: list[Any], a: Any, i: int, x: tuple[Any, ...]) -> int:
    b = s.pop()
    s[-1] = 1 if s[-1] > b else 0
    return i + 1


def op_le(s: list[Any], a: Any, i: int, x: tuple[Any, ...]) -> int:
    b = s.pop()
    s[-1] = 1 if s[-1] <= b else 0
    return i + 1


def op_ge(s: list[Any], a: Any, i: int, x: tuple[Any, ...]) -> int:
    b = s.pop()
    s[-1] = 1 if s[-1] >= b else 0
    return i + 1


def op_and(s: list[Any], a: Any, i: int, x: tuple[Any, ...]) -> int:
    b = s.pop()
    s[-1] = 1 if s[-1] and b else 0
    return i + 1


def op_or(s: list[Any], a: Any, i: int, x: tuple[Any, ...]) -> int:
    b = s.pop()
    s[-1] = 1 if s[-1] or b else 0
    return i + 1


def op_not(s: list[Any], a: Any, i: int, x: tuple[Any, ...]) -> int:
    s[-1] = 0 if s[-1] else 1
    return i + 1


# --- control flow -------------------------------------------------------------


def op_jump(s: list[Any], a: Any, i: int, x: tuple[Any, ...]) -> int:
    return a  # type: ignore[no-any-return]


def op_jumpi(s: list[Any], a: Any, i: int, x: tuple[Any, ...]) -> int:
    if s.pop():
        return a  # type: ignore[no-any-return]
    return i + 1


# The halting opcodes leave their result alone on the stack and return the
# index of a sentinel instruction placed after the program (`a` is that index,
# filled in by pre-decoding); the interpreter recognises the sentinel.


def op_allow(s: list[Any], a: Any, i: int, x: tuple[Any, ...]) -> int:
    royalty = s[-1]
    s.clear()
    s.append(royalty)
    return a  # type: ignore[no-any-return]


def op_deny(s: list[Any], a: Any, i: int, x: tuple[Any, ...]) -> int:
    s.clear()
    s.append(a[1])
    return a[0]  # type: ignore[no-any-return]


# --- context, parameters, constant sets ---------------------------------------


def op_ctx(s: list[Any], a: Any, i: int, x: tuple[Any, ...]) -> int:
    s.append(x[a])
    return i + 1


def op_param(s: list[Any], a: Any, i: int, x: tuple[Any, ...]) -> int:
    params = x[PARAMS_SLOT]
    if a >= len(params):
        raise MissingParam(f"PARAM {a}: the key class has {len(params)} parameter(s)")
    s.append(params[a])
    return i + 1


def op_nparams(s: list[Any], a: Any, i: int, x: tuple[Any, ...]) -> int:
    s.append(len(x[PARAMS_SLOT]))
    return i + 1


def op_inset(s: list[Any], a: Any, i: int, x: tuple[Any, ...]) -> int:
    s[-1] = 1 if s[-1] in a else 0
    return i + 1


OPCODES: dict[int, Opcode] = {
    0x01: Opcode("PUSH1", 1, op_push, IMM_U8, "", "I"),
    0x02: Opcode("PUSH2", 1, op_push, IMM_U16, "", "I"),
    0x03: Opcode("PUSH4", 1, op_push, IMM_U32, "", "I"),
    0x04: Opcode("CONST", 1, op_push, IMM_CONST),
    0x08: Opcode("POP", 1, op_pop, IMM_NONE, "X", ""),
    0x09: Opcode("DUP", 1, op_dup, IMM_U8),
    0x0A: Opcode("SWAP", 1, op_swap, IMM_U8),
    0x10: Opcode("ADD", 2, op_add, IMM_NONE, "II", "I"),
    0x11: Opcode("SUB", 2, op_sub, IMM_NONE, "II", "I"),
    0x12: Opcode("MUL", 4, op_mul, IMM_NONE, "II", "I"),
    0x13: Opcode("DIV", 4, op_div, IMM_NONE, "II", "I"),
    0x14: Opcode("MOD", 4, op_mod, IMM_NONE, "II", "I"),
    0x15: Opcode("MIN", 2, op_min, IMM_NONE, "II", "I"),
    0x16: Opcode("MAX", 2, op_max, IMM_NONE, "II", "I"),
    0x20: Opcode("EQ", 2, op_eq, IMM_NONE, "XX", "I"),
    0x21: Opcode("NE", 2, op_ne, IMM_NONE, "XX", "I"),
    0x22: Opcode("LT", 2, op_lt, IMM_NONE, "II", "I"),
    0x23: Opcode("GT", 2, op_gt, IMM_NONE, "II", "I"),
    0x24: Opcode("LE", 2, op_le, IMM_NONE, "II", "I"),
    0x25: Opcode("GE", 2, op_ge, IMM_NONE, "II", "I"),
    0x28: Opcode("AND", 2, op_and, IMM_NONE, "II", "I"),
    0x29: Opcode("OR", 2, op_or, IMM_NONE, "II", "I"),
    0x2A: Opcode("NOT", 2, op_not, IMM_NONE, "I", "I"),
    0x30: Opcode("JUMP", 3, op_jump, IMM_TARGET, "", "", FLOW_JUMP),
    0x31: Opcode("JUMPI", 3, op_jumpi, IMM_TARGET, "I", "", FLOW_BRANCH),
    0x40: Opcode("CTX", 2, op_ctx, IMM_FIELD),
    0x41: Opcode("PARAM", 2, op_param, IMM_U8, "", "I"),
    0x42: Opcode("NPARAMS", 2, op_nparams, IMM_NONE, "", "I"),
    0x43: Opcode("INSET", 5, op_inset, IMM_CONST, "B", "I"),
    0x50: Opcode("ALLOW", 1, op_allow, IMM_NONE, "I", "", FLOW_HALT),
    0x51: Opcode("DENY", 1, op_deny, IMM_REASON, "", "", FLOW_HALT),
}

BY_MNEMONIC: dict[str, int] = {op.mnemonic: code for code, op in OPCODES.items()}

MAX_DUP = 16  # DUP n copies the n-th item from the top, 1 <= n <= 16
MAX_SWAP = 16  # SWAP n swaps the top with the item n below it, 1 <= n <= 16
