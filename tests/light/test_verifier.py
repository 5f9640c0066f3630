"""Pure header verification over a synthetic signed chain (light/synth.py) and the store."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest

from chain import errors as chain_errors
from chain.types import Commit
from light import errors as le
from light import verifier as vf
from light.evidence import LightClientAttackEvidence, make_evidence
from light.store import TrustedStore
from light.synth import build_chain, key, sign_commit, valset_of

CHAIN = "synth"
KEYS = [key(str(i)) for i in range(4)]
NEW = [key(f"new{i}") for i in range(4)]


def now(chain: list[vf.LightBlock]) -> int:
    return chain[-1].time_ms + 1000


def test_adjacent_and_skipping_accept_an_honest_chain() -> None:
    c = build_chain(CHAIN, 30, KEYS)
    for a, b in itertools.pairwise(c):
        vf.verify_adjacent(a, b, CHAIN, now_ms=now(c))
    vf.verify_non_adjacent(c[0], c[-1], CHAIN, now_ms=now(c))
    assert [b.height for b in vf.verify_to(c[0], lambda h: c[h - 1], 30, CHAIN, now_ms=now(c))] == [30]


def test_bisection_across_a_whole_new_set() -> None:
    # the set is replaced in steps, so no single jump keeps 1/3 of the trusted power
    c = build_chain(CHAIN, 40, KEYS, {10: KEYS[:2] + NEW[:2], 20: NEW[:2] + KEYS[3:] + NEW[2:3], 30: NEW})
    with pytest.raises(le.TrustLevelNotMet):
        vf.verify_non_adjacent(c[0], c[-1], CHAIN, now_ms=now(c))
    fetched: list[int] = []

    def fetch(h: int) -> vf.LightBlock:
        fetched.append(h)
        return c[h - 1]

    trace = vf.verify_to(c[0], fetch, 40, CHAIN, now_ms=now(c))
    assert trace[-1].height == 40 and len(trace) >= 2
    assert [b.height for b in trace] == sorted(b.height for b in trace)
    assert len(fetched) < 40


def test_bisection_gives_up_within_its_bound() -> None:
    c = build_chain(CHAIN, 40, KEYS, {30: NEW})
    with pytest.raises(le.BisectionFailed):
        vf.verify_to(c[0], lambda h: c[h - 1], 40, CHAIN, now_ms=now(c), max_steps=2)


def test_refusals() -> None:
    c = build_chain(CHAIN, 5, KEYS)
    a, b = c[1], c[2]
    t = now(c)
    # wrong chain id
    with pytest.raises(le.InvalidHeader):
        vf.verify_adjacent(a, b, "other", now_ms=t)
    # a header field changed: the commit no longer signs it
    bad = dataclasses.replace(b, header=dataclasses.replace(b.header, app_hash=bytes(32)))
    with pytest.raises(le.InvalidCommit):
        vf.verify_adjacent(a, bad, CHAIN, now_ms=t)
    # the commit of too few signers (2 of 4 is not +2/3)
    header = b.header
    few = dataclasses.replace(b, commit=sign_commit(CHAIN, header, KEYS, b.validators, signers=2))
    with pytest.raises(le.InvalidCommit):
        vf.verify_adjacent(a, few, CHAIN, now_ms=t)
    # a validator set that is not the header's
    with pytest.raises(le.InvalidValidatorSet):
        vf.verify_adjacent(a, dataclasses.replace(b, validators=valset_of(NEW)), CHAIN, now_ms=t)
    # a bad signature
    s = b.commit.signatures[0]
    forged = dataclasses.replace(s, signature=bytes(64))
    commit = Commit(b.commit.height, b.commit.round, b.commit.block_hash, (forged, *b.commit.signatures[1:]))
    with pytest.raises(le.InvalidCommit):
        vf.verify_adjacent(a, dataclasses.replace(b, commit=commit), CHAIN, now_ms=t)
    # expired trust and a header from the future
    with pytest.raises(le.TrustExpired):
        vf.verify_adjacent(a, b, CHAIN, now_ms=a.time_ms + vf.DEFAULT_TRUSTING_PERIOD_MS)
    with pytest.raises(le.InvalidHeader):
        vf.verify_adjacent(a, b, CHAIN, now_ms=b.time_ms - vf.DEFAULT_MAX_CLOCK_DRIFT_MS - 1)
    # a link to another previous block
    other = build_chain(CHAIN, 5, KEYS, fork_at=2, fork_tag=b"x")
    with pytest.raises(le.InvalidHeader):
        vf.verify_adjacent(a, other[2], CHAIN, now_ms=t)


def test_store_round_trip_pruning_and_corruption(tmp_path: Path) -> None:
    c = build_chain(CHAIN, 6, KEYS)
    store = TrustedStore(tmp_path, keep=4)
    for b in c:
        store.save(b)
    assert store.heights() == [3, 4, 5, 6]
    again = TrustedStore(tmp_path)
    assert again.latest() == c[-1] and again.get(4) == c[3] and again.get(1) is None
    assert again.nearest_below(2) is None and again.nearest_above(2) == c[2]
    path = tmp_path / "blocks" / f"{5:020d}"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(le.CorruptStore):
        TrustedStore(tmp_path).get(5)
    with pytest.raises(le.NotInitialised):
        TrustedStore(tmp_path / "empty").meta()


def test_attack_evidence_names_the_double_signers() -> None:
    honest = build_chain(CHAIN, 5, KEYS)
    forked = build_chain(CHAIN, 5, KEYS, fork_at=3, fork_tag=b"evil")
    ev = make_evidence(forked[2], honest[2], honest[1])
    assert ev.common_height == 2 and set(ev.byzantine_validators) == {k.public_key.raw for k in KEYS}
    assert len(ev.hash()) == 32 and ev.encode() != make_evidence(honest[2], forked[2], honest[1]).encode()
    again = LightClientAttackEvidence.decode_untrusted(ev.encode())
    assert again == ev
    again.verify(CHAIN)
    with pytest.raises(le.VerificationError):
        dataclasses.replace(ev, byzantine_validators=(bytes(32),)).verify(CHAIN)
    with pytest.raises(chain_errors.DecodeError):
        LightClientAttackEvidence.decode_untrusted(ev.encode()[:-1])


def test_corrupt_meta_is_a_typed_error(tmp_path: Path) -> None:
    store = TrustedStore(tmp_path)
    (tmp_path / "meta").write_bytes(b"BHL1" + bytes(32) + b"junk")
    with pytest.raises(le.CorruptStore):
        store.meta()
    (tmp_path / "meta").write_bytes(b"short")
    with pytest.raises(le.CorruptStore):
        store.meta()
