"""The mempool: transactions checked against the latest state, waiting for a block.

Theory of operation. The pool keeps ONE chain.state.Overlay over the latest
committed state, holding the effects of every pooled transaction applied in
arrival order. A new transaction is checked by chain.checktx.check_tx against
that overlay, so a sender's second transaction is checked after its first
(nonce, balance), and a passing one leaves its effects in it.

Nonces: a sender's pooled transactions always carry consecutive nonces starting
at its account nonce. A transaction whose nonce leaves a gap (or repeats a
pooled nonce) fails the check with WrongNonce and is REJECTED, not held back:
the client resubmits in order. There is no replacement by fee.

Priority is fee per encoded byte. `reap` walks senders by the priority of their
next transaction (a heap of sender heads), so priority orders senders while
each sender's nonce order is kept. Lanes execute in a fixed order (cards,
seeders, keys, txs), so a sender's transactions go into one block only while
their lanes do not go backwards. The candidate block is then re-run in
execution order on a scratch overlay (due expiries first, signatures not
re-checked) and any transaction that fails is left out with its sender's later
ones: every reaped transaction is valid in sequence.

When the pool is full (count or bytes), a new transaction may evict pooled
ones of strictly lower priority, always a sender's LAST transaction first (never
an earlier nonce before a later one) and never one of the newcomer's own
sender. Removing pooled transactions invalidates the overlay; it is rebuilt by
replaying the remaining ones in arrival order (rules only, no signatures).

After each block `update` removes the committed transactions, remembers their
hashes and rebuilds the overlay against the new state (the daemon defers the
rebuild to the next add: `reap` re-runs whatever it picks and never needs it); with [mempool] recheck
(default) a transaction that no longer passes is dropped together with its
sender's later ones. With recheck = false only transactions whose nonce the
chain has passed are dropped; the others stay (outside the overlay) and `reap`,
which re-runs everything it picks, leaves out any that fail.

Peers' transactions ahead of their sender's next nonce (``add(..., park_future=True)``,
the daemon's gossip intake) are PARKED instead of dropped: gossip is best effort, and a
node that missed one transaction of a sender (its pool was full when it came, say)
would otherwise refuse every later one of that sender for good, since gossip never
sends them again, and only the sender's own node could still propose them. A parked
transaction is added as soon as its predecessor is (pooled here, or committed in a
block another validator proposed: :meth:`promote_parked` after each block), and
forgotten after ``PARK_HEIGHTS`` heights; at most [mempool] size are parked. Clients'
transactions (RPC) are still refused on a nonce gap. Pure: no trio, no clock, no I/O;
the daemon calls it from its tasks and gossips what `add` accepted (and what
:meth:`take_promoted` hands out).
"""

from __future__ import annotations

import builtins
import heapq
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import msgpack

from chain import crypto
from chain import statekeys as sk
from chain import tx as txm
from chain.checktx import CheckResult, check_tx
from chain.errors import BadTxSignature, InvalidTx, MalformedTx, StateError, WrongNonce
from chain.params import ConsensusParams
from chain.state import (
    Apply,
    BlockResult,
    Overlay,
    State,
    decode_tx,
    deliver_tx,
    process_expiry,
    tx_signing_digest,
)
from node.config import MempoolConfig
from node.errors import NodeError

if TYPE_CHECKING:
    from node.metrics import NodeMetrics
    from node.sigcache import VerifiedTxs

LANES = txm.LANE_NAMES
TX_LIST_OVERHEAD = 5
"""Bytes the block encoding adds around one transaction (msgpack bin32 header at most)."""
DEFAULT_RESERVED_BYTES = 16_384
"""Block bytes `reap` leaves for the header, the last commit and evidence by default."""
PARK_HEIGHTS = 30
"""Heights a peer's transaction waits parked for its sender's earlier nonce."""


# --- errors -------------------------------------------------------------------


class MempoolError(NodeError):
    """A transaction was not added. `code` is the number RPC results carry."""

    code: ClassVar[int] = 1
    name: ClassVar[str] = "MempoolError"


class TxInvalid(MempoolError):
    """The transaction fails the chain's rules (the client's fault); `reason` is the
    chain.errors.InvalidTx the check raised."""

    code = 1

    def __init__(self, reason: InvalidTx) -> None:
        self.reason = reason
        super().__init__(f"{type(reason).__name__}: {reason}")


