"""Vote tallying for one height.

Theory of operation
-------------------
A :class:`HeightVotes` holds every accepted prevote and precommit of one height,
by round and type, and answers the questions the rules of the core ask:

* ``+2/3`` of the voting power for one block hash (or for nil) in a round
  (lines 28, 36, 44, 49 of the paper), and ``+2/3`` for *anything* (34, 47);
* ``f+1``, i.e. more than 1/3 of the power, from validators that sent any
  message in a round above ours (line 55).

"+2/3" is ``3 * power > 2 * total`` and "f+1" is ``3 * power > total``: the
thresholds of voting power, never of head counts.

A second, different vote of one validator for the same (height, round, type) is
an equivocation: :meth:`HeightVotes.add` returns the pair as evidence. As in the
paper, where "2f+1 messages for id(v)" counts every message received, the
equivocator's power then counts for *each* block hash it voted for (once per
hash), while "+2/3 for anything" counts every validator once. This matters for
liveness, never for safety: a commit that carries the second vote of an
equivocator must still be recognised as a commit. At most
``MAX_HASHES_PER_VALIDATOR`` different hashes are kept per validator and
(round, type) so an equivocator cannot grow memory without bound (a commit's
votes bypass the cap). An identical re-delivery is a no-op. Signatures are checked here (the core owns no keys but
knows the validator set), through a ``verify`` function the driver may replace
with a cached or pooled one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from consensus.errors import InvalidVote

if TYPE_CHECKING:
    from chain.types import ValidatorSet, Vote

MAX_HASHES_PER_VALIDATOR = 4
"""Different block hashes tallied per validator and (round, type)."""

Verifier = Callable[[bytes, bytes, bytes], bool]
"""verify(pubkey, signature, digest) -> bool, e.g. chain.crypto.verify."""


def is_two_thirds(power: int, total: int) -> bool:
    """More than two thirds of ``total``."""
    return 3 * power > 2 * total


def is_one_third(power: int, total: int) -> bool:
    """More than one third of ``total`` (at least one honest validator among them)."""
    return 3 * power > total


@dataclass(slots=True)
class _Tally:
    """Votes of one (round, type)."""

    by_validator: dict[int, Vote] = field(default_factory=dict)
    others: dict[int, dict[bytes, Vote]] = field(default_factory=dict)
    power_by_hash: dict[bytes, int] = field(default_factory=dict)
    power: int = 0


@dataclass(frozen=True, slots=True)
class AddResult:
    """What adding a vote did."""

    added: bool
    """The vote is new and was tallied."""
    conflicting: Vote | None
    """The earlier vote it conflicts with (an equivocation), if any."""


class HeightVotes:
    """All votes of one height, tallied by round, type and block hash."""

    def __init__(self, chain_id: str, height: int, valset: ValidatorSet,
                 verify: Verifier | None, *, max_round: int | None = None) -> None:
        self.chain_id = chain_id
        self.height = height
        self.valset = valset
        self.total_power = valset.total_power
        self._powers = [v.power for v in valset.validators]
        self._pubkeys = [v.pubkey for v in valset.validators]
        self._verify = verify
        self._max_round = max_round
        self._tallies: dict[tuple[int, int], _Tally] = {}
        # round -> validator indices that sent anything in that round (line 55)
        self._senders: dict[int, set[int]] = {}
        self._sender_power: dict[int, int] = {}

    def check(self, vote: Vote) -> None:
        """Raise :class:`InvalidVote` unless the vote belongs here and is signed."""
        from chain.types import VoteType

        if vote.height != self.height:
            raise InvalidVote(f"vote for height {vote.height}, tallying {self.height}")
        if vote.type not in (VoteType.PREVOTE, VoteType.PRECOMMIT):
            raise InvalidVote(f"unknown vote type {vote.type!r}")
        if vote.round < 0 or (self._max_round is not None and vote.round > self._max_round):
            raise InvalidVote(f"vote round {vote.round} out of the accepted range")
        idx = vote.validator_index
        if not 0 <= idx < len(self._powers):
            raise InvalidVote(f"vote from unknown validator index {idx}")
        if self._verify is not None and not self._verify(
            self._pubkeys[idx], vote.signature, vote.signing_digest(self.chain_id)
        ):
            raise InvalidVote(f"bad signature on vote of validator {idx}")

    def add(self, vote: Vote, *, checked: bool = False, force: bool = False) -> AddResult:
        """Tally a vote (checking it first unless ``checked``); ``force`` ignores the
        per-validator cap on conflicting hashes (for votes of a verified commit)."""
        if not checked:
            self.check(vote)
        key = (vote.round, int(vote.type))
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = _Tally()
        idx = vote.validator_index
        power = self._powers[idx]
        prior = tally.by_validator.get(idx)
        if prior is not None:
            if prior.block_hash == vote.block_hash:
                return AddResult(False, None)
            others = tally.others.setdefault(idx, {})
            if vote.block_hash in others or (
                not force and len(others) + 1 >= MAX_HASHES_PER_VALIDATOR
            ):
                return AddResult(False, prior)
            others[vote.block_hash] = vote
            tally.power_by_hash[vote.block_hash] = (
                tally.power_by_hash.get(vote.block_hash, 0) + power
            )
            return AddResult(True, prior)
        tally.by_validator[idx] = vote
        tally.power += power
        tally.power_by_hash[vote.block_hash] = tally.power_by_hash.get(vote.block_hash, 0) + power
        self.note_sender(vote.round, idx)
        return AddResult(True, None)

    def note_sender(self, round_: int, idx: int) -> None:
        """Record that validator ``idx`` sent a message (vote or proposal) in ``round_``."""
        senders = self._senders.setdefault(round_, set())
        if idx not in senders:
            senders.add(idx)
            self._sender_power[round_] = self._sender_power.get(round_, 0) + self._powers[idx]

    def get(self, round_: int, vote_type: int, idx: int) -> Vote | None:
        """The tallied vote of validator ``idx``, if any."""
        tally = self._tallies.get((round_, int(vote_type)))
        return None if tally is None else tally.by_validator.get(idx)

    def power_for(self, round_: int, vote_type: int, block_hash: bytes) -> int:
        tally = self._tallies.get((round_, int(vote_type)))
        return 0 if tally is None else tally.power_by_hash.get(block_hash, 0)

    def power_any(self, round_: int, vote_type: int) -> int:
        tally = self._tallies.get((round_, int(vote_type)))
        return 0 if tally is None else tally.power

    def has_two_thirds_for(self, round_: int, vote_type: int, block_hash: bytes) -> bool:
        """+2/3 of the power voted ``block_hash`` (b"" = nil) in ``round_``."""
        return is_two_thirds(self.power_for(round_, vote_type, block_hash), self.total_power)

    def has_two_thirds_any(self, round_: int, vote_type: int) -> bool:
        """+2/3 of the power voted (anything) in ``round_``."""
        return is_two_thirds(self.power_any(round_, vote_type), self.total_power)

    def two_thirds_majority(self, round_: int, vote_type: int) -> bytes | None:
        """The block hash (b"" for nil) with +2/3 of the power, if there is one."""
        tally = self._tallies.get((round_, int(vote_type)))
        if tally is None:
            return None
        for h, p in sorted(tally.power_by_hash.items()):
            if is_two_thirds(p, self.total_power):
                return h
        return None

    def rounds_with_one_third_above(self, round_: int) -> list[int]:
        """Rounds above ``round_`` in which validators with f+1 power sent messages."""
        return sorted(
            r for r, p in self._sender_power.items()
            if r > round_ and is_one_third(p, self.total_power)
        )

    def votes_for(self, round_: int, vote_type: int, block_hash: bytes) -> list[Vote]:
        """One vote per validator that voted ``block_hash`` in (round, type), by index."""
        tally = self._tallies.get((round_, int(vote_type)))
        if tally is None:
            return []
        out: list[Vote] = []
        for i in sorted(tally.by_validator):
            first = tally.by_validator[i]
            if first.block_hash == block_hash:
                out.append(first)
            else:
                extra = tally.others.get(i, {}).get(block_hash)
                if extra is not None:
                    out.append(extra)
        return out

    def votes(self, round_: int, vote_type: int) -> list[Vote]:
        """The tallied votes of a (round, type), by validator index."""
        tally = self._tallies.get((round_, int(vote_type)))
        if tally is None:
            return []
        return [tally.by_validator[i] for i in sorted(tally.by_validator)]

    def rounds(self) -> list[int]:
        return sorted({r for (r, _t) in self._tallies})
