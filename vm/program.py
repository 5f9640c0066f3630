"""Bytecode container, static verifier and pre-decoding.

Theory of operation. A program is checked once, when its key class is created,
and every later run relies on what was proved here:

1. The container is parsed strictly: magic, version, code length, code, the
   constant pool in its one canonical encoding, nothing trailing, sizes within
   the caps.
2. The code is decoded linearly into instructions. Unknown opcodes and
   truncated immediates are rejected, so every byte belongs to exactly one
   instruction and jump targets can be checked against instruction starts.
3. Immediates are checked on their own: constant indices in range and of the
   right kind, DUP/SWAP depths, context field numbers, DENY reason range.
4. The last instruction must not continue to a next one (JUMP, ALLOW or DENY):
   control can never fall off the end.
5. An abstract interpretation over the control-flow graph gives every
   reachable instruction one stack shape (a tuple of value types). Where two
   paths meet, their shapes must be identical; operands must have the types
   the opcode needs; the depth never exceeds MAX_STACK. Hence at run time a
   verified program never underflows or overflows its stack and never applies
   an opcode to a value of the wrong type: the only run-time failures are the
   documented `ExecutionError`s.

Pre-decoding then turns the instructions into a tuple of `(fn, arg, gas)`
triples indexed by instruction number (jump targets rewritten from byte
offsets to indices), followed by two sentinel entries that mark ALLOW and DENY.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from vm.errors import FIRST_PROGRAM_REASON, LAST_PROGRAM_REASON, VerifyError
from vm.opcodes import (
    CONTEXT_FIELDS,
    CONTEXT_TYPES,
    FLOW_BRANCH,
    FLOW_HALT,
    FLOW_JUMP,
    IMM_CONST,
    IMM_FIELD,
    IMM_NONE,
    IMM_REASON,
    IMM_SIZES,
    IMM_TARGET,
    MAX_DUP,
    MAX_SWAP,
    OPCODES,
    Opcode,
)

MAGIC = b"BHVM"
VERSION = 1
HEADER_SIZE = len(MAGIC) + 1 + 2
MAX_CODE = 4096
MAX_CONSTANTS = 4096  # bytes of the constant-pool section, its count byte included
MAX_STACK = 64
MAX_PROGRAM = HEADER_SIZE + MAX_CODE + MAX_CONSTANTS
ADDRESS_SIZE = 32

TAG_INT = 0
TAG_BYTES = 1
TAG_ADDRSET = 2

# Added to a sentinel's gas so that reaching it drives the gas counter below
# zero: the interpreter detects the end of a run on the same branch as
# OutOfGas and pays nothing per instruction for it. Gas limits stay below it.
HALT_COST = 1 << 100
MAX_GAS_LIMIT = (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class AddressSet:
    """A constant set of 32-byte addresses, kept sorted (its canonical order)."""

    members: tuple[bytes, ...]
    """The addresses, strictly ascending."""

    @classmethod
    def of(cls, addresses: Any) -> AddressSet:
        """Build from any iterable of 32-byte strings (sorted, duplicates dropped)."""
        found: set[bytes] = set()
        for item in addresses:
            if not isinstance(item, bytes) or len(item) != ADDRESS_SIZE:
                raise VerifyError("an address set member must be 32 bytes")
            found.add(item)
        return cls(tuple(sorted(found)))


Constant = int | bytes | AddressSet


@dataclass(frozen=True, slots=True)
class Instruction:
    """One decoded instruction of the code section."""

    offset: int
    """Byte offset of the opcode in the code section."""
    opcode: int
    """The opcode byte."""
    imm: int
    """The raw immediate as an unsigned big-endian integer (0 when there is none)."""


@dataclass(frozen=True, slots=True)
class Program:
    """A verified program. Only `verify` builds one."""

    raw: bytes
    """The exact program bytes that were verified."""
    version: int
    """Bytecode version."""
    code: bytes
    """The code section."""
    constants: tuple[Constant, ...]
    """The constant pool in index order."""
    instructions: tuple[Instruction, ...]
    """The decoded code."""
    max_stack: int
    """The statically computed maximum stack depth."""
    ops: tuple[tuple[Any, Any, int], ...] = field(repr=False, compare=False)
    """Pre-decoded `(fn, arg, gas)` triples plus the ALLOW and DENY sentinels."""


def _parse_constants(data: bytes, start: int) -> tuple[Constant, ...]:
    if len(data) - start > MAX_CONSTANTS:
        raise VerifyError(f"constant pool larger than {MAX_CONSTANTS} bytes")
    if start >= len(data):
        raise VerifyError("missing constant count")
    count = data[start]
    pos = start + 1
    end = len(data)
    out: list[Constant] = []
    for index in range(count):
        if pos >= end:
            raise VerifyError(f"constant {index}: truncated")
        tag = data[pos]
        pos += 1
        if tag == TAG_INT:
            if pos >= end:
                raise VerifyError(f"constant {index}: truncated integer")
            size = data[pos]
            pos += 1
            if size > 32:
                raise VerifyError(f"constant {index}: integer longer than 32 bytes")
            if pos + size > end:
                raise VerifyError(f"constant {index}: truncated integer")
            body = data[pos : pos + size]
            if size and body[0] == 0:
                raise VerifyError(f"constant {index}: integer not minimally encoded")
            out.append(int.from_bytes(body, "big"))
            pos += size
        elif tag == TAG_BYTES:
            if pos + 2 > end:
                raise VerifyError(f"constant {index}: truncated byte string")
            size = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
            if pos + size > end:
                raise VerifyError(f"constant {index}: truncated byte string")
            out.append(bytes(data[pos : pos + size]))
            pos += size
        elif tag == TAG_ADDRSET:
            if pos + 2 > end:
                raise VerifyError(f"constant {index}: truncated address set")
            n = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
            if pos + n * ADDRESS_SIZE > end:
                raise VerifyError(f"constant {index}: truncated address set")
            members = tuple(
                bytes(data[pos + k * ADDRESS_SIZE : pos + (k + 1) * ADDRESS_SIZE]) for k in range(n)
            )
            pos += n * ADDRESS_SIZE
            if any(members[k] >= members[k + 1] for k in range(n - 1)):
                raise VerifyError(f"constant {index}: address set not strictly ascending")
            out.append(AddressSet(members))
        else:
            raise VerifyError(f"constant {index}: unknown tag {tag}")
    if pos != end:
        raise VerifyError(f"{end - pos} trailing byte(s) after the constant pool")
    return tuple(out)


def encode_constants(constants: Sequence[Constant]) -> bytes:
    """The canonical encoding of a constant pool (count byte first)."""
    if len(constants) > 255:
        raise VerifyError("more than 255 constants")
    parts = [bytes([len(constants)])]
    for index, value in enumerate(constants):
        if isinstance(value, bool):
            raise VerifyError(f"constant {index}: bool is not an integer constant")
        if isinstance(value, int):
            if value < 0 or value >> 256:
                raise VerifyError(f"constant {index}: integer outside 0..2**256-1")
            body = value.to_bytes((value.bit_length() + 7) // 8, "big")
            parts.append(bytes([TAG_INT, len(body)]) + body)
        elif isinstance(value, bytes):
            if len(value) > 0xFFFF:
                raise VerifyError(f"constant {index}: byte string too long")
            parts.append(bytes([TAG_BYTES]) + len(value).to_bytes(2, "big") + value)
        elif isinstance(value, AddressSet):
            parts.append(
                bytes([TAG_ADDRSET]) + len(value.members).to_bytes(2, "big") + b"".join(value.members)
            )
        else:
            raise VerifyError(f"constant {index}: unsupported type {type(value).__name__}")
    pool = b"".join(parts)
    if len(pool) > MAX_CONSTANTS:
        raise VerifyError(f"constant pool larger than {MAX_CONSTANTS} bytes")
    return pool


def encode_program(code: bytes, constants: Sequence[Constant]) -> bytes:
    """Assemble the container bytes (no verification of the code)."""
    if len(code) > MAX_CODE:
        raise VerifyError(f"code larger than {MAX_CODE} bytes")
    return MAGIC + bytes([VERSION]) + len(code).to_bytes(2, "big") + code + encode_constants(constants)


def decode_instructions(code: bytes) -> list[Instruction]:
    """Split the code section into instructions; unknown opcodes and truncation fail."""
    out: list[Instruction] = []
    pos = 0
    n = len(code)
    while pos < n:
        opcode = code[pos]
        op = OPCODES.get(opcode)
        if op is None:
            raise VerifyError(f"unknown opcode 0x{opcode:02x}", pos)
        size = IMM_SIZES[op.imm]
        if pos + 1 + size > n:
            raise VerifyError(f"{op.mnemonic}: truncated immediate", pos)
        imm = int.from_bytes(code[pos + 1 : pos + 1 + size], "big") if size else 0
        out.append(Instruction(pos, opcode, imm))
        pos += 1 + size
    return out


def _check_immediate(ins: Instruction, op: Opcode, constants: tuple[Constant, ...],
                     starts: dict[int, int]) -> None:
    imm = ins.imm
    name = op.mnemonic
    if op.imm == IMM_TARGET:
        if imm not in starts:
            raise VerifyError(f"{name}: target {imm} is not an instruction boundary", ins.offset)
    elif op.imm == IMM_CONST:
        if imm >= len(constants):
            raise VerifyError(f"{name}: constant index {imm} out of range", ins.offset)
        value = constants[imm]
        if name == "INSET" and not isinstance(value, AddressSet):
            raise VerifyError(f"INSET: constant {imm} is not an address set", ins.offset)
        if name == "CONST" and isinstance(value, AddressSet):
            raise VerifyError(f"CONST: constant {imm} is an address set", ins.offset)
    elif op.imm == IMM_FIELD:
        if imm >= len(CONTEXT_FIELDS):
            raise VerifyError(f"CTX: unknown context field {imm}", ins.offset)
    elif op.imm == IMM_REASON:
        if not FIRST_PROGRAM_REASON <= imm <= LAST_PROGRAM_REASON:
            raise VerifyError(
                f"DENY: reason {imm} outside {FIRST_PROGRAM_REASON}..{LAST_PROGRAM_REASON}",
                ins.offset,
            )
    elif name == "DUP":
        if not 1 <= imm <= MAX_DUP:
            raise VerifyError(f"DUP: depth {imm} outside 1..{MAX_DUP}", ins.offset)
    elif name == "SWAP" and not 1 <= imm <= MAX_SWAP:
        raise VerifyError(f"SWAP: depth {imm} outside 1..{MAX_SWAP}", ins.offset)


def _step(ins: Instruction, op: Opcode, stack: tuple[str, ...],
          constants: tuple[Constant, ...]) -> tuple[str, ...]:
    """The stack shape after `ins`, or VerifyError if its operands are wrong."""
    name = op.mnemonic
    imm = ins.imm
    if name == "CONST":
        return (*stack, "B" if isinstance(constants[imm], bytes) else "I")
    if name == "CTX":
        return (*stack, CONTEXT_TYPES[imm])
    if name == "DUP":
        if len(stack) < imm:
            raise VerifyError(f"DUP {imm} with stack depth {len(stack)}", ins.offset)
        return (*stack, stack[-imm])
    if name == "SWAP":
        if len(stack) < imm + 1:
            raise VerifyError(f"SWAP {imm} with stack depth {len(stack)}", ins.offset)
        as_list = list(stack)
        as_list[-1], as_list[-1 - imm] = as_list[-1 - imm], as_list[-1]
        return tuple(as_list)
    pops = op.pops
    k = len(pops)
    if len(stack) < k:
        raise VerifyError(f"{name} needs {k} operand(s), stack depth is {len(stack)}", ins.offset)
    operands = stack[len(stack) - k :]
    wildcard = ""
    for want, have in zip(pops, operands, strict=True):
        if want == "X":
            if wildcard and have != wildcard:
                raise VerifyError(f"{name}: operands of different types", ins.offset)
            wildcard = have
        elif want != have:
            kind = "integer" if want == "I" else "byte string"
            raise VerifyError(f"{name}: operand must be an {kind}", ins.offset)
    return stack[: len(stack) - k] + tuple(op.pushes)


def _analyse(instructions: list[Instruction], constants: tuple[Constant, ...],
             starts: dict[int, int]) -> int:
    """Abstract interpretation over the control-flow graph; returns the max depth."""
    shapes: list[tuple[str, ...] | None] = [None] * len(instructions)
    shapes[0] = ()
    work = [0]
    deepest = 0
    while work:
        index = work.pop()
        ins = instructions[index]
        op = OPCODES[ins.opcode]
        shape = shapes[index]
        if shape is None:  # pragma: no cover - only visited indices are queued
            raise VerifyError("internal: unvisited instruction queued", ins.offset)
        after = _step(ins, op, shape, constants)
        if len(after) > MAX_STACK:
            raise VerifyError(f"stack depth exceeds {MAX_STACK}", ins.offset)
        deepest = max(deepest, len(after))
        successors: list[int] = []
        if op.flow == FLOW_HALT:
            continue
        if op.flow in (FLOW_JUMP, FLOW_BRANCH):
            successors.append(starts[ins.imm])
        if op.flow != FLOW_JUMP:
            if index + 1 >= len(instructions):
                raise VerifyError("control falls off the end of the code", ins.offset)
            successors.append(index + 1)
        for nxt in successors:
            seen = shapes[nxt]
            if seen is None:
                shapes[nxt] = after
                work.append(nxt)
            elif seen != after:
                raise VerifyError(
                    f"stack shapes differ where paths join ({''.join(seen) or 'empty'} vs "
                    f"{''.join(after) or 'empty'})",
                    instructions[nxt].offset,
                )
    return deepest


def _predecode(instructions: list[Instruction], constants: tuple[Constant, ...],
               starts: dict[int, int]) -> tuple[tuple[Any, Any, int], ...]:
    n = len(instructions)
    allow_index, deny_index = n, n + 1
    ops: list[tuple[Any, Any, int]] = []
    for ins in instructions:
        op = OPCODES[ins.opcode]
        name = op.mnemonic
        arg: Any
        if op.imm == IMM_TARGET:
            arg = starts[ins.imm]
        elif name == "CONST":
            arg = constants[ins.imm]
        elif name == "INSET":
            value = constants[ins.imm]
            if not isinstance(value, AddressSet):  # pragma: no cover - checked above
                raise VerifyError("INSET: not an address set", ins.offset)
            arg = frozenset(value.members)
        elif name == "ALLOW":
            arg = allow_index
        elif name == "DENY":
            arg = (deny_index, ins.imm)
        elif op.imm == IMM_NONE:
            arg = None
        else:
            arg = ins.imm
        ops.append((op.fn, arg, op.gas))
    ops.append((None, None, HALT_COST))  # ALLOW sentinel
    ops.append((None, None, HALT_COST))  # DENY sentinel
    return tuple(ops)


def verify(program: bytes) -> Program:
    """Run every static check on `program`; return the verified, pre-decoded form.

    Raises `VerifyError` (with the code offset where it applies) on any failure.
    """
    if not isinstance(program, bytes | bytearray | memoryview):
        raise VerifyError(f"a program is bytes, not {type(program).__name__}")
    data = bytes(program)
    if len(data) > MAX_PROGRAM:
        raise VerifyError(f"program larger than {MAX_PROGRAM} bytes")
    if len(data) < HEADER_SIZE or data[: len(MAGIC)] != MAGIC:
        raise VerifyError("bad magic: not a Blackhole VM program")
    version = data[len(MAGIC)]
    if version != VERSION:
        raise VerifyError(f"unsupported bytecode version {version}")
    code_len = int.from_bytes(data[len(MAGIC) + 1 : HEADER_SIZE], "big")
    if code_len > MAX_CODE:
        raise VerifyError(f"code larger than {MAX_CODE} bytes")
    if code_len == 0:
        raise VerifyError("empty code")
    if HEADER_SIZE + code_len > len(data):
        raise VerifyError("truncated code section")
    code = data[HEADER_SIZE : HEADER_SIZE + code_len]
    constants = _parse_constants(data, HEADER_SIZE + code_len)
    instructions = decode_instructions(code)
    starts = {ins.offset: k for k, ins in enumerate(instructions)}
    for ins in instructions:
        _check_immediate(ins, OPCODES[ins.opcode], constants, starts)
    last = instructions[-1]
    if OPCODES[last.opcode].flow not in (FLOW_JUMP, FLOW_HALT):
        raise VerifyError("the last instruction must be JUMP, ALLOW or DENY", last.offset)
    max_stack = _analyse(instructions, constants, starts)
    return Program(
        raw=data,
        version=version,
        code=code,
        constants=constants,
        instructions=tuple(instructions),
        max_stack=max_stack,
        ops=_predecode(instructions, constants, starts),
    )
