"""Light-client attack evidence.

When a witness serves a header that conflicts with the primary's at the same
height and both verify from the same trusted block, one of the two chains was
signed by validators who also signed the other (equivocation) or by a set the
trusted validators never handed power to (a lunatic attack needs +1/3 of the
trusted power to sign it). :class:`LightClientAttackEvidence` records the
conflicting light block, the last height both sides agree on and the validators
that signed the conflicting header while holding power in the common set:
anyone holding the chain can check it (CometBFT's LightClientAttackEvidence).

Wire form: ``[EVIDENCE_LIGHT_CLIENT_ATTACK, light_block, common_height,
common_hash, byzantine_pubkeys, total_power, timestamp_ms]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import blake3

from chain.encoding import pack
from light.verifier import LightBlock

EVIDENCE_LIGHT_CLIENT_ATTACK: Final = 2
"""Kind tag (1 is chain.types' duplicate vote evidence)."""


@dataclass(frozen=True, slots=True)
class LightClientAttackEvidence:
    """A verified light block that conflicts with another verified one of its height."""

    conflicting_block: LightBlock
    """The header, commit and sets of the side this evidence accuses."""
    common_height: int
    """The last trusted height both sides agree on (verification of both started there)."""
    common_hash: bytes
    """The header hash at ``common_height``."""
    byzantine_validators: tuple[bytes, ...]
    """Public keys that signed the conflicting header and hold power in the common or
    the other side's set: they signed two chains."""
    total_power: int
    """Total power of the common block's next validator set."""
    timestamp_ms: int
    """Time of the common header."""

    def encode(self) -> bytes:
        return pack([
            EVIDENCE_LIGHT_CLIENT_ATTACK, self.conflicting_block.encode(), self.common_height,
            self.common_hash, list(self.byzantine_validators), self.total_power, self.timestamp_ms,
        ])  # fmt: skip

    def hash(self) -> bytes:
        return blake3.blake3(self.encode()).digest()


def compute_byzantine(conflicting: LightBlock, other: LightBlock, common: LightBlock) -> tuple[bytes, ...]:
    """Signers of ``conflicting`` who are also signers of ``other`` (equivocation) or,
    when the sets differ, members of the common trusted set (lunatic)."""
    def signers(block: LightBlock) -> set[bytes]:
        out = set()
        for s in block.commit.signatures:
            v = block.validators.get(s.validator_index)
            if v is not None:
                out.add(v.pubkey)
        return out

    mine = signers(conflicting)
    if conflicting.header.validators_hash == other.header.validators_hash:
        return tuple(sorted(mine & signers(other)))
    trusted = {v.pubkey for v in common.next_validators.validators}
    return tuple(sorted(mine & trusted))


def make_evidence(conflicting: LightBlock, other: LightBlock, common: LightBlock) -> LightClientAttackEvidence:
    return LightClientAttackEvidence(
        conflicting, common.height, common.hash(), compute_byzantine(conflicting, other, common),
        common.next_validators.total_power, common.time_ms,
    )
