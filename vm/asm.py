"""Assembler and disassembler.

Source format, one statement a line; `;` starts a comment:

    .version 1                      ; optional; only version 1 exists
    .equ HOLDING_PERIOD 101         ; a named integer usable as any integer operand
    .const floor int 100            ; constant-pool entries, indexed in order
    .const tag bytes 0xdeadbeef
    .const friends addrset 0x<64 hex> 0x<64 hex> ...
    start:                          ; a label (may share its line with an instruction)
        CTX price
        CONST floor
        LT
        JUMPI start
        DENY HOLDING_PERIOD

`PUSH n` is shorthand for the shortest of PUSH1/PUSH2/PUSH4 that holds n.
`disassemble` prints the canonical form (explicit PUSH widths, constants named
c0, c1, ..., labels L<offset> at jump targets), and assembling that text gives
back the very same bytes.
"""

from __future__ import annotations

import re

from vm.errors import AssemblyError, VerifyError
from vm.opcodes import (
    BY_MNEMONIC,
    CONTEXT_FIELDS,
    IMM_CONST,
    IMM_FIELD,
    IMM_NONE,
    IMM_SIZES,
    IMM_TARGET,
    OPCODES,
)
from vm.program import (
    HEADER_SIZE,
    MAX_CODE,
    VERSION,
    AddressSet,
    Constant,
    _parse_constants,
    decode_instructions,
    encode_constants,
    encode_program,
    verify,
)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PUSH_WIDTHS = (("PUSH1", 1), ("PUSH2", 2), ("PUSH4", 4))


def _parse_int(text: str, line: int, equs: dict[str, int]) -> int:
    if text in equs:
        return equs[text]
    try:
        value = int(text, 0)
    except ValueError:
        raise AssemblyError(line, f"not an integer or .equ name: {text!r}") from None
    if value < 0:
        raise AssemblyError(line, f"negative integer {text!r}")
    return value


def _parse_hex(text: str, line: int) -> bytes:
    if not text.startswith("0x"):
        raise AssemblyError(line, f"expected 0x-prefixed hex, got {text!r}")
    try:
        return bytes.fromhex(text[2:])
    except ValueError:
        raise AssemblyError(line, f"bad hex {text!r}") from None


def _parse_const(args: list[str], line: int, equs: dict[str, int]) -> tuple[str, Constant]:
    if len(args) < 2:
        raise AssemblyError(line, ".const needs a name, a kind and a value")
    name, kind, values = args[0], args[1], args[2:]
    if not _NAME.match(name):
        raise AssemblyError(line, f"bad constant name {name!r}")
    if kind == "int":
        if len(values) != 1:
            raise AssemblyError(line, ".const int takes one value")
        value = _parse_int(values[0], line, equs)
        if value >> 256:
            raise AssemblyError(line, "integer constant exceeds 2**256-1")
        return name, value
    if kind == "bytes":
        if len(values) != 1:
            raise AssemblyError(line, ".const bytes takes one 0x value (0x for empty)")
        return name, _parse_hex(values[0], line)
    if kind == "addrset":
        members = [_parse_hex(v, line) for v in values]
        if any(len(m) != 32 for m in members):
            raise AssemblyError(line, "address set members must be 32 bytes")
        if any(members[k] >= members[k + 1] for k in range(len(members) - 1)):
            raise AssemblyError(line, "address set members must be strictly ascending")
        return name, AddressSet(tuple(members))
    raise AssemblyError(line, f"unknown constant kind {kind!r} (int, bytes, addrset)")


