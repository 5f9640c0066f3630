"""The interpreter: one verdict per run.

Theory of operation. `verify` already proved that the program's stack never
under- or overflows and that every operand has the right type, so the dispatch
loop does only three things per instruction: fetch the pre-decoded
`(fn, arg, gas)` triple, charge its gas (the one place gas is charged), call
`fn`. ALLOW and DENY jump to one of two sentinel entries after the program
whose gas is larger than any gas limit; the gas counter going negative is
thus the loop's single exit test, and the index tells a finished run from an
OutOfGas one. Every `ExecutionError` raised by an opcode becomes a DENY with
the error's reason code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vm.errors import (
    REASON_INVALID_PROGRAM,
    REASON_NONE,
    REASON_ROYALTY_EXCEEDS_PRICE,
    ContextError,
    ExecutionError,
    OutOfGas,
    UsageError,
    VerifyError,
)
from vm.opcodes import UINT_MAX
from vm.program import ADDRESS_SIZE, HALT_COST, MAX_GAS_LIMIT, Program, verify

MODE_TRANSFER = 0
MODE_ENTITLEMENT = 1
MAX_PARAMS = 256
MAX_ROYALTY_BPS = 10_000

_INT_FIELDS = ("height", "time_ms", "price", "serial", "times_resold", "acquired_height")
_ADDRESS_FIELDS = ("seller", "buyer", "creator")


@dataclass(frozen=True, slots=True)
class Context:
    """What a rule program may read about one transfer (or entitlement query)."""

    height: int
    """Height of the block the transfer is in."""
    time_ms: int
    """That block's BFT time, milliseconds since the Unix epoch."""
    seller: bytes
    """Current holder's address (32 bytes)."""
    buyer: bytes
    """Recipient's address (32 bytes)."""
    price: int
    """Sale price in the smallest token unit (0 for a gift)."""
    serial: int
    """Token serial within its key class."""
    times_resold: int
    """How many resales/transfers this token has had before this one."""
    acquired_height: int
    """Height at which the seller acquired the token."""
    creator: bytes
    """The key class creator's address (32 bytes)."""
    royalty_bps: int
    """The class's royalty in basis points, 0..10000."""
    params: tuple[int, ...] = ()
    """The key class's parameters (at most 256 integers)."""
    _env: tuple[Any, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= UINT_MAX:
                raise ContextError(f"Context.{name} must be an integer in 0..2**256-1")
        for name in _ADDRESS_FIELDS:
            value = getattr(self, name)
            if type(value) is not bytes or len(value) != ADDRESS_SIZE:
                raise ContextError(f"Context.{name} must be {ADDRESS_SIZE} bytes")
        bps = self.royalty_bps
        if type(bps) is not int or not 0 <= bps <= MAX_ROYALTY_BPS:
            raise ContextError(f"Context.royalty_bps must be an integer in 0..{MAX_ROYALTY_BPS}")
        params = self.params
        if type(params) is not tuple or len(params) > MAX_PARAMS:
            raise ContextError(f"Context.params must be a tuple of at most {MAX_PARAMS} integers")
        for value in params:
            if type(value) is not int or not 0 <= value <= UINT_MAX:
                raise ContextError("Context.params items must be integers in 0..2**256-1")
        object.__setattr__(self, "_env", self.env(MODE_TRANSFER))

    def env(self, mode: int) -> tuple[Any, ...]:
        """The tuple CTX and PARAM read: the fields in CTX order, then the params."""
        return (
            self.height,
            self.time_ms,
            self.seller,
            self.buyer,
            self.price,
            self.serial,
            self.times_resold,
            self.acquired_height,
            self.creator,
            self.royalty_bps,
            mode,
            self.params,
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """The one outcome of a run."""

    allow: bool
    """True: the transfer may happen."""
    royalty: int
    """Amount owed to the creator out of the price (0 on DENY)."""
    reason: int
    """0 on ALLOW; a VM reason (1..63) or the program's reason (64..65535) on DENY."""
    gas_used: int
    """Gas charged, 0..gas_limit."""


_CACHE: dict[bytes, Program] = {}
_CACHE_LIMIT = 1024


def _program_of(program: bytes | Program) -> Program:
    if isinstance(program, Program):
        return program
    if not isinstance(program, bytes):
        raise VerifyError(f"a program is bytes or vm.Program, not {type(program).__name__}")
    found = _CACHE.get(program)
    if found is None:
        found = verify(program)
        if len(_CACHE) >= _CACHE_LIMIT:
            _CACHE.clear()
        _CACHE[program] = found
    return found


def evaluate(program: bytes | Program, ctx: Context, gas_limit: int, *,
             mode: int = MODE_TRANSFER) -> Verdict:
    """Run `program` on `ctx` with at most `gas_limit` gas and return its verdict.

    Never raises for a verified program: every run-time failure is a DENY
    carrying the error's reason code. Unverifiable program bytes give
    DENY(REASON_INVALID_PROGRAM, gas 0). Raises `UsageError` only when the
    caller passes something that is not a `Context`, a gas limit outside
    0..2**63-1 or an unknown mode.
    """
    if type(gas_limit) is not int or not 0 <= gas_limit <= MAX_GAS_LIMIT:
        raise UsageError("gas_limit must be an integer in 0..2**63-1")
    if not isinstance(ctx, Context):
        raise UsageError(f"ctx must be a vm.Context, not {type(ctx).__name__}")
    if mode == MODE_TRANSFER:
        env = ctx._env
    elif mode == MODE_ENTITLEMENT:
        env = ctx.env(MODE_ENTITLEMENT)
    else:
        raise UsageError(f"unknown mode {mode!r}")
    try:
        verified = _program_of(program)
    except VerifyError:
        return Verdict(False, 0, REASON_INVALID_PROGRAM, 0)

    code = verified.ops
    halt_at = len(code) - 2
    stack: list[Any] = []
    gas = gas_limit
    i = 0
    try:
        while True:
            fn, arg, cost = code[i]
            gas -= cost
            if gas < 0:
                if i >= halt_at:
                    break
                raise OutOfGas(f"instruction {i} costs {cost}, {gas + cost} gas left")
            i = fn(stack, arg, i, env)
    except ExecutionError as err:
        return Verdict(False, 0, err.reason, gas_limit if err.burns_gas else gas_limit - gas)
    used = gas_limit - gas - HALT_COST
    if i == halt_at:
        if mode == MODE_ENTITLEMENT:
            return Verdict(True, 0, REASON_NONE, used)
        royalty = stack[-1]
        if royalty > ctx.price:
            return Verdict(False, 0, REASON_ROYALTY_EXCEEDS_PRICE, used)
        return Verdict(True, royalty, REASON_NONE, used)
    return Verdict(False, 0, stack[-1], used)


def entitled(program: bytes | Program, ctx: Context, gas_limit: int) -> bool:
    """Is the key described by `ctx` still an entitlement at `ctx.height`?

    Runs the program with CTX mode = 1 (MODE_ENTITLEMENT). The chain passes the
    holder as both seller and buyer and price 0; ALLOW means entitled, any DENY
    (including every run-time failure) means not entitled.
    """
    return evaluate(program, ctx, gas_limit, mode=MODE_ENTITLEMENT).allow
