"""Evidence submitted from outside (the `broadcast_evidence` RPC): check it and pool it.

Theory of operation. Two kinds arrive, told apart by the first element of the
encoded array:

* kind 1, chain.types.DuplicateVoteEvidence: verified against the node's
  validator set of its height, refused if the chain already handled it (the
  state's `evidence_seen` key) or if it is too old for a block, then pooled and
  gossiped by the consensus driver like evidence the node saw itself;
* kind 2, light.evidence.LightClientAttackEvidence: a light client saw a
  header that conflicts with another verified one. The conflicting commit must
  verify against *this node's* set of that height and differ from this node's
  canonical block. Every validator that signed both that commit and the
  node's canonical commit in the same round signed two precommits for one
  (height, round) with different block hashes: both votes are rebuilt from the
  CommitSigs (Commit.vote_for), verified, and become DuplicateVoteEvidence
  that goes the kind-1 way, so the chain jails them. If the two commits are of
  different rounds (an amnesia attack) nothing is provable per validator, as
  in CometBFT: the evidence is written under `<home>/data/evidence/` and
  logged, and no duplicate-vote evidence results.

`derive_duplicate_votes` is pure; `submit_evidence` reads the node's stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chain import statekeys as sk
from chain.encoding import unpack_untrusted
from chain.errors import ChainError, DecodeError, InvalidCommit, InvalidEvidence
from chain.types import (
    EVIDENCE_DUPLICATE_VOTE,
    MAX_EVIDENCE_BYTES,
    Commit,
    DuplicateVoteEvidence,
    ValidatorSet,
)
from light import errors as le
from light.evidence import EVIDENCE_LIGHT_CLIENT_ATTACK, LightClientAttackEvidence
from light.evidence import MAX_EVIDENCE_BYTES as MAX_ATTACK_BYTES
from node.errors import NodeError
from node.log import get_logger

log = get_logger("evidence")
EVIDENCE_DIR = Path("data") / "evidence"
"""Where unprovable (amnesia) attack evidence is kept, under the node's home."""
MAX_SUBMITTED_EVIDENCE_BYTES = max(MAX_EVIDENCE_BYTES, MAX_ATTACK_BYTES)
"""Largest evidence `broadcast_evidence` decodes (a light block with its sets)."""


class EvidenceRejected(NodeError):
    """Submitted evidence does not decode, does not verify against this node's chain,
    or was already handled (the submitter's fault; answered as invalid params)."""


@dataclass(frozen=True, slots=True)
class Derived:
    """What a light-client attack proves against this node's chain."""

    duplicate_votes: tuple[DuplicateVoteEvidence, ...]
    """One per validator that precommitted both blocks in the same round."""
    amnesia: bool
    """The two commits are of different rounds: nothing provable per validator."""


def decode_submitted_untrusted(data: bytes) -> DuplicateVoteEvidence | LightClientAttackEvidence:
    """Decode evidence of kind 1 or 2; raises EvidenceRejected."""
    try:
        obj = unpack_untrusted(data, MAX_SUBMITTED_EVIDENCE_BYTES)
        kind = obj[0] if isinstance(obj, list) and obj else None
        if kind == EVIDENCE_DUPLICATE_VOTE and not isinstance(kind, bool):
            return DuplicateVoteEvidence.decode_untrusted(data)
        if kind == EVIDENCE_LIGHT_CLIENT_ATTACK and not isinstance(kind, bool):
            return LightClientAttackEvidence.decode_untrusted(data)
    except DecodeError as exc:
        raise EvidenceRejected(f"evidence does not decode: {exc}") from exc
    raise EvidenceRejected(f"unknown evidence kind {kind!r} (1: duplicate vote, 2: light client attack)")


def derive_duplicate_votes(chain_id: str, attack: LightClientAttackEvidence, valset: ValidatorSet,
                           canonical: Commit) -> Derived:
    """Duplicate-vote evidence from a conflicting commit and the canonical commit of its height.

    `valset` is this node's validator set of that height and `canonical` its
    commit there. Raises EvidenceRejected if the attack evidence does not verify
    or does not conflict with `canonical`.
    """
    block = attack.conflicting_block
    h = block.height
    try:
        attack.verify(chain_id)
    except le.VerificationError as exc:
        raise EvidenceRejected(f"light client attack evidence does not verify: {exc}") from exc
    conflicting = block.commit
    # the conflicting commit is +2/3 of the set this node knows for that height
    try:
        valset.verify_commit(chain_id, conflicting)
    except InvalidCommit as exc:
        raise EvidenceRejected(f"the conflicting commit does not verify against this node's validator set "
                               f"of height {h}: {exc}") from exc
    # it is for another block than the canonical one
    if canonical.height != h:
        raise EvidenceRejected(f"canonical commit of height {canonical.height}, evidence of height {h}")
    if conflicting.block_hash == canonical.block_hash:
        raise EvidenceRejected(f"the conflicting header is this node's own block at height {h}: "
                               "no conflict with this chain")
    if conflicting.round != canonical.round:
        return Derived((), amnesia=True)
    ours = {s.validator_index: s for s in canonical.signatures}
    out = []
    for sig in conflicting.signatures:
        other = ours.get(sig.validator_index)
        if other is None:
            continue
        ev = DuplicateVoteEvidence.from_votes(conflicting.vote_for(sig), canonical.vote_for(other))
        try:
            ev.verify(chain_id, valset)
        except InvalidEvidence:
            continue  # a forged signature on either side proves nothing about this validator
        out.append(ev)
    return Derived(tuple(out), amnesia=False)


