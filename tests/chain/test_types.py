"""Consensus wire types: golden vectors both ways, rejection of bad bytes, commit and evidence checks."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from chain import types as ct
from chain.crypto import PrivateKey
from chain.encoding import pack, unpack_untrusted
from chain.errors import (
    DecodeError,
    InvalidBlock,
    InvalidCommit,
    InvalidEvidence,
    InvalidValidatorSet,
    UsageError,
)
from chain.merkle import EMPTY_ROOT
from tests.chain.vectors.codec import CHAIN_ID, TYPES, build_vectors, from_json, to_json

VECTOR_DIR = Path(__file__).parent / "vectors"


def _vector_cases() -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for kind in TYPES:
        doc = json.loads((VECTOR_DIR / f"{kind}.json").read_text())
        assert doc["type"] == kind and doc["vectors"]
        cases += [(kind, entry) for entry in doc["vectors"]]
    return cases


@pytest.mark.parametrize(
    ("kind", "entry"), _vector_cases(), ids=lambda x: x if isinstance(x, str) else x["name"]
)
def test_golden_vector_both_ways(kind: str, entry: dict[str, Any]) -> None:
    cls = TYPES[kind]
    value = from_json(cls, entry["value"])
    data = bytes.fromhex(entry["hex"])
    assert value.encode() == data, "value -> bytes"
    assert cls.decode_untrusted(data) == value, "bytes -> value"
    assert to_json(cls.decode_untrusted(data)) == entry["value"]


def test_vectors_on_disk_match_the_builder() -> None:
    built = build_vectors()
    for kind in TYPES:
        doc = json.loads((VECTOR_DIR / f"{kind}.json").read_text())
        assert [e["hex"] for e in doc["vectors"]] == [v.encode().hex() for _, v in built[kind]]


def test_vote_vector_by_hand() -> None:
    doc = json.loads((VECTOR_DIR / "vote.json").read_text())
    data = bytes.fromhex(doc["vectors"][0]["hex"])
    # fixarray(7), PREVOTE, height 1, round 0, bin8 len 0 (nil), uint64 time, index 2, bin8 len 64.
    assert data[:5] == bytes.fromhex("97010100c4") and data[5] == 0
    assert data[6] == 0xCF and int.from_bytes(data[7:15], "big") == 1_700_000_000_000
    assert data[15] == 2 and data[16:18] == bytes.fromhex("c440") and len(data) == 18 + 64


# --- fixtures ---

KEYS = [PrivateKey(bytes([i + 1]) * 32) for i in range(4)]
VALSET = ct.ValidatorSet.from_unsorted(
    ct.Validator(k.public_key.raw, 10 + i) for i, k in enumerate(KEYS)
)
BY_PUB = {k.public_key.raw: k for k in KEYS}
BH = bytes(range(32))


def key_at(i: int, vs: ct.ValidatorSet = VALSET) -> PrivateKey:
    return BY_PUB[vs.validators[i].pubkey]


def precommit(
    i: int, *, height: int = 7, round_: int = 0, block_hash: bytes = BH, ts: int = 1000
) -> ct.Vote:
    return ct.Vote(ct.VoteType.PRECOMMIT, height, round_, block_hash, ts, i).signed(
        key_at(i), CHAIN_ID
    )


def commit_of(indices: list[int], **kw: Any) -> ct.Commit:
    return ct.Commit.from_votes([precommit(i, **kw) for i in indices])


# --- rejection of bad bytes ---


def _vote_list() -> list[Any]:
    return precommit(1).to_list()


@pytest.mark.parametrize(
    ("mutate", "why"),
    [
        (lambda f: f[:6], "too few fields"),
        (lambda f: [*f, 0], "too many fields"),
        (lambda f: [3, *f[1:]], "unknown vote type"),
        (lambda f: [0, *f[1:]], "vote type 0"),
        (lambda f: [f[0], 0, *f[2:]], "height 0"),
        (lambda f: [f[0], -1, *f[2:]], "negative height"),
        (lambda f: [f[0], f[1], 2**31, *f[3:]], "round too large"),
        (lambda f: [*f[:3], b"\x01" * 31, *f[4:]], "short block hash"),
        (lambda f: [*f[:3], "hash", *f[4:]], "block hash as str"),
        (lambda f: [*f[:4], True, *f[5:]], "bool timestamp"),
        (lambda f: [*f[:5], 70_000, f[6]], "index too large"),
        (lambda f: [*f[:6], f[6][:63]], "short signature"),
        (lambda f: [*f[:6], b""], "unsigned"),
        (lambda f: [*f[:6], None], "nil signature"),
    ],
)
def test_vote_rejects(mutate: Any, why: str) -> None:
    with pytest.raises(DecodeError):
        ct.Vote.decode_untrusted(pack(mutate(_vote_list())))


def test_vote_rejects_map_truncation_trailing_and_oversize() -> None:
    good = precommit(0).encode()
    as_map = b"\x87" + b"".join(pack(i) + pack(v) for i, v in enumerate(_vote_list()))
    for bad in (as_map, good[:-1], good + b"\x00", good[:40], b""):
        with pytest.raises(DecodeError):
            ct.Vote.decode_untrusted(bad)
    with pytest.raises(DecodeError):
        ct.Vote.decode_untrusted(pack([*_vote_list()[:6], b"\x00" * 300]))
    # Over-long integer inside an otherwise good vote: height 7 as uint16.
    over_long = good.replace(bytes([0x92 + 5, 2, 7]), bytes([0x97, 2, 0xCD, 0, 7]), 1)
    assert over_long != good
    with pytest.raises(DecodeError, match="non-canonical"):
        ct.Vote.decode_untrusted(over_long)


@pytest.mark.parametrize(
    "fields",
    [
        [7, 0, 0, BH, 1, 0, b"s" * 64],  # pol_round must be < round
        [7, 1, -2, BH, 1, 0, b"s" * 64],
        [7, 1, 0, b"", 1, 0, b"s" * 64],  # a proposal is never nil
        [0, 1, -1, BH, 1, 0, b"s" * 64],
    ],
)
def test_proposal_rejects(fields: list[Any]) -> None:
    with pytest.raises(DecodeError):
        ct.Proposal.decode_untrusted(pack(fields))


def test_commit_rejects_unsorted_or_duplicate_signatures() -> None:
    c = commit_of([0, 1, 2])
    sigs = [s.to_list() for s in c.signatures]
    for bad in ([sigs[1], sigs[0], sigs[2]], [sigs[0], sigs[0], sigs[1]]):
        with pytest.raises(DecodeError, match="ascending"):
            ct.Commit.decode_untrusted(pack([7, 0, BH, bad]))
    with pytest.raises(DecodeError):
        ct.Commit.decode_untrusted(pack([7, 0, b"", sigs]))


def test_validator_set_decode_rejects_unsorted_and_duplicates() -> None:
    members = VALSET.to_list()
    for bad in ([members[1], members[0]], [members[0], members[0]], [], [[members[0][0], 0]]):
        with pytest.raises(DecodeError):
            ct.ValidatorSet.decode_untrusted(pack(bad))


def test_header_rejects_bad_chain_id_and_hashes() -> None:
    h = build_vectors()["header"][1][1]
    f = h.to_list()
    for i, bad in [
        (0, ""),
        (0, "a b"),
        (0, "x" * 51),
        (4, b""),
        (12, b"\x00" * 33),
        (13, b"\x00" * 31),
        (3, b"\x00"),
    ]:
        g = list(f)
        g[i] = bad
        with pytest.raises(DecodeError):
            ct.Header.decode_untrusted(pack(g))


def test_block_decode_rejections() -> None:
    block = build_vectors()["block"][1][1]
    f = block.to_list()
    cases = [
        [*f[:6]],
        [f[0], [1], *f[2:]],  # lane item not bytes
        [f[0], b"x", *f[2:]],  # lane not an array
        [*f[:5], [], f[6]],  # commit of the wrong shape
        [*f[:6], [b"x" * (ct.MAX_EVIDENCE_BYTES + 1)]],
    ]
    for bad in cases:
        with pytest.raises(DecodeError):
            ct.Block.decode_untrusted(pack(bad))
    data = block.encode()
    with pytest.raises(DecodeError):
        ct.Block.decode_untrusted(data, max_bytes=len(data) - 1)
    assert ct.Block.decode_untrusted(data, max_bytes=len(data)) == block
    with pytest.raises(DecodeError):
        ct.Block.decode_untrusted(data + b"\xc0")


def test_evidence_decode_requires_canonical_order_and_kind() -> None:
    ev = build_vectors()["duplicate_vote_evidence"][0][1]
    swapped = [1, ev.vote_b.to_list(), ev.vote_a.to_list()]
    with pytest.raises(DecodeError, match="canonical order"):
        ct.DuplicateVoteEvidence.decode_untrusted(pack(swapped))
    with pytest.raises(DecodeError):
        ct.DuplicateVoteEvidence.decode_untrusted(
            pack([2, ev.vote_a.to_list(), ev.vote_b.to_list()])
        )
    assert ct.decode_evidence_untrusted(ev.encode()) == ev


@given(st.binary(max_size=300))
def test_random_bytes_never_escape_as_other_errors(blob: bytes) -> None:
    for cls in (
        ct.Vote,
        ct.Proposal,
        ct.Commit,
        ct.Header,
        ct.Block,
        ct.ValidatorSet,
        ct.DuplicateVoteEvidence,
    ):
        with contextlib.suppress(DecodeError):
            cls.decode_untrusted(blob)


@given(st.data())
def test_decoders_of_mutated_vectors_raise_only_decode_error(data: st.DataObject) -> None:
    """Flip, insert or delete bytes in real encodings: decode or DecodeError, nothing else."""
    kind = data.draw(st.sampled_from(sorted(TYPES)))
    _, value = data.draw(st.sampled_from(build_vectors()[kind]))
    raw = bytearray(value.encode())
    pos = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
    byte = data.draw(st.integers(min_value=0, max_value=255))
    if op == "flip":
        raw[pos] = byte
    elif op == "insert":
        raw.insert(pos, byte)
    else:
        del raw[pos]
    try:
        decoded = TYPES[kind].decode_untrusted(bytes(raw))
    except DecodeError:
        return
    assert decoded.encode() == bytes(raw)


# --- hypothesis round trips ---

hashes = st.binary(min_size=32, max_size=32)
sigs = st.binary(min_size=64, max_size=64)
u63 = st.integers(min_value=0, max_value=2**63 - 1)
votes = st.builds(
    ct.Vote,
    st.sampled_from(list(ct.VoteType)),
    st.integers(min_value=1, max_value=2**63 - 1),
    st.integers(min_value=0, max_value=ct.MAX_ROUND),
    st.one_of(st.just(b""), hashes),
    u63,
    st.integers(min_value=0, max_value=ct.MAX_VALIDATOR_INDEX),
    sigs,
)
headers = st.builds(
    ct.Header,
    st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True),
    st.integers(min_value=1, max_value=2**63 - 1),
    u63,
    st.one_of(st.just(b""), hashes),
    *[hashes] * 9,
    st.binary(min_size=32, max_size=32),
)
commits = st.builds(
    lambda h, r, bh, idx: ct.Commit(
        h, r, bh, tuple(ct.CommitSig(i, 5 + i, b"\x07" * 64) for i in sorted(idx))
    ),
    st.integers(min_value=1, max_value=2**40),
    st.integers(min_value=0, max_value=100),
    hashes,
    st.sets(st.integers(min_value=0, max_value=300), max_size=20),
)
lanes = st.lists(st.binary(max_size=50), max_size=8).map(tuple)
blocks = st.builds(
    ct.Block,
    headers,
    lanes,
    lanes,
    lanes,
    lanes,
    st.one_of(st.none(), commits),
    st.lists(st.binary(max_size=80), max_size=3).map(tuple),
)


@given(votes)
def test_vote_round_trip(v: ct.Vote) -> None:
    assert ct.Vote.decode_untrusted(v.encode()) == v


@given(headers)
def test_header_round_trip(h: ct.Header) -> None:
    assert ct.Header.decode_untrusted(h.encode()) == h


@given(blocks)
def test_block_round_trip(b: ct.Block) -> None:
    data = b.encode()
    assert ct.Block.decode_untrusted(data) == b
    assert unpack_untrusted(data, len(data))[1] == list(b.cards)


@given(commits)
def test_commit_round_trip(c: ct.Commit) -> None:
    assert ct.Commit.decode_untrusted(c.encode()) == c


# --- signatures, commits, validator sets ---


def test_vote_signature_binds_every_field_and_the_chain() -> None:
    v = precommit(0)
    pub = VALSET.validators[0].pubkey
    assert v.verify(CHAIN_ID, pub)
    assert not v.verify("other-chain", pub)
    for change in (
        {"height": 8},
        {"round": 1},
        {"block_hash": b""},
        {"timestamp_ms": 1001},
        {"validator_index": 1},
    ):
        assert not replace(v, **change).verify(CHAIN_ID, pub)
    assert not replace(v, type=ct.VoteType.PREVOTE).verify(CHAIN_ID, pub)


def test_proposal_and_vote_domains_differ() -> None:
    p = ct.Proposal(7, 0, -1, BH, 1000, 0)
    v = ct.Vote(ct.VoteType.PREVOTE, 7, 0, BH, 1000, 0)
    assert p.signing_digest(CHAIN_ID) != v.signing_digest(CHAIN_ID)
    signed = p.signed(key_at(0), CHAIN_ID)
    assert signed.verify(CHAIN_ID, VALSET.validators[0].pubkey)
    assert not signed.verify(CHAIN_ID, VALSET.validators[1].pubkey)


def test_validator_set_basics() -> None:
    assert VALSET.total_power == 10 + 11 + 12 + 13
    assert len(VALSET) == 4
    for i, v in enumerate(VALSET.validators):
        assert VALSET.index_of(v.pubkey) == i
        assert VALSET.get(i) == v
    assert VALSET.index_of(b"\x00" * 32) is None
    assert VALSET.get(4) is None and VALSET.get(-1) is None
    assert ct.ValidatorSet.decode_untrusted(VALSET.encode()) == VALSET
    assert VALSET.hash() != ct.ValidatorSet(VALSET.validators[:3]).hash()


@pytest.mark.parametrize(
    "members",
    [
        (),
        (ct.Validator(b"\x02" * 32, 1), ct.Validator(b"\x01" * 32, 1)),
        (ct.Validator(b"\x01" * 32, 1), ct.Validator(b"\x01" * 32, 1)),
        (ct.Validator(b"\x01" * 32, 0),),
        (ct.Validator(b"\x01" * 31, 1),),
        (ct.Validator(b"\x01" * 32, 2**60), ct.Validator(b"\x02" * 32, 1)),
    ],
)
def test_validator_set_rejects(members: tuple[ct.Validator, ...]) -> None:
    with pytest.raises(InvalidValidatorSet):
        ct.ValidatorSet(members)


def test_verify_commit_accepts_two_thirds() -> None:
    # powers sorted by pubkey are not in key order; find indices with > 2/3 of 46.
    c = commit_of([0, 1, 2, 3])
    VALSET.verify_commit(CHAIN_ID, c, height=7, block_hash=BH)
    powers = [v.power for v in VALSET.validators]
    best3 = sorted(range(4), key=lambda i: -powers[i])[:3]
    VALSET.verify_commit(CHAIN_ID, commit_of(sorted(best3)))


def test_verify_commit_rejects_insufficient_power() -> None:
    powers = [v.power for v in VALSET.validators]
    two = sorted(range(4), key=lambda i: -powers[i])[:2]  # at most 25 of 46
    with pytest.raises(InvalidCommit, match="2/3"):
        VALSET.verify_commit(CHAIN_ID, commit_of(sorted(two)))


def test_verify_commit_exactly_two_thirds_is_not_enough() -> None:
    keys = [PrivateKey(bytes([50 + i]) * 32) for i in range(3)]
    vs = ct.ValidatorSet.from_unsorted(ct.Validator(k.public_key.raw, 1) for k in keys)
    by_pub = {k.public_key.raw: k for k in keys}

    def sig(i: int) -> ct.Vote:
        return ct.Vote(ct.VoteType.PRECOMMIT, 3, 0, BH, 5, i).signed(
            by_pub[vs.validators[i].pubkey], CHAIN_ID
        )

    with pytest.raises(InvalidCommit):
        vs.verify_commit(CHAIN_ID, ct.Commit.from_votes([sig(0), sig(1)]))
    vs.verify_commit(CHAIN_ID, ct.Commit.from_votes([sig(0), sig(1), sig(2)]))


def test_verify_commit_checks_every_signature() -> None:
    c = commit_of([0, 1, 2, 3])
    bad_last = replace(c.signatures[3], signature=bytes(64))
    tampered = replace(c, signatures=(*c.signatures[:3], bad_last))
    with pytest.raises(InvalidCommit, match="bad signature"):
        VALSET.verify_commit(CHAIN_ID, tampered)
    # The light variant stops once the threshold is passed, so it accepts this.
    VALSET.verify_commit_light(CHAIN_ID, tampered, 2, 3)


@pytest.mark.parametrize(
    ("kwargs", "commit_args", "match"),
    [
        ({"height": 8}, {}, "height"),
        ({"block_hash": b"\x01" * 32}, {}, "another block"),
        ({}, {"block_hash": b""}, None),
    ],
)
def test_verify_commit_shape_errors(
    kwargs: dict[str, Any], commit_args: dict[str, Any], match: str | None
) -> None:
    c = commit_of([0, 1, 2, 3])
    if commit_args:
        c = replace(c, **commit_args)
    with pytest.raises(InvalidCommit, match=match):
        VALSET.verify_commit(CHAIN_ID, c, **kwargs)


def test_verify_commit_rejects_foreign_indices_and_wrong_chain() -> None:
    c = commit_of([0, 1, 2, 3])
    extra = ct.CommitSig(4, 1000, c.signatures[0].signature)
    with pytest.raises(InvalidCommit, match="outside"):
        VALSET.verify_commit(CHAIN_ID, replace(c, signatures=(*c.signatures, extra)))
    dup = replace(
        c, signatures=(c.signatures[0], c.signatures[0], c.signatures[1], c.signatures[2])
    )
    with pytest.raises(InvalidCommit, match="ascending"):
        VALSET.verify_commit(CHAIN_ID, dup)
    with pytest.raises(InvalidCommit):
        VALSET.verify_commit("other-chain", c)


def test_verify_commit_light_trusting_a_different_set() -> None:
    """Skipping verification: the trusted set checks > 1/3 of its power among the new set's signers."""
    newcomers = [PrivateKey(bytes([90 + i]) * 32) for i in range(3)]
    all_keys = {k.public_key.raw: k for k in [*KEYS, *newcomers]}
    # New set: two old validators (any) plus three newcomers with big power.
    old_two = [VALSET.validators[0], VALSET.validators[1]]
    new_set = ct.ValidatorSet.from_unsorted(
        [*old_two, *(ct.Validator(k.public_key.raw, 30) for k in newcomers)]
    )
    votes = [
        ct.Vote(ct.VoteType.PRECOMMIT, 100, 0, BH, 5, i).signed(all_keys[v.pubkey], CHAIN_ID)
        for i, v in enumerate(new_set.validators)
    ]
    commit = ct.Commit.from_votes(votes)
    new_set.verify_commit(CHAIN_ID, commit)
    old_power = old_two[0].power + old_two[1].power  # 21 of 46 > 1/3
    assert old_power * 3 > VALSET.total_power
    VALSET.verify_commit_light(CHAIN_ID, commit, 1, 3, signers=new_set)
    with pytest.raises(InvalidCommit):
        VALSET.verify_commit_light(CHAIN_ID, commit, 2, 3, signers=new_set)
    only_newcomers = ct.Commit.from_votes(
        [v for v in votes if VALSET.index_of(new_set.validators[v.validator_index].pubkey) is None]
    )
    with pytest.raises(InvalidCommit):
        VALSET.verify_commit_light(CHAIN_ID, only_newcomers, 1, 3, signers=new_set)