def assemble(source: str, *, check: bool = True) -> bytes:
    """Turn assembly text into program bytes.

    With `check` (the default) the result is also run through `verify`, and a
    verification failure is reported as an `AssemblyError` naming the source
    line of the offending instruction.
    """
    if not isinstance(source, str):
        raise AssemblyError(0, "source must be a str")
    equs: dict[str, int] = {}
    const_names: dict[str, int] = {}
    constants: list[Constant] = []
    labels: dict[str, int] = {}
    # (line, mnemonic, operand text or None, offset)
    pending: list[tuple[int, str, str | None, int]] = []
    offset = 0
    for number, raw in enumerate(source.splitlines(), start=1):
        text = raw.split(";", 1)[0].strip()
        if not text:
            continue
        if text.startswith("."):
            parts = text.split()
            directive, args = parts[0], parts[1:]
            if pending or labels:
                raise AssemblyError(number, f"{directive} must come before the code")
            if directive == ".version":
                if len(args) != 1 or _parse_int(args[0], number, equs) != VERSION:
                    raise AssemblyError(number, f"only .version {VERSION} is supported")
            elif directive == ".equ":
                if len(args) != 2 or not _NAME.match(args[0]):
                    raise AssemblyError(number, ".equ takes a name and an integer")
                if args[0] in equs:
                    raise AssemblyError(number, f"duplicate .equ {args[0]!r}")
                equs[args[0]] = _parse_int(args[1], number, equs)
            elif directive == ".const":
                name, value = _parse_const(args, number, equs)
                if name in const_names:
                    raise AssemblyError(number, f"duplicate constant {name!r}")
                if len(constants) >= 255:
                    raise AssemblyError(number, "more than 255 constants")
                const_names[name] = len(constants)
                constants.append(value)
                try:
                    encode_constants(constants)
                except VerifyError as err:
                    raise AssemblyError(number, str(err)) from None
            else:
                raise AssemblyError(number, f"unknown directive {directive!r}")
            continue
        while True:
            match = re.match(r"([A-Za-z_][A-Za-z0-9_]*)\s*:\s*", text)
            if not match:
                break
            label = match.group(1)
            if label in labels:
                raise AssemblyError(number, f"duplicate label {label!r}")
            labels[label] = offset
            text = text[match.end() :]
        if not text:
            continue
        parts = text.split()
        mnemonic = parts[0].upper()
        if len(parts) > 2:
            raise AssemblyError(number, f"{mnemonic}: too many operands")
        operand = parts[1] if len(parts) == 2 else None
        if mnemonic == "PUSH":
            if operand is None:
                raise AssemblyError(number, "PUSH needs an integer")
            value = _parse_int(operand, number, equs)
            for name, width in _PUSH_WIDTHS:
                if value < 1 << (8 * width):
                    mnemonic = name
                    break
            else:
                raise AssemblyError(number, "PUSH value exceeds 32 bits: use a .const int")
        opcode = BY_MNEMONIC.get(mnemonic)
        if opcode is None:
            raise AssemblyError(number, f"unknown mnemonic {parts[0]!r}")
        op = OPCODES[opcode]
        if op.imm == IMM_NONE and operand is not None:
            raise AssemblyError(number, f"{mnemonic} takes no operand")
        if op.imm != IMM_NONE and operand is None:
            raise AssemblyError(number, f"{mnemonic} needs an operand")
        pending.append((number, mnemonic, operand, offset))
        offset += 1 + IMM_SIZES[op.imm]

    code = bytearray()
    line_at: dict[int, int] = {}
    for number, mnemonic, operand, at in pending:
        opcode = BY_MNEMONIC[mnemonic]
        op = OPCODES[opcode]
        size = IMM_SIZES[op.imm]
        line_at[at] = number
        code.append(opcode)
        if operand is None:
            continue
        if op.imm == IMM_TARGET:
            if operand not in labels:
                raise AssemblyError(number, f"unknown label {operand!r}")
            value = labels[operand]
        elif op.imm == IMM_CONST:
            if operand in const_names:
                value = const_names[operand]
            else:
                value = _parse_int(operand, number, equs)
        elif op.imm == IMM_FIELD:
            if operand in CONTEXT_FIELDS:
                value = CONTEXT_FIELDS.index(operand)
            else:
                value = _parse_int(operand, number, equs)
        else:
            value = _parse_int(operand, number, equs)
        if value >> (8 * size):
            raise AssemblyError(number, f"{mnemonic}: operand {value} does not fit {size} byte(s)")
        code += value.to_bytes(size, "big")
    if not code:
        raise AssemblyError(0, "no instructions")
    if len(code) > MAX_CODE:
        raise AssemblyError(pending[-1][0], f"code exceeds {MAX_CODE} bytes")
    try:
        program = encode_program(bytes(code), constants)
    except VerifyError as err:
        raise AssemblyError(0, str(err)) from None
    if check:
        try:
            verify(program)
        except VerifyError as err:
            raise AssemblyError(line_at.get(err.offset, 0), str(err)) from None
    return program


def _const_line(index: int, value: Constant) -> str:
    if isinstance(value, AddressSet):
        body = " ".join("0x" + m.hex() for m in value.members)
        return f".const c{index} addrset {body}".rstrip()
    if isinstance(value, bytes):
        return f".const c{index} bytes 0x{value.hex()}"
    return f".const c{index} int {value}"


def disassemble(program: bytes) -> str:
    """Canonical assembly text for `program` (which must decode; it need not verify).

    Raises `VerifyError` when the container or the code cannot be decoded or a
    jump target is not an instruction start.
    """
    if not isinstance(program, bytes):
        raise VerifyError(f"a program is bytes, not {type(program).__name__}")
    if len(program) < HEADER_SIZE or program[:4] != b"BHVM":
        raise VerifyError("bad magic: not a Blackhole VM program")
    if program[4] != VERSION:
        raise VerifyError(f"unsupported bytecode version {program[4]}")
    code_len = int.from_bytes(program[5:HEADER_SIZE], "big")
    if code_len > MAX_CODE or HEADER_SIZE + code_len > len(program):
        raise VerifyError("truncated or oversize code section")
    code = program[HEADER_SIZE : HEADER_SIZE + code_len]
    constants = _parse_constants(program, HEADER_SIZE + code_len)
    instructions = decode_instructions(code)
    starts = {ins.offset for ins in instructions}
    targets = set()
    for ins in instructions:
        if OPCODES[ins.opcode].imm == IMM_TARGET:
            if ins.imm not in starts:
                raise VerifyError(f"jump target {ins.imm} is not an instruction boundary", ins.offset)
            targets.add(ins.imm)
    lines = [f".version {VERSION}"]
    lines += [_const_line(k, v) for k, v in enumerate(constants)]
    for ins in instructions:
        if ins.offset in targets:
            lines.append(f"L{ins.offset:04d}:")
        op = OPCODES[ins.opcode]
        if op.imm == IMM_NONE:
            lines.append(f"    {op.mnemonic}")
        elif op.imm == IMM_TARGET:
            lines.append(f"    {op.mnemonic} L{ins.imm:04d}")
        elif op.imm == IMM_CONST:
            name = f"c{ins.imm}" if ins.imm < len(constants) else str(ins.imm)
            lines.append(f"    {op.mnemonic} {name}")
        elif op.imm == IMM_FIELD:
            name = CONTEXT_FIELDS[ins.imm] if ins.imm < len(CONTEXT_FIELDS) else str(ins.imm)
            lines.append(f"    {op.mnemonic} {name}")
        else:
            lines.append(f"    {op.mnemonic} {ins.imm}")
    return "\n".join(lines) + "\n"
