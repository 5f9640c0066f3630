"""Hypothesis: the verifier and the interpreter on random input.

- Random bytes (raw, and behind a valid header) through `verify`: a Program or
  a VerifyError, nothing else.
- Random well-typed programs, built block by block so that every one of them
  must verify: `evaluate` returns a verdict (never raises), stops within the
  gas limit, and agrees exactly (verdict and gas) with tests/vm/reference.py.
- Mutated programs: whatever the verifier still accepts runs as above.
- assemble(disassemble(p)) == p for all of them.
"""

from __future__ import annotations

from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

import vm
from tests.vm import reference
from tests.vm.helpers import BUYER, CREATOR, SELLER
from vm.errors import AssemblyError, VerifyError
from vm.opcodes import CONTEXT_FIELDS, CONTEXT_TYPES
from vm.program import MAGIC

ADDRESSES = [SELLER, BUYER, CREATOR, bytes([4]) * 32, bytes([0xFF]) * 32]
UINT_MAX = (1 << 256) - 1
INT_OPS = ["ADD", "SUB", "MUL", "DIV", "MOD", "MIN", "MAX", "LT", "GT", "LE", "GE", "AND", "OR"]

limits = st.one_of(st.integers(0, 60), st.integers(0, 3_000), st.just(20_000))
ints = st.one_of(
    st.integers(0, 20),
    st.integers(0, 2_000),
    st.sampled_from([UINT_MAX, UINT_MAX - 1, 1 << 128, (1 << 128) - 1, 10_000]),
    st.integers(0, UINT_MAX),
)

contexts = st.builds(
    vm.Context,
    height=ints,
    time_ms=ints,
    seller=st.sampled_from(ADDRESSES),
    buyer=st.sampled_from(ADDRESSES),
    price=ints,
    serial=ints,
    times_resold=st.integers(0, 10),
    acquired_height=ints,
    creator=st.sampled_from(ADDRESSES),
    royalty_bps=st.integers(0, 10_000),
    params=st.lists(ints, max_size=6).map(tuple),
)


