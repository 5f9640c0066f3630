"""Transaction envelope and bodies: encoding, golden vectors, untrusted decoding, signatures."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain import tx as txm
from chain.encoding import pack, pack_trusted, unpack_untrusted
from chain.errors import DecodeError
from tests.chain.helpers import CHAIN_ID, key, offer, publish_body, root_of

ALICE = key("alice")
BOB = key("bob").public_key.raw

BODIES: list[txm.AnyBody] = [
    publish_body("film", tags=("a", "b"), offer=offer(5, params=(1, 2))),
    publish_body("plain"),
    txm.UpdateCard(root_of("c"), "title", (root_of("l"),), b"", b"\x01" * 32),
    txm.React(root_of("c"), 3),
    txm.Follow(BOB),
    txm.Unfollow(BOB),
    txm.Announce(root_of("c"), ("1.2.3.4:5",), ((0, 4), (8, 9)), 77),
    txm.Withdraw(root_of("c")),
    txm.BuyKey(root_of("c"), 0, 100),
    txm.DeliverKey(root_of("c"), 1, b"s" * 80),
    txm.ListKey(root_of("c"), 1, 5),
    txm.TransferKey(root_of("c"), 1, BOB, b"s" * 80),
    txm.Transfer(BOB, 10),
    txm.Bond(10),
    txm.Unbond(10),
    txm.SubmitEvidence(b"evidence"),
    txm.Generic(b"kind", b"payload"),
]


@pytest.mark.parametrize("body", BODIES, ids=lambda b: type(b).__name__)
def test_round_trip_and_lane(body: txm.AnyBody) -> None:
    t = txm.Tx.create(ALICE, CHAIN_ID, 3, 1000, body)
    raw = t.encode()
    back = txm.Tx.decode_untrusted(raw)
    assert back == t
    assert back.encode() == raw
    assert back.verify_signature(CHAIN_ID)
    assert not back.verify_signature("other-chain")
    assert txm.signed_payload(raw) == pack(t.unsigned_fields())
    expected_lane = {1: 0, 2: 0, 3: 0, 4: 0, 5: 0, 10: 1, 11: 1}.get(body.TAG, 2 if body.TAG < 30 else 3)
    assert t.lane == expected_lane


def test_every_body_type_is_tested() -> None:
    assert {type(b) for b in BODIES} == set(txm.BODY_TYPES.values())


# Ed25519 signatures are deterministic, so the whole transaction is a golden vector.
GOLDEN_TRANSFER = (
    "95c4202f20995ea5454357e356c9353f4214afed76f3d48ac5a7d21e8599c3e34ae0eb03cd03e8931ec4200707"
    "070707070707070707070707070707070707070707070707070707070707cd3039c440f986c843a677fdc34892"
    "2515689a82058976eb878f3605525520df1753dae9374df851c5b1f49dc1589a5c858a93df3c30f086a8c3d4c5"
    "a2160bf8f7eb21a30f"
)


def test_golden_transfer() -> None:
    t = txm.Tx.create(key("golden"), CHAIN_ID, 3, 1000, txm.Transfer(b"\x07" * 32, 12345))
    assert t.encode().hex() == GOLDEN_TRANSFER
    assert txm.Tx.decode_untrusted(bytes.fromhex(GOLDEN_TRANSFER)) == t
    assert txm.tx_hash(bytes.fromhex(GOLDEN_TRANSFER)) == txm.tx_hash(t.encode())


def test_golden_vector_fixed_bytes() -> None:
    """A fixed transaction encoding decodes to known fields and re-encodes to itself."""
    t = txm.Tx(b"\x01" * 32, 0, 100, txm.React(b"\x02" * 32, 1), b"\x03" * 64)
    raw = t.encode()
    expected = (
        "95" + "c420" + "01" * 32 + "00" + "64" + "93" + "03" + "c420" + "02" * 32 + "01" + "c440" + "03" * 64
    )
    assert raw.hex() == expected
    assert txm.Tx.decode_untrusted(bytes.fromhex(expected)) == t


def _raw(fields: list[object]) -> bytes:
    return pack_trusted(fields)


GOOD = txm.Tx.create(ALICE, CHAIN_ID, 0, 500, txm.Transfer(BOB, 1)).encode()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        GOOD[:-1],  # truncated
        GOOD + b"\x00",  # trailing byte
        GOOD[:3] + b"\xd0" + GOOD[3:],  # junk inserted
        _raw([b"\x01" * 31, 0, 1, [30, BOB, 1], b"\x00" * 64]),  # short sender
        _raw([b"\x01" * 32, -1, 1, [30, BOB, 1], b"\x00" * 64]),  # negative nonce
        _raw([b"\x01" * 32, 0, 1, [99, BOB, 1], b"\x00" * 64]),  # unknown body
        _raw([b"\x01" * 32, 0, 1, [30, BOB], b"\x00" * 64]),  # missing field
        _raw([b"\x01" * 32, 0, 1, [30, BOB, 1, 2], b"\x00" * 64]),  # extra field
        _raw([b"\x01" * 32, 0, 1, [30, BOB, "1"], b"\x00" * 64]),  # wrong type
        _raw([b"\x01" * 32, 0, 1, [], b"\x00" * 64]),  # empty body
        _raw([b"\x01" * 32, 0, 1, [30, BOB, 1], b"\x00" * 63]),  # short signature
        _raw([b"\x01" * 32, 0, 1, [30, BOB, 1]]),  # no signature
        _raw([b"\x01" * 32, 0, 1, [34, b"", b"x"], b"\x00" * 64]),  # empty generic kind
        _raw([b"\x01" * 32, 0, 1, [34, b"k" * 33, b"x"], b"\x00" * 64]),  # kind over 32 bytes
        _raw([b"\x01" * 32, 0, 1, [3, b"\x02" * 32, 7], b"\x00" * 64]),  # unknown reaction
        _raw([b"\x01" * 32, 0, 1, [True, BOB, 1], b"\x00" * 64]),  # boolean tag
    ],
)
def test_rejects_bad_bytes(data: bytes) -> None:
    with pytest.raises(DecodeError):
        txm.Tx.decode_untrusted(data)


def test_rejects_non_canonical_integer() -> None:
    # nonce 0 as a uint16 (0xcd 0x0000) instead of a positive fixint
    good = bytearray(GOOD)
    assert good[35] == 0x00
    bad = bytes(good[:35]) + b"\xcd\x00\x00" + bytes(good[36:])
    with pytest.raises(DecodeError):
        txm.Tx.decode_untrusted(bad)


def test_rejects_oversize() -> None:
    with pytest.raises(DecodeError):
        txm.Tx.decode_untrusted(GOOD, max_size=len(GOOD) - 1)


def test_card_id_is_deterministic_and_distinct() -> None:
    a = txm.compute_card_id(BOB, 0)
    assert a == txm.compute_card_id(BOB, 0)
    assert a != txm.compute_card_id(BOB, 1) and len(a) == 32


@given(
    nonce=st.integers(0, 2**64 - 1),
    fee=st.integers(0, 2**63 - 1),
    kind=st.binary(min_size=1, max_size=32),
    payload=st.binary(max_size=300),
)
def test_signed_payload_is_the_unsigned_encoding(nonce: int, fee: int, kind: bytes, payload: bytes) -> None:
    t = txm.Tx(b"\x05" * 32, nonce, fee, txm.Generic(kind, payload), b"\x09" * 64)
    raw = t.encode()
    assert txm.signed_payload(raw) == pack(t.unsigned_fields())
    assert txm.signature_of(raw) == b"\x09" * 64
    assert unpack_untrusted(raw, 10_000)[3] == [34, kind, payload]
    assert txm.Tx.decode_untrusted(raw) == t


@given(st.data())
def test_mutated_bytes_decode_canonically_or_fail_cleanly(data: st.DataObject) -> None:
    raw = bytearray(BODY_BYTES[data.draw(st.integers(0, len(BODY_BYTES) - 1))])
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    try:
        t = txm.Tx.decode_untrusted(bytes(raw))
    except DecodeError:
        return
    assert t.encode() == bytes(raw)


BODY_BYTES = [txm.Tx.create(ALICE, CHAIN_ID, 1, 10, b).encode() for b in BODIES]
