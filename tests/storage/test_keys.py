"""Key layouts: fixed widths, numeric order, no family a prefix of another."""

from __future__ import annotations

import pytest

from storage import keys
from storage.errors import KeyLayoutError, StorageError

H = bytes(range(32))


def test_integers_are_fixed_width_big_endian() -> None:
    assert keys.u64(1) == b"\x00" * 7 + b"\x01"
    assert keys.u32(258) == b"\x00\x00\x01\x02"
    assert keys.decode_u64(keys.u64(2**64 - 1)) == 2**64 - 1
    ordered = [0, 1, 255, 256, 65535, 2**32, 2**63]
    assert sorted(keys.block_key(h) for h in ordered) == [keys.block_key(h) for h in ordered]


@pytest.mark.parametrize("bad", [-1, 2**64, 1.5, True, "1"])
def test_bad_integers_are_typed(bad: object) -> None:
    with pytest.raises(KeyLayoutError):
        keys.u64(bad)  # type: ignore[arg-type]
    assert issubclass(KeyLayoutError, StorageError)


def test_index_keys_scan_in_height_order() -> None:
    sender = keys.sender_tx_prefix(H)
    ks = [keys.sender_tx_key(H, h, i) for h, i in [(2, 0), (1, 5), (1, 1), (300, 0)]]
    assert all(k.startswith(sender) for k in ks)
    assert sorted(ks) == [keys.sender_tx_key(H, h, i) for h, i in [(1, 1), (1, 5), (2, 0), (300, 0)]]
    assert keys.height_index_of(ks[1]) == (1, 5)
    kind = keys.kind_tx_key("transfer", 7, 2)
    assert kind.startswith(keys.kind_tx_prefix(b"transfer"))
    assert keys.height_index_of(kind) == (7, 2)
    assert keys.decode_tx_location(keys.tx_location(9, 3)) == (9, 3)
    assert len(keys.tx_key(H)) == 34


def test_names_are_length_prefixed() -> None:
    # "ab" + key "c..." must not collide with "abc" + key "..."
    assert not keys.index_key("abc", b"x").startswith(keys.index_prefix("ab"))
    assert keys.index_key_at("reactions", H, 5, 1).startswith(keys.index_key("reactions", H))
    assert not keys.kind_tx_prefix("ab").startswith(keys.kind_tx_prefix("a"))
    for bad in ("", "x" * 65):
        with pytest.raises(KeyLayoutError):
            keys.index_prefix(bad)
    with pytest.raises(KeyLayoutError):
        keys.index_key("n", "str")  # type: ignore[arg-type]
    with pytest.raises(KeyLayoutError):
        keys.tx_key(b"short")
    with pytest.raises(KeyLayoutError):
        keys.decode_tx_location(b"\x00" * 11)


def test_families_are_distinct() -> None:
    prefixes = [
        keys.STATE_NODE, keys.STATE_VALUE, keys.STATE_ROOT, keys.STATE_STALE, keys.BLOCK,
        keys.BLOCK_COMMIT, keys.BLOCK_HASH_BY_HEIGHT, keys.BLOCK_HEIGHT_BY_HASH,
        keys.TX_BY_HASH, keys.TX_BY_SENDER, keys.TX_BY_KIND, keys.GENERIC_INDEX,
        keys.VALIDATORS, keys.META,
    ]
    assert len(set(prefixes)) == len(prefixes)
    assert all(len(p) == 2 for p in prefixes)
    assert keys.prefix_end(b"a\xff") == b"b"
    assert keys.prefix_end(b"\xff\xff") is None
    assert keys.meta_key("genesis_hash").startswith(keys.META)
    assert keys.validators_key(3) == keys.VALIDATORS + keys.u64(3)
