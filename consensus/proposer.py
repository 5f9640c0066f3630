"""Weighted round-robin proposer selection.

Theory of operation
-------------------
Lay the validators (in validator-set order, i.e. sorted by public key) end to end on
a line of length ``T = total voting power``: validator ``i`` owns the half-open
interval ``[c_i, c_i + power_i)`` where ``c_i`` is the sum of the powers before it.

The proposal slot of ``(height, round)`` is ``k = height + round``. Slot ``k`` lands
on the point ``p(k) = (k * g) mod T`` of the line, where the stride ``g`` is the
integer nearest to ``T / phi`` (phi = the golden ratio) that is coprime with ``T``.
The validator owning ``p(k)`` proposes.

Why this shape:

* weighted and exact: ``k -> k*g mod T`` is a permutation of ``0..T-1`` because
  ``gcd(g, T) = 1``, so in every window of ``T`` consecutive slots each validator
  proposes exactly ``power_i`` times;
* round robin, evenly spread: the golden-ratio stride is the low-discrepancy
  sequence of the three-distance theorem, so a validator's turns are spread over
  the cycle instead of bunched (a validator with 1/4 of the power proposes about
  every 4th slot, not 1/4 of the cycle in a row);
* stateless and O(log n): the answer is a pure function of (validator set,
  height, round); no priorities have to be carried in chain state, replayed or
  agreed on, and a light client can recompute the proposer of any header;
* a new round moves to the next slot, so a crashed proposer costs one round,
  and round ``r`` of height ``h`` has the proposer of round 0 of height ``h + r``.

Everything here is integer arithmetic: identical on every machine.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from math import gcd

from consensus.errors import UsageError

# 1/phi = 0.6180339887...; kept as an exact fraction so no float enters the result.
_INV_PHI_NUM = 6180339887498948482
_INV_PHI_DEN = 10000000000000000000


def compute_stride(total_power: int) -> int:
    """The stride ``g``: nearest integer to ``total_power / phi`` coprime with it."""
    if total_power <= 0:
        raise UsageError("total voting power must be positive")
    if total_power <= 2:
        return 1
    g = (total_power * _INV_PHI_NUM + _INV_PHI_DEN // 2) // _INV_PHI_DEN
    g = max(1, min(g, total_power - 1))
    # Search outwards for the nearest coprime; bounded because g=1 always qualifies.
    for delta in range(total_power):
        for candidate in (g - delta, g + delta):
            if 1 <= candidate < total_power and gcd(candidate, total_power) == 1:
                return candidate
    return 1


@dataclass(frozen=True, slots=True)
class ProposerSchedule:
    """Precomputed lookup for one validator set (cache it per set)."""

    starts: tuple[int, ...]
    """Cumulative power before each validator (validator order)."""
    total_power: int
    """Sum of all powers."""
    stride: int
    """The golden-ratio stride, coprime with ``total_power``."""

    @classmethod
    def from_powers(cls, powers: Sequence[int]) -> ProposerSchedule:
        """Build the schedule from the validators' powers, in validator-set order."""
        if not powers:
            raise UsageError("empty validator set")
        starts: list[int] = []
        acc = 0
        for p in powers:
            if p <= 0:
                raise UsageError("every validator's power must be positive")
            starts.append(acc)
            acc += p
        return cls(tuple(starts), acc, compute_stride(acc))

    def proposer_index(self, height: int, round_: int) -> int:
        """Index (in validator-set order) of the proposer of ``(height, round_)``."""
        if height < 0 or round_ < 0:
            raise UsageError("height and round must not be negative")
        point = ((height + round_) * self.stride) % self.total_power
        return bisect.bisect_right(self.starts, point) - 1


def proposer_index(powers: Sequence[int], height: int, round_: int) -> int:
    """One-shot form of :meth:`ProposerSchedule.proposer_index`."""
    return ProposerSchedule.from_powers(powers).proposer_index(height, round_)
