"""The consensus WAL on real files: format, repair on open, replay, and a fuzz test."""

from __future__ import annotations

import logging
import random
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.types import VoteType
from consensus import core as c
from consensus.replica import Replica
from consensus.signguard import SignGuard
from consensus.wal import HEADER, WAL, EntryKind, WALEntry

from .helpers import CHAIN_ID, PARAMS, T0, make_block, make_keys, make_valset, proposal, vote


def entry(h: int, i: int) -> WALEntry:
    return WALEntry(EntryKind.VOTE, h, (T0 + i, bytes([i % 256]) * 10))


def test_roundtrip_and_layout(tmp_path: Path) -> None:
    p = tmp_path / "cs.wal"
    with WAL.open(p) as w:
        assert w.repair is None
        for i in range(5):
            w.append(entry(1, i), sync=i == 4)
    data = p.read_bytes()
    assert data.startswith(HEADER)
    length, crc = struct.unpack_from(">II", data, len(HEADER))
    payload = data[len(HEADER) + 8 : len(HEADER) + 8 + length]
    assert zlib.crc32(payload) == crc
    with WAL.open(p) as w:
        assert w.repair is None
        assert w.entries == [entry(1, i) for i in range(5)]
        assert w.entries_for_height(1) == [entry(1, i) for i in range(5)]


def test_torn_tail_is_truncated_with_a_log_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = tmp_path / "cs.wal"
    with WAL.open(p) as w:
        for i in range(3):
            w.append(entry(1, i), sync=True)
    full = p.read_bytes()
    p.write_bytes(full[:-5])
    with caplog.at_level(logging.WARNING, logger="consensus.wal"), WAL.open(p) as w:
        assert w.entries == [entry(1, 0), entry(1, 1)]
        assert w.repair is not None and w.repair.reason == "torn record"
        w.append(entry(1, 9), sync=True)
    assert "truncated the tail" in caplog.text
    with WAL.open(p) as w:
        assert w.repair is None
        assert w.entries == [entry(1, 0), entry(1, 1), entry(1, 9)]


def test_bit_flip_cuts_from_the_damaged_record(tmp_path: Path) -> None:
    p = tmp_path / "cs.wal"
    with WAL.open(p) as w:
        for i in range(4):
            w.append(entry(1, i), sync=True)
    data = bytearray(p.read_bytes())
    data[len(HEADER) + 8 + 3] ^= 0x10  # inside the first payload
    p.write_bytes(bytes(data))
    with WAL.open(p) as w:
        assert w.entries == []
        assert w.repair is not None and w.repair.reason == "checksum mismatch"
    assert p.read_bytes() == HEADER


def test_oversize_length_and_damaged_header(tmp_path: Path) -> None:
    p = tmp_path / "cs.wal"
    p.write_bytes(HEADER + struct.pack(">II", 2**31, 0) + b"x" * 10)
    with WAL.open(p) as w:
        assert w.entries == [] and w.repair is not None
        assert "above the limit" in w.repair.reason
    p.write_bytes(b"NOTAWAL!" + b"junk")
    with WAL.open(p) as w:
        assert w.repair is not None and w.repair.moved_to is not None
        assert w.repair.moved_to.read_bytes() == b"NOTAWAL!junk"
        assert w.entries == []
    p.write_bytes(b"BHW")  # torn header
    with WAL.open(p) as w:
        assert w.entries == [] and w.repair is not None


def test_end_height_and_rotation(tmp_path: Path) -> None:
    p = tmp_path / "cs.wal"
    with WAL.open(p, rotate_bytes=200) as w:
        for i in range(10):
            w.append(entry(1, i), sync=False)
        w.end_height(1)
        assert w.entries_for_height(1) == []
        assert w.last_ended_height() == 1
        w.append(entry(2, 0), sync=False)
    with WAL.open(p) as w:
        assert [e.kind for e in w.entries] == [EntryKind.END_HEIGHT, EntryKind.VOTE]
        assert w.entries_for_height(2) == [entry(2, 0)]
    assert p.stat().st_size < 200


# --- replay and the fuzz test -------------------------------------------------------


class Validator:
    """Validator 0 of a 4-validator set, with real WAL and sign-state files."""

    def __init__(self, d: Path) -> None:
        self.keys = make_keys(4)
        self.vs = make_valset(self.keys)
        self.d = d
        self.rep: Replica | None = None

    def boot(self) -> list[c.Action]:
        wal = WAL.open(self.d / "cs.wal")
        guard = SignGuard.open(self.d / "sign_state", create=True)
        self.rep = Replica(CHAIN_ID, PARAMS, wal, guard, self.keys[0].sign, self.keys[0].public_key.raw)
        return list(self.rep.start(1, self.vs, now_ms=T0))

    def close(self) -> None:
        if self.rep is not None:
            self.rep.wal.close()
            self.rep = None


def run_height_until_precommit(v: Validator) -> list[object]:
    """Round 0: proposal A, we prevote A, +2/3 prevote A, we precommit A (and lock)."""
    rep = v.rep
    assert rep is not None
    blk = make_block(1, "A")
    i = rep.core.proposer_index(1, 0)
    out: list[object] = []
    out += rep.on_proposal(proposal(v.keys[i], i, 1, 0, blk), blk, now_ms=T0)
    out += rep.on_block_verdict(blk.hash(), True, now_ms=T0)
    for j in (1, 2):
        out += rep.on_vote(vote(v.keys[j], j, VoteType.PREVOTE, 1, 0, blk), now_ms=T0)
    return out