@pytest.mark.parametrize(("num", "den"), [(0, 3), (1, 4), (4, 3), (1, 0), (-1, 3)])
def test_verify_commit_light_rejects_bad_trust_levels(num: int, den: int) -> None:
    with pytest.raises(UsageError):
        VALSET.verify_commit_light(CHAIN_ID, commit_of([0, 1, 2]), num, den)


def test_commit_from_votes_rejects_mixed_votes() -> None:
    with pytest.raises(UsageError):
        ct.Commit.from_votes([precommit(0), precommit(1, round_=1)])
    with pytest.raises(UsageError):
        ct.Commit.from_votes([precommit(0, block_hash=b"")])
    with pytest.raises(UsageError):
        ct.Commit.from_votes([])


# --- evidence ---


def test_duplicate_vote_evidence_verifies() -> None:
    a = precommit(2)
    b = precommit(2, block_hash=b"\xff" * 32)
    ev = ct.DuplicateVoteEvidence.from_votes(b, a)
    assert ev.vote_a == a and ev.vote_b == b
    assert ev.verify(CHAIN_ID, VALSET) == VALSET.validators[2]
    assert ev.height == 7 and ev.validator_index == 2
    nil = ct.DuplicateVoteEvidence.from_votes(a, precommit(2, block_hash=b""))
    assert nil.vote_a.is_nil
    nil.verify(CHAIN_ID, VALSET)


