"""Each standard rule on the cases that define it (exact verdicts and gas)."""

from __future__ import annotations

import re

import pytest

import vm
from vm.errors import REASON_MISSING_PARAM, UsageError
from vm.stdlib import REASONS

from .helpers import BUYER, SELLER
from .helpers import make_ctx as ctx

GAS = 10_000


def run(name: str, c: vm.Context, **options: object) -> vm.Verdict:
    return vm.evaluate(vm.stdlib.program(name, **options), c, GAS)


def test_names_are_the_seven_rules() -> None:
    assert vm.stdlib.names() == [
        "allowlist", "expiring", "hold_blocks", "max_resales", "price_band", "resale", "soulbound",
    ]
    assert vm.stdlib.DEFAULT == "resale"


def test_reason_codes_in_sources_match_table() -> None:
    for name in vm.stdlib.names():
        for equ, value in re.findall(r"^\.equ (\w+) (\d+)", vm.stdlib.source(name), re.M):
            if equ != "BPS_DENOMINATOR":
                assert REASONS[equ] == int(value), (name, equ)


def test_resale_pays_royalty_rounded_down() -> None:
    assert run("resale", ctx()) == vm.Verdict(True, 250, 0, 14)
    assert run("resale", ctx(price=39, royalty_bps=250)) == vm.Verdict(True, 0, 0, 14)
    assert run("resale", ctx(price=0)) == vm.Verdict(True, 0, 0, 14)
    assert run("resale", ctx(royalty_bps=10_000)).royalty == 10_000
    assert vm.entitled(vm.stdlib.program("resale"), ctx(), GAS)


def test_soulbound_never_transfers_but_entitles() -> None:
    assert run("soulbound", ctx()) == vm.Verdict(False, 0, REASONS["SOULBOUND"], 6)
    assert run("soulbound", ctx(price=0, buyer=SELLER)).reason == REASONS["SOULBOUND"]
    assert vm.entitled(vm.stdlib.program("soulbound"), ctx(), GAS)


def test_hold_blocks_boundary() -> None:
    # acquired at 900, N = 100: height 999 is too early, 1000 is fine.
    assert run("hold_blocks", ctx(height=999, params=(100,))) == vm.Verdict(
        False, 0, REASONS["HOLDING_PERIOD"], 19
    )
    assert run("hold_blocks", ctx(height=1_000, params=(100,))) == vm.Verdict(True, 250, 0, 32)
    assert run("hold_blocks", ctx(params=(0,))).allow
    assert vm.entitled(vm.stdlib.program("hold_blocks"), ctx(height=901, params=(100,)), GAS)


def test_hold_blocks_without_param_denies() -> None:
    verdict = run("hold_blocks", ctx(params=()))
    assert verdict == vm.Verdict(False, 0, REASON_MISSING_PARAM, 9)


def test_max_resales_boundary() -> None:
    assert run("max_resales", ctx(times_resold=2, params=(3,))) == vm.Verdict(True, 250, 0, 28)
    assert run("max_resales", ctx(times_resold=3, params=(3,))) == vm.Verdict(
        False, 0, REASONS["RESALE_LIMIT"], 15
    )
    assert run("max_resales", ctx(times_resold=0, params=(0,))).reason == REASONS["RESALE_LIMIT"]
    assert vm.entitled(vm.stdlib.program("max_resales"), ctx(times_resold=9, params=(3,)), GAS)


@pytest.mark.parametrize(
    ("price", "allow", "reason"),
    [
        (99, False, REASONS["PRICE_BELOW_FLOOR"]),
        (100, True, 0),
        (500, True, 0),
        (1_000, True, 0),
        (1_001, False, REASONS["PRICE_ABOVE_CEILING"]),
    ],
)
def test_price_band(price: int, allow: bool, reason: int) -> None:
    verdict = run("price_band", ctx(price=price, params=(100, 1_000)))
    assert (verdict.allow, verdict.reason) == (allow, reason)
    if allow:
        assert verdict.royalty == price * 250 // 10_000


def test_allowlist_membership() -> None:
    friends = [bytes([9]) * 32, BUYER, bytes([5]) * 32]
    assert run("allowlist", ctx(), allowlist=friends) == vm.Verdict(True, 250, 0, 31)
    denied = run("allowlist", ctx(buyer=bytes([6]) * 32), allowlist=friends)
    assert denied == vm.Verdict(False, 0, REASONS["NOT_ALLOWLISTED"], 18)
    assert run("allowlist", ctx(), allowlist=[]).reason == REASONS["NOT_ALLOWLISTED"]
    # Order and duplicates of the option do not change the program.
    assert vm.stdlib.program("allowlist", allowlist=friends) == vm.stdlib.program(
        "allowlist", allowlist=[*sorted(friends), BUYER]
    )


def test_allowlist_cap_and_options() -> None:
    many = [i.to_bytes(32, "big") for i in range(vm.stdlib.MAX_ALLOWLIST)]
    program = vm.stdlib.program("allowlist", allowlist=many)
    assert len(program) <= 7 + vm.MAX_CODE + vm.MAX_CONSTANTS
    assert vm.evaluate(program, ctx(buyer=many[-1]), GAS).allow
    with pytest.raises(UsageError):
        vm.stdlib.program("allowlist", allowlist=[*many, (10**6).to_bytes(32, "big")])
    with pytest.raises(UsageError):
        vm.stdlib.program("allowlist")
    with pytest.raises(UsageError):
        vm.stdlib.program("allowlist", allowlist=[b"short"])
    with pytest.raises(UsageError):
        vm.stdlib.program("resale", allowlist=[])
    with pytest.raises(UsageError):
        vm.stdlib.program("nope")


def test_expiring_transfer_and_entitlement() -> None:
    program = vm.stdlib.program("expiring")
    assert vm.evaluate(program, ctx(height=1_999, params=(2_000,)), GAS) == vm.Verdict(
        True, 250, 0, 28
    )
    assert vm.evaluate(program, ctx(height=2_000, params=(2_000,)), GAS) == vm.Verdict(
        False, 0, REASONS["EXPIRED"], 10
    )
    assert vm.entitled(program, ctx(height=1_999, params=(2_000,)), GAS)
    assert not vm.entitled(program, ctx(height=2_000, params=(2_000,)), GAS)
    assert not vm.entitled(program, ctx(height=10**9, params=(2_000,)), GAS)
    # An expiring class without its parameter entitles nobody (MissingParam is a DENY).
    assert not vm.entitled(program, ctx(params=()), GAS)


def test_every_rule_verifies_and_round_trips() -> None:
    for name in vm.stdlib.names():
        options = {"allowlist": [BUYER]} if name == "allowlist" else {}
        program = vm.stdlib.program(name, **options)
        verified = vm.verify(program)
        assert verified.max_stack <= 3
        assert vm.assemble(vm.disassemble(program)) == program
