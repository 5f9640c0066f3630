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

from chain import errors as chain_errors
from chain.encoding import pack, take_array, take_bytes, take_int, unpack_untrusted
from light import errors as le
from light.verifier import LightBlock, validate_basic

EVIDENCE_LIGHT_CLIENT_ATTACK: Final = 2
"""Kind tag (1 is chain.types' duplicate vote evidence)."""
MAX_EVIDENCE_BYTES: Final = 8 * 1024 * 1024


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

    @classmethod
    def decode_untrusted(cls, data: bytes) -> LightClientAttackEvidence:
        """Decode; raises :class:`chain.errors.DecodeError`."""
        f = take_array(unpack_untrusted(data, MAX_EVIDENCE_BYTES), "light_attack_evidence", 7)
        take_int(f[0], "kind", EVIDENCE_LIGHT_CLIENT_ATTACK, EVIDENCE_LIGHT_CLIENT_ATTACK)
        block = LightBlock.decode_untrusted(take_bytes(f[1], "conflicting_block", max_len=MAX_EVIDENCE_BYTES))
        byzantine = take_array(f[4], "byzantine_validators", max_len=65_536)
        return cls(
            block, take_int(f[2], "common_height", 1), take_bytes(f[3], "common_hash", size=32),
            tuple(take_bytes(b, "byzantine_validator", size=32) for b in byzantine),
            take_int(f[5], "total_power", 1), take_int(f[6], "timestamp_ms", 0),
        )

    def verify(self, chain_id: str) -> None:
        """Check what needs no chain: the conflicting block is well formed and signed by
        +2/3 of its set, and every accused validator signed it. Raises VerificationError."""
        validate_basic(self.conflicting_block, chain_id)
        try:
            self.conflicting_block.validators.verify_commit(chain_id, self.conflicting_block.commit)
        except chain_errors.InvalidCommit as exc:
            raise le.InvalidCommit(f"evidence commit: {exc}") from exc
        signers = {self.conflicting_block.validators.validators[s.validator_index].pubkey
                   for s in self.conflicting_block.commit.signatures}
        if not set(self.byzantine_validators) <= signers:
            raise le.VerificationError("evidence accuses a validator that did not sign the conflicting block")
        if self.common_height >= self.conflicting_block.height:
            raise le.VerificationError("the common height is not below the conflicting block")


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