@pytest.mark.parametrize(
    ("other", "match"),
    [
        ({"block_hash": BH}, "same block"),
        ({"round_": 1}, "differ"),
        ({"height": 8}, "differ"),
    ],
)
def test_duplicate_vote_evidence_rejects(other: dict[str, Any], match: str) -> None:
    a = precommit(1)
    b = precommit(1, **other)
    with pytest.raises(InvalidEvidence, match=match):
        ct.DuplicateVoteEvidence(a, b).verify(CHAIN_ID, VALSET)


def test_duplicate_vote_evidence_rejects_bad_signatures_and_order() -> None:
    a = precommit(1)
    b = precommit(1, block_hash=b"\xff" * 32)
    with pytest.raises(InvalidEvidence, match="order"):
        ct.DuplicateVoteEvidence(b, a).verify(CHAIN_ID, VALSET)
    forged = replace(b, signature=precommit(0, block_hash=b"\xff" * 32).signature)
    with pytest.raises(InvalidEvidence, match="signature"):
        ct.DuplicateVoteEvidence(a, forged).verify(CHAIN_ID, VALSET)
    other_validator = ct.DuplicateVoteEvidence(precommit(0), replace(b, validator_index=0))
    with pytest.raises(InvalidEvidence, match="signature"):
        other_validator.verify(CHAIN_ID, VALSET)
    out_of_set = ct.DuplicateVoteEvidence(
        replace(a, validator_index=9), replace(b, validator_index=9)
    )
    with pytest.raises(InvalidEvidence, match="outside"):
        out_of_set.verify(CHAIN_ID, VALSET)
    with pytest.raises(InvalidEvidence):
        ct.DuplicateVoteEvidence(a, b).verify("other-chain", VALSET)