class DuplicateTx(MempoolError):
    """The transaction is already pooled or was seen recently (cache)."""

    code = 2


class MempoolFull(MempoolError):
    """No room: the pool is at [mempool] size or max_txs_bytes and holds nothing of
    lower priority to evict (the client may retry with a higher fee)."""

    code = 3


class TxTooLarge(MempoolError):
    """The transaction exceeds [mempool] max_tx_bytes."""

    code = 4


class MempoolUsageError(MempoolError):
    """The node misused the mempool (an update for a height the state is not at)."""

    code = 5


class TxParked(MempoolError):
    """A peer's transaction ahead of its sender's next nonce was parked until the
    earlier ones arrive (``add(..., park_future=True)`` only; not the peer's fault)."""

    code = 6


# --- entries ------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class MempoolTx:
    """One pooled transaction."""

    tx_bytes: builtins.bytes
    tx_hash: builtins.bytes
    tx: txm.Tx
    lane: int
    """Index into chain.tx.LANE_NAMES."""
    size: int
    seq: int
    """Arrival number: replay order and the tie-break of equal priorities (older first)."""
    height: int
    """Latest committed height when it was added."""

    @property
    def sender(self) -> builtins.bytes:
        return self.tx.sender

    @property
    def nonce(self) -> int:
        return self.tx.nonce

    @property
    def fee(self) -> int:
        return self.tx.fee

    @property
    def priority(self) -> float:
        """Fee per encoded byte."""
        return self.tx.fee / self.size


# --- the pool -----------------------------------------------------------------


