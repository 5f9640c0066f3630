"""Evidence of equivocation: detection and the pending pool.

Theory of operation
-------------------
A validator equivocates when it signs two different votes for one
(height, round, type). Any node that holds both signed votes can prove it:
:func:`detect_duplicate` turns two such votes into the canonical
:class:`chain.types.DuplicateVoteEvidence` (the core does this for every vote it
tallies and emits ``ReportEvidence``). The :class:`EvidencePool` keeps pending
evidence until a decided block includes it, dedupes it by
(validator, height, round, type), forgets it when it grows older than
``evidence_max_age_heights``, and hands the proposer the oldest first.

Penalty (documented here, enforced by the chain): ``chain.state``'s
``process_evidence`` verifies each item with
:meth:`~chain.types.DuplicateVoteEvidence.verify` against the validator set of
the evidence's height and *jails* the validator: it is removed from the set,
which, like every validator-set change, takes effect two heights after the
block that carries the evidence. The simulator models exactly this.
"""

from __future__ import annotations

from dataclasses import dataclass

from chain.errors import InvalidEvidence
from chain.types import DuplicateVoteEvidence, ValidatorSet, Vote
from consensus.errors import InvalidMessage


def is_conflicting(a: Vote, b: Vote) -> bool:
    """Same (height, round, type, validator), different block hash: an equivocation."""
    return (
        (a.type, a.height, a.round, a.validator_index)
        == (b.type, b.height, b.round, b.validator_index)
        and a.block_hash != b.block_hash
    )


def detect_duplicate(a: Vote, b: Vote, chain_id: str, valset: ValidatorSet) -> DuplicateVoteEvidence | None:
    """Evidence if ``a`` and ``b`` are two validly signed conflicting votes, else None."""
    if not is_conflicting(a, b):
        return None
    ev = DuplicateVoteEvidence.from_votes(a, b)
    try:
        ev.verify(chain_id, valset)
    except InvalidEvidence:
        return None
    return ev


def evidence_key(ev: DuplicateVoteEvidence) -> tuple[int, int, int, int]:
    a = ev.vote_a
    return (a.height, a.round, int(a.type), a.validator_index)


@dataclass(frozen=True, slots=True)
class PendingEvidence:
    """An item of the pool."""

    evidence: DuplicateVoteEvidence
    """The evidence."""
    encoded: bytes
    """Its canonical encoding (what goes into a block)."""


class EvidencePool:
    """Pending evidence waiting for a block. Pure: the driver feeds it."""

    def __init__(self, chain_id: str, max_age_heights: int, *, max_pending: int = 10_000) -> None:
        self.chain_id = chain_id
        self.max_age = max_age_heights
        self.max_pending = max_pending
        self._pending: dict[tuple[int, int, int, int], PendingEvidence] = {}
        self._committed: set[tuple[int, int, int, int]] = set()

    def add(self, ev: DuplicateVoteEvidence, valset: ValidatorSet, current_height: int) -> bool:
        """Verify against the set of the evidence's height and keep it; True if new.
        Raises :class:`InvalidMessage` for evidence that does not verify."""
        key = evidence_key(ev)
        if key in self._pending or key in self._committed:
            return False
        if current_height - ev.height > self.max_age:
            return False
        try:
            ev.verify(self.chain_id, valset)
        except InvalidEvidence as exc:
            raise InvalidMessage(f"invalid evidence: {exc}") from exc
        if len(self._pending) >= self.max_pending:
            return False
        self._pending[key] = PendingEvidence(ev, ev.encode())
        return True

    def pending(self, max_count: int, current_height: int) -> list[PendingEvidence]:
        """Oldest first, at most ``max_count``, none too old for ``current_height``."""
        items = [
            p for k, p in sorted(self._pending.items())
            if current_height - p.evidence.height <= self.max_age
        ]
        return items[:max_count]

    def mark_committed(self, evs: list[DuplicateVoteEvidence]) -> None:
        """Evidence included in a decided block leaves the pool for good."""
        for ev in evs:
            key = evidence_key(ev)
            self._pending.pop(key, None)
            self._committed.add(key)

    def is_committed(self, ev: DuplicateVoteEvidence) -> bool:
        return evidence_key(ev) in self._committed

    def prune(self, current_height: int) -> None:
        """Drop pending evidence older than the maximum age."""
        for k in [k for k, p in self._pending.items()
                  if current_height - p.evidence.height > self.max_age]:
            del self._pending[k]

    def __len__(self) -> int:
        return len(self._pending)
