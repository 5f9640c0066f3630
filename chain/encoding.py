"""Canonical msgpack: the one wire form of every chain value.

Theory of operation. A value on the wire is built only from ``None``, ``bool``,
``int`` in [-2**63, 2**64 - 1], ``bytes`` (msgpack bin), ``str`` (msgpack str,
valid UTF-8) and arrays (Python ``list`` or ``tuple``) of these. Maps, floats
and extension types never appear: records are positional arrays. msgpack's
packer always chooses the shortest form, so one value has exactly one encoding.

Decoding untrusted bytes (:func:`unpack_untrusted`) is strict: the input must
fit the size limit, hold exactly one value (no trailing bytes), contain only the
types above, and re-encode to the very same bytes (msgpack's decoder accepts
over-long integer and length forms, which re-encoding exposes). Every failure
is a :class:`chain.errors.DecodeError`.

The ``take_*`` helpers check one field of a decoded value (type, range, length)
and raise ``DecodeError`` naming the field, so typed decoders never let an
``IndexError``, ``KeyError`` or ``TypeError`` escape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack

from chain.errors import DecodeError, EncodeError

#: Smallest and largest integers with a msgpack form.
INT_MIN = -(2**63)
UINT64_MAX = 2**64 - 1
#: Largest value of a signed 64-bit field (heights, amounts, times).
INT63_MAX = 2**63 - 1
#: Deepest nesting of arrays accepted from a peer.
MAX_DEPTH = 16

_SCALARS = (type(None), bool, int, bytes, str)


_LEAF_TYPES = frozenset((type(None), bool, bytes, str))


def _check_tree(obj: Any, *, decoding: bool) -> None:
    """Check that ``obj`` lies in the canonical subset (iteratively, bounded depth)."""
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is list or kind is tuple:
            if depth >= MAX_DEPTH:
                _fail(decoding, f"arrays nested deeper than {MAX_DEPTH}")
            # Kinds of children at C speed: a lane of 2,000 bytes items costs one pass.
            kinds = set(map(type, item))
            if kinds <= _LEAF_TYPES:
                continue
            for child in item:
                ck = type(child)
                if ck in _LEAF_TYPES:
                    continue
                if ck is int:
                    if not INT_MIN <= child <= UINT64_MAX:
                        _fail(decoding, "integer out of the 64-bit range")
                    continue
                stack.append((child, depth + 1))
        elif kind is int:
            if not INT_MIN <= item <= UINT64_MAX:
                _fail(decoding, "integer out of the 64-bit range")
        elif kind in _SCALARS:
            continue
        else:
            _fail(decoding, f"{kind.__name__} is not in the canonical subset (arrays only)")


def _fail(decoding: bool, message: str) -> None:
    if decoding:
        raise DecodeError(message)
    raise EncodeError(message)


def pack(obj: Any) -> bytes:
    """Return the canonical msgpack encoding of ``obj``.

    Raises :class:`EncodeError` for a value outside the canonical subset
    (a dict, float, set, integer out of range, arrays nested too deeply...).
    """
    _check_tree(obj, decoding=False)
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def pack_trusted(obj: Any) -> bytes:
    """Encode a value built by our own typed code, skipping the subset walk.

    For hot paths whose values come from typed constructors (votes, headers);
    a value outside the subset may still raise :class:`EncodeError`.
    """
    try:
        return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodeError(f"cannot encode value: {exc}") from exc


def _reject_map(pairs: Any) -> Any:
    raise DecodeError("maps are not canonical: records are arrays")


def _reject_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"extension type {code} is not canonical")


def unpack_untrusted(data: bytes, max_size: int) -> Any:
    """Decode one canonical value from untrusted ``data`` of at most ``max_size`` bytes.

    Arrays come back as Python lists. Raises :class:`DecodeError` if ``data``
    is not bytes, is empty, longer than ``max_size``, truncated, followed by
    trailing bytes, holds a map, float or extension value, or differs from the
    canonical re-encoding of what it decodes to.
    """
    if type(data) is not bytes:
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        else:
            raise DecodeError(f"expected bytes, got {type(data).__name__}")
    if not data:
        raise DecodeError("empty input")
    if len(data) > max_size:
        raise DecodeError(f"input of {len(data)} bytes exceeds the limit of {max_size}")
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            object_pairs_hook=_reject_map,
            ext_hook=_reject_ext,
            timestamp=0,
        )
    except DecodeError:
        raise
    except msgpack.ExtraData as exc:
        raise DecodeError("trailing bytes after the value") from exc
    except (ValueError, msgpack.UnpackException, OverflowError, RecursionError) as exc:
        # ValueError covers truncation, UnicodeDecodeError, StackError and FormatError
        raise DecodeError(f"malformed msgpack: {type(exc).__name__}: {exc}") from exc
    _check_tree(obj, decoding=True)
    if msgpack.packb(obj, use_bin_type=True) != data:
        raise DecodeError("non-canonical encoding (re-encoding differs)")
    return obj


# --- typed-field helpers for decoders of untrusted values ---


def take_array(
    obj: Any, name: str, length: int | None = None, *, max_len: int | None = None
) -> list[Any]:
    """Return ``obj`` as an array, checking its exact ``length`` or ``max_len``."""
    if type(obj) is not list:
        raise DecodeError(f"{name}: expected an array, got {type(obj).__name__}")
    if length is not None and len(obj) != length:
        raise DecodeError(f"{name}: expected {length} elements, got {len(obj)}")
    if max_len is not None and len(obj) > max_len:
        raise DecodeError(f"{name}: {len(obj)} elements exceed the limit of {max_len}")
    return obj


def take_int(obj: Any, name: str, lo: int = 0, hi: int = INT63_MAX) -> int:
    """Return ``obj`` as an int in [lo, hi] (booleans are not integers here)."""
    if type(obj) is not int:
        raise DecodeError(f"{name}: expected an integer, got {type(obj).__name__}")
    if not lo <= obj <= hi:
        raise DecodeError(f"{name}: {obj} is outside [{lo}, {hi}]")
    return obj


def take_bool(obj: Any, name: str) -> bool:
    """Return ``obj`` as a bool."""
    if type(obj) is not bool:
        raise DecodeError(f"{name}: expected a boolean, got {type(obj).__name__}")
    return obj


def take_bytes(
    obj: Any,
    name: str,
    *,
    size: int | None = None,
    sizes: Sequence[int] | None = None,
    max_len: int | None = None,
) -> bytes:
    """Return ``obj`` as bytes of exactly ``size``, one of ``sizes``, or at most ``max_len``."""
    if type(obj) is not bytes:
        raise DecodeError(f"{name}: expected bytes, got {type(obj).__name__}")
    if size is not None and len(obj) != size:
        raise DecodeError(f"{name}: expected {size} bytes, got {len(obj)}")
    if sizes is not None and len(obj) not in sizes:
        allowed = " or ".join(str(s) for s in sizes)
        raise DecodeError(f"{name}: expected {allowed} bytes, got {len(obj)}")
    if max_len is not None and len(obj) > max_len:
        raise DecodeError(f"{name}: {len(obj)} bytes exceed the limit of {max_len}")
    return obj


def take_str(obj: Any, name: str, *, max_len: int, min_len: int = 0) -> str:
    """Return ``obj`` as a str whose UTF-8 form has ``min_len``..``max_len`` bytes."""
    if type(obj) is not str:
        raise DecodeError(f"{name}: expected a string, got {type(obj).__name__}")
    n = len(obj.encode("utf-8"))
    if not min_len <= n <= max_len:
        raise DecodeError(f"{name}: string of {n} bytes is outside [{min_len}, {max_len}]")
    return obj


def take_bytes_list(obj: Any, name: str, *, max_count: int, max_item: int) -> tuple[bytes, ...]:
    """Return an array of bytes items (each at most ``max_item`` bytes) as a tuple."""
    items = take_array(obj, name, max_len=max_count)
    if not items:
        return ()
    if set(map(type, items)) == {bytes} and max(map(len, items)) <= max_item:
        return tuple(items)
    for i, item in enumerate(items):
        if type(item) is not bytes:
            raise DecodeError(f"{name}[{i}]: expected bytes, got {type(item).__name__}")
        if len(item) > max_item:
            raise DecodeError(f"{name}[{i}]: {len(item)} bytes exceed the limit of {max_item}")
    raise DecodeError(f"{name}: malformed")  # unreachable: one item above failed