async def submit_evidence(node: Any, evidence_bytes: bytes) -> list[bytes]:
    """Check submitted evidence against `node` (a node.node.Node) and pool what it proves.

    Returns the hashes of the duplicate-vote evidence pooled (empty for an
    amnesia attack, which is recorded); raises EvidenceRejected.
    """
    ev = decode_submitted_untrusted(evidence_bytes)
    if isinstance(ev, DuplicateVoteEvidence):
        _add(node, ev)
        return [ev.hash()]
    derived = _derive(node, ev)
    if derived.amnesia:
        path = _record_amnesia(node, ev)
        log.warning("light client attack with commits of different rounds (amnesia): nothing provable "
                    "per validator, recorded", height=ev.conflicting_block.height, path=str(path))
        return []
    if not derived.duplicate_votes:
        raise EvidenceRejected("no validator signed both the conflicting and the canonical commit")
    for dv in derived.duplicate_votes:
        _add(node, dv)
    log.warning("light client attack turned into duplicate-vote evidence",
                height=ev.conflicting_block.height, validators=len(derived.duplicate_votes))
    return [dv.hash() for dv in derived.duplicate_votes]


def _validator_set(node: Any, height: int) -> ValidatorSet:
    if height > node.state.height:
        raise EvidenceRejected(f"evidence of height {height} is above this node's height {node.state.height}")
    try:
        vset: ValidatorSet = node.state.validator_set(height)
    except ChainError as exc:
        raise EvidenceRejected(f"this node no longer keeps the validator set of height {height}: {exc}") from exc
    return vset


def _derive(node: Any, attack: LightClientAttackEvidence) -> Derived:
    h = attack.conflicting_block.height
    if attack.conflicting_block.header.chain_id != node.genesis.chain_id:
        raise EvidenceRejected(f"evidence of chain {attack.conflicting_block.header.chain_id!r}")
    valset = _validator_set(node, h)
    raw = node.blocks.get_commit(h)
    if raw is None:
        raise EvidenceRejected(f"this node has no commit of height {h} (pruned or not yet canonical)")
    try:
        canonical = Commit.decode_untrusted(raw)
    except DecodeError as exc:  # our own store: a bug or corruption, not the submitter's fault
        raise ChainError(f"stored commit of height {h} does not decode: {exc}") from exc
    return derive_duplicate_votes(node.genesis.chain_id, attack, valset, canonical)


def _add(node: Any, ev: DuplicateVoteEvidence) -> None:
    """Verify kind-1 evidence against the chain and hand it to the consensus driver's pool."""
    valset = _validator_set(node, ev.height)
    # the block that would carry it accepts its age (docs/spec-state.md, process_evidence)
    max_age = node.genesis.consensus_params.evidence_max_age_heights
    if node.state.height + 1 - ev.height > max_age:
        raise EvidenceRejected(f"evidence of height {ev.height} is older than {max_age} heights")
    try:
        ev.verify(node.genesis.chain_id, valset)
    except InvalidEvidence as exc:
        raise EvidenceRejected(f"duplicate-vote evidence does not verify: {exc}") from exc
    seen = node.state.get(sk.evidence_seen(ev.hash()))
    if seen is not None:
        raise EvidenceRejected(f"the chain already handled this evidence at height {int.from_bytes(seen, 'big')}")
    driver = node.consensus
    if driver is not None:
        driver._add_evidence(ev, gossip=True)
    else:
        node.evidence.add(ev, valset, node.state.height + 1)


def _record_amnesia(node: Any, attack: LightClientAttackEvidence) -> Path:
    folder = Path(node.home) / EVIDENCE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"amnesia-{attack.conflicting_block.height}-{attack.hash().hex()[:16]}.bin"
    path.write_bytes(attack.encode())
    return path