# --- headers, blocks, block time ---


def test_block_hash_is_header_hash_and_roots_verify() -> None:
    block = build_vectors()["block"][1][1]
    assert block.hash() == block.header.hash()
    block.verify_roots()
    build_vectors()["block"][0][1].verify_roots()
    assert block.header.last_commit_hash == block.last_commit.hash()  # type: ignore[union-attr]
    assert ct.commit_hash(None) == EMPTY_ROOT


@pytest.mark.parametrize(
    "change",
    [
        {"cards": (b"other",)},
        {"seeders": ()},
        {"keys": (b"k",)},
        {"txs": ()},
        {"evidence": ()},
        {"last_commit": None},
    ],
)
def test_block_verify_roots_detects_any_lane_change(change: dict[str, Any]) -> None:
    block = build_vectors()["block"][1][1]
    with pytest.raises(InvalidBlock):
        replace(block, **change).verify_roots()


def test_lane_accessors() -> None:
    block = build_vectors()["block"][1][1]
    for lane in ct.LANES:
        assert block.lane(lane) == getattr(block, lane)
        assert block.header.lane_root(lane) == ct.compute_lane_root(block.lane(lane))
    with pytest.raises(UsageError):
        block.lane("nope")
    with pytest.raises(UsageError):
        block.header.lane_root("nope")