class Mempool:
    """Pending transactions of the node (see the module docstring)."""

    def __init__(self, state: State, config: MempoolConfig, *, metrics: NodeMetrics | None = None,
                 verified: VerifiedTxs | None = None) -> None:
        self.state = state
        self.verified = verified
        """Where the hashes of transactions whose signature check_tx verified go (node.sigcache)."""
        self.config = config
        self.metrics = metrics
        self._by_hash: dict[builtins.bytes, MempoolTx] = {}  # insertion order = arrival order
        self._by_sender: dict[builtins.bytes, list[MempoolTx]] = {}  # ascending nonces
        self._bytes = 0
        self._seq = 0
        self._cache: OrderedDict[builtins.bytes, None] = OrderedDict()
        self._overlay: Overlay = state.new_overlay()
        self._overlay_height = state.height
        self._dirty = False
        self._parked: dict[builtins.bytes, dict[int, tuple[builtins.bytes, builtins.bytes, int]]] = {}
        """Sender -> nonce -> (tx bytes, hash, height parked at) of peers' transactions
        ahead of the sender's next nonce."""
        self._parked_count = 0
        self._promoted: list[tuple[builtins.bytes, builtins.bytes]] = []
        self.parked_total = 0
        self.promoted_total = 0
        """Transactions parked / added later from the parking (counters)."""

    # -- reading -----------------------------------------------------------------

    @property
    def size(self) -> int:
        """Transactions in the pool."""
        return len(self._by_hash)

    @property
    def total_bytes(self) -> int:
        """Bytes of the pooled transactions."""
        return self._bytes

    def txs(self, limit: int | None = None) -> list[builtins.bytes]:
        """Pooled transaction bytes in arrival order (at most `limit`)."""
        out: list[builtins.bytes] = []
        for entry in self._by_hash.values():
            if limit is not None and len(out) >= limit:
                break
            out.append(entry.tx_bytes)
        return out

    def entries(self) -> list[MempoolTx]:
        """Pooled entries in arrival order."""
        return list(self._by_hash.values())

    def get(self, tx_hash: builtins.bytes) -> builtins.bytes | None:
        entry = self._by_hash.get(tx_hash)
        return None if entry is None else entry.tx_bytes

    def __contains__(self, tx_hash: object) -> bool:
        return tx_hash in self._by_hash

    def __len__(self) -> int:
        return len(self._by_hash)

    def next_nonce(self, sender: builtins.bytes) -> int | None:
        """The nonce the sender's next transaction must carry, if it has pooled ones."""
        queue = self._by_sender.get(sender)
        return None if not queue else queue[-1].nonce + 1

    def seen(self, tx_hash: builtins.bytes) -> bool:
        """Pooled, or in the cache of recently seen hashes (gossip skips these)."""
        return tx_hash in self._by_hash or tx_hash in self._cache

    # -- adding --------------------------------------------------------------------

    def add(self, tx_bytes: builtins.bytes, *, park_future: bool = False) -> CheckResult:
        """Check and add a transaction; raises a MempoolError subclass. With
        ``park_future`` (a peer's transaction) one whose nonce is ahead of its sender's
        next is parked (TxParked) instead of refused; see the module docstring."""
        result = self._add(tx_bytes, park_future)
        if self._parked and result.sender in self._parked:
            self._promote_sender(result.sender, result.nonce + 1)
        return result

    def _add(self, tx_bytes: builtins.bytes, park_future: bool) -> CheckResult:
        if type(tx_bytes) is not bytes:
            raise TxInvalid(MalformedTx(f"a transaction is bytes, not {type(tx_bytes).__name__}"))
        size = len(tx_bytes)
        # the size limits: the pool's and the chain's
        if size > self.config.max_tx_bytes:
            raise self._failed(TxTooLarge(f"transaction of {size} bytes exceeds [mempool] max_tx_bytes {self.config.max_tx_bytes}"))
        tx_hash = txm.tx_hash(tx_bytes)
        if tx_hash in self._by_hash or tx_hash in self._cache:
            raise DuplicateTx(f"transaction {tx_hash.hex()} is already known")
        self._catch_up()
        try:
            tx = decode_tx(self.state.app, tx_bytes)
        except InvalidTx as exc:
            raise self._failed(TxInvalid(exc)) from exc
        priority = tx.fee / size
        victims = self._victims_for(tx.sender, priority, size)
        if victims is None:
            raise self._failed(
                MempoolFull(
                    f"mempool full ({self.size} txs, {self._bytes} bytes) and nothing of lower"
                    f" priority than {priority:.3f} per byte to evict"
                )
            )
        if self._dirty:
            self._rebuild(drop_failed=True)
        try:
            result = self._check_decoded(tx, tx_bytes, tx_hash)
        except WrongNonce as exc:
            if park_future and self._park(tx, tx_bytes, tx_hash):
                raise TxParked(f"transaction {tx_hash.hex()} parked: {exc}") from exc
            raise self._failed(TxInvalid(exc)) from exc
        except InvalidTx as exc:
            raise self._failed(TxInvalid(exc)) from exc
        entry = MempoolTx(tx_bytes, tx_hash, tx, tx.body.LANE, size, self._seq, self.state.height)
        self._seq += 1
        self._insert(entry)
        if victims:
            for victim in victims:
                self._remove(victim)
            # the overlay still holds the victims' effects: replay what stays
            dropped = self._rebuild(drop_failed=True)
            if entry in dropped:
                raise self._failed(TxInvalid(dropped[entry]))
        self._remember(tx_hash)
        if self.metrics is not None:
            self.metrics.mempool_tx_size_bytes.observe(size)
        self._update_gauge()
        return result

    # -- parked transactions (peers' nonce gaps) -------------------------------------

    @property
    def parked(self) -> int:
        """Peers' transactions parked for an earlier nonce of their sender."""
        return self._parked_count

    def _park(self, tx: txm.Tx, tx_bytes: builtins.bytes, tx_hash: builtins.bytes) -> bool:
        """Park a transaction whose nonce is ahead of its sender's next; False if its
        nonce is behind (a replay) or there is no room."""
        queue = self._by_sender.get(tx.sender)
        expected = queue[-1].nonce + 1 if queue else _nonce_of(self._overlay, tx.sender)
        if tx.nonce <= expected or self._parked_count >= self.config.size:
            return False
        slots = self._parked.setdefault(tx.sender, {})
        if tx.nonce not in slots:
            slots[tx.nonce] = (tx_bytes, tx_hash, self.state.height)
            self._parked_count += 1
            self.parked_total += 1
        return True

    def _promote_sender(self, sender: builtins.bytes, nonce: int) -> None:
        """Add the sender's parked transactions from ``nonce`` on, in order, while they
        pass (the first that does not is dropped with the rest of the run)."""
        slots = self._parked.get(sender)
        while slots is not None and nonce in slots:
            tx_bytes, tx_hash, _ = slots.pop(nonce)
            self._parked_count -= 1
            if not slots:
                del self._parked[sender]
            try:
                self._add(tx_bytes, False)
            except MempoolError:
                return
            self._promoted.append((tx_bytes, tx_hash))
            self.promoted_total += 1
            nonce += 1

    def promote_parked(self) -> None:
        """After a block: drop parked transactions the chain has passed or that waited
        PARK_HEIGHTS, and add those whose predecessor is now committed."""
        if not self._parked:
            return
        self._catch_up()
        if self._dirty:
            self._rebuild(drop_failed=True)
        height = self.state.height
        for sender in list(self._parked):
            slots = self._parked.get(sender)
            if not slots:
                continue
            queue = self._by_sender.get(sender)
            expected = queue[-1].nonce + 1 if queue else _nonce_of(self._overlay, sender)
            for nonce in [n for n, (_, _, at) in slots.items()
                          if n < expected or height - at > PARK_HEIGHTS]:
                del slots[nonce]
                self._parked_count -= 1
            if not slots:
                del self._parked[sender]
            elif expected in slots:
                self._promote_sender(sender, expected)

    def take_promoted(self) -> list[tuple[builtins.bytes, builtins.bytes]]:
        """(bytes, hash) of the parked transactions added since the last call (to gossip)."""
        out, self._promoted = self._promoted, []
        return out

    def _check_decoded(self, tx: txm.Tx, tx_bytes: builtins.bytes, tx_hash: builtins.bytes) -> CheckResult:
        """chain.checktx.check_tx on the pool's overlay for a transaction decoded once
        (same rules, same order): the signature unless this node verified these exact
        bytes before (node.sigcache), then deliver_tx on a child overlay, merged if it
        passes. Raises InvalidTx."""
        state = self.state
        verified = self.verified
        # the sender signed it for this chain
        if verified is None or tx_hash not in verified:
            if not crypto.verify(tx.sender, tx.signature, tx_signing_digest(state.chain_id, tx_bytes)):
                raise BadTxSignature("signature does not verify for this chain")
            if verified is not None:
                verified.add(tx_hash)
        scratch = self._overlay.child()
        ap = Apply(state, scratch, state.height + 1, state.time_ms, None)
        gas = deliver_tx(ap, tx, tx_bytes, tx_hash)
        ap.flush_accounts()
        self._overlay.merge(scratch)
        return CheckResult(tx_hash, LANES[tx.lane], tx.sender, tx.nonce, tx.fee, len(tx_bytes), gas)

    def check(self, tx_bytes: builtins.bytes) -> CheckResult:
        """check_tx against the pool's overlay without adding (nothing is kept);
        raises TxInvalid or TxTooLarge."""
        if type(tx_bytes) is not bytes:
            raise TxInvalid(MalformedTx(f"a transaction is bytes, not {type(tx_bytes).__name__}"))
        if len(tx_bytes) > self.config.max_tx_bytes:
            raise TxTooLarge(f"transaction of {len(tx_bytes)} bytes exceeds [mempool] max_tx_bytes {self.config.max_tx_bytes}")
        self._catch_up()
        if self._dirty:
            self._rebuild(drop_failed=True)
        try:
            return check_tx(self.state, tx_bytes, overlay=self._overlay.child())
        except InvalidTx as exc:
            raise TxInvalid(exc) from exc

    def _victims_for(self, sender: builtins.bytes, priority: float, size: int) -> list[MempoolTx] | None:
        """Pooled transactions to evict so that one of `size` bytes fits ([] if it fits
        already), or None if there is no room even after evicting everything of lower
        priority. Only senders' last transactions are taken, never `sender`'s."""
        if size > self.config.max_txs_bytes:
            return None
        count_over = self.size + 1 - self.config.size
        bytes_over = self._bytes + size - self.config.max_txs_bytes
        if count_over <= 0 and bytes_over <= 0:
            return []
        heap: list[tuple[float, int, builtins.bytes, int]] = []
        for other, queue in self._by_sender.items():
            if other != sender and queue:
                tail = queue[-1]
                heap.append((tail.priority, -tail.seq, other, len(queue) - 1))
        heapq.heapify(heap)
        victims: list[MempoolTx] = []
        while count_over > 0 or bytes_over > 0:
            if not heap:
                return None
            prio, _, other, idx = heapq.heappop(heap)
            # only strictly lower priority makes way
            if prio >= priority:
                return None
            victim = self._by_sender[other][idx]
            victims.append(victim)
            count_over -= 1
            bytes_over -= victim.size
            if idx > 0:
                prev = self._by_sender[other][idx - 1]
                heapq.heappush(heap, (prev.priority, -prev.seq, other, idx - 1))
        return victims

    # -- blocks ----------------------------------------------------------------------

    def reap(
        self,
        consensus_params: ConsensusParams,
        *,
        reserved_bytes: int = DEFAULT_RESERVED_BYTES,
        max_txs: int | None = None,
    ) -> dict[str, list[builtins.bytes]]:
        """Transactions for the next block, per lane: by priority across senders, in
        nonce order per sender, each lane within its limit, all of them within
        max_block_bytes - reserved_bytes (the header, last commit and evidence), and
        valid when applied in block order. Nothing is removed from the pool. The
        pool's overlay is not needed (every pick is re-run on a scratch overlay), so a
        recheck still pending after a block does not delay the proposal."""
        budget = consensus_params.max_block_bytes - reserved_bytes
        lane_room = [consensus_params.max_lane_txs(lane) for lane in LANES]
        total_room = max_txs if max_txs is not None else sum(lane_room)
        chosen: list[list[MempoolTx]] = [[] for _ in LANES]
        used = 0
        taken = 0
        heap: list[tuple[float, int, builtins.bytes, int]] = []
        for sender, queue in self._by_sender.items():
            if queue:
                heap.append((-queue[0].priority, queue[0].seq, sender, 0))
        heapq.heapify(heap)
        last_lane: dict[builtins.bytes, int] = {}
        while heap and taken < total_room:
            _, _, sender, idx = heapq.heappop(heap)
            entry = self._by_sender[sender][idx]
            cost = entry.size + TX_LIST_OVERHEAD
            # a sender's later nonce never runs before its earlier one: lanes run in order
            if entry.lane < last_lane.get(sender, 0):
                continue
            if len(chosen[entry.lane]) >= lane_room[entry.lane] or used + cost > budget:
                continue  # this sender waits for the next block (its later nonces too)
            chosen[entry.lane].append(entry)
            last_lane[sender] = entry.lane
            used += cost
            taken += 1
            if idx + 1 < len(self._by_sender[sender]):
                nxt = self._by_sender[sender][idx + 1]
                heapq.heappush(heap, (-nxt.priority, nxt.seq, sender, idx + 1))
        return self._validate_in_block_order(chosen)

    def _validate_in_block_order(self, chosen: list[list[MempoolTx]]) -> dict[str, list[builtins.bytes]]:
        state = self.state
        overlay = state.new_overlay()
        height = state.height + 1
        expiry = Apply(state, overlay, height, state.time_ms, None)
        try:
            process_expiry(expiry)
            expiry.flush_accounts()
        except StateError:
            overlay = state.new_overlay()  # the block will fail for everyone: check without expiry
        failed: set[builtins.bytes] = set()
        out: dict[str, list[builtins.bytes]] = {lane: [] for lane in LANES}
        for lane_no, entries in enumerate(chosen):
            for entry in entries:
                if entry.sender in failed:
                    continue
                try:
                    _apply_entry(state, overlay, entry)
                except InvalidTx:
                    failed.add(entry.sender)
                    continue
                out[LANES[lane_no]].append(entry.tx_bytes)
        return out

    def update(
        self,
        height: int,
        block_result: BlockResult | None = None,
        committed_tx_hashes: Iterable[builtins.bytes] | None = None,
        *,
        recheck_now: bool = True,
    ) -> list[builtins.bytes]:
        """After block `height` is committed and the state handle advanced: remove the
        committed transactions and rebuild against the new state (dropping what no
        longer passes when [mempool] recheck). Returns the hashes dropped by recheck.

        With ``recheck_now=False`` the rebuild waits for the next add or check (the
        daemon's choice: the commit path, and the proposal built right after it, do
        not wait for a replay of the whole pool); [] is returned."""
        if height != self.state.height:
            raise MempoolUsageError(f"update for height {height}, but the state is at {self.state.height}")
        if committed_tx_hashes is None:
            committed_tx_hashes = () if block_result is None else [r.tx_hash for r in block_result.tx_results]
        for tx_hash in committed_tx_hashes:
            entry = self._by_hash.get(tx_hash)
            if entry is not None:
                self._remove(entry)
            self._remember(tx_hash)
        self._overlay_height = -1  # force the rebuild against the new version
        if not recheck_now:
            self._update_gauge()
            return []
        dropped = self._catch_up()
        self._update_gauge()
        return dropped

    def remove(self, tx_hash: builtins.bytes) -> bool:
        """Drop one transaction and its sender's later ones; True if it was pooled."""
        entry = self._by_hash.get(tx_hash)
        if entry is None:
            return False
        queue = self._by_sender[entry.sender]
        for later in queue[queue.index(entry):]:
            self._remove(later)
        self._dirty = True
        self._update_gauge()
        return True

    def flush(self) -> None:
        """Empty the pool (the cache of seen hashes is kept)."""
        self._by_hash.clear()
        self._by_sender.clear()
        self._parked.clear()
        self._parked_count = 0
        self._bytes = 0
        self._dirty = True
        self._update_gauge()

    # -- internals -------------------------------------------------------------------

    def _catch_up(self) -> list[builtins.bytes]:
        """Rebuild when the state moved since the overlay was made; returns dropped hashes."""
        if self._overlay_height == self.state.height:
            return []
        dropped = self._rebuild(drop_failed=self.config.recheck)
        if self.metrics is not None and self.size + len(dropped):
            self.metrics.mempool_recheck_times.inc(self.size + len(dropped))
        return [e.tx_hash for e in dropped]

    def _rebuild(self, *, drop_failed: bool) -> dict[MempoolTx, InvalidTx]:
        """A fresh overlay over the latest state with every pooled transaction replayed
        in arrival order; returns those that failed (dropped when `drop_failed`, with
        their senders' later transactions)."""
        state = self.state
        self._overlay = state.new_overlay()
        self._overlay_height = state.height
        self._dirty = False
        failed: dict[MempoolTx, InvalidTx] = {}
        failed_senders: dict[builtins.bytes, InvalidTx] = {}
        for entry in list(self._by_hash.values()):
            first = failed_senders.get(entry.sender)
            if first is not None:
                failed[entry] = first  # its predecessor failed: its nonce cannot follow
                continue
            try:
                _apply_entry(state, self._overlay, entry)
            except InvalidTx as exc:
                failed[entry] = exc
                failed_senders[entry.sender] = exc
        for entry, error in list(failed.items()):
            # without recheck only a nonce the chain has passed is dropped
            if drop_failed or (isinstance(error, WrongNonce) and entry.nonce < _nonce_of(self._overlay, entry.sender)):
                self._remove(entry)
                self._cache.pop(entry.tx_hash, None)  # it may become valid again: let it back in
            else:
                del failed[entry]
        return failed

    def _insert(self, entry: MempoolTx) -> None:
        self._by_hash[entry.tx_hash] = entry
        self._by_sender.setdefault(entry.sender, []).append(entry)
        self._bytes += entry.size

    def _remove(self, entry: MempoolTx) -> None:
        if self._by_hash.pop(entry.tx_hash, None) is None:
            return
        queue = self._by_sender.get(entry.sender)
        if queue is not None:
            queue.remove(entry)
            if not queue:
                del self._by_sender[entry.sender]
        self._bytes -= entry.size

    def _remember(self, tx_hash: builtins.bytes) -> None:
        if self.config.cache_size == 0:
            return
        self._cache[tx_hash] = None
        self._cache.move_to_end(tx_hash)
        while len(self._cache) > self.config.cache_size:
            self._cache.popitem(last=False)

    def _failed(self, err: MempoolError) -> MempoolError:
        if self.metrics is not None:
            self.metrics.mempool_failed_txs.inc()
        return err

    def _update_gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.mempool_size.set(self.size)

    # `bytes` as in docs/interfaces.md; defined last so annotations above see the builtin
    @property
    def bytes(self) -> int:
        """Bytes of the pooled transactions (same as total_bytes)."""
        return self._bytes


def _nonce_of(overlay: Overlay, sender: builtins.bytes) -> int:
    raw = overlay.get(sk.account(sender))
    return 0 if raw is None else int(msgpack.unpackb(raw)[1])


def _apply_entry(state: State, overlay: Overlay, entry: MempoolTx) -> None:
    """Run an already signature-checked transaction's rules on `overlay` (kept only if it passes)."""
    scratch = overlay.child()
    ap = Apply(state, scratch, state.height + 1, state.time_ms, None)
    deliver_tx(ap, entry.tx, entry.tx_bytes, entry.tx_hash)
    ap.flush_accounts()
    overlay.merge(scratch)
