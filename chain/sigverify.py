"""Signature checks of a block's transactions on every core.

apply_block hands the block's raw transactions to a pool as soon as the header
is checked; the pool extracts each sender and signature from the bytes,
computes the signing digest (:func:`first_invalid_tx`) and verifies, while the
main thread decodes and applies the block and stages the new state version.
The result is joined just before the app-hash check.

Choice by measurement (2-core machine shared with other jobs, blocks of 2,000
transactions of the apply_block benchmark on LevelDB, median ms a block, all
variants interleaved block by block in one run; "none" skips verification,
"one core" is bare pynacl verification of the block's signatures):

=============================  ============  ============
                               heavy load    lighter load
=============================  ============  ============
none (no verification)         193           112
thread pool, 2 threads         325           239
process pool, 1 process        277           225
process pool, 2 processes      287           228
one core, verification alone   142            97
=============================  ============  ============

pynacl's ``crypto_sign_open`` is a cffi call that releases the GIL, so
threads do verify in parallel when nothing else runs (4,000 verifications:
20.3k/s on one thread, 36.1k/s on two), but next to a main thread that is busy
in Python they keep waiting for the GIL between calls. A process on the other
core does not, so the default is a process pool of (cores - 1) processes,
spawned rather than forked (the node's process has threads); a thread pool
stays available (``SignatureVerifier(kind="thread")``). A timeline of the
lighter-load run shows the worker verifying a block in ~180 ms while the main
thread needs ~170 ms: with other jobs on the machine the two do not get two
full cores, which is why the gain over "none + one core" is small there.

Spawned workers import the main module: a script that applies blocks must
keep its work under ``if __name__ == "__main__":`` (the node's click entry
point does), or use the thread pool.

Each chunk returns the index of its first bad signature; a block reports the
lowest one.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor

import nacl.bindings
import nacl.exceptions

from chain import tx as txm
from chain.crypto import DOMAIN_TX, digest
from chain.errors import UsageError

Item = tuple[bytes, bytes, bytes]
"""(public key, signature, 32-byte digest)."""

CHUNKS_PER_WORKER = 4
MIN_CHUNK = 64


def first_invalid(items: Sequence[Item], offset: int = 0) -> int | None:
    """Verify on the calling thread; the index (plus `offset`) of the first bad item, or None."""
    sign_open = nacl.bindings.crypto_sign_open
    for i, (pubkey, signature, signed_digest) in enumerate(items):
        if len(pubkey) != 32 or len(signature) != 64:
            return offset + i
        try:
            sign_open(signature + signed_digest, pubkey)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError):
            return offset + i
    return None


def first_invalid_tx(raws: Sequence[bytes], chain_id: str, offset: int = 0) -> int | None:
    """Like :func:`first_invalid` for encoded transactions (sender, signature and digest
    taken from the bytes; bytes without the envelope's shape count as bad)."""
    sign_open = nacl.bindings.crypto_sign_open
    for i, raw in enumerate(raws):
        if len(raw) < 3 + 32 + 66 or raw[:3] != b"\x95\xc4\x20":
            return offset + i
        try:
            sign_open(txm.signature_of(raw) + digest(DOMAIN_TX, chain_id, txm.signed_payload(raw)), raw[3:35])
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError):
            return offset + i
    return None


class PendingCheck:
    """Verification running in the pool; `first_invalid()` waits for it."""

    __slots__ = ("_futures",)

    def __init__(self, futures: list[Future[int | None]]) -> None:
        self._futures = futures

    def first_invalid(self) -> int | None:
        bad = [i for i in (f.result() for f in self._futures) if i is not None]
        return min(bad) if bad else None


class SignatureVerifier:
    """A pool that verifies batches of Ed25519 signatures: processes (default) or threads."""

    def __init__(self, workers: int | None = None, *, kind: str = "process") -> None:
        self.workers = workers or max(1, (os.cpu_count() or 1) - 1)
        self.kind = kind
        self._pool: Executor
        if kind == "thread":
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="sigverify")
        elif kind == "process":
            # spawn, not fork: the node's process has threads (trio, this pool's users)
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_exit_with_parent, initargs=(os.getpid(),),
            )
        else:
            raise UsageError(f"a signature pool is 'thread' or 'process', not {kind!r}")

    def _chunks(self, n: int) -> tuple[int, int]:
        per_worker = CHUNKS_PER_WORKER if self.kind == "thread" else 1
        chunks = max(1, min(self.workers * per_worker, n // MIN_CHUNK))
        return chunks, (-(-n // chunks) if n else 1)

    def submit(self, items: Sequence[Item]) -> PendingCheck:
        n = len(items)
        _, step = self._chunks(n)
        futures = [
            self._pool.submit(first_invalid, list(items[start : start + step]), start)
            for start in range(0, max(n, 1), step)
        ]
        return PendingCheck(futures)

    def submit_txs(self, raws: Sequence[bytes], chain_id: str) -> PendingCheck:
        """Verify the signatures of encoded transactions (in this order) in the pool."""
        n = len(raws)
        _, step = self._chunks(n)
        futures = [
            self._pool.submit(first_invalid_tx, list(raws[start : start + step]), chain_id, start)
            for start in range(0, max(n, 1), step)
        ]
        return PendingCheck(futures)

    def verify(self, items: Sequence[Item]) -> int | None:
        return self.submit(items).first_invalid()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _exit_with_parent(parent_pid: int) -> None:
    """Pool worker start-up: exit once the parent is gone. A parent killed with
    SIGKILL never shuts its pool down, and spawned workers would live on."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="sigverify-parent-watch", daemon=True).start()


PARENT_CHECK_SECONDS = 1.0
"""How often a pool worker checks that the process that started it still runs."""

_default: SignatureVerifier | None = None
_lock = threading.Lock()


def default_verifier() -> SignatureVerifier:
    """The process-wide verifier (a process pool of cores - 1), created on first use."""
    global _default
    with _lock:
        if _default is None:
            _default = SignatureVerifier()
        return _default
