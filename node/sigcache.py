"""Verify each transaction's signature once per node.

The mempool's check_tx verifies a transaction's signature when it arrives (from
RPC or gossip); block apply used to verify every signature of the block again.
:class:`VerifiedTxs` remembers the hashes of transactions whose signature
verified (bounded, oldest forgotten first), and :class:`CachedVerifier` wraps the
chain's signature pool for ``apply_block(verifier=...)``: it sends only the
transactions it does not know to the pool and maps the pool's answer back to
block indexes.

Safe because the hash covers the whole encoded transaction, signature included,
and a node serves one chain id: a known hash means these exact bytes verified
under this chain's domain. Writers run on the trio thread, readers on the apply
worker thread; each touches the dict with single operations (no iteration while
another thread writes), which the GIL makes atomic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chain import tx as txm
from node.bounded import BoundedMap

DEFAULT_CAPACITY = 200_000


class VerifiedTxs(BoundedMap[bytes, None]):
    """A bounded set of transaction hashes whose signature verified."""

    __slots__ = ()

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        super().__init__(capacity)

    def add(self, tx_hash: bytes) -> None:
        self.put(tx_hash, None)


class _Remapped:
    """A pending pool check over a subset of a block's transactions."""

    __slots__ = ("_indexes", "_pending")

    def __init__(self, pending: Any, indexes: list[int]) -> None:
        self._pending = pending
        self._indexes = indexes

    def first_invalid(self) -> int | None:
        bad = self._pending.first_invalid()
        return None if bad is None else self._indexes[bad]


class CachedVerifier:
    """``submit_txs`` of a chain.sigverify.SignatureVerifier that skips known-good txs.

    ``inner`` None means chain.sigverify's shared default pool (what apply_block
    would use without a verifier)."""

    def __init__(self, inner: Any, verified: VerifiedTxs) -> None:
        self.inner = inner
        self.verified = verified
        self.skipped = 0
        """Signatures not sent to the pool because they verified before (a counter)."""

    def _pool(self) -> Any:
        if self.inner is not None:
            return self.inner
        from chain import sigverify

        return sigverify.default_verifier()

    def submit_txs(self, raws: Sequence[bytes], chain_id: str) -> Any:
        known = self.verified
        indexes = [i for i, raw in enumerate(raws) if txm.tx_hash(raw) not in known]
        if len(indexes) == len(raws):
            return self._pool().submit_txs(raws, chain_id)
        self.skipped += len(raws) - len(indexes)
        return _Remapped(self._pool().submit_txs([raws[i] for i in indexes], chain_id), indexes)

    def __getattr__(self, name: str) -> Any:
        # submit / verify / close: the pool's own
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._pool(), name)