def test_replay_restores_lock_and_returns_identical_votes(tmp_path: Path) -> None:
    v = Validator(tmp_path)
    v.boot()
    run_height_until_precommit(v)
    assert v.rep is not None
    signed = list(v.rep.signed_votes)
    assert [s.type for s in signed] == [VoteType.PREVOTE, VoteType.PRECOMMIT]
    v.close()
    v.boot()
    assert v.rep is not None
    st = v.rep.core.state()
    assert st.locked_round == 0 and st.step == c.Step.PRECOMMIT
    # whatever replay re-signed is byte-identical to what was signed before
    assert all(s in signed for s in v.rep.signed_votes)
    assert v.rep.core.vote_indices(0, VoteType.PRECOMMIT) == frozenset({0})


def test_lost_own_vote_is_re_signed_identically(tmp_path: Path) -> None:
    """Crash between the sign guard and the WAL write: replay re-derives the same
    precommit and the guard hands back the stored signature."""
    v = Validator(tmp_path)
    v.boot()
    run_height_until_precommit(v)
    assert v.rep is not None
    precommit = v.rep.signed_votes[-1]
    v.close()
    w = WAL.open(tmp_path / "cs.wal")
    keep = [e for e in w.entries if e.kind != EntryKind.OWN_VOTE or e is not w.entries[-1]]
    w.close()
    (tmp_path / "cs.wal").write_bytes(HEADER)
    with WAL.open(tmp_path / "cs.wal") as w2:
        for e in keep:
            w2.append(e, sync=False)
    v.boot()
    assert v.rep is not None
    assert v.rep.signed_votes[-1] == precommit


def _damage(data: bytes, rng: random.Random) -> bytes:
    mode = rng.randrange(4)
    if mode == 0 and len(data) > 1:
        return data[: rng.randrange(len(data))]
    if mode == 1 and data:
        buf = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(buf))
            buf[pos] ^= 1 << rng.randrange(8)
        return bytes(buf)
    if mode == 2 and data:
        cut = rng.randrange(len(data))
        return data[:cut] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
    buf = bytearray(data)
    if buf:
        pos = rng.randrange(len(buf))
        buf[pos:pos + 4] = b"\xff\xff\xff\xff"
    return bytes(buf)


def test_wal_fuzz_restart_never_double_signs_never_crashes(tmp_path: Path) -> None:
    """Random truncations and bit flips of a real WAL; after each, the validator
    restarts, replays, keeps going, and never signs two different votes for one
    (height, round, type)."""
    rng = random.Random(5)
    keys = make_keys(4)
    for case in range(60):
        d = tmp_path / f"case{case}"
        d.mkdir()
        v = Validator(d)
        signed: dict[tuple[int, int, int], bytes] = {}

        def note(vs: list, signed: dict = signed, case: int = case) -> None:
            for s in vs:
                k = (s.height, s.round, int(s.type))
                dg = s.signing_digest(CHAIN_ID)
                assert signed.setdefault(k, dg) == dg, f"double sign at {k} (case {case})"

        v.boot()
        run_height_until_precommit(v)
        assert v.rep is not None
        note(v.rep.signed_votes)
        for _restart in range(3):
            v.close()
            p = d / "cs.wal"
            p.write_bytes(_damage(p.read_bytes(), rng))
            v.boot()  # must not raise
            rep = v.rep
            assert rep is not None
            # drive further: other blocks and nil votes try to make us sign differently
            other = make_block(1, f"B{_restart}")
            r = rep.core.round
            i = rep.core.proposer_index(1, r)
            try:
                rep.on_proposal(proposal(keys[i], i, 1, r, other), other, now_ms=T0)
            except Exception as exc:  # a proposal the core rejects must be a typed error
                from consensus.errors import ConsensusError
                assert isinstance(exc, ConsensusError)
            rep.on_block_verdict(other.hash(), True, now_ms=T0)
            rep.on_timeout(c.Step.PROPOSE, 1, r, now_ms=T0)
            for j in (1, 2, 3):
                rep.on_vote(vote(keys[j], j, VoteType.PREVOTE, 1, r, None), now_ms=T0)
            rep.on_timeout(c.Step.PREVOTE, 1, r, now_ms=T0)
            note(rep.signed_votes)
        v.close()


@given(st.binary(max_size=600), st.integers(min_value=0, max_value=3))
@settings(max_examples=150)
def test_open_never_fails_on_arbitrary_bytes(blob: bytes, prefix_records: int) -> None:
    """Any file content: open repairs it (or starts fresh) and never raises."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "cs.wal"
        with WAL.open(p) as w:
            for i in range(prefix_records):
                w.append(entry(1, i), sync=False)
        p.write_bytes(p.read_bytes() + blob)
        with WAL.open(p) as w:
            assert w.entries[:prefix_records] == [entry(1, i) for i in range(prefix_records)]
            w.append(entry(2, 0), sync=True)
        with WAL.open(p) as w:
            assert w.repair is None
            assert w.entries[-1] == entry(2, 0)