def test_header_hash_changes_with_every_field() -> None:
    h = build_vectors()["header"][1][1]
    seen = {h.hash()}
    for i, value in enumerate(h.to_list()):
        f = h.to_list()
        f[i] = (
            (value + 1)
            if isinstance(value, int)
            else ("other" if isinstance(value, str) else b"\x5a" * 32)
        )
        seen.add(ct.Header(*f).hash())
    assert len(seen) == 15


def _commit_with_times(times: list[int]) -> ct.Commit:
    return ct.Commit(7, 0, BH, tuple(ct.CommitSig(i, t, b"\x00" * 64) for i, t in enumerate(times)))


def test_block_time_is_power_weighted_median() -> None:
    vs = ct.ValidatorSet(
        tuple(ct.Validator(bytes([i + 1]) * 32, p) for i, p in enumerate([1, 1, 1, 10]))
    )
    # The heavy validator (index 3) holds 10 of 13: its time wins wherever it sorts.
    assert ct.compute_block_time(_commit_with_times([100, 200, 300, 50]), vs, 0) == 50
    assert ct.compute_block_time(_commit_with_times([100, 200, 300, 999]), vs, 0) == 999
    even = ct.ValidatorSet(tuple(ct.Validator(bytes([i + 1]) * 32, 1) for i in range(4)))
    assert ct.compute_block_time(_commit_with_times([10, 20, 30, 40]), even, 0) == 30
    three = ct.Commit(
        7, 0, BH, tuple(ct.CommitSig(i, t, b"\x00" * 64) for i, t in [(0, 10), (2, 30), (3, 20)])
    )
    assert ct.compute_block_time(three, even, 0) == 20


