"""A synthetic signed chain of light blocks, for tests and benchmarks.

Real Ed25519 keys sign real precommits over real headers; only the state is
missing (app hashes are derived from the height), so it exercises header
verification, never queries. ``changes`` replaces validators at given heights
to make skipping verification bisect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import blake3

from chain.crypto import PrivateKey
from chain.merkle import EMPTY_ROOT
from chain.types import Commit, Header, Validator, ValidatorSet, Vote, VoteType, commit_hash
from light.verifier import LightBlock

GENESIS_TIME_MS = 1_750_000_000_000
BLOCK_MS = 1000


def key(seed: str) -> PrivateKey:
    return PrivateKey(blake3.blake3(b"light-synth:" + seed.encode()).digest())


def valset_of(keys: Sequence[PrivateKey], power: int = 10) -> ValidatorSet:
    return ValidatorSet.from_unsorted(Validator(k.public_key.raw, power) for k in keys)


def sign_commit(chain_id: str, header: Header, keys: Sequence[PrivateKey], vset: ValidatorSet,
                signers: int | None = None) -> Commit:
    """Precommits of the first ``signers`` members of ``vset`` (all by default)."""
    by_pub = {k.public_key.raw: k for k in keys}
    votes = []
    for i, v in enumerate(vset.validators[: len(vset) if signers is None else signers]):
        vote = Vote(VoteType.PRECOMMIT, header.height, 0, header.hash(), header.time_ms + 500, i)
        votes.append(vote.signed(by_pub[v.pubkey], chain_id))
    return Commit.from_votes(votes)


def build_chain(chain_id: str, heights: int, keys: Sequence[PrivateKey],
                changes: Mapping[int, Sequence[PrivateKey]] | None = None,
                *, fork_at: int | None = None, fork_tag: bytes = b"") -> list[LightBlock]:
    """Light blocks of heights 1..heights; ``changes[h]`` are the signers from height h on.

    ``fork_at``: from that height the app hashes differ by ``fork_tag`` (a
    conflicting chain signed by the same keys, for attack tests).
    """
    changes = dict(changes or {})
    sets: dict[int, tuple[Sequence[PrivateKey], ValidatorSet]] = {}
    current = list(keys)
    for h in range(1, heights + 2):
        if h in changes:
            current = list(changes[h])
        sets[h] = (current, valset_of(current))
    out: list[LightBlock] = []
    prev_hash = b""
    last: Commit | None = None
    for h in range(1, heights + 1):
        signer_keys, vset = sets[h]
        tag = fork_tag if fork_at is not None and h >= fork_at else b""
        header = Header(
            chain_id=chain_id, height=h, time_ms=GENESIS_TIME_MS + (h - 1) * BLOCK_MS,
            prev_block_hash=prev_hash, last_commit_hash=commit_hash(last),
            cards_root=EMPTY_ROOT, seeders_root=EMPTY_ROOT, keys_root=EMPTY_ROOT, txs_root=EMPTY_ROOT,
            evidence_hash=EMPTY_ROOT, validators_hash=vset.hash(), next_validators_hash=sets[h + 1][1].hash(),
            app_hash=blake3.blake3(b"app" + h.to_bytes(8, "big") + tag).digest(),
            proposer=vset.validators[h % len(vset)].pubkey,
        )  # fmt: skip
        commit = sign_commit(chain_id, header, signer_keys, vset)
        out.append(LightBlock(header, commit, vset, sets[h + 1][1]))
        prev_hash = header.hash()
        last = commit
    return out
