"""Shared builders for the consensus tests: keys, sets, blocks, signed messages."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import blake3

from chain.crypto import PrivateKey
from chain.encoding import pack
from chain.params import ConsensusParams
from chain.types import (
    Block,
    Commit,
    Header,
    Proposal,
    Validator,
    ValidatorSet,
    Vote,
    VoteType,
    commit_hash,
    compute_evidence_hash,
    compute_lane_root,
)
from consensus import core as c

CHAIN_ID = "test-chain"
T0 = 1_700_000_000_000
PARAMS = ConsensusParams(
    timeout_propose_ms=1000, timeout_propose_delta_ms=100,
    timeout_prevote_ms=500, timeout_prevote_delta_ms=50,
    timeout_precommit_ms=400, timeout_precommit_delta_ms=40,
    timeout_commit_ms=300, max_clock_drift_ms=2000,
)
EMPTY = compute_lane_root(())


def make_keys(n: int, tag: bytes = b"k") -> list[PrivateKey]:
    """n keys sorted by public key (so key i is validator index i)."""
    keys = [PrivateKey(blake3.blake3(tag + bytes([i])).digest()) for i in range(n)]
    return sorted(keys, key=lambda k: k.public_key.raw)


def make_valset(keys: Sequence[PrivateKey], powers: Sequence[int] | None = None) -> ValidatorSet:
    powers = powers or [1] * len(keys)
    return ValidatorSet(tuple(Validator(k.public_key.raw, p) for k, p in zip(keys, powers, strict=True)))


def make_block(height: int, tag: str, *, time_ms: int = T0, valset: ValidatorSet | None = None,
               last_commit: Commit | None = None, prev: bytes = b"") -> Block:
    txs = (pack([tag.encode(), height]),)
    vh = valset.hash() if valset is not None else bytes(32)
    header = Header(
        CHAIN_ID, height, time_ms, prev, commit_hash(last_commit), EMPTY, EMPTY, EMPTY,
        compute_lane_root(txs), compute_evidence_hash(()), vh, vh, bytes(32), bytes(32),
    )
    return Block(header, (), (), (), txs, last_commit, ())


def vote(key: PrivateKey, idx: int, vtype: VoteType, height: int, round_: int,
         block: Block | bytes | None, ts: int = T0) -> Vote:
    h = block.hash() if isinstance(block, Block) else (block or b"")
    return Vote(vtype, height, round_, h, ts, idx).signed(key, CHAIN_ID)


def proposal(key: PrivateKey, idx: int, height: int, round_: int, block: Block,
             pol: int = -1, ts: int = T0) -> Proposal:
    return Proposal(height, round_, pol, block.hash(), ts, idx).signed(key, CHAIN_ID)


def summarize(actions: Sequence[c.Action], names: dict[bytes, str]) -> list[tuple[object, ...]]:
    """Actions as short tuples for step tables; block hashes shown by name."""
    def nm(h: bytes) -> str:
        return "nil" if h == b"" else names.get(h, h.hex()[:8])

    out: list[tuple[object, ...]] = []
    for a in actions:
        if isinstance(a, c.SignVote):
            kind = "prevote" if a.vote.type == VoteType.PREVOTE else "precommit"
            out.append(("sign", kind, a.vote.round, nm(a.vote.block_hash)))
        elif isinstance(a, c.SignProposal):
            out.append(("propose", a.proposal.round, a.proposal.pol_round, nm(a.proposal.block_hash)))
        elif isinstance(a, c.ScheduleTimeout):
            out.append(("timeout", a.step.name.lower(), a.round, a.delay_ms))
        elif isinstance(a, c.CreateBlock):
            out.append(("create", a.round))
        elif isinstance(a, c.ValidateBlock):
            out.append(("validate", nm(a.block.hash())))
        elif isinstance(a, c.Decide):
            out.append(("decide", a.round, nm(a.block.hash())))
        elif isinstance(a, c.RequestBlock):
            out.append(("request", a.round, nm(a.block_hash)))
        elif isinstance(a, c.ReportEvidence):
            out.append(("evidence", a.evidence.vote_a.validator_index))
        elif isinstance(a, c.Broadcast):
            out.append(("broadcast", type(a.message).__name__))
    return out


__all__ = ["dataclasses"]