@st.composite
def sources(draw: Any) -> str:
    """Assembly of a random well-typed program.

    Every block starts with an empty stack, so jumps between blocks always
    join equal stack shapes; inside a block, each instruction is drawn among
    those valid for the current (tracked) stack types.
    """
    consts: list[tuple[str, str]] = []
    for k in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["int", "bytes", "addrset"]))
        if kind == "int":
            consts.append(("int", f".const k{k} int {draw(ints)}"))
        elif kind == "bytes":
            value = draw(st.one_of(st.sampled_from(ADDRESSES), st.binary(max_size=8)))
            consts.append(("bytes", f".const k{k} bytes 0x{value.hex()}"))
        else:
            members = sorted(set(draw(st.lists(st.sampled_from(ADDRESSES), max_size=4))))
            listed = " ".join("0x" + m.hex() for m in members)
            consts.append(("addrset", f".const k{k} addrset {listed}".rstrip()))
    n_blocks = draw(st.integers(1, 5))
    lines = [text for _, text in consts]
    for block in range(n_blocks):
        lines.append(f"b{block}:")
        stack: list[str] = []
        for _ in range(draw(st.integers(0, 12))):
            choices = ["push", "ctx", "param", "nparams"]
            if any(kind == "int" or kind == "bytes" for kind, _ in consts):
                choices.append("const")
            if stack:
                choices += ["pop", "dup"]
                if stack[-1] == "I":
                    choices.append("not")
                if stack[-1] == "B" and any(kind == "addrset" for kind, _ in consts):
                    choices.append("inset")
            if len(stack) >= 2:
                choices.append("swap")
                if stack[-1] == stack[-2]:
                    choices.append("eq")
                if stack[-1] == stack[-2] == "I":
                    choices += ["arith", "arith", "arith"]
            if len(stack) >= 12:
                choices = [c for c in choices if c in ("pop", "not", "inset", "eq", "arith", "swap")]
            choice = draw(st.sampled_from(choices))
            if choice == "push":
                width = draw(st.sampled_from([1, 2, 4]))
                lines.append(f"PUSH{width} {draw(st.integers(0, (1 << (8 * width)) - 1))}")
                stack.append("I")
            elif choice == "ctx":
                field = draw(st.integers(0, len(CONTEXT_FIELDS) - 1))
                lines.append(f"CTX {CONTEXT_FIELDS[field]}")
                stack.append(CONTEXT_TYPES[field])
            elif choice == "param":
                lines.append(f"PARAM {draw(st.integers(0, 4))}")
                stack.append("I")
            elif choice == "nparams":
                lines.append("NPARAMS")
                stack.append("I")
            elif choice == "const":
                usable = [k for k, (kind, _) in enumerate(consts) if kind != "addrset"]
                k = draw(st.sampled_from(usable))
                lines.append(f"CONST k{k}")
                stack.append("I" if consts[k][0] == "int" else "B")
            elif choice == "pop":
                lines.append("POP")
                stack.pop()
            elif choice == "dup":
                n = draw(st.integers(1, min(len(stack), 16)))
                lines.append(f"DUP {n}")
                stack.append(stack[-n])
            elif choice == "not":
                lines.append("NOT")
            elif choice == "inset":
                sets = [k for k, (kind, _) in enumerate(consts) if kind == "addrset"]
                lines.append(f"INSET k{draw(st.sampled_from(sets))}")
                stack[-1] = "I"
            elif choice == "swap":
                n = draw(st.integers(1, min(len(stack) - 1, 16)))
                lines.append(f"SWAP {n}")
                stack[-1], stack[-1 - n] = stack[-1 - n], stack[-1]
            elif choice == "eq":
                lines.append(draw(st.sampled_from(["EQ", "NE"])))
                stack[-2:] = ["I"]
            else:
                lines.append(draw(st.sampled_from(INT_OPS)))
                stack[-2:] = ["I"]
        last = block == n_blocks - 1
        end = draw(st.sampled_from(["allow", "deny", "jump"] if last else
                                    ["allow", "deny", "jump", "jumpi", "jumpi"]))
        # Mostly forward jumps, so that not every run ends in a loop and OutOfGas.
        forward = block + 1 < n_blocks and draw(st.integers(0, 3)) > 0
        target = f"b{draw(st.integers(block + 1 if forward else 0, n_blocks - 1))}"
        if end == "allow":
            if not stack or stack[-1] != "I":
                lines.append(draw(st.sampled_from(["CTX price", "PUSH1 0", "PUSH2 300"])))
            lines.append("ALLOW")
        elif end == "deny":
            lines.append(f"DENY {draw(st.integers(64, 0xFFFF))}")
        elif end == "jump":
            lines += ["POP"] * len(stack)
            lines.append(f"JUMP {target}")
        else:
            lines += ["POP"] * len(stack)
            lines += [draw(st.sampled_from(["CTX height", "PARAM 0", "NPARAMS", "PUSH1 1"])),
                      draw(st.sampled_from(["PUSH1 0", "PUSH2 700", "CTX times_resold"])),
                      draw(st.sampled_from(["GT", "LT", "EQ", "NE", "AND", "OR"])),
                      f"JUMPI {target}"]
    return "\n".join(lines) + "\n"


def check_run(program: vm.Program, ctx: vm.Context, limit: int) -> None:
    for mode in (vm.MODE_TRANSFER, vm.MODE_ENTITLEMENT):
        verdict = vm.evaluate(program, ctx, limit, mode=mode)
        assert 0 <= verdict.gas_used <= limit
        expected, steps = reference.run(program, ctx, limit, mode)
        assert steps <= limit  # every instruction costs at least 1 gas
        assert verdict == expected
        if verdict.allow:
            assert verdict.reason == 0
            assert 0 <= verdict.royalty <= ctx.price
        else:
            assert verdict.royalty == 0 and verdict.reason > 0
    assert vm.evaluate(program.raw, ctx, limit) == vm.evaluate(program, ctx, limit)


