"""Shared builders for the vm tests."""

from __future__ import annotations

from typing import Any

import vm
from vm.opcodes import BY_MNEMONIC
from vm.program import encode_program

SELLER = bytes([1]) * 32
BUYER = bytes([2]) * 32
CREATOR = bytes([3]) * 32


def make_ctx(**changes: Any) -> vm.Context:
    fields: dict[str, Any] = dict(
        height=1_000,
        time_ms=1_700_000_000_000,
        seller=SELLER,
        buyer=BUYER,
        price=10_000,
        serial=7,
        times_resold=0,
        acquired_height=900,
        creator=CREATOR,
        royalty_bps=250,
        params=(),
    )
    fields.update(changes)
    return vm.Context(**fields)


def raw(*parts: str | int | bytes, constants: tuple[Any, ...] = ()) -> bytes:
    """Program bytes from mnemonics, raw ints (single bytes) and byte strings; unverified."""
    code = bytearray()
    for part in parts:
        if isinstance(part, str):
            code.append(BY_MNEMONIC[part])
        elif isinstance(part, int):
            code.append(part)
        else:
            code += part
    return encode_program(bytes(code), constants)