def test_block_time_is_monotonic() -> None:
    even = ct.ValidatorSet(tuple(ct.Validator(bytes([i + 1]) * 32, 1) for i in range(4)))
    assert ct.compute_block_time(_commit_with_times([10, 20, 30, 40]), even, 500) == 501
    assert ct.compute_block_time(_commit_with_times([10, 20, 30, 40]), even, 29) == 30


def test_block_time_rejects_bad_commits() -> None:
    even = ct.ValidatorSet(tuple(ct.Validator(bytes([i + 1]) * 32, 1) for i in range(2)))
    with pytest.raises(InvalidCommit):
        ct.compute_block_time(_commit_with_times([1, 2, 3]), even, 0)
    with pytest.raises(InvalidCommit):
        ct.compute_block_time(ct.Commit(7, 0, BH, ()), even, 0)


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=10**6), st.integers(min_value=1, max_value=100)
        ),
        min_size=1,
        max_size=12,
    )
)
def test_block_time_median_property(entries: list[tuple[int, int]]) -> None:
    """At most half of the signed power lies strictly before the median, less than half strictly after."""
    vs = ct.ValidatorSet(
        tuple(ct.Validator(i.to_bytes(32, "big"), p) for i, (_, p) in enumerate(entries))
    )
    t = ct.compute_block_time(_commit_with_times([ts for ts, _ in entries]), vs, -1)
    total = sum(p for _, p in entries)
    before = sum(p for ts, p in entries if ts < t)
    after = sum(p for ts, p in entries if ts > t)
    assert t in {ts for ts, _ in entries}
    assert 2 * before <= total and 2 * after < total


