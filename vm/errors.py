"""Every error the VM raises.

`VMError` is the one base class. Its subclasses fall into three groups:

- `VerifyError` and `AssemblyError`: a program (bytes or source text) is
  malformed. The creator's fault; raised by `verify` and `assemble`.
- `ContextError`, `UsageError`: the caller built a bad `Context` or passed a bad
  gas limit. The caller's (the chain's) fault.
- `ExecutionError` subclasses: a verified program failed at run time.
  `evaluate` never lets them escape: each becomes a DENY verdict carrying the
  class's `reason` code, and `burns_gas` says whether the verdict reports the
  whole gas limit as used (runaway or buggy arithmetic) or only the gas spent
  up to the failure.
"""

from __future__ import annotations

# Reason codes 1..63 belong to the VM; a program's own DENY reasons are 64..65535.
REASON_NONE = 0
REASON_INVALID_PROGRAM = 1
REASON_OUT_OF_GAS = 2
REASON_OVERFLOW = 3
REASON_UNDERFLOW = 4
REASON_DIVISION_BY_ZERO = 5
REASON_MISSING_PARAM = 6
REASON_ROYALTY_EXCEEDS_PRICE = 7
FIRST_PROGRAM_REASON = 64
LAST_PROGRAM_REASON = 0xFFFF


class VMError(Exception):
    """Base of every error raised by the vm package."""

    reason: int = REASON_INVALID_PROGRAM
    burns_gas: bool = True


class VerifyError(VMError):
    """Program bytes fail the static checks (format, opcodes, jumps, stack, sizes).

    The creator's fault: the key class must be rejected. `offset` is the byte
    offset in the code section where the problem was found, or -1 when it is in
    the header or the constant pool.
    """

    reason = REASON_INVALID_PROGRAM
    burns_gas = False

    def __init__(self, message: str, offset: int = -1) -> None:
        super().__init__(message if offset < 0 else f"code offset {offset}: {message}")
        self.offset = offset


class AssemblyError(VMError):
    """Assembly source is bad; the message starts with `line N:` (1-based)."""

    reason = REASON_INVALID_PROGRAM
    burns_gas = False

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


class ContextError(VMError):
    """A `Context` field is out of range or of the wrong type (the caller's fault)."""

    burns_gas = False


class UsageError(VMError):
    """The caller misused the API (for example a negative gas limit, an unknown
    stdlib rule name or a bad stdlib option)."""

    burns_gas = False


class ExecutionError(VMError):
    """A verified program failed while running; always turned into a DENY."""


class OutOfGas(ExecutionError):
    """The next instruction costs more gas than is left. Burns the whole limit."""

    reason = REASON_OUT_OF_GAS
    burns_gas = True


class Overflow(ExecutionError):
    """An ADD or MUL result does not fit in 256 bits."""

    reason = REASON_OVERFLOW
    burns_gas = True


class Underflow(ExecutionError):
    """A SUB result would be negative (integers are unsigned)."""

    reason = REASON_UNDERFLOW
    burns_gas = True


class DivisionByZero(ExecutionError):
    """DIV or MOD by zero."""

    reason = REASON_DIVISION_BY_ZERO
    burns_gas = True


class MissingParam(ExecutionError):
    """PARAM i read a class parameter the key class does not have.

    A misconfigured key class, not runaway code: only the gas spent is reported.
    """

    reason = REASON_MISSING_PARAM
    burns_gas = False


class RoyaltyExceedsPrice(ExecutionError):
    """ALLOW named a royalty larger than the sale price."""

    reason = REASON_ROYALTY_EXCEEDS_PRICE
    burns_gas = False
