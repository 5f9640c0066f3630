"""The sign-state guard on real files."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from chain.types import Proposal, Vote, VoteType
from consensus.errors import (
    DoubleSignRefused,
    SignStateCorrupt,
    SignStateWriteError,
    UsageError,
)
from consensus.signguard import SignGuard, SignState, SignStep

from .helpers import CHAIN_ID, T0, make_keys

KEY = make_keys(1)[0]


def v(t: VoteType, h: int, r: int, bh: bytes, ts: int = T0) -> Vote:
    return Vote(t, h, r, bh, ts, 0)


def test_sign_persist_reload(tmp_path: Path) -> None:
    p = tmp_path / "ss"
    g = SignGuard.open(p, create=True)
    assert g.state is None
    s1 = g.sign_vote(v(VoteType.PREVOTE, 5, 0, b"\x01" * 32), CHAIN_ID, KEY.sign)
    assert s1.verify(CHAIN_ID, KEY.public_key.raw)
    g2 = SignGuard.open(p)
    assert g2.state == g.state
    assert g2.state is not None and g2.state.hrs() == (5, 0, int(SignStep.PREVOTE))
    assert g2.state.digest == s1.signing_digest(CHAIN_ID)
    assert not (tmp_path / "ss.tmp").exists()


def test_identical_request_returns_the_stored_signature(tmp_path: Path) -> None:
    g = SignGuard.open(tmp_path / "ss", create=True)
    calls: list[bytes] = []

    def signer(d: bytes) -> bytes:
        calls.append(d)
        return KEY.sign(d)

    a = g.sign_vote(v(VoteType.PRECOMMIT, 5, 1, b"\x02" * 32), CHAIN_ID, signer)
    g = SignGuard.open(tmp_path / "ss")
    b = g.sign_vote(v(VoteType.PRECOMMIT, 5, 1, b"\x02" * 32), CHAIN_ID, signer)
    assert a == b and len(calls) == 1


def test_timestamp_only_difference_gets_the_stored_vote(tmp_path: Path) -> None:
    g = SignGuard.open(tmp_path / "ss", create=True)
    a = g.sign_vote(v(VoteType.PREVOTE, 5, 1, b"\x02" * 32, ts=T0), CHAIN_ID, KEY.sign)
    b = g.sign_vote(v(VoteType.PREVOTE, 5, 1, b"\x02" * 32, ts=T0 + 999), CHAIN_ID, KEY.sign)
    assert b == a and b.timestamp_ms == T0
    p = Proposal(6, 0, -1, b"\x03" * 32, T0, 0)
    sp = g.sign_proposal(p, CHAIN_ID, KEY.sign)
    sp2 = g.sign_proposal(dataclasses.replace(p, timestamp_ms=T0 + 5), CHAIN_ID, KEY.sign)
    assert sp2 == sp


@pytest.mark.parametrize(
    "second",
    [
        v(VoteType.PREVOTE, 5, 1, b""),  # conflicting: same HRS, other block
        v(VoteType.PREVOTE, 5, 0, b"\x02" * 32),  # lower round
        v(VoteType.PREVOTE, 4, 9, b"\x02" * 32),  # lower height
    ],
    ids=["conflict", "round-regression", "height-regression"],
)
def test_conflicts_and_regressions_are_refused(tmp_path: Path, second: Vote) -> None:
    g = SignGuard.open(tmp_path / "ss", create=True)
    g.sign_vote(v(VoteType.PREVOTE, 5, 1, b"\x02" * 32), CHAIN_ID, KEY.sign)
    with pytest.raises(DoubleSignRefused):
        g.sign_vote(second, CHAIN_ID, KEY.sign)
    # and still after a restart
    with pytest.raises(DoubleSignRefused):
        SignGuard.open(tmp_path / "ss").sign_vote(second, CHAIN_ID, KEY.sign)


def test_step_order_inside_a_round(tmp_path: Path) -> None:
    g = SignGuard.open(tmp_path / "ss", create=True)
    g.sign_proposal(Proposal(7, 2, -1, b"\x01" * 32, T0, 0), CHAIN_ID, KEY.sign)
    g.sign_vote(v(VoteType.PREVOTE, 7, 2, b"\x01" * 32), CHAIN_ID, KEY.sign)
    g.sign_vote(v(VoteType.PRECOMMIT, 7, 2, b"\x01" * 32), CHAIN_ID, KEY.sign)
    with pytest.raises(DoubleSignRefused):
        g.sign_vote(v(VoteType.PREVOTE, 7, 2, b"\x01" * 32), CHAIN_ID, KEY.sign)
    with pytest.raises(DoubleSignRefused):
        g.sign_proposal(Proposal(7, 2, -1, b"\x01" * 32, T0, 0), CHAIN_ID, KEY.sign)
    g.sign_vote(v(VoteType.PREVOTE, 7, 3, b""), CHAIN_ID, KEY.sign)


def test_no_signature_leaves_unless_the_record_is_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "ss"
    g = SignGuard.open(p, create=True)
    g.sign_vote(v(VoteType.PREVOTE, 3, 0, b"\x01" * 32), CHAIN_ID, KEY.sign)
    before = p.read_bytes()

    def failing_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("consensus.signguard.os.replace", failing_replace)
    with pytest.raises(SignStateWriteError):
        g.sign_vote(v(VoteType.PRECOMMIT, 3, 0, b"\x01" * 32), CHAIN_ID, KEY.sign)
    monkeypatch.undo()
    assert p.read_bytes() == before
    assert g.state is not None and g.state.step == SignStep.PREVOTE


def test_corrupt_or_missing_state_refuses_to_start(tmp_path: Path) -> None:
    p = tmp_path / "ss"
    with pytest.raises(SignStateCorrupt):
        SignGuard.open(p)  # missing without create
    g = SignGuard.open(p, create=True)
    g.sign_vote(v(VoteType.PREVOTE, 5, 1, b"\x02" * 32), CHAIN_ID, KEY.sign)
    data = bytearray(p.read_bytes())
    for pos in (0, 5, 20, len(data) - 1):
        bad = bytearray(data)
        bad[pos] ^= 0x01
        p.write_bytes(bytes(bad))
        with pytest.raises(SignStateCorrupt):
            SignGuard.open(p, create=True)
    p.write_bytes(bytes(data[:30]))
    with pytest.raises(SignStateCorrupt):
        SignGuard.open(p, create=True)
    p.write_bytes(bytes(data))
    assert SignGuard.open(p).state is not None
    with pytest.raises(UsageError):
        SignGuard.open(p).check(-1, 0, SignStep.PREVOTE, b"")
    assert SignState.decode(bytes(data)).height == 5
    os.remove(p)


def test_last_signed_vote_is_kept_for_resending(tmp_path: Path) -> None:
    p = tmp_path / "ss"
    g = SignGuard.open(p, create=True)
    assert g.last_vote() is None
    s = g.sign_vote(v(VoteType.PRECOMMIT, 9, 2, b"\x05" * 32), CHAIN_ID, KEY.sign)
    assert SignGuard.open(p).last_vote() == s
    g.sign_proposal(Proposal(10, 0, -1, b"\x03" * 32, T0, 0), CHAIN_ID, KEY.sign)
    assert SignGuard.open(p).last_vote() is None


def test_recent_votes_of_the_height_are_kept(tmp_path: Path) -> None:
    p = tmp_path / "ss"
    g = SignGuard.open(p, create=True)
    pv = g.sign_vote(v(VoteType.PREVOTE, 4, 0, b"\x05" * 32), CHAIN_ID, KEY.sign)
    pc = g.sign_vote(v(VoteType.PRECOMMIT, 4, 0, b"\x05" * 32), CHAIN_ID, KEY.sign)
    assert SignGuard.open(p).recent_votes() == [pv, pc]
    pv1 = g.sign_vote(v(VoteType.PREVOTE, 4, 1, b""), CHAIN_ID, KEY.sign)
    assert SignGuard.open(p).recent_votes() == [pv1, pc]  # latest per step
    nxt = g.sign_vote(v(VoteType.PREVOTE, 5, 0, b""), CHAIN_ID, KEY.sign)
    assert SignGuard.open(p).recent_votes() == [nxt]  # a new height starts afresh
    data = p.read_bytes()
    assert SignState.decode(data).encode() == data
