"""node.wire: golden vectors both ways, channel checks, bad input gets WireError only."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain.params import AppParams, ConsensusParams
from chain.types import (
    Commit,
    CommitSig,
    DuplicateVoteEvidence,
    Proposal,
    Vote,
    VoteType,
)
from node import wire
from p2p import BLOCKS, CONSENSUS, MEMPOOL

H = bytes([7]) * 32
T = 1_700_000_000_000
LIMITS = wire.Limits.from_params(ConsensusParams(), AppParams())
VOTE = Vote(VoteType.PREVOTE, 5, 1, H, T, 2, bytes([9]) * 64)
VOTE_B = Vote(VoteType.PREVOTE, 5, 1, bytes([1]) * 32, T, 2, bytes([5]) * 64)

GOLDEN: list[tuple[wire.Message, str]] = [
    (wire.ProposalMessage(Proposal(5, 1, -1, H, T, 0, bytes([8]) * 64), b"\x91\x01"),
     "9301970501ffc4200707070707070707070707070707070707070707070707070707070707070707"
     "cf0000018bcfe5680000c44008080808080808080808080808080808080808080808080808080808"
     "080808080808080808080808080808080808080808080808080808080808080808080808c4029101"),
    (wire.VoteMessage(VOTE),
     "920297010501c4200707070707070707070707070707070707070707070707070707070707070707"
     "cf0000018bcfe5680002c44009090909090909090909090909090909090909090909090909090909"
     "090909090909090909090909090909090909090909090909090909090909090909090909"),
    (wire.CommitMessage(Commit(4, 0, H, (CommitSig(0, T, bytes([6]) * 64),)), b""),
     "9303940400c420070707070707070707070707070707070707070707070707070707070707070791"
     "9300cf0000018bcfe56800c440060606060606060606060606060606060606060606060606060606"
     "06060606060606060606060606060606060606060606060606060606060606060606060606c400"),
    (wire.EvidenceMessage(DuplicateVoteEvidence.from_votes(VOTE, VOTE_B)),
     "9204930197010501c420010101010101010101010101010101010101010101010101010101010101"
     "0101cf0000018bcfe5680002c4400505050505050505050505050505050505050505050505050505"
     "05050505050505050505050505050505050505050505050505050505050505050505050505059701"
     "0501c4200707070707070707070707070707070707070707070707070707070707070707cf000001"
     "8bcfe5680002c4400909090909090909090909090909090909090909090909090909090909090909"
     "0909090909090909090909090909090909090909090909090909090909090909"),
    (wire.Status(10, 3),
     "93100a03"),
    (wire.BlockRequest(11),
     "92110b"),
    (wire.BlockResponse(b"\x01\x02", b"\x03"),
     "9312c4020102c40103"),
    (wire.NoBlock(12),
     "92130c"),
    (wire.CandidateRequest(5, H),
     "931405c4200707070707070707070707070707070707070707070707070707070707070707"),
    (wire.CandidateBlock(b"\x04"),
     "9215c40104"),
    (wire.TxMessage(b"\x05\x06"),
     "9220c4020506"),
    (wire.TxBatchMessage((b"\x05\x06", b"\x07")),
     "922192c4020506c40107"),
]


@pytest.mark.parametrize(("msg", "hexed"), GOLDEN, ids=[type(m).__name__ for m, _ in GOLDEN])
def test_golden_vectors_both_ways(msg: wire.Message, hexed: str) -> None:
    frame = bytes.fromhex(hexed)
    assert wire.encode(msg) == frame
    assert wire.decode_untrusted(wire.channel_of(msg), frame, LIMITS) == msg


@pytest.mark.parametrize(("msg", "hexed"), GOLDEN, ids=[type(m).__name__ for m, _ in GOLDEN])
def test_wrong_channel_truncated_and_trailing_bytes_are_refused(msg: wire.Message,
                                                                hexed: str) -> None:
    frame = bytes.fromhex(hexed)
    channel = wire.channel_of(msg)
    for other in {CONSENSUS, BLOCKS, MEMPOOL} - {channel}:
        with pytest.raises(wire.WireError):
            wire.decode_untrusted(other, frame, LIMITS)
    for cut in range(len(frame)):
        with pytest.raises(wire.WireError):
            wire.decode_untrusted(channel, frame[:cut], LIMITS)
    with pytest.raises(wire.WireError):
        wire.decode_untrusted(channel, frame + b"\x00", LIMITS)


def test_non_canonical_encodings_are_refused() -> None:
    # Status(10, 3) with the height as a uint16 instead of a fixint
    frame = bytes.fromhex("9310cd000a03")
    assert msgpack.unpackb(frame) == [16, 10, 3]
    with pytest.raises(wire.WireError, match=r"canonical|re-encod|bad message"):
        wire.decode_untrusted(BLOCKS, frame, LIMITS)
    # a map instead of an array
    with pytest.raises(wire.WireError):
        wire.decode_untrusted(BLOCKS, msgpack.packb({"height": 1}), LIMITS)


@pytest.mark.parametrize("frame", [
    msgpack.packb([99, 1]), msgpack.packb([]), msgpack.packb([16, 5, 9]),  # base above height
    msgpack.packb([16, -1, 0]), msgpack.packb([17, 0]), msgpack.packb([18, b"\x01", b""]),
    msgpack.packb([20, 1, b"short"]), msgpack.packb([16, 1]), msgpack.packb([16, 1, 1, 1]),
    msgpack.packb("status"), b"", b"\xc1",
])
def test_malformed_blocks_channel_frames(frame: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.decode_untrusted(BLOCKS, frame, LIMITS)


def test_size_limits_per_channel() -> None:
    small = wire.Limits(max_block_bytes=1024, max_commit_bytes=512, max_tx_bytes=128)
    tx = wire.encode(wire.TxMessage(b"\x01" * 200))
    with pytest.raises(wire.WireError, match="tx"):
        wire.decode_untrusted(MEMPOOL, tx, small)
    huge = b"\x00" * (small.frame_limit(MEMPOOL) + 1)
    with pytest.raises(wire.WireError, match="exceeds"):
        wire.decode_untrusted(MEMPOOL, huge, small)
    block = wire.encode(wire.CandidateBlock(b"\x01" * 2000))
    with pytest.raises(wire.WireError):
        wire.decode_untrusted(BLOCKS, block, small)
    with pytest.raises(wire.WireError):
        wire.decode_untrusted(7, tx, small)
    with pytest.raises(wire.WireError):
        wire.decode_block(b"\x01" * 10, small)
    with pytest.raises(wire.WireError):
        wire.decode_commit(b"\x93" + b"\x00" * 600, small)


@given(st.binary(max_size=300))
def test_random_bytes_raise_only_wire_error(data: bytes) -> None:
    for channel in (CONSENSUS, BLOCKS, MEMPOOL):
        try:
            msg = wire.decode_untrusted(channel, data, LIMITS)
        except wire.WireError:
            continue
        assert wire.encode(msg) == data  # whatever decodes re-encodes exactly


@given(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1))
def test_status_roundtrip(a: int, b: int) -> None:
    msg = wire.Status(max(a, b), min(a, b))
    assert wire.decode_untrusted(BLOCKS, wire.encode(msg), LIMITS) == msg


@pytest.mark.parametrize("frame", [
    msgpack.packb([33, []]),                       # no transactions
    msgpack.packb([33, [b""]]),                    # an empty transaction
    msgpack.packb([33, [b"\x01", "text"]]),        # not bytes
    msgpack.packb([33, b"\x01"]),                  # not an array
    msgpack.packb([33, [b"\x01"], [b"\x02"]]),     # an extra field
    msgpack.packb([33, [b"\x01"] * (wire.MAX_BATCH_TXS + 1)]),
    msgpack.packb([33, [[b"\x01"]]]),               # nested
])
def test_malformed_tx_batches_are_refused(frame: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.decode_untrusted(MEMPOOL, frame, LIMITS)


def test_tx_batch_limits_each_transaction_and_the_frame() -> None:
    small = wire.Limits(max_block_bytes=1024, max_commit_bytes=512, max_tx_bytes=128)
    with pytest.raises(wire.WireError, match="tx_batch"):
        wire.decode_untrusted(MEMPOOL, wire.encode(wire.TxBatchMessage((b"\x01", b"\x02" * 129))), small)
    # many small transactions: over the frame limit as a whole
    too_many = wire.encode(wire.TxBatchMessage(tuple(bytes([i % 250 + 1]) * 100 for i in range(60))))
    assert len(too_many) > small.frame_limit(MEMPOOL)
    with pytest.raises(wire.WireError, match="exceeds"):
        wire.decode_untrusted(MEMPOOL, too_many, small)


def test_pack_tx_batches_splits_within_the_limits_and_keeps_order() -> None:
    small = wire.Limits(max_block_bytes=1024, max_commit_bytes=512, max_tx_bytes=128)
    txs = [bytes([i % 250 + 1]) * (50 + i % 70) for i in range(300)] + [b"\x09" * 129, b""]
    frames = wire.pack_tx_batches(txs, small)
    assert len(frames) > 1
    got: list[bytes] = []
    for frame in frames:
        assert len(frame) <= small.frame_limit(MEMPOOL)
        msg = wire.decode_untrusted(MEMPOOL, frame, small)
        assert isinstance(msg, wire.TxBatchMessage)
        got.extend(msg.txs)
    assert got == txs[:300]  # the oversize and the empty transaction are left out
    many = wire.pack_tx_batches([b"\x01"] * (wire.MAX_BATCH_TXS + 5), LIMITS)
    assert [len(wire.decode_untrusted(MEMPOOL, f, LIMITS).txs) for f in many] == [wire.MAX_BATCH_TXS, 5]  # type: ignore[union-attr]
    assert wire.pack_tx_batches([], LIMITS) == []
