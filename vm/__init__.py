"""Tiny deterministic VM for key-resale rules: bytecode, verifier, gas, interpreter, assembler.

Imports nothing of ours. The chain calls `verify` once when a key class is
created, `evaluate` for every resale or transfer and `entitled` to ask whether
a key still entitles its holder at a height. See docs/vm.md.
"""

from __future__ import annotations

from vm import errors, stdlib
from vm.asm import assemble, disassemble
from vm.errors import VMError
from vm.interp import MODE_ENTITLEMENT, MODE_TRANSFER, Context, Verdict, entitled, evaluate
from vm.opcodes import OPCODES, Opcode
from vm.program import MAX_CODE, MAX_CONSTANTS, MAX_STACK, AddressSet, Program, verify

__all__ = [
    "MAX_CODE",
    "MAX_CONSTANTS",
    "MAX_STACK",
    "MODE_ENTITLEMENT",
    "MODE_TRANSFER",
    "OPCODES",
    "AddressSet",
    "Context",
    "Opcode",
    "Program",
    "VMError",
    "Verdict",
    "assemble",
    "disassemble",
    "entitled",
    "errors",
    "evaluate",
    "stdlib",
    "verify",
]
