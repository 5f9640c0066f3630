"""Assembler and disassembler: exact round trips, line-numbered errors."""

from __future__ import annotations

import pytest

import vm
from tests.vm.helpers import raw
from vm.errors import AssemblyError, VerifyError
from vm.program import AddressSet

SOURCE = """\
; a rule that uses every operand kind
.version 1
.equ TOO_CHEAP 300
.const floor int 0x1234567890
.const tag bytes 0xc0ffee
.const friends addrset 0x{a} 0x{b}
start:  CTX mode
    JUMPI entitled
    CTX buyer
    INSET friends
    JUMPI ok
    CTX price
    CONST floor
    LT
    JUMPI cheap
ok: CTX price
    PUSH 1000          ; shortest push is PUSH2
    MIN
    PUSH4 3
    PARAM 0
    POP
    DUP 1
    SWAP 1
    POP
    ALLOW
cheap:
    DENY TOO_CHEAP
entitled:
    PUSH1 0
    ALLOW
""".format(a="11" * 32, b="22" * 32)


def test_assemble_layout() -> None:
    program = vm.assemble(SOURCE)
    verified = vm.verify(program)
    assert verified.constants == (0x1234567890, b"\xc0\xff\xee",
                                  AddressSet((b"\x11" * 32, b"\x22" * 32)))
    mnemonics = [vm.OPCODES[i.opcode].mnemonic for i in verified.instructions]
    assert mnemonics[:4] == ["CTX", "JUMPI", "CTX", "INSET"]
    assert "PUSH2" in mnemonics and "PUSH4" in mnemonics


def test_round_trip_bytes_text_bytes() -> None:
    program = vm.assemble(SOURCE)
    text = vm.disassemble(program)
    assert vm.assemble(text) == program
    assert vm.disassemble(vm.assemble(text)) == text


def test_disassembly_is_canonical_text() -> None:
    text = vm.disassemble(vm.assemble("PUSH 0\ntop:\nPUSH 1\nADD\nDUP 1\nPUSH 9\nGT\nJUMPI top\nALLOW"))
    assert text == (
        ".version 1\n"
        "    PUSH1 0\n"
        "L0002:\n"
        "    PUSH1 1\n"
        "    ADD\n"
        "    DUP 1\n"
        "    PUSH1 9\n"
        "    GT\n"
        "    JUMPI L0002\n"
        "    ALLOW\n"
    )


def test_round_trip_stdlib_and_unverified_programs() -> None:
    for name in vm.stdlib.names():
        options = {"allowlist": [b"\x05" * 32]} if name == "allowlist" else {}
        program = vm.stdlib.program(name, **options)
        assert vm.assemble(vm.disassemble(program)) == program
    # A decodable but ill-typed program still disassembles and round-trips.
    bad = raw("ADD", "ALLOW")
    assert vm.assemble(vm.disassemble(bad), check=False) == bad
    with pytest.raises(AssemblyError, match="line 2: code offset 0"):
        vm.assemble(vm.disassemble(bad))


def test_disassemble_rejects_undecodable() -> None:
    for data in (b"", raw(0xFF), raw("JUMP", b"\x00\x01"), raw("PUSH2", 1)):
        with pytest.raises(VerifyError):
            vm.disassemble(data)


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        ("PUSH1 0\nFROB\nALLOW", 2, "unknown mnemonic"),
        ("PUSH1 0\nALLOW 3", 2, "takes no operand"),
        ("\n\nPUSH1\nALLOW", 3, "needs an operand"),
        ("PUSH1 256\nALLOW", 1, "does not fit"),
        ("PUSH 0x100000000\nALLOW", 1, "exceeds 32 bits"),
        ("PUSH1 -1\nALLOW", 1, "negative"),
        ("PUSH1 zz\nALLOW", 1, "not an integer"),
        ("PUSH1 0\nJUMP nowhere", 2, "unknown label"),
        ("a:\na:\nPUSH1 0\nALLOW", 2, "duplicate label"),
        ("PUSH1 0\nALLOW\n.const x int 1", 3, "before the code"),
        (".const x int 1\n.const x int 2\nPUSH1 0\nALLOW", 2, "duplicate constant"),
        (".const x float 1\nPUSH1 0\nALLOW", 1, "unknown constant kind"),
        (".const x addrset 0x01\nPUSH1 0\nALLOW", 1, "32 bytes"),
        (f".const x addrset 0x{'22' * 32} 0x{'11' * 32}\nPUSH1 0\nALLOW", 1, "ascending"),
        (".const x bytes abc\nPUSH1 0\nALLOW", 1, "0x-prefixed"),
        (".const x bytes 0xabc\nPUSH1 0\nALLOW", 1, "bad hex"),
        (f".const x int {1 << 256}\nPUSH1 0\nALLOW", 1, "exceeds 2\\*\\*256-1"),
        (".version 2\nPUSH1 0\nALLOW", 1, "only .version 1"),
        (".bogus\nPUSH1 0\nALLOW", 1, "unknown directive"),
        (".equ 9x 1\nPUSH1 0\nALLOW", 1, ".equ takes"),
        ("PUSH1 0\nCONST nothing\nALLOW", 2, "not an integer or .equ"),
        ("CTX colour\nALLOW", 1, "not an integer or .equ"),
        ("PUSH1 0\nPUSH1 0 1\nALLOW", 2, "too many operands"),
        ("; only a comment", 0, "no instructions"),
        (f".const a bytes 0x{'00' * 2000}\n.const b bytes 0x{'00' * 2100}\nPUSH1 0\nALLOW", 2,
         "constant pool larger"),
        # Verification errors come back on the offending instruction's line.
        ("PUSH1 0\nPUSH1 1\nCTX seller\nADD\nALLOW", 4, "must be an integer"),
        ("PUSH1 0\nPUSH1 0", 2, "last instruction"),
        ("PUSH1 0\nDENY 12", 2, "reason 12"),
    ],
)
def test_errors_name_the_line(source: str, line: int, message: str) -> None:
    with pytest.raises(AssemblyError, match=message) as info:
        vm.assemble(source)
    assert info.value.line == line
    assert str(info.value).startswith(f"line {line}: ")


def test_labels_share_lines_and_comments_are_ignored() -> None:
    a = vm.assemble("x: y: PUSH1 0 ; push\n  JUMPI x ; loop\nPUSH1 0\nALLOW")
    b = vm.assemble("x:\nPUSH1 0\nJUMPI x\nPUSH1 0\nALLOW")
    assert a == b
    assert vm.assemble("push 0\nallow") == vm.assemble("PUSH1 0\nALLOW")
