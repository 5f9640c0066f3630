"""Canonical msgpack: what pack produces and everything unpack_untrusted must refuse."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain.encoding import (
    INT_MIN,
    MAX_DEPTH,
    UINT64_MAX,
    pack,
    pack_trusted,
    take_array,
    take_bool,
    take_bytes,
    take_bytes_list,
    take_int,
    take_str,
    unpack_untrusted,
)
from chain.errors import DecodeError, EncodeError

canonical_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=INT_MIN, max_value=UINT64_MAX)
    | st.binary(max_size=300)
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=6),
    max_leaves=30,
)


@pytest.mark.parametrize(
    ("value", "hexform"),
    [
        (0, "00"),
        (127, "7f"),
        (128, "cc80"),
        (-1, "ff"),
        (-33, "d0df"),
        (2**64 - 1, "cfffffffffffffffff"),
        (-(2**63), "d38000000000000000"),
        (b"", "c400"),
        (b"ab", "c4026162"),
        ("ab", "a26162"),
        (None, "c0"),
        (True, "c3"),
        ([1, [b"x"], None], "9301" + "91c40178" + "c0"),
        ((1, 2), "920102"),
    ],
)
def test_pack_golden(value: object, hexform: str) -> None:
    assert pack(value).hex() == hexform
    decoded = unpack_untrusted(bytes.fromhex(hexform), 100)
    expected = list(value) if isinstance(value, tuple) else value
    assert decoded == expected


@pytest.mark.parametrize(
    "value",
    [{"a": 1}, {}, 1.5, 2**64, -(2**63) - 1, {1, 2}, bytearray(b"x"), [[{"x": 1}]], object()],
)
def test_pack_rejects_values_outside_the_subset(value: object) -> None:
    with pytest.raises(EncodeError):
        pack(value)


def test_pack_rejects_deep_nesting() -> None:
    value: list[object] = []
    for _ in range(MAX_DEPTH + 1):
        value = [value]
    with pytest.raises(EncodeError):
        pack(value)


def test_pack_trusted_raises_encode_error() -> None:
    with pytest.raises(EncodeError):
        pack_trusted(2**70)


@pytest.mark.parametrize(
    ("name", "hexform"),
    [
        ("over-long uint8 for 1", "cc01"),
        ("over-long uint16", "cd0001"),
        ("over-long uint32", "ce00000001"),
        ("over-long uint64", "cf0000000000000001"),
        ("over-long int8 for -1", "d0ff"),
        ("positive via int16", "d10005"),
        ("over-long bin8 length", "c50001ff"),
        ("over-long str8 for short string", "d90161"),
        ("over-long array16", "dc000101"),
        ("over-long array inside array", "91dc000101"),
        ("map instead of array", "81a16101"),
        ("empty map", "80"),
        ("map with int key", "810102"),
        ("map16", "de0001a16101"),
        ("float32", "ca3f800000"),
        ("float64", "cb3ff0000000000000"),
        ("fixext", "d40100"),
        ("timestamp ext", "d6ff00000000"),
        ("ext8", "c7010100"),
        ("invalid utf-8 in str", "a1ff"),
        ("reserved byte 0xc1", "c1"),
        ("truncated array", "92 01".replace(" ", "")),
        ("truncated bin", "c40461"),
        ("truncated uint32", "ce0000"),
        ("trailing byte", "9101" + "00"),
        ("two values", "0101"),
        ("empty", ""),
    ],
)
def test_unpack_rejects(name: str, hexform: str) -> None:
    with pytest.raises(DecodeError):
        unpack_untrusted(bytes.fromhex(hexform), 1000)


def test_unpack_rejects_oversize_input() -> None:
    data = pack([b"x" * 100])
    assert unpack_untrusted(data, len(data)) == [b"x" * 100]
    with pytest.raises(DecodeError, match="exceeds"):
        unpack_untrusted(data, len(data) - 1)


def test_unpack_rejects_length_claims_beyond_input() -> None:
    # An array header claiming 2**32-1 elements with nothing behind it.
    with pytest.raises(DecodeError):
        unpack_untrusted(bytes.fromhex("ddffffffff"), 1000)
    with pytest.raises(DecodeError):
        unpack_untrusted(bytes.fromhex("c6ffffffff00"), 1000)


def test_unpack_rejects_deep_nesting() -> None:
    deep = b"\x91" * (MAX_DEPTH + 1) + b"\x00"
    with pytest.raises(DecodeError, match="nested"):
        unpack_untrusted(deep, 1000)
    very_deep = b"\x91" * 100_000 + b"\x00"
    with pytest.raises(DecodeError):
        unpack_untrusted(very_deep, 200_000)


def test_unpack_rejects_non_bytes() -> None:
    with pytest.raises(DecodeError):
        unpack_untrusted("91 00", 10)  # type: ignore[arg-type]
    assert unpack_untrusted(bytearray(b"\x91\x00"), 10) == [0]


@given(canonical_values)
def test_round_trip(value: object) -> None:
    data = pack(value)
    assert unpack_untrusted(data, len(data)) == _as_lists(value)
    assert pack(unpack_untrusted(data, len(data))) == data


@given(canonical_values, st.data())
def test_truncation_and_trailing_bytes_always_rejected(value: object, data: st.DataObject) -> None:
    encoded = pack(value)
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    with pytest.raises(DecodeError):
        unpack_untrusted(encoded[:cut], 10_000)
    extra = data.draw(st.binary(min_size=1, max_size=3))
    with pytest.raises(DecodeError):
        unpack_untrusted(encoded + extra, 10_000)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_decode_error(blob: bytes) -> None:
    try:
        value = unpack_untrusted(blob, 64)
    except DecodeError:
        return
    assert pack(value) == blob


@given(st.integers(min_value=0, max_value=UINT64_MAX))
def test_over_long_integer_forms_rejected(n: int) -> None:
    canonical = pack(n)
    for code, width in ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8)):
        if n < 2 ** (8 * width):
            form = bytes([code]) + n.to_bytes(width, "big")
            if form != canonical:
                with pytest.raises(DecodeError):
                    unpack_untrusted(form, 16)


def test_msgpack_itself_accepts_over_long_forms() -> None:
    # The reason for re-encoding: the library alone would accept this.
    assert msgpack.unpackb(bytes.fromhex("cd0001")) == 1


def _as_lists(value: object) -> object:
    if isinstance(value, (list, tuple)):
        return [_as_lists(v) for v in value]
    return value


# --- typed field helpers ---


def test_take_helpers_accept_good_values() -> None:
    assert take_array([1, 2], "a", 2) == [1, 2]
    assert take_int(5, "n", 0, 5) == 5
    assert take_bool(True, "b") is True
    assert take_bytes(b"ab", "x", size=2) == b"ab"
    assert take_bytes(b"", "x", sizes=(0, 32)) == b""
    assert take_str("hé", "s", max_len=3) == "hé"
    assert take_bytes_list([b"a", b"bc"], "l", max_count=2, max_item=2) == (b"a", b"bc")


@pytest.mark.parametrize(
    "call",
    [
        lambda: take_array({}, "a"),
        lambda: take_array((1,), "a"),
        lambda: take_array([1], "a", 2),
        lambda: take_array([1, 2, 3], "a", max_len=2),
        lambda: take_int(True, "n"),
        lambda: take_int("1", "n"),
        lambda: take_int(None, "n"),
        lambda: take_int(-1, "n"),
        lambda: take_int(6, "n", 0, 5),
        lambda: take_bool(1, "b"),
        lambda: take_bytes("ab", "x"),
        lambda: take_bytes(b"a", "x", size=2),
        lambda: take_bytes(b"a", "x", sizes=(0, 32)),
        lambda: take_bytes(b"abc", "x", max_len=2),
        lambda: take_str(b"a", "s", max_len=2),
        lambda: take_str("hé", "s", max_len=2),
        lambda: take_str("", "s", min_len=1, max_len=2),
        lambda: take_bytes_list([b"a", 1], "l", max_count=3, max_item=2),
        lambda: take_bytes_list([b"abc"], "l", max_count=3, max_item=2),
        lambda: take_bytes_list([b""] * 4, "l", max_count=3, max_item=2),
    ],
)
def test_take_helpers_raise_decode_error_naming_the_field(call: object) -> None:
    with pytest.raises(DecodeError) as info:
        call()  # type: ignore[operator]
    assert str(info.value).split(":")[0] in {"a", "n", "b", "x", "s", "l", "l[1]", "l[0]"}