@settings(max_examples=1_000)
@given(st.binary(max_size=400))
def test_random_bytes_only_verify_errors(data: bytes) -> None:
    try:
        program = vm.verify(data)
    except VerifyError:
        return
    assert program.raw == data


@settings(max_examples=400)
@given(st.binary(min_size=1, max_size=200),
       st.one_of(st.just(b"\x00"), st.binary(max_size=80)), contexts, limits)
def test_random_code_behind_a_valid_header(code: bytes, pool: bytes, ctx: vm.Context,
                                           limit: int) -> None:
    data = MAGIC + b"\x01" + len(code).to_bytes(2, "big") + code + pool
    try:
        program = vm.verify(data)
    except VerifyError:
        event("rejected")
        return
    event("verified")
    check_run(program, ctx, limit)
    assert vm.assemble(vm.disassemble(program.raw)) == program.raw


@settings(max_examples=500)
@given(sources(), contexts, limits)
def test_random_verified_programs(source: str, ctx: vm.Context, limit: int) -> None:
    program = vm.verify(vm.assemble(source))  # the generator only builds valid programs
    check_run(program, ctx, limit)
    verdict = vm.evaluate(program, ctx, limit)
    event("allow" if verdict.allow else f"deny {min(verdict.reason, 64)}")
    text = vm.disassemble(program.raw)
    assert vm.assemble(text) == program.raw
    assert vm.disassemble(vm.assemble(text)) == text


@settings(max_examples=400)
@given(sources(), st.data(), contexts, limits)
def test_mutated_programs(source: str, data: st.DataObject, ctx: vm.Context, limit: int) -> None:
    original = bytearray(vm.assemble(source))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(original) - 1))
        original[at] = data.draw(st.integers(0, 255))
    mutated = bytes(original)
    try:
        program = vm.verify(mutated)
    except VerifyError:
        event("mutant rejected")
        assert vm.evaluate(mutated, ctx, limit).reason == 1
        return
    event("mutant verified")
    check_run(program, ctx, limit)
    assert vm.assemble(vm.disassemble(mutated)) == mutated


SLOPPY = ["ADD", "SUB", "MUL", "EQ", "NE", "LT", "NOT", "AND", "POP", "DUP 1", "DUP 3",
          "SWAP 1", "SWAP 2", "CTX seller", "CTX buyer", "CTX price", "PUSH1 1", "NPARAMS",
          "ALLOW", "DENY 64", "JUMPI b0", "JUMP b0",
          # Snippets that are well-formed but ill-typed with any stack below them:
          "CTX seller\nCTX buyer\nADD\nPOP", "CTX seller\nNOT\nPOP",
          "CTX seller\nPUSH1 1\nEQ\nPOP", "CTX seller\nJUMPI b0", "CTX buyer\nALLOW",
          "CTX price\nCTX seller\nLT\nPOP", "POP\nPOP\nPOP"]


@settings(max_examples=400)
@given(sources(), st.data(), contexts, limits)
def test_ill_typed_edits_are_rejected_or_run_safely(source: str, data: st.DataObject,
                                                    ctx: vm.Context, limit: int) -> None:
    """Valid programs with a few instructions replaced or inserted regardless of
    the stack: this exercises the verifier's type and depth analysis (the byte
    mutations above mostly break the encoding instead)."""
    lines = source.splitlines()
    first_code = sum(1 for line in lines if line.startswith("."))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(first_code, len(lines)))
        edit = data.draw(st.sampled_from(SLOPPY))
        if at < len(lines) and not lines[at].startswith(".") and not lines[at].endswith(":") \
                and data.draw(st.booleans()):
            lines[at] = edit
        else:
            lines.insert(at, edit)
    try:
        program_bytes = vm.assemble("\n".join(lines) + "\n", check=False)
    except AssemblyError:
        event("edit not assemblable")
        return
    try:
        program = vm.verify(program_bytes)
    except VerifyError:
        event("edit rejected")
        return
    event("edit verified")
    check_run(program, ctx, limit)
