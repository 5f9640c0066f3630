"""node.sigcache: each transaction's signature is verified once per node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chain import crypto
from chain import tx as txm
from chain.sigverify import SignatureVerifier
from chain.state import apply_block
from node import txbuild
from node.config import MempoolConfig
from node.mempool import Mempool, TxInvalid
from node.sigcache import CachedVerifier, VerifiedTxs
from tests.chain.helpers import TestChain

CHAIN = "bh-test"


def _txs(n: int) -> list[bytes]:
    key = crypto.PrivateKey.generate()
    return [txbuild.sign(key, CHAIN, i, txbuild.transfer(b"\x02" * 32, 1))[1] for i in range(n)]


def _forged(raw: bytes) -> bytes:
    sig = txm.signature_of(raw)
    at = raw.index(sig)
    return raw[:at] + bytes([sig[0] ^ 1]) + raw[at + 1:]


class Recording:
    """A verifier that records what it was asked to verify."""

    def __init__(self) -> None:
        self.inner = SignatureVerifier(1, kind="thread")
        self.asked: list[list[bytes]] = []

    def submit_txs(self, raws: Any, chain_id: str) -> Any:
        self.asked.append(list(raws))
        return self.inner.submit_txs(raws, chain_id)


def test_bounded_oldest_forgotten() -> None:
    cache = VerifiedTxs(capacity=3)
    for h in (b"a", b"b", b"c", b"b", b"d"):
        cache.add(h)
    assert len(cache) == 3 and b"a" not in cache and all(h in cache for h in (b"b", b"c", b"d"))
    with pytest.raises(ValueError):
        VerifiedTxs(0)


def test_known_txs_skip_the_pool_and_indexes_map_back() -> None:
    raws = _txs(6)
    rec = Recording()
    cache = VerifiedTxs()
    verifier = CachedVerifier(rec, cache)
    assert verifier.submit_txs(raws, CHAIN).first_invalid() is None
    assert rec.asked[-1] == raws  # nothing known yet: everything verified
    for raw in raws[:4]:
        cache.add(txm.tx_hash(raw))
    bad = [*raws[:5], _forged(raws[5])]
    assert verifier.submit_txs(bad, CHAIN).first_invalid() == 5  # index in the block, not the subset
    assert rec.asked[-1] == bad[4:]
    assert verifier.skipped == 4
    # a forged variant of a known transaction has another hash: it is verified and fails
    assert verifier.submit_txs([raws[0], _forged(raws[1])], CHAIN).first_invalid() == 1
    rec.inner.close()


def test_mempool_records_what_it_verified_and_apply_skips_it(tmp_path: Path) -> None:
    chain = TestChain(path=tmp_path / "db", users=("alice", "bob"))
    try:
        cache = VerifiedTxs()
        mp = Mempool(chain.state, MempoolConfig(), verified=cache)
        good = [chain.tx("alice", txm.Transfer(chain.addr("bob"), 1)) for _ in range(3)]
        for raw in good:
            mp.add(raw)
        refused = _forged(chain.tx("bob", txm.Transfer(chain.addr("alice"), 1)))
        with pytest.raises(TxInvalid):
            mp.add(refused)
        assert all(txm.tx_hash(r) in cache for r in good) and txm.tx_hash(refused) not in cache
        rec = Recording()
        block = chain.block(lanes=mp.reap(chain.consensus))
        result = apply_block(chain.state, block, verifier=CachedVerifier(rec, cache))
        assert len(result.tx_results) == 3 and rec.asked == [[]]
        rec.inner.close()
    finally:
        chain.close()


def test_mempool_verifies_a_signature_once_per_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chain = TestChain(path=tmp_path / "db", users=("alice", "bob"))
    try:
        cache = VerifiedTxs()
        mp = Mempool(chain.state, MempoolConfig(), verified=cache)
        calls: list[bytes] = []
        real = crypto.verify

        def counting(pub: bytes, sig: bytes, digest: bytes) -> bool:
            calls.append(sig)
            return real(pub, sig, digest)

        monkeypatch.setattr(crypto, "verify", counting)
        first = chain.tx("alice", txm.Transfer(chain.addr("bob"), 1))
        second = chain.tx("alice", txm.Transfer(chain.addr("bob"), 1))
        mp.add(first)
        assert len(calls) == 1
        # checked by block apply or a peer's gossip before (the hash is known): not again
        cache.add(txm.tx_hash(second))
        mp.add(second)
        assert len(calls) == 1 and mp.size == 2
        # a forged copy has another hash: verified, and refused
        forged = _forged(chain.tx("alice", txm.Transfer(chain.addr("bob"), 1)))
        with pytest.raises(TxInvalid, match="BadTxSignature"):
            mp.add(forged)
        assert len(calls) == 2 and mp.size == 2
    finally:
        chain.close()


def test_bounded_map_keeps_first_value_and_age() -> None:
    from node.bounded import BoundedMap

    m: BoundedMap[bytes, int] = BoundedMap(2)
    m.put(b"a", 1)
    m.put(b"b", 2)
    m.put(b"a", 9)  # present: unchanged, keeps its age
    m.put(b"c", 3)
    assert m.get(b"a") is None and m.get(b"b") == 2 and m.get(b"c") == 3 and len(m) == 2