def test_block_time_ignores_a_faulty_minority() -> None:
    even = ct.ValidatorSet(tuple(ct.Validator(bytes([i + 1]) * 32, 1) for i in range(3)))
    assert ct.compute_block_time(_commit_with_times([0, 1000, 1001]), even, -1) == 1000
    assert ct.compute_block_time(_commit_with_times([1000, 1001, 10**12]), even, -1) == 1001


proposals = st.integers(min_value=0, max_value=ct.MAX_ROUND).flatmap(
    lambda r: st.builds(
        ct.Proposal,
        st.integers(min_value=1, max_value=2**63 - 1),
        st.just(r),
        st.integers(min_value=-1, max_value=r - 1),
        hashes,
        u63,
        st.integers(min_value=0, max_value=ct.MAX_VALIDATOR_INDEX),
        sigs,
    )
)


@given(proposals)
def test_proposal_round_trip(p: ct.Proposal) -> None:
    assert ct.Proposal.decode_untrusted(p.encode()) == p


@given(
    st.lists(
        st.tuples(hashes, st.integers(min_value=1, max_value=2**40)),
        min_size=1,
        max_size=20,
        unique_by=lambda t: t[0],
    )
)
def test_validator_set_round_trip(members: list[tuple[bytes, int]]) -> None:
    vs = ct.ValidatorSet.from_unsorted(ct.Validator(pk, p) for pk, p in members)
    assert ct.ValidatorSet.decode_untrusted(vs.encode()) == vs
    assert vs.total_power == sum(p for _, p in members)
    assert all(vs.index_of(pk) is not None for pk, _ in members)


@given(votes, st.one_of(st.just(b""), hashes))
def test_evidence_round_trip(v: ct.Vote, other_hash: bytes) -> None:
    assume(other_hash != v.block_hash)
    ev = ct.DuplicateVoteEvidence.from_votes(v, replace(v, block_hash=other_hash))
    assert ct.DuplicateVoteEvidence.decode_untrusted(ev.encode()) == ev
    assert ev.vote_a.block_hash < ev.vote_b.block_hash


def test_vector_hashes_by_hand() -> None:
    import blake3

    for kind in ("header", "block"):
        doc = json.loads((VECTOR_DIR / f"{kind}.json").read_text())
        for entry in doc["vectors"]:
            value = TYPES[kind].decode_untrusted(bytes.fromhex(entry["hex"]))
            header = value if kind == "header" else value.header
            assert value.hash() == blake3.blake3(header.encode()).digest()
