"""Keys, digests, signatures, domain tags and sealed boxes."""

from __future__ import annotations

import json
from pathlib import Path

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain import crypto
from chain.crypto import (
    DOMAIN_PROPOSAL,
    DOMAIN_TX,
    DOMAIN_VOTE,
    DOMAINS,
    PrivateKey,
    PublicKey,
    digest,
    register_domain,
    seal,
    unseal,
    verify,
)
from chain.errors import InvalidKey, InvalidSignature, UnsealError, UsageError

VECTORS = json.loads((Path(__file__).parent / "vectors" / "crypto.json").read_text())
KEY = PrivateKey(bytes.fromhex(VECTORS["seed"]))


def test_key_vector() -> None:
    assert KEY.public_key.hex() == VECTORS["public_key"]
    assert KEY.public_key.to_x25519().hex() == VECTORS["x25519_public_key"]
    assert PrivateKey(KEY.seed) == KEY


def test_domain_registry_vector() -> None:
    assert {name: tag.hex() for name, tag in DOMAINS.items()} == VECTORS["domains"]


@pytest.mark.parametrize("entry", VECTORS["digests"], ids=lambda e: e["domain"])
def test_digest_and_signature_vectors(entry: dict[str, str]) -> None:
    domain = DOMAINS[entry["domain"]]
    payload = bytes.fromhex(entry["payload"])
    d = digest(domain, entry["chain_id"], payload)
    assert d.hex() == entry["digest"]
    chain_id = entry["chain_id"].encode()
    assert d == blake3.blake3(domain + bytes([len(chain_id)]) + chain_id + payload).digest()
    sig = bytes.fromhex(entry["signature"])
    assert KEY.sign(d) == sig
    assert verify(KEY.public_key.raw, sig, d)


def test_domains_separate_signatures() -> None:
    payload = b"\x93\x01\x02\x03"
    digests = {digest(tag, "c", payload) for tag in DOMAINS.values()}
    assert len(digests) == len(DOMAINS)
    sig = KEY.sign_message(DOMAIN_VOTE, "c", payload)
    assert not verify(KEY.public_key.raw, sig, digest(DOMAIN_TX, "c", payload))
    assert not verify(KEY.public_key.raw, sig, digest(DOMAIN_VOTE, "d", payload))
    assert verify(KEY.public_key.raw, sig, digest(DOMAIN_VOTE, "c", payload))


def test_chain_id_length_is_bound_into_the_digest() -> None:
    # "ab" + payload "c..." must not collide with "abc" + payload "...".
    assert digest(DOMAIN_VOTE, "ab", b"cd") != digest(DOMAIN_VOTE, "abc", b"d")


def test_register_domain_rules() -> None:
    with pytest.raises(UsageError):
        register_domain("vote", b"other\x00")
    with pytest.raises(UsageError):
        register_domain("vote2", DOMAIN_VOTE + b"x")
    with pytest.raises(UsageError):
        register_domain("short", DOMAIN_PROPOSAL[:5])
    with pytest.raises(UsageError):
        register_domain("empty", b"")
    tags = list(DOMAINS.values())
    for a in tags:
        for b in tags:
            assert a == b or not a.startswith(b)


@pytest.mark.parametrize("chain_id", ["", "x" * 51, "héllo", 5])
def test_digest_rejects_bad_chain_ids(chain_id: object) -> None:
    with pytest.raises(UsageError):
        digest(DOMAIN_VOTE, chain_id, b"")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("chain_id", "ok"),
    [
        ("blackhole-1", True),
        ("a", True),
        ("a.b_c-D9", True),
        ("-a", False),
        ("a b", False),
        ("", False),
        ("x" * 51, False),
    ],
)
def test_chain_id_rule(chain_id: str, ok: bool) -> None:
    assert crypto.is_valid_chain_id(chain_id) is ok


def test_verify_never_raises_on_malformed_input() -> None:
    d = digest(DOMAIN_VOTE, "c", b"")
    sig = KEY.sign(d)
    assert not verify(b"\x00" * 31, sig, d)
    assert not verify(KEY.public_key.raw, sig[:63], d)
    assert not verify(KEY.public_key.raw, sig, d + b"x")
    assert not verify(b"\xff" * 32, sig, d)  # not a curve point
    assert not verify("nope", sig, d)  # type: ignore[arg-type]
    bad = bytes([sig[0] ^ 1]) + sig[1:]
    assert not verify(KEY.public_key.raw, bad, d)
    with pytest.raises(InvalidSignature):
        crypto.require_signature(KEY.public_key.raw, bad, d, "a vote")
    crypto.require_signature(KEY.public_key.raw, sig, d, "a vote")


def test_key_construction_errors() -> None:
    with pytest.raises(InvalidKey):
        PrivateKey(b"short")
    with pytest.raises(InvalidKey):
        PublicKey(b"\x01" * 33)
    with pytest.raises(UsageError):
        KEY.sign(b"not a digest")
    assert "PrivateKey" in repr(KEY) and KEY.seed.hex() not in repr(KEY)


def test_generated_keys_differ_and_sign() -> None:
    a, b = PrivateKey.generate(), PrivateKey.generate()
    assert a.public_key != b.public_key
    d = digest(DOMAIN_TX, "c", b"x")
    assert a.public_key.verify(a.sign(d), d)
    assert not b.public_key.verify(a.sign(d), d)


@given(st.binary(max_size=2048))
def test_seal_round_trip(data: bytes) -> None:
    box = seal(KEY.public_key.raw, data)
    assert len(box) == len(data) + crypto.SEAL_OVERHEAD
    assert unseal(KEY, box) == data


def test_seal_is_only_for_the_recipient() -> None:
    other = PrivateKey(b"\x09" * 32)
    box = seal(KEY.public_key.raw, b"content key")
    with pytest.raises(UnsealError):
        unseal(other, box)
    tampered = box[:-1] + bytes([box[-1] ^ 1])
    with pytest.raises(UnsealError):
        unseal(KEY, tampered)
    with pytest.raises(UnsealError):
        unseal(KEY, box[:10])


def test_seal_rejects_bad_recipient_keys() -> None:
    with pytest.raises(InvalidKey):
        seal(b"\x01" * 31, b"x")
    with pytest.raises(InvalidKey):
        seal(b"\xff" * 32, b"x")


def test_x25519_conversion_matches_between_halves() -> None:
    assert bytes(KEY.to_x25519().public_key) == KEY.public_key.to_x25519()
