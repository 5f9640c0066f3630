from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2p.errors import FrameTooLarge, LocalProtocolError, MalformedFrame
from p2p.framing import StreamDecoder, encode_frame, encode_varint, stream_preamble

LIMITS = {0: 1000, 7: 70_000}

# (value, hex) pairs from RFC 9000 appendix A.1 plus the boundaries.
GOLDEN_VARINTS = [
    (0, "00"),
    (37, "25"),
    (63, "3f"),
    (64, "4040"),
    (15293, "7bbd"),
    (16383, "7fff"),
    (16384, "80004000"),
    (494878333, "9d7f3e7d"),
    (1073741823, "bfffffff"),
    (1073741824, "c000000040000000"),
    (151288809941952652, "c2197c5eff14e88c"),
]


@pytest.mark.parametrize(("value", "hexed"), GOLDEN_VARINTS)
def test_varint_golden(value: int, hexed: str) -> None:
    assert encode_varint(value).hex() == hexed


def test_varint_out_of_range_is_our_error() -> None:
    with pytest.raises(LocalProtocolError):
        encode_varint(-1)
    with pytest.raises(LocalProtocolError):
        encode_varint(1 << 62)
    with pytest.raises(LocalProtocolError):
        stream_preamble(256)


def _stream(channel: int, frames: list[bytes]) -> bytes:
    return stream_preamble(channel) + b"".join(encode_frame(f) for f in frames)


def test_one_byte_at_a_time() -> None:
    frames = [b"", b"a", b"x" * 63, b"y" * 64, b"z" * 16384, b"q" * 69_999]
    data = _stream(7, frames)
    dec = StreamDecoder(LIMITS)
    out: list[bytes] = []
    for i in range(len(data)):
        out += dec.feed(data[i : i + 1])
    assert out == frames
    assert dec.channel == 7
    assert dec.buffered == 0
    dec.end_of_stream()


def test_all_at_once_and_empty_feeds() -> None:
    frames = [b"abc", b"", b"def" * 100]
    dec = StreamDecoder(LIMITS)
    assert dec.feed(b"") == []
    assert dec.feed(_stream(0, frames)) == frames
    assert dec.feed(b"") == []


@given(
    frames=st.lists(st.binary(max_size=300), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=7000), max_size=30),
)
def test_any_chunking_gives_the_same_frames(frames: list[bytes], cuts: list[int]) -> None:
    data = _stream(0, frames)
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    dec = StreamDecoder(LIMITS)
    out: list[bytes] = []
    for a, b in itertools.pairwise(points):
        out += dec.feed(data[a:b])
    assert out == frames
    dec.end_of_stream()


def test_unknown_channel() -> None:
    with pytest.raises(MalformedFrame):
        StreamDecoder(LIMITS).feed(b"\x05\x01a")


def test_oversize_rejected_from_the_prefix_alone() -> None:
    dec = StreamDecoder(LIMITS)
    # only the prefix: 1001 > 1000, nothing of the payload sent yet
    with pytest.raises(FrameTooLarge):
        dec.feed(stream_preamble(0) + encode_varint(1001))
    dec = StreamDecoder(LIMITS)
    assert dec.feed(stream_preamble(0) + encode_frame(b"x" * 1000)) == [b"x" * 1000]


def test_huge_prefix_is_oversize() -> None:
    with pytest.raises(FrameTooLarge):
        StreamDecoder(LIMITS).feed(b"\x00" + bytes.fromhex("ffffffffffffffff"))


@pytest.mark.parametrize("prefix", ["4005", "80000005", "c000000000000005"])
def test_non_minimal_prefix_is_malformed(prefix: str) -> None:
    dec = StreamDecoder(LIMITS)
    with pytest.raises(MalformedFrame):
        dec.feed(b"\x00" + bytes.fromhex(prefix) + b"hello")


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_stream_ending_inside_a_frame(cut: int) -> None:
    data = stream_preamble(0) + encode_frame(b"abc")
    dec = StreamDecoder(LIMITS)
    dec.feed(data[: len(data) - cut])
    with pytest.raises(MalformedFrame):
        dec.end_of_stream()


def test_stream_end_on_boundary_and_empty_stream_ok() -> None:
    StreamDecoder(LIMITS).end_of_stream()
    dec = StreamDecoder(LIMITS)
    dec.feed(stream_preamble(0))
    dec.end_of_stream()
