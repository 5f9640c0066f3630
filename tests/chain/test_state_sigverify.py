"""chain.sigverify: the pools find the first bad signature of a block, in block order."""

from __future__ import annotations

import pytest

from chain import sigverify
from chain import tx as txm
from chain.errors import UsageError
from tests.chain.helpers import CHAIN_ID, key

ALICE = key("alice")


def txs(n: int) -> list[bytes]:
    return [txm.Tx.create(ALICE, CHAIN_ID, i, 100, txm.Transfer(b"\x01" * 32, 1)).encode() for i in range(n)]


def corrupt(raw: bytes) -> bytes:
    return raw[:-1] + bytes([raw[-1] ^ 1])


@pytest.fixture(scope="module", params=["thread", "process"])
def verifier(request: pytest.FixtureRequest) -> sigverify.SignatureVerifier:
    v = sigverify.SignatureVerifier(2, kind=request.param)
    yield v  # type: ignore[misc]
    v.close()


def test_all_good(verifier: sigverify.SignatureVerifier) -> None:
    assert verifier.submit_txs(txs(300), CHAIN_ID).first_invalid() is None
    assert verifier.submit_txs([], CHAIN_ID).first_invalid() is None


def test_first_bad_across_chunks(verifier: sigverify.SignatureVerifier) -> None:
    batch = txs(300)
    batch[250] = corrupt(batch[250])
    batch[71] = corrupt(batch[71])
    assert verifier.submit_txs(batch, CHAIN_ID).first_invalid() == 71
    assert verifier.submit_txs(txs(10), "other-chain").first_invalid() == 0


def test_malformed_envelope_counts_as_bad(verifier: sigverify.SignatureVerifier) -> None:
    batch = txs(5)
    batch[3] = b"\x93\x01\x02\x03"
    assert verifier.submit_txs(batch, CHAIN_ID).first_invalid() == 3


def test_items_api(verifier: sigverify.SignatureVerifier) -> None:
    raws = txs(3)
    items = [(r[3:35], txm.signature_of(r), txm.Tx.decode_untrusted(r).signing_digest(CHAIN_ID)) for r in raws]
    assert verifier.verify(items) is None
    items[2] = (items[2][0], items[2][1], b"\x00" * 32)
    assert verifier.verify(items) == 2
    assert sigverify.first_invalid([(b"short", b"", b"")]) == 0


def test_unknown_kind() -> None:
    with pytest.raises(UsageError):
        sigverify.SignatureVerifier(1, kind="gpu")
