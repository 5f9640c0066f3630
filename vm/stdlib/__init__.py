"""The standard library of key rules, shipped as assembly beside this module.

`program(name)` assembles (once, then cached) and returns a rule's bytecode;
the key class supplies the rule's numeric parameters through `Context.params`.
The one rule that needs more than integers, `allowlist`, takes its address set
as an option: `program("allowlist", allowlist=[addr, ...])` puts the sorted set
into the program's constant pool, so the set is part of the verified bytes.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from vm.asm import assemble
from vm.errors import AssemblyError, UsageError

DEFAULT = "resale"
"""The rule a key class without its own program follows."""

REASONS: dict[str, int] = {
    "SOULBOUND": 100,
    "HOLDING_PERIOD": 101,
    "RESALE_LIMIT": 102,
    "PRICE_BELOW_FLOOR": 103,
    "PRICE_ABOVE_CEILING": 104,
    "NOT_ALLOWLISTED": 105,
    "EXPIRED": 106,
}
"""DENY reason codes used by the standard rules."""

PARAMS: dict[str, tuple[str, ...]] = {
    "resale": (),
    "soulbound": (),
    "hold_blocks": ("N: blocks of holding before a resale",),
    "max_resales": ("N: resales allowed per token",),
    "price_band": ("floor price", "ceiling price"),
    "allowlist": (),
    "expiring": ("expiry height",),
}
"""What each rule reads from `Context.params`, in order."""

MAX_ALLOWLIST = 127
"""Addresses that fit the 4 KiB constant pool."""

_ADDRESS_SIZE = 32


def names() -> list[str]:
    """Names of the standard rules, sorted."""
    return sorted(PARAMS)


def source(name: str) -> str:
    """The assembly text of a standard rule."""
    if name not in PARAMS:
        raise UsageError(f"unknown standard rule {name!r}; known: {', '.join(names())}")
    return resources.files(__name__).joinpath(f"{name}.asm").read_text(encoding="utf-8")


@cache
def _plain(name: str) -> bytes:
    return assemble(source(name))


def program(name: str, **options: object) -> bytes:
    """The bytecode of standard rule `name`.

    Options: only `allowlist` (an iterable of 32-byte addresses, 0..127 of
    them), required by and only accepted for the `allowlist` rule.
    """
    if name not in PARAMS:
        raise UsageError(f"unknown standard rule {name!r}; known: {', '.join(names())}")
    if name != "allowlist":
        if options:
            raise UsageError(f"rule {name!r} takes no options, got {sorted(options)}")
        return _plain(name)
    unknown = set(options) - {"allowlist"}
    if unknown:
        raise UsageError(f"rule 'allowlist' takes only the allowlist option, got {sorted(unknown)}")
    if "allowlist" not in options:
        raise UsageError("rule 'allowlist' needs allowlist=[32-byte addresses]")
    given = options["allowlist"]
    if isinstance(given, bytes | str) or not hasattr(given, "__iter__"):
        raise UsageError("allowlist must be an iterable of 32-byte addresses")
    members: set[bytes] = set()
    for item in given:
        if not isinstance(item, bytes) or len(item) != _ADDRESS_SIZE:
            raise UsageError("allowlist members must be 32-byte addresses")
        members.add(item)
    if len(members) > MAX_ALLOWLIST:
        raise UsageError(f"allowlist holds at most {MAX_ALLOWLIST} addresses")
    listed = " ".join("0x" + m.hex() for m in sorted(members))
    text = source(name).replace("$ALLOWLIST", listed)
    try:
        return assemble(text)
    except AssemblyError as err:  # pragma: no cover - the shipped source is tested
        raise UsageError(f"allowlist program: {err}") from None
