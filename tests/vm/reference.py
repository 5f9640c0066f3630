"""A deliberately plain reference interpreter, written apart from vm/interp.py.

It walks the decoded instructions with one if-chain and its own copy of the
documented gas table, so the property tests can compare verdicts and gas
figures of the fast interpreter against it on random programs. It trusts the
verifier: on a program the verifier wrongly passed it would crash with a plain
Python error (IndexError, TypeError), which the tests would report.
"""

from __future__ import annotations

from typing import Any

import vm
from vm.program import AddressSet

MAX = (1 << 256) - 1

# docs/vm.md, "Opcodes": mnemonic -> gas
GAS = {
    "PUSH1": 1, "PUSH2": 1, "PUSH4": 1, "CONST": 1, "POP": 1, "DUP": 1, "SWAP": 1,
    "ADD": 2, "SUB": 2, "MUL": 4, "DIV": 4, "MOD": 4, "MIN": 2, "MAX": 2,
    "EQ": 2, "NE": 2, "LT": 2, "GT": 2, "LE": 2, "GE": 2, "AND": 2, "OR": 2, "NOT": 2,
    "JUMP": 3, "JUMPI": 3, "CTX": 2, "PARAM": 2, "NPARAMS": 2, "INSET": 5,
    "ALLOW": 1, "DENY": 1,
}
FIELDS = ("height", "time_ms", "seller", "buyer", "price", "serial", "times_resold",
          "acquired_height", "creator", "royalty_bps")


def want_int(value: Any) -> int:
    if type(value) is not int:
        raise TypeError("integer operand expected: the verifier let a bad program through")
    return value


def run(program: vm.Program, ctx: vm.Context, limit: int, mode: int = 0) -> tuple[vm.Verdict, int]:
    """(verdict, instructions executed)."""
    instructions = program.instructions
    index_of = {ins.offset: k for k, ins in enumerate(instructions)}
    stack: list[Any] = []
    gas = limit
    pc = 0
    steps = 0
    while True:
        ins = instructions[pc]
        name = vm.OPCODES[ins.opcode].mnemonic
        if GAS[name] > gas:
            return vm.Verdict(False, 0, 2, limit), steps
        gas -= GAS[name]
        steps += 1
        pc += 1
        imm = ins.imm
        if name in ("PUSH1", "PUSH2", "PUSH4"):
            stack.append(imm)
        elif name == "CONST":
            stack.append(program.constants[imm])
        elif name == "POP":
            stack.pop()
        elif name == "DUP":
            stack.append(stack[len(stack) - imm])
        elif name == "SWAP":
            top, other = len(stack) - 1, len(stack) - 1 - imm
            stack[top], stack[other] = stack[other], stack[top]
        elif name == "NOT":
            stack.append(int(want_int(stack.pop()) == 0))
        elif name in ("ADD", "SUB", "MUL", "DIV", "MOD", "MIN", "MAX", "EQ", "NE", "LT", "GT",
                      "LE", "GE", "AND", "OR"):
            b = stack.pop()
            a = stack.pop()
            if name in ("EQ", "NE"):
                if type(a) is not type(b):
                    raise TypeError(f"{name} on {type(a).__name__} and {type(b).__name__}")
            elif type(a) is not int or type(b) is not int:
                raise TypeError(f"{name} on a byte string: the verifier let a bad program through")
            if name == "ADD":
                if a + b > MAX:
                    return vm.Verdict(False, 0, 3, limit), steps
                stack.append(a + b)
            elif name == "SUB":
                if a < b:
                    return vm.Verdict(False, 0, 4, limit), steps
                stack.append(a - b)
            elif name == "MUL":
                if a * b > MAX:
                    return vm.Verdict(False, 0, 3, limit), steps
                stack.append(a * b)
            elif name in ("DIV", "MOD"):
                if b == 0:
                    return vm.Verdict(False, 0, 5, limit), steps
                stack.append(a // b if name == "DIV" else a % b)
            elif name == "MIN":
                stack.append(min(a, b))
            elif name == "MAX":
                stack.append(max(a, b))
            elif name == "EQ":
                stack.append(int(a == b))
            elif name == "NE":
                stack.append(int(a != b))
            elif name == "LT":
                stack.append(int(a < b))
            elif name == "GT":
                stack.append(int(a > b))
            elif name == "LE":
                stack.append(int(a <= b))
            elif name == "GE":
                stack.append(int(a >= b))
            elif name == "AND":
                stack.append(int(a != 0 and b != 0))
            else:
                stack.append(int(a != 0 or b != 0))
        elif name == "JUMP":
            pc = index_of[imm]
        elif name == "JUMPI":
            if want_int(stack.pop()) != 0:
                pc = index_of[imm]
        elif name == "CTX":
            stack.append(mode if imm == 10 else getattr(ctx, FIELDS[imm]))
        elif name == "PARAM":
            if imm >= len(ctx.params):
                return vm.Verdict(False, 0, 6, limit - gas), steps
            stack.append(ctx.params[imm])
        elif name == "NPARAMS":
            stack.append(len(ctx.params))
        elif name == "INSET":
            members = program.constants[imm]
            assert isinstance(members, AddressSet)
            address = stack.pop()
            if type(address) is not bytes:
                raise TypeError("INSET on an integer: the verifier let a bad program through")
            stack.append(int(address in members.members))
        elif name == "ALLOW":
            royalty = want_int(stack.pop())
            if mode == 1:
                return vm.Verdict(True, 0, 0, limit - gas), steps
            if royalty > ctx.price:
                return vm.Verdict(False, 0, 7, limit - gas), steps
            return vm.Verdict(True, royalty, 0, limit - gas), steps
        elif name == "DENY":
            return vm.Verdict(False, 0, imm, limit - gas), steps
        else:
            raise AssertionError(f"reference: no rule for {name}")
