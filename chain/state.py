"""The state transition: apply_block(state, block) -> BlockResult.

Theory of operation. The state is the authenticated tree of storage.state at
its latest version (the last applied height); chain.statekeys names every key
and docs/spec-state.md every record. A block is applied into a write
*overlay* (a dict in front of the tree): nothing reaches the store until the
node writes the returned StagedVersion together with the block in one batch,
so an invalid block, which raises a precise chain.errors.InvalidBlock subclass
half-way, changes nothing.

apply_block runs these steps in order, each check commented where it is made:

    process_header             the header follows from the state
    (signature checks)         start on a thread pool, joined before staging
    process_expiry             seeder entries lapse, escrows refund, unbonded stake returns
    process_cards, process_seeders, process_keys, process_txs
                               each transaction: envelope (lane, nonce, fee), then its rule
    process_evidence           equivocation evidence jails the validator and slashes its stake
    process_jail_deferred      jailed validators kept only to avoid an empty set leave when they can
    process_fees               the block's fees go to the proposer
    process_validator_updates  stake changes become the validator set of height + 2

Transactions are checked by the same functions in check_tx (chain.checktx),
against an overlay that is thrown away (or kept, for a mempool's running state).

Money. Tokens live in account balances, validator stakes, unbonding records and
escrows. A block moves them and never creates any: fees go from senders to the
proposer, prices and royalties from buyers to escrows, sellers and creators.
The only change of the total is the burn of slashed stake.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

import vm
from chain import mmr
from chain import statekeys as sk
from chain import tx as txm
from chain.crypto import DOMAIN_TX, SEAL_OVERHEAD, digest, hash_bytes
from chain.encoding import pack_trusted
from chain.errors import (
    AppHashMismatch,
    BadTxSignature,
    BlockEvidenceInvalid,
    BlockTxInvalid,
    ChainError,
    DecodeError,
    FeeTooLow,
    InsufficientBalance,
    InvalidBlock,
    InvalidCommit,
    InvalidEvidence,
    InvalidField,
    InvalidHeader,
    InvalidTx,
    InvalidValidatorSet,
    LaneLimitExceeded,
    LimitExceeded,
    MalformedTx,
    NoOpenEscrow,
    NotAuthorized,
    NotCreator,
    NotFound,
    OversizePreview,
    RuleViolation,
    StateError,
    ValidatorJailed,
    VMDenied,
    WrongNonce,
)
from chain.params import AppParams, ConsensusParams
from chain.types import (
    MAX_TOTAL_POWER,
    Block,
    Commit,
    Header,
    Validator,
    ValidatorSet,
    commit_hash,
    compute_block_time,
    compute_evidence_hash,
    compute_lane_root,
    decode_evidence_untrusted,
)
from storage.state import StagedVersion, StateTree

LANES = txm.LANE_NAMES
BPS = 10_000
_MISSING: Any = object()
DUE_CHUNK = 32
"""Items a record of the due index holds."""
SEEDER_CHUNK = 128
"""Seeder addresses a record of a content's seeder list holds."""
MAX_SEEDER_CHUNKS = 1 << 24
MAX_DUE_CHUNKS = 1 << 24
CACHE_ENTRIES = 400_000
"""Committed state values State keeps in memory (about 100 MB at most)."""


def _pack(obj: Any) -> bytes:
    return pack_trusted(obj)


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data)


# --- the overlay ----------------------------------------------------------


class Overlay:
    """Writes of one block (or one mempool session) in front of a reader."""

    __slots__ = ("_base", "_reads", "writes")

    def __init__(self, base: Callable[[bytes], bytes | None]) -> None:
        self._base = base
        self._reads: dict[bytes, bytes | None] = {}
        self.writes: dict[bytes, bytes | None] = {}
        """key -> new value, None = deleted."""

    def get(self, key: bytes) -> bytes | None:
        value = self.writes.get(key, _MISSING)
        if value is not _MISSING:
            return value  # type: ignore[no-any-return]
        value = self._reads.get(key, _MISSING)
        if value is _MISSING:
            value = self._base(key)
            self._reads[key] = value
        return value  # type: ignore[no-any-return]

    def put(self, key: bytes, value: bytes) -> None:
        self.writes[key] = value

    def delete(self, key: bytes) -> None:
        self.writes[key] = None

    def child(self) -> Overlay:
        return Overlay(self.get)

    def merge(self, child: Overlay) -> None:
        """Adopt the writes of a child made by :meth:`child`."""
        self.writes.update(child.writes)

    def changes(self) -> tuple[dict[bytes, bytes], list[bytes]]:
        """(puts, deletes) against the base; deletes of absent keys are dropped."""
        puts: dict[bytes, bytes] = {}
        deletes: list[bytes] = []
        for key, value in self.writes.items():
            if value is not None:
                puts[key] = value
            else:
                before = self._reads.get(key, _MISSING)
                if before is _MISSING:
                    before = self._base(key)
                if before is not None:
                    deletes.append(key)
        return puts, deletes


# --- results --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TxResult:
    """What one transaction of an applied block did."""

    tx_hash: bytes
    lane: str
    index: int
    """Position in its lane."""
    sender: bytes
    nonce: int
    fee: int
    kind: str
    """The body type's name (PublishCard, Transfer, ...)."""
    gas_used: int
    """VM gas of a resale or transfer rule; 0 otherwise."""


@dataclass(frozen=True, slots=True)
class BlockResult:
    """The outcome of apply_block, for the node to commit in one batch."""

    height: int
    block_hash: bytes
    time_ms: int
    app_hash: bytes
    """Root of the staged state version (the header's app_hash)."""
    staged: StagedVersion
    """Write it with the block: storage.blocks.BlockStore.commit_block(..., staged)."""
    tx_results: tuple[TxResult, ...]
    validator_updates: tuple[Validator, ...]
    """Changes effective at height + 2 (Validator.power 0 is not representable: removed
    validators appear in :attr:`removed_validators`)."""
    removed_validators: tuple[bytes, ...]
    next_validators: ValidatorSet
    """The full validator set of height + 2."""
    fees: int
    burned: int
    """Stake burned by slashing in this block."""
    writes: dict[bytes, bytes | None] = field(repr=False, compare=False)
    """The block's state writes (None = deleted), to keep State's read cache current."""


# --- the state handle -----------------------------------------------------


class State:
    """The chain's state: the tree at its latest version plus the chain's fixed parameters.

    `last_block_hash` is the hash of the block at `height` (it cannot live in the
    state of that height, whose root is inside that block); the node passes it
    when it reopens a store and `mark_committed` keeps it current.
    """

    def __init__(
        self,
        tree: StateTree,
        *,
        chain_id: str,
        app_params: AppParams,
        consensus_params: ConsensusParams,
        initial_height: int,
        genesis_time_ms: int,
        last_block_hash: bytes = b"",
    ) -> None:
        self.tree = tree
        self.chain_id = chain_id
        self.app = app_params
        self.consensus = consensus_params
        self.initial_height = initial_height
        self.genesis_time_ms = genesis_time_ms
        self.last_block_hash = last_block_hash
        self._valsets: dict[bytes, ValidatorSet] = {}
        self._cache: dict[bytes, bytes | None] = {}
        self._cache_version: int | None = None
        self.height = 0
        self.time_ms = 0
        self.reload()

    @classmethod
    def from_genesis(cls, tree: StateTree, doc: Any, *, last_block_hash: bytes = b"") -> State:
        """A State over `tree` for the chain described by a chain.genesis.GenesisDoc."""
        return cls(
            tree,
            chain_id=doc.chain_id,
            app_params=doc.app_params,
            consensus_params=doc.consensus_params,
            initial_height=doc.initial_height,
            genesis_time_ms=doc.genesis_time_ms,
            last_block_hash=last_block_hash,
        )

    def reload(self) -> None:
        """Re-read height and time from the tree's latest version."""
        raw = self.tree.get(sk.META) if self.tree.latest_version is not None else None
        if raw is None:
            raise StateError("the state tree is not initialised: run init_state with the genesis first")
        meta = _unpack(raw)
        self.height, self.time_ms = meta[0], meta[1]
        self._cache.clear()
        self._cache_version = self.tree.latest_version

    def get(self, key: bytes, version: int | None = None) -> bytes | None:
        return self.tree.get(key, version)

    def new_overlay(self) -> Overlay:
        """An empty overlay over the latest version (a mempool keeps one between commits)."""
        if self.tree.latest_version != self._cache_version:
            self.reload()  # the store moved under us: drop the cache
        return Overlay(self.cached_get)

    def cached_get(self, key: bytes) -> bytes | None:
        """Read the latest version through a bounded cache of committed values.

        Hot keys (accounts above all) are read once and then kept current from
        the writes of each committed block (mark_committed).
        """
        value = self._cache.get(key, _MISSING)
        if value is _MISSING:
            value = self.tree.get(key)
            self._remember(key, value)
        return value  # type: ignore[no-any-return]

    def _remember(self, key: bytes, value: bytes | None) -> None:
        cache = self._cache
        if len(cache) >= CACHE_ENTRIES:
            for old in list(itertools.islice(cache, CACHE_ENTRIES // 4)):
                del cache[old]
        cache[key] = value

    def valset(self, raw: bytes) -> ValidatorSet:
        """Decode a stored validator set (cached by its bytes)."""
        found = self._valsets.get(raw)
        if found is None:
            try:
                found = ValidatorSet.from_list(_unpack(raw))
            except (ChainError, ValueError, TypeError) as exc:
                raise StateError(f"stored validator set does not decode: {exc}") from exc
            if len(self._valsets) > 64:
                self._valsets.clear()
            self._valsets[raw] = found
        return found

    def validator_set(self, height: int, overlay: Overlay | None = None) -> ValidatorSet:
        """The validator set of `height`: up to latest + 2, and past heights still retained."""
        if overlay is not None:
            raw = overlay.get(sk.valset(height))
        elif height <= self.height:
            try:
                raw = self.tree.get(sk.valset(height), height)
            except Exception as exc:  # storage's VersionError for a pruned height
                raise StateError(f"the state of height {height} is not kept: {exc}") from exc
        else:
            raw = self.tree.get(sk.valset(height))
        if raw is None:
            raise StateError(f"no validator set stored for height {height}")
        return self.valset(raw)

    def mark_committed(self, result: BlockResult) -> None:
        """The node wrote `result.staged` (with the block): advance the handle."""
        if result.height == self.height + 1 and self._cache_version == result.height - 1:
            for key, value in result.writes.items():
                self._remember(key, value)
            self._cache_version = result.height
        else:
            self._cache.clear()
            self._cache_version = None
        self.height = result.height
        self.time_ms = result.time_ms
        self.last_block_hash = result.block_hash

    def commit(self, result: BlockResult) -> None:
        """Write the staged version alone (tests, tools) and advance the handle."""
        from storage.kv import WriteBatch

        batch = WriteBatch()
        result.staged.write_into(batch)
        self.tree.kv.write(batch, sync=True)
        self.mark_committed(result)


# --- the transition context -------------------------------------------------


class Apply:
    """One block's (or one check's) transition: overlay, height, caches and tallies."""

    def __init__(self, state: State, overlay: Overlay, height: int, time_ms: int, proposer: bytes | None) -> None:
        self.state = state
        self.ov = overlay
        self.app = state.app
        self.height = height
        self.time_ms = time_ms
        self.proposer = proposer
        self.accounts: dict[bytes, list[int]] = {}
        self.fees = 0
        self.burned = 0
        self.changed_stake: dict[bytes, int] = {}
        self.validator_count: int | None = None
        self.gas_used = 0

    # accounts: a write-back cache of [balance, nonce]

    def account(self, address: bytes) -> list[int]:
        acct = self.accounts.get(address)
        if acct is None:
            raw = self.ov.get(sk.account(address))
            acct = [0, 0] if raw is None else _unpack(raw)
            self.accounts[address] = acct
        return acct

    def debit(self, address: bytes, amount: int, what: str) -> None:
        acct = self.account(address)
        if acct[0] < amount:
            raise InsufficientBalance(f"{what}: balance {acct[0]} < {amount}")
        acct[0] -= amount

    def credit(self, address: bytes, amount: int) -> None:
        self.account(address)[0] += amount

    def flush_accounts(self) -> None:
        for address, acct in self.accounts.items():
            self.ov.put(sk.account(address), _pack(acct))
        self.accounts.clear()

    # records

    def get_record(self, key: bytes) -> Any:
        raw = self.ov.get(key)
        return None if raw is None else _unpack(raw)

    def put_record(self, key: bytes, record: Any) -> None:
        self.ov.put(key, _pack(record))

    def get_int(self, key: bytes) -> int:
        raw = self.ov.get(key)
        return 0 if raw is None else int.from_bytes(raw, "big")

    def put_int(self, key: bytes, value: int) -> None:
        if value:
            self.ov.put(key, value.to_bytes(8, "big"))
        else:
            self.ov.delete(key)

    # indexed sets (count, position -> member, member -> position)

    def set_add(self, space: int, set_id: bytes, member: bytes) -> int:
        """Add a member the caller knows is absent (its own record says so); returns the old size."""
        pos_key = sk.set_pos(space, set_id, member)
        count_key = sk.set_count(space, set_id)
        n = self.get_int(count_key)
        self.ov.put(sk.set_item(space, set_id, n), member)
        self.ov.put(pos_key, sk.u64(n))
        self.put_int(count_key, n + 1)
        return n

    def set_remove(self, space: int, set_id: bytes, member: bytes) -> bool:
        pos_key = sk.set_pos(space, set_id, member)
        raw = self.ov.get(pos_key)
        if raw is None:
            return False
        pos = int.from_bytes(raw, "big")
        count_key = sk.set_count(space, set_id)
        last = self.get_int(count_key) - 1
        if pos != last:
            moved = self.ov.get(sk.set_item(space, set_id, last))
            if moved is None:
                raise StateError("indexed set is inconsistent")
            self.ov.put(sk.set_item(space, set_id, pos), moved)
            self.ov.put(sk.set_pos(space, set_id, moved), sk.u64(pos))
        self.ov.delete(sk.set_item(space, set_id, last))
        self.ov.delete(pos_key)
        self.put_int(count_key, last)
        return True

    # what falls due at a height: append-only chunks of up to DUE_CHUNK items,
    # each chunk `u8 count ‖ (u8 length ‖ item)...`, full up to the last one;
    # items are checked when due (stale ones are skipped)

    def due_add(self, height: int, item: bytes) -> None:
        set_id = sk.due_set(height)
        c, chunk = self._due_tail(set_id)
        chunk_key = sk.set_item(sk.S_DUE, set_id, c)
        if chunk is None:
            self.ov.put(chunk_key, b"\x01" + bytes([len(item)]) + item)
        else:
            self.ov.put(chunk_key, bytes([chunk[0] + 1]) + chunk[1:] + bytes([len(item)]) + item)

    def _due_tail(self, set_id: bytes) -> tuple[int, bytes | None]:
        """(index, bytes) of the chunk the next item of a due set goes to: its last
        chunk if that has room, else the first missing one (bytes None).

        The chunks are full up to the last one, so a chunk with room is the last
        and a missing chunk has no successor: the first chunk that is missing or
        has room is found by doubling, then halving, the index probed (a few reads
        where scanning from chunk 0 read every chunk: an expiry height that
        thousands of announces share had each add read hundreds of chunks). The
        answer is the one a scan from chunk 0 gives."""

        def probe(c: int) -> bytes | None:
            return self.ov.get(sk.set_item(sk.S_DUE, set_id, c))

        first = probe(0)
        if first is None or first[0] < DUE_CHUNK:
            return 0, first
        full = 0  # the highest index known to hold a full chunk
        gap = 1  # an index known to be missing or to have room, once found
        while True:
            chunk = probe(gap)
            if chunk is None or chunk[0] < DUE_CHUNK:
                break
            full = gap
            if gap >= MAX_DUE_CHUNKS - 1:
                raise StateError("due index too long")
            gap = min(gap * 2, MAX_DUE_CHUNKS - 1)
        while gap - full > 1:
            mid = (full + gap) // 2
            probed = probe(mid)
            if probed is None or probed[0] < DUE_CHUNK:
                gap, chunk = mid, probed
            else:
                full = mid
        return gap, chunk

    def feed_append(self, fid: bytes, item: bytes) -> None:
        """Append to a feed; its head [length, root, peaks] carries all an append needs."""
        if len(item) != mmr.HASH_SIZE:
            raise StateError("feed items are 32-byte ids")
        head_key = sk.feed_head(fid)
        head = self.get_record(head_key)
        n, peaks = (0, []) if head is None else (head[0], head[2])
        created, peaks, root = mmr.compute_append_from_peaks(n, peaks, item)
        bucket_key = sk.feed_item(fid, n >> mmr.BUCKET_LEVELS)
        bucket = self.ov.get(bucket_key) if n & (mmr.BUCKET - 1) else b""
        if bucket is None:
            raise StateError("feed bucket missing")
        self.ov.put(bucket_key, bucket + item)
        for level, index, h in created:
            if level >= mmr.BUCKET_LEVELS:
                self.ov.put(sk.feed_node(fid, level, index), h)
        self.put_record(head_key, [n + 1, root, peaks])


# --- envelope ---------------------------------------------------------------


def compute_min_fee(app: AppParams, size: int) -> int:
    return max(app.min_fee, app.fee_per_byte * size)


def decode_tx(app: AppParams, tx_bytes: bytes, lane: str | None = None) -> txm.Tx:
    """Decode one transaction; MalformedTx for bad bytes or the wrong lane."""
    try:
        tx = txm.Tx.decode_untrusted(tx_bytes, app.max_tx_bytes)
    except DecodeError as exc:
        raise MalformedTx(str(exc)) from exc
    if lane is not None and LANES[tx.body.LANE] != lane:
        raise MalformedTx(f"a {type(tx.body).__name__} belongs in the {LANES[tx.body.LANE]} lane, not {lane}")
    return tx


def tx_signing_digest(chain_id: str, tx_bytes: bytes) -> bytes:
    return digest(DOMAIN_TX, chain_id, txm.signed_payload(tx_bytes))


def deliver_tx(ap: Apply, tx: txm.Tx, tx_bytes: bytes, tx_hash: bytes) -> int:
    """Apply one decoded, signature-checked transaction; returns VM gas used."""
    acct = ap.account(tx.sender)
    # nonces are strictly sequential per sender: no replay, no gap
    if tx.nonce != acct[1]:
        raise WrongNonce(f"nonce {tx.nonce}, expected {acct[1]}")
    # the fee covers the size-based minimum
    need = compute_min_fee(ap.app, len(tx_bytes))
    if tx.fee < need:
        raise FeeTooLow(f"fee {tx.fee} < minimum {need} for {len(tx_bytes)} bytes")
    # the sender can pay the fee
    ap.debit(tx.sender, tx.fee, "fee")
    acct[1] += 1
    ap.fees += tx.fee
    ap.gas_used = 0
    HANDLERS[type(tx.body)](ap, tx, tx.body, tx_hash)
    return ap.gas_used


# --- cards lane -------------------------------------------------------------

# card record: [creator, content_root, size, chunk_size, cipher, content_type, title,
#               tags, links, preview, preview_hash, parent, created_height, updated_height, has_offer]
CARD_CREATOR, CARD_ROOT, CARD_TITLE, CARD_LINKS, CARD_PREVIEW, CARD_PREVIEW_HASH = 0, 1, 6, 8, 9, 10
CARD_UPDATED = 13
N_REACTIONS = len(txm.REACTIONS) - 1


def check_title_links_preview(app: AppParams, title: str, links: Sequence[bytes], preview: bytes, preview_hash: bytes) -> None:
    # the title is 1 .. max_title_bytes of UTF-8
    if not 1 <= len(title.encode()) <= app.max_title_bytes:
        raise LimitExceeded(f"title must have 1..{app.max_title_bytes} bytes")
    # at most max_links links
    if len(links) > app.max_links:
        raise LimitExceeded(f"{len(links)} links exceed {app.max_links}")
    # the inline preview fits the cap
    if len(preview) > app.max_preview_bytes:
        raise OversizePreview(f"preview of {len(preview)} bytes exceeds {app.max_preview_bytes}")
    # a preview is inline or by hash, not both
    if preview and preview_hash:
        raise InvalidField("preview and preview_hash are exclusive")


def apply_publish(ap: Apply, tx: txm.Tx, b: txm.PublishCard, tx_hash: bytes) -> None:
    app = ap.app
    # the content type and cipher are from the documented sets
    if b.content_type not in txm.CONTENT_TYPES:
        raise InvalidField(f"unknown content type {b.content_type!r}")
    if b.cipher not in txm.CIPHERS:
        raise InvalidField(f"unknown cipher {b.cipher!r}")
    # the content is not empty and its chunk size a power of two in [1 KiB, 16 MiB]
    if b.size < 1:
        raise InvalidField("size must be at least 1")
    if not txm.MIN_CHUNK_SIZE <= b.chunk_size <= txm.MAX_CHUNK_SIZE or b.chunk_size & (b.chunk_size - 1):
        raise InvalidField(f"chunk size {b.chunk_size} is not a power of two in [1 KiB, 16 MiB]")
    check_title_links_preview(app, b.title, b.links, b.preview, b.preview_hash)
    # at most max_tags distinct tags of 1 .. max_tag_bytes
    if len(b.tags) > app.max_tags:
        raise LimitExceeded(f"{len(b.tags)} tags exceed {app.max_tags}")
    if len(set(b.tags)) != len(b.tags):
        raise InvalidField("duplicate tag")
    for tag in b.tags:
        if not 1 <= len(tag.encode()) <= app.max_tag_bytes:
            raise LimitExceeded(f"tag {tag[:40]!r} must have 1..{app.max_tag_bytes} bytes")
    # a comment's parent card exists
    if b.parent and ap.ov.get(sk.card(b.parent)) is None:
        raise NotFound("parent card does not exist")
    card_id = txm.compute_card_id(tx.sender, tx.nonce)
    if b.offer is not None:
        o = b.offer
        # the delivery timeout is within the genesis maximum
        if o.delivery_timeout > app.max_delivery_timeout:
            raise LimitExceeded(f"delivery timeout {o.delivery_timeout} exceeds {app.max_delivery_timeout}")
        # the rule program and its parameters fit their caps and the program verifies
        if len(o.program) > app.max_program_bytes:
            raise LimitExceeded(f"rule program of {len(o.program)} bytes exceeds {app.max_program_bytes}")
        if len(o.params) > app.max_rule_params:
            raise LimitExceeded(f"{len(o.params)} rule params exceed {app.max_rule_params}")
        if o.program:
            try:
                vm.verify(o.program)
            except vm.VMError as exc:
                raise InvalidField(f"rule program does not verify: {exc}") from exc
        ap.put_record(sk.key_class(card_id), o.fields())
        ap.put_record(sk.key_supply(card_id), [1, 0])
    ap.put_record(
        sk.card(card_id),
        [tx.sender, b.content_root, b.size, b.chunk_size, b.cipher, b.content_type, b.title,
         list(b.tags), list(b.links), b.preview, b.preview_hash, b.parent, ap.height, ap.height,
         b.offer is not None],
    )  # fmt: skip
    # counters exist from the start: a first reaction then reads a record, not a miss
    ap.put_record(sk.card_social(card_id), [0] * (N_REACTIONS + 1))
    ap.feed_append(sk.feed_id(sk.F_CONTENT_TYPE, b.content_type.encode()), card_id)
    ap.feed_append(sk.feed_id(sk.F_CREATOR, tx.sender), card_id)
    for tag in b.tags:
        ap.feed_append(sk.feed_id(sk.F_TAG, tag.encode()), card_id)
    if b.parent:
        ap.feed_append(sk.feed_id(sk.F_COMMENTS, b.parent), card_id)
        social = ap.get_record(sk.card_social(b.parent)) or [0] * (N_REACTIONS + 1)
        social[N_REACTIONS] += 1
        ap.put_record(sk.card_social(b.parent), social)


def apply_update(ap: Apply, tx: txm.Tx, b: txm.UpdateCard, tx_hash: bytes) -> None:
    card = ap.get_record(sk.card(b.card_id))
    # the card exists
    if card is None:
        raise NotFound("card does not exist")
    # only its creator may update it (the content root, tags and offer never change)
    if card[CARD_CREATOR] != tx.sender:
        raise NotCreator("only the card's creator may update it")
    check_title_links_preview(ap.app, b.title, b.links, b.preview, b.preview_hash)
    card[CARD_TITLE], card[CARD_LINKS] = b.title, list(b.links)
    card[CARD_PREVIEW], card[CARD_PREVIEW_HASH], card[CARD_UPDATED] = b.preview, b.preview_hash, ap.height
    ap.put_record(sk.card(b.card_id), card)


def apply_react(ap: Apply, tx: txm.Tx, b: txm.React, tx_hash: bytes) -> None:
    # the card exists
    if ap.ov.get(sk.card(b.card_id)) is None:
        raise NotFound("card does not exist")
    key = sk.reaction(b.card_id, tx.sender)
    raw = ap.ov.get(key)
    before = 0 if raw is None else raw[0]
    if before == b.reaction:
        return
    social = ap.get_record(sk.card_social(b.card_id)) or [0] * (N_REACTIONS + 1)
    if before:
        social[before - 1] -= 1
    if b.reaction:
        social[b.reaction - 1] += 1
        ap.ov.put(key, bytes([b.reaction]))
    else:
        ap.ov.delete(key)
    ap.put_record(sk.card_social(b.card_id), social)


def _bump_follow(ap: Apply, follower: bytes, creator: bytes, delta: int) -> None:
    c = ap.get_record(sk.creator_social(creator)) or [0, 0]
    c[0] += delta
    ap.put_record(sk.creator_social(creator), c)
    f = ap.get_record(sk.creator_social(follower)) or [0, 0]
    f[1] += delta
    ap.put_record(sk.creator_social(follower), f)


def apply_follow(ap: Apply, tx: txm.Tx, b: txm.Follow, tx_hash: bytes) -> None:
    # nobody follows themselves
    if b.creator == tx.sender:
        raise InvalidField("cannot follow yourself")
    key = sk.follow(tx.sender, b.creator)
    # not already following
    if ap.ov.get(key) is not None:
        raise RuleViolation("already following")
    ap.ov.put(key, sk.u64(ap.height))
    _bump_follow(ap, tx.sender, b.creator, 1)


def apply_unfollow(ap: Apply, tx: txm.Tx, b: txm.Unfollow, tx_hash: bytes) -> None:
    key = sk.follow(tx.sender, b.creator)
    # only a follow can be undone
    if ap.ov.get(key) is None:
        raise NotFound("not following")
    ap.ov.delete(key)
    _bump_follow(ap, tx.sender, b.creator, -1)


# --- seeders lane -----------------------------------------------------------

# seeder entry: [addresses, ranges, expiry_height, announced_height, position in the content's list]


def apply_announce(ap: Apply, tx: txm.Tx, b: txm.Announce, tx_hash: bytes) -> None:
    app = ap.app
    # 1 .. max_addresses addresses of 1 .. max_address_bytes
    if not 1 <= len(b.addresses) <= app.max_addresses:
        raise LimitExceeded(f"an announcement has 1..{app.max_addresses} addresses")
    for a in b.addresses:
        if not 1 <= len(a.encode()) <= app.max_address_bytes:
            raise LimitExceeded(f"address must have 1..{app.max_address_bytes} bytes")
    # 1 .. max_chunk_ranges ranges, each non-empty, ascending and disjoint
    if not 1 <= len(b.ranges) <= app.max_chunk_ranges:
        raise LimitExceeded(f"an announcement has 1..{app.max_chunk_ranges} chunk ranges")
    prev_stop = 0
    for start, stop in b.ranges:
        if not prev_stop <= start < stop:
            raise InvalidField("chunk ranges must be non-empty, ascending and disjoint")
        prev_stop = stop
    # the expiry lies in the future, within the maximum TTL
    if not ap.height < b.expiry_height <= ap.height + app.seeder_max_ttl:
        raise InvalidField(
            f"expiry height {b.expiry_height} is outside ({ap.height}, {ap.height + app.seeder_max_ttl}]"
        )
    # a refresh keeps the seeder's place in the content's list; found by scanning the
    # list's chunks (recently written, so cached) rather than reading the entry
    pos, count = find_seeder(ap.ov.get, b.content_root, tx.sender)
    if pos is None:
        pos = count
        chunk_key = sk.set_item(sk.S_SEEDERS_OF, b.content_root, pos // SEEDER_CHUNK)
        chunk = ap.ov.get(chunk_key) if pos % SEEDER_CHUNK else b""
        ap.ov.put(chunk_key, (chunk or b"") + tx.sender)
    ap.put_record(
        sk.seeder(b.content_root, tx.sender),
        [list(b.addresses), [list(r) for r in b.ranges], b.expiry_height, ap.height, pos],
    )
    ap.due_add(b.expiry_height, sk.due_seeder(b.content_root, tx.sender))


def find_seeder(get: Callable[[bytes], bytes | None], root: bytes, seeder: bytes) -> tuple[int | None, int]:
    """(position of `seeder` or None, number of members) in a content's seeder list.

    The list's chunks are full up to the last one.
    """
    found: int | None = None
    for c in range(MAX_SEEDER_CHUNKS):
        chunk = get(sk.set_item(sk.S_SEEDERS_OF, root, c))
        if chunk is None:
            return found, c * SEEDER_CHUNK
        if found is None and seeder:
            at = chunk.find(seeder)
            while at != -1 and at % 32:
                at = chunk.find(seeder, at + 1)
            if at != -1:
                found = c * SEEDER_CHUNK + at // 32
        if len(chunk) < SEEDER_CHUNK * 32:
            return found, c * SEEDER_CHUNK + len(chunk) // 32
    raise StateError("seeder list too long")


def count_seeders(get: Callable[[bytes], bytes | None], root: bytes) -> int:
    """Members of a content's seeder list."""
    return find_seeder(get, root, b"")[1]


def remove_seeder(ap: Apply, root: bytes, seeder: bytes, entry: list[Any]) -> None:
    """Delete an entry and its place in the content's seeder list (the last one moves in)."""
    last = count_seeders(ap.ov.get, root) - 1
    pos = entry[4]
    if not 0 <= pos <= last:
        raise StateError("seeder list is inconsistent")
    last_key = sk.set_item(sk.S_SEEDERS_OF, root, last // SEEDER_CHUNK)
    if pos != last:
        tail = ap.ov.get(last_key) or b""
        off = (last % SEEDER_CHUNK) * 32
        moved = tail[off : off + 32]
        moved_entry = ap.get_record(sk.seeder(root, moved))
        if len(moved) != 32 or moved_entry is None:
            raise StateError("seeder list is inconsistent")
        hole_key = sk.set_item(sk.S_SEEDERS_OF, root, pos // SEEDER_CHUNK)
        hole = ap.ov.get(hole_key) or b""
        off = (pos % SEEDER_CHUNK) * 32
        ap.ov.put(hole_key, hole[:off] + moved + hole[off + 32 :])
        moved_entry[4] = pos
        ap.put_record(sk.seeder(root, moved), moved_entry)
    tail = ap.ov.get(last_key) or b""
    if len(tail) > 32:
        ap.ov.put(last_key, tail[:-32])
    else:
        ap.ov.delete(last_key)
    ap.ov.delete(sk.seeder(root, seeder))


def apply_withdraw(ap: Apply, tx: txm.Tx, b: txm.Withdraw, tx_hash: bytes) -> None:
    key = sk.seeder(b.content_root, tx.sender)
    entry = ap.get_record(key)
    # the sender has a live entry for this content (lapsed entries are gone)
    if entry is None or entry[2] <= ap.height:
        raise NotFound("no seeder entry of the sender for this content")
    remove_seeder(ap, b.content_root, tx.sender, entry)


# --- keys lane --------------------------------------------------------------

# key class: [price, supply_cap, royalty_bps, delivery_timeout, program, params]
# key supply: [next_serial, outstanding]       (outstanding = sold + in primary escrow)
# token: [owner, acquired_height, times_resold, sealed_key]
# escrow: [buyer, seller, price, royalty, deadline, is_resale]
# listing: [price, listed_height]


def _class_of(ap: Apply, card_id: bytes) -> tuple[list[Any], list[Any]]:
    card = ap.get_record(sk.card(card_id))
    # the card exists and sells keys
    if card is None:
        raise NotFound("card does not exist")
    klass = ap.get_record(sk.key_class(card_id))
    if klass is None:
        raise NotFound("the card offers no keys")
    return card, klass


def _token_of(ap: Apply, card_id: bytes, serial: int) -> list[Any]:
    token: list[Any] | None = ap.get_record(sk.token(card_id, serial))
    # the key token exists
    if token is None:
        raise NotFound(f"no key token {serial} of this card")
    return token


def _open_escrow(ap: Apply, card_id: bytes, serial: int) -> list[Any] | None:
    """The key's escrow unless there is none or it is due (its deadline refunds before any tx)."""
    esc: list[Any] | None = ap.get_record(sk.escrow(card_id, serial))
    return esc if esc is not None and esc[4] > ap.height else None


def _check_sealed(ap: Apply, sealed: bytes) -> None:
    # sealed key material is a sealed box within the cap
    if not SEAL_OVERHEAD < len(sealed) <= ap.app.max_sealed_key_bytes:
        raise InvalidField(f"sealed key must have {SEAL_OVERHEAD + 1}..{ap.app.max_sealed_key_bytes} bytes")


def _run_rule(ap: Apply, card: list[Any], klass: list[Any], token: list[Any], serial: int,
              seller: bytes, buyer: bytes, price: int) -> int:
    """The key class's rule decides a resale or transfer; returns the royalty."""
    program, royalty_bps = klass[4], klass[2]
    if not program:
        # the default rule: free resale, the card's royalty
        return int(price * royalty_bps // BPS)
    ctx = vm.Context(
        height=ap.height, time_ms=ap.time_ms, seller=seller, buyer=buyer, price=price,
        serial=serial, times_resold=token[2], acquired_height=token[1], creator=card[CARD_CREATOR],
        royalty_bps=royalty_bps, params=tuple(klass[5]),
    )  # fmt: skip
    verdict = vm.evaluate(program, ctx, ap.app.vm_gas_limit)
    ap.gas_used = verdict.gas_used
    # the program allows it
    if not verdict.allow:
        raise VMDenied(verdict.reason, f"the key's rule program denied it (reason {verdict.reason})")
    return verdict.royalty


def _move_token(ap: Apply, card_id: bytes, serial: int, old: bytes | None, new: bytes) -> None:
    member = sk.token_member(card_id, serial)
    if old is not None:
        ap.set_remove(sk.S_TOKENS_OF, old, member)
        ap.put_int(sk.holding(old, card_id), ap.get_int(sk.holding(old, card_id)) - 1)
    held_before = ap.set_add(sk.S_TOKENS_OF, new, member)
    # an owner with no token at all holds none of this card either: no read needed
    held = ap.get_int(sk.holding(new, card_id)) if held_before else 0
    ap.put_int(sk.holding(new, card_id), held + 1)


def apply_buy(ap: Apply, tx: txm.Tx, b: txm.BuyKey, tx_hash: bytes) -> None:
    card, klass = _class_of(ap, b.card_id)
    timeout = klass[3] or ap.app.delivery_timeout
    deadline = ap.height + timeout
    if b.serial == 0:
        supply = ap.get_record(sk.key_supply(b.card_id))
        # the creator does not buy their own key
        if tx.sender == card[CARD_CREATOR]:
            raise RuleViolation("the creator cannot buy their own key")
        # the supply cap is not reached
        if klass[1] and supply[1] >= klass[1]:
            raise RuleViolation(f"sold out: {klass[1]} keys")
        price = klass[0]
        # the price is within the buyer's limit
        if price > b.max_price:
            raise RuleViolation(f"price {price} above the buyer's limit {b.max_price}")
        # the buyer can pay
        ap.debit(tx.sender, price, "price")
        serial = supply[0]
        supply[0] += 1
        supply[1] += 1
        ap.put_record(sk.key_supply(b.card_id), supply)
        ap.put_record(sk.escrow(b.card_id, serial), [tx.sender, card[CARD_CREATOR], price, 0, deadline, False])
        ap.due_add(deadline, sk.due_escrow(b.card_id, serial))
        return
    token = _token_of(ap, b.card_id, b.serial)
    listing = ap.get_record(sk.listing(b.card_id, b.serial))
    # the key is listed for resale
    if listing is None:
        raise NotFound("the key is not listed for sale")
    # it is not already being sold
    if _open_escrow(ap, b.card_id, b.serial) is not None:
        raise RuleViolation("the key is in escrow")
    # the buyer is not its owner
    if tx.sender == token[0]:
        raise RuleViolation("the owner cannot buy their own key")
    price = listing[0]
    # the price is within the buyer's limit
    if price > b.max_price:
        raise RuleViolation(f"price {price} above the buyer's limit {b.max_price}")
    royalty = _run_rule(ap, card, klass, token, b.serial, token[0], tx.sender, price)
    # the buyer can pay
    ap.debit(tx.sender, price, "price")
    ap.ov.delete(sk.listing(b.card_id, b.serial))
    ap.put_record(sk.escrow(b.card_id, b.serial), [tx.sender, token[0], price, royalty, deadline, True])
    ap.due_add(deadline, sk.due_escrow(b.card_id, b.serial))


def apply_deliver(ap: Apply, tx: txm.Tx, b: txm.DeliverKey, tx_hash: bytes) -> None:
    esc = _open_escrow(ap, b.card_id, b.serial)
    # an escrow is open for this key (a second delivery, or one at the deadline, finds none)
    if esc is None:
        raise NoOpenEscrow("no open escrow for this key")
    buyer, seller, price, royalty, _deadline, is_resale = esc
    # only the escrow's seller delivers
    if tx.sender != seller:
        raise NotAuthorized("only the seller delivers the key")
    _check_sealed(ap, b.sealed_key)
    card = ap.get_record(sk.card(b.card_id))
    ap.credit(seller, price - royalty)
    ap.credit(card[CARD_CREATOR], royalty)
    ap.ov.delete(sk.escrow(b.card_id, b.serial))
    if is_resale:
        token = _token_of(ap, b.card_id, b.serial)
        _move_token(ap, b.card_id, b.serial, token[0], buyer)
        ap.put_record(sk.token(b.card_id, b.serial), [buyer, ap.height, token[2] + 1, b.sealed_key])
    else:
        _move_token(ap, b.card_id, b.serial, None, buyer)
        ap.put_record(sk.token(b.card_id, b.serial), [buyer, ap.height, 0, b.sealed_key])


def apply_list(ap: Apply, tx: txm.Tx, b: txm.ListKey, tx_hash: bytes) -> None:
    _class_of(ap, b.card_id)
    token = _token_of(ap, b.card_id, b.serial)
    # only the owner lists
    if token[0] != tx.sender:
        raise NotAuthorized("only the key's owner may list it")
    # not while it is being sold
    if _open_escrow(ap, b.card_id, b.serial) is not None:
        raise RuleViolation("the key is in escrow")
    key = sk.listing(b.card_id, b.serial)
    if b.price == 0:
        # a delisting needs a listing
        if ap.ov.get(key) is None:
            raise NotFound("the key is not listed")
        ap.ov.delete(key)
    else:
        ap.put_record(key, [b.price, ap.height])


def apply_transfer_key(ap: Apply, tx: txm.Tx, b: txm.TransferKey, tx_hash: bytes) -> None:
    card, klass = _class_of(ap, b.card_id)
    token = _token_of(ap, b.card_id, b.serial)
    # only the owner gives the key away, to someone else
    if token[0] != tx.sender:
        raise NotAuthorized("only the key's owner may transfer it")
    if b.to == tx.sender:
        raise InvalidField("cannot transfer a key to yourself")
    # not while it is being sold
    if _open_escrow(ap, b.card_id, b.serial) is not None:
        raise RuleViolation("the key is in escrow")
    _check_sealed(ap, b.sealed_key)
    royalty = _run_rule(ap, card, klass, token, b.serial, tx.sender, b.to, 0)
    # a royalty the rule asks on a gift is paid by the giver
    ap.debit(tx.sender, royalty, "royalty")
    ap.credit(card[CARD_CREATOR], royalty)
    ap.ov.delete(sk.listing(b.card_id, b.serial))
    _move_token(ap, b.card_id, b.serial, tx.sender, b.to)
    ap.put_record(sk.token(b.card_id, b.serial), [b.to, ap.height, token[2] + 1, b.sealed_key])


# --- txs lane ---------------------------------------------------------------


def apply_transfer(ap: Apply, tx: txm.Tx, b: txm.Transfer, tx_hash: bytes) -> None:
    # a transfer moves something
    if b.amount == 0:
        raise InvalidField("amount must be positive")
    # the sender can pay
    ap.debit(tx.sender, b.amount, "transfer")
    ap.credit(b.to, b.amount)


def _stake(ap: Apply, validator: bytes) -> int:
    if validator in ap.changed_stake:
        return ap.changed_stake[validator]
    return ap.get_int(sk.stake(validator))


def _set_stake(ap: Apply, validator: bytes, amount: int) -> None:
    ap.changed_stake[validator] = amount
    ap.put_int(sk.stake(validator), amount)


def _validator_count(ap: Apply) -> int:
    if ap.validator_count is None:
        ap.validator_count = len(ap.state.validator_set(ap.height + 1, ap.ov))
    return ap.validator_count


def apply_bond(ap: Apply, tx: txm.Tx, b: txm.Bond, tx_hash: bytes) -> None:
    # a key jailed for equivocation never bonds again
    jailed_at = ap.get_int(sk.jailed(tx.sender))
    if jailed_at:
        raise ValidatorJailed(f"validator {tx.sender.hex()} was jailed at height {jailed_at} and cannot bond again")
    before = _stake(ap, tx.sender)
    after = before + b.amount
    # the stake reaches the minimum bond
    if b.amount == 0 or after < ap.app.min_bond:
        raise InvalidField(f"stake {after} below the minimum bond {ap.app.min_bond}")
    # a new validator fits the set
    if before == 0 and _validator_count(ap) >= ap.state.consensus.max_validators:
        raise RuleViolation(f"the validator set is full ({ap.state.consensus.max_validators})")
    # total power stays representable
    if after > MAX_TOTAL_POWER:
        raise LimitExceeded("stake above the maximum power")
    # the sender can pay
    ap.debit(tx.sender, b.amount, "bond")
    if before == 0:
        ap.validator_count = _validator_count(ap) + 1
    _set_stake(ap, tx.sender, after)


def apply_unbond(ap: Apply, tx: txm.Tx, b: txm.Unbond, tx_hash: bytes) -> None:
    before = _stake(ap, tx.sender)
    after = before - b.amount
    # the sender has that much stake
    if b.amount == 0 or after < 0:
        raise InsufficientBalance(f"stake {before} < unbond {b.amount}")
    # what remains is nothing or at least the minimum bond
    if 0 < after < ap.app.min_bond:
        raise InvalidField(f"remaining stake {after} below the minimum bond {ap.app.min_bond}")
    # the last validator cannot leave
    if after == 0 and _validator_count(ap) <= 1:
        raise RuleViolation("the last validator cannot unbond")
    if after == 0:
        ap.validator_count = _validator_count(ap) - 1
    _set_stake(ap, tx.sender, after)
    _schedule_unbonding(ap, tx.sender, b.amount)


def _schedule_unbonding(ap: Apply, validator: bytes, amount: int) -> None:
    """Stake leaving at this height returns to the validator's account at height + 2."""
    release = ap.height + 2
    key = sk.unbonding(release, validator)
    pending = ap.get_int(key)
    if pending == 0:
        ap.due_add(release, sk.due_unbond(validator))
    ap.put_int(key, pending + amount)


def handle_evidence(ap: Apply, evidence_bytes: bytes) -> None:
    """Verify equivocation evidence and slash the validator (shared by the txs lane and the block)."""
    try:
        ev = decode_evidence_untrusted(evidence_bytes)
    except DecodeError as exc:
        raise InvalidField(f"evidence does not decode: {exc}") from exc
    # the evidence is from a past height within the maximum age
    age = ap.height - ev.height
    if not 0 < age <= ap.state.consensus.evidence_max_age_heights or ev.height < ap.state.initial_height:
        raise RuleViolation(f"evidence of height {ev.height} is outside the accepted age")
    # each piece of evidence is handled once
    seen_key = sk.evidence_seen(ev.hash())
    if ap.ov.get(seen_key) is not None:
        raise RuleViolation("evidence already handled")
    # it verifies against the validator set of its height
    try:
        raw = ap.state.tree.get(sk.valset(ev.height), ev.height)
    except ChainError:
        raise
    except Exception as exc:  # storage reports a pruned version with its own error
        raise RuleViolation(f"the state of height {ev.height} is no longer kept: {exc}") from exc
    if raw is None:
        raise RuleViolation(f"no validator set of height {ev.height}")
    try:
        guilty = ev.verify(ap.state.chain_id, ap.state.valset(raw))
    except InvalidEvidence as exc:
        raise InvalidField(f"evidence does not verify: {exc}") from exc
    ap.ov.put(seen_key, sk.u64(ap.height))
    jail_validator(ap, guilty.pubkey)


def jail_validator(ap: Apply, validator: bytes) -> None:
    """Jail (tombstone) an equivocator: slash, then remove it from the set of height + 2.

    A validator is penalised once: evidence against a key already jailed is
    recorded as handled and changes nothing else. `slash_bps` of its stake is
    burned and the rest is unbonded (returned at height + 2, when the removal
    takes effect). Stake already unbonding is not slashed. If removing it would
    leave no validator, it stays bonded with its slashed stake and is listed
    in JAIL_DEFERRED until another validator remains (process_jail_deferred).
    """
    jailed_key = sk.jailed(validator)
    if ap.get_int(jailed_key):
        return
    ap.put_int(jailed_key, ap.height)
    stake = _stake(ap, validator)
    if stake == 0:
        return
    burn = stake * ap.app.slash_bps // BPS
    ap.burned += burn
    # the set never becomes empty: the removal waits for another validator
    if _validator_count(ap) <= 1:
        _set_stake(ap, validator, stake - burn)
        deferred = ap.get_record(sk.JAIL_DEFERRED) or []
        ap.put_record(sk.JAIL_DEFERRED, sorted([*deferred, validator]))
        return
    ap.validator_count = _validator_count(ap) - 1
    _set_stake(ap, validator, 0)
    if stake - burn:
        _schedule_unbonding(ap, validator, stake - burn)


def process_jail_deferred(ap: Apply) -> None:
    """Jailed validators kept bonded so that the set was not empty leave as soon as another remains."""
    deferred = ap.get_record(sk.JAIL_DEFERRED)
    if not deferred:
        return
    kept: list[bytes] = []
    for validator in deferred:
        stake = _stake(ap, validator)
        if stake and _validator_count(ap) <= 1:
            kept.append(validator)
            continue
        if stake:
            ap.validator_count = _validator_count(ap) - 1
            _set_stake(ap, validator, 0)
            _schedule_unbonding(ap, validator, stake)
    if kept:
        ap.put_record(sk.JAIL_DEFERRED, kept)
    else:
        ap.ov.delete(sk.JAIL_DEFERRED)


def apply_evidence_tx(ap: Apply, tx: txm.Tx, b: txm.SubmitEvidence, tx_hash: bytes) -> None:
    handle_evidence(ap, b.evidence)


def apply_generic(ap: Apply, tx: txm.Tx, b: txm.Generic, tx_hash: bytes) -> None:
    # the kind and payload fit their caps
    if len(b.kind) > ap.app.max_generic_kind_bytes:
        raise LimitExceeded(f"kind of {len(b.kind)} bytes exceeds {ap.app.max_generic_kind_bytes}")
    if len(b.payload) > ap.app.max_generic_payload_bytes:
        raise LimitExceeded(f"payload of {len(b.payload)} bytes exceeds {ap.app.max_generic_payload_bytes}")
    ap.put_record(sk.generic(tx_hash), [b.kind, b.payload, tx.sender, ap.height])
    ap.feed_append(sk.feed_id(sk.F_KIND, b.kind), tx_hash)


HANDLERS: dict[type, Callable[[Apply, txm.Tx, Any, bytes], None]] = {
    txm.PublishCard: apply_publish,
    txm.UpdateCard: apply_update,
    txm.React: apply_react,
    txm.Follow: apply_follow,
    txm.Unfollow: apply_unfollow,
    txm.Announce: apply_announce,
    txm.Withdraw: apply_withdraw,
    txm.BuyKey: apply_buy,
    txm.DeliverKey: apply_deliver,
    txm.ListKey: apply_list,
    txm.TransferKey: apply_transfer_key,
    txm.Transfer: apply_transfer,
    txm.Bond: apply_bond,
    txm.Unbond: apply_unbond,
    txm.SubmitEvidence: apply_evidence_tx,
    txm.Generic: apply_generic,
}


# --- block steps --------------------------------------------------------------


def process_header(state: State, ov: Overlay, block: Block) -> None:
    h = block.header
    # the header names this chain
    if h.chain_id != state.chain_id:
        raise InvalidHeader(f"chain id {h.chain_id!r}, expected {state.chain_id!r}")
    # the block extends the last applied height
    if h.height != state.height + 1:
        raise InvalidHeader(f"height {h.height}, expected {state.height + 1}")
    # the lane, last-commit and evidence roots match the block's contents
    block.verify_roots()
    # every lane and the evidence list are within the consensus limits
    for lane in LANES:
        if len(block.lane(lane)) > state.consensus.max_lane_txs(lane):
            raise LaneLimitExceeded(f"{lane} lane holds {len(block.lane(lane))} transactions")
    if len(block.evidence) > state.consensus.max_evidence_per_block:
        raise LaneLimitExceeded(f"{len(block.evidence)} evidence items")
    vset = state.validator_set(h.height, ov)
    # the validator hashes are those of the sets the state scheduled
    if h.validators_hash != vset.hash():
        raise InvalidHeader("validators_hash is not the hash of this height's validator set")
    if h.next_validators_hash != state.validator_set(h.height + 1, ov).hash():
        raise InvalidHeader("next_validators_hash is not the hash of the next height's set")
    # the proposer is a validator of this height
    if vset.index_of(h.proposer) is None:
        raise InvalidHeader("the proposer is not a validator of this height")
    if h.height == state.initial_height:
        # the first block has no predecessor and carries the genesis time
        if h.prev_block_hash or block.last_commit is not None:
            raise InvalidHeader("the first block has no previous block or last commit")
        if h.time_ms != state.genesis_time_ms:
            raise InvalidHeader(f"time {h.time_ms}, expected the genesis time {state.genesis_time_ms}")
        return
    # the state knows the hash of the block it last applied
    if not state.last_block_hash:
        raise StateError("the hash of the last applied block is unknown (pass last_block_hash)")
    # the block builds on that block
    if h.prev_block_hash != state.last_block_hash:
        raise InvalidHeader("prev_block_hash is not the last applied block")
    # the last commit carries +2/3 of the previous height's power for that block
    if block.last_commit is None:
        raise InvalidHeader("missing last commit")
    prev_set = state.validator_set(h.height - 1, ov)
    try:
        prev_set.verify_commit(state.chain_id, block.last_commit, height=h.height - 1, block_hash=state.last_block_hash)
        # the time is the BFT time of the last commit
        expected_time = compute_block_time(block.last_commit, prev_set, state.time_ms)
    except InvalidCommit as exc:
        raise InvalidHeader(f"last commit: {exc}") from exc
    if h.time_ms != expected_time:
        raise InvalidHeader(f"time {h.time_ms}, expected the BFT time {expected_time}")


def process_expiry(ap: Apply) -> None:
    """Everything due at this height: seeder entries lapse, escrows refund, unbonded stake returns."""
    set_id = sk.due_set(ap.height)
    items: list[bytes] = []
    for c in range(MAX_DUE_CHUNKS):
        chunk_key = sk.set_item(sk.S_DUE, set_id, c)
        chunk = ap.ov.get(chunk_key)
        if chunk is None:
            break
        ap.ov.delete(chunk_key)
        pos = 1
        while pos < len(chunk):
            size = chunk[pos]
            items.append(chunk[pos + 1 : pos + 1 + size])
            pos += 1 + size
        if len(items) != c * DUE_CHUNK + chunk[0]:
            raise StateError("due index is inconsistent")
    for item in items:
        if not item:
            raise StateError("due index is inconsistent")
        kind, rest = item[0], item[1:]
        if kind == sk.DUE_SEEDER:
            root, seeder = rest[:32], rest[32:]
            entry = ap.get_record(sk.seeder(root, seeder))
            # a refreshed or withdrawn entry is not due any more
            if entry is not None and entry[2] == ap.height:
                remove_seeder(ap, root, seeder, entry)
        elif kind == sk.DUE_ESCROW:
            card_id, serial = rest[:32], int.from_bytes(rest[32:], "big")
            esc = ap.get_record(sk.escrow(card_id, serial))
            # an escrow still open at its deadline refunds the buyer
            if esc is not None and esc[4] == ap.height:
                ap.credit(esc[0], esc[2])
                ap.ov.delete(sk.escrow(card_id, serial))
                if not esc[5]:
                    supply = ap.get_record(sk.key_supply(card_id))
                    supply[1] -= 1
                    ap.put_record(sk.key_supply(card_id), supply)
        elif kind == sk.DUE_UNBOND:
            key = sk.unbonding(ap.height, rest)
            amount = ap.get_int(key)
            ap.ov.delete(key)
            ap.credit(rest, amount)
        else:
            raise StateError(f"unknown due item kind {kind}")


@dataclass(slots=True)
class DecodedLane:
    lane: str
    txs: list[txm.Tx] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    hashes: list[bytes] = field(default_factory=list)


def decode_lanes(state: State, block: Block) -> list[DecodedLane]:
    out = []
    for lane in LANES:
        d = DecodedLane(lane)
        for i, raw in enumerate(block.lane(lane)):
            try:
                # each item is a canonical transaction of this lane
                d.txs.append(decode_tx(state.app, raw, lane))
            except InvalidTx as exc:
                raise BlockTxInvalid(lane, i, exc) from exc
            d.raw.append(raw)
            d.hashes.append(hash_bytes(raw))
        out.append(d)
    return out


def _process_lane(ap: Apply, d: DecodedLane, results: list[TxResult]) -> None:
    for i, tx in enumerate(d.txs):
        try:
            gas = deliver_tx(ap, tx, d.raw[i], d.hashes[i])
        except InvalidTx as exc:
            raise BlockTxInvalid(d.lane, i, exc) from exc
        results.append(TxResult(d.hashes[i], d.lane, i, tx.sender, tx.nonce, tx.fee, type(tx.body).__name__, gas))


def process_cards(ap: Apply, d: DecodedLane, results: list[TxResult]) -> None:
    _process_lane(ap, d, results)


def process_seeders(ap: Apply, d: DecodedLane, results: list[TxResult]) -> None:
    _process_lane(ap, d, results)


def process_keys(ap: Apply, d: DecodedLane, results: list[TxResult]) -> None:
    _process_lane(ap, d, results)


def process_txs(ap: Apply, d: DecodedLane, results: list[TxResult]) -> None:
    _process_lane(ap, d, results)


def process_evidence(ap: Apply, block: Block) -> None:
    for i, ev in enumerate(block.evidence):
        try:
            handle_evidence(ap, ev)
        except InvalidTx as exc:
            raise BlockEvidenceInvalid(f"evidence[{i}]: {exc}") from exc


def process_fees(ap: Apply) -> None:
    # the block's fees go to its proposer, after every transaction
    if ap.proposer is not None and ap.fees:
        ap.credit(ap.proposer, ap.fees)


def process_validator_updates(ap: Apply) -> tuple[tuple[Validator, ...], tuple[bytes, ...], ValidatorSet]:
    """Stake changed in this block becomes the validator set of height + 2."""
    h = ap.height
    nxt = ap.state.validator_set(h + 1, ap.ov)
    members = {v.pubkey: v.power for v in nxt.validators}
    updates: list[Validator] = []
    removed: list[bytes] = []
    for pubkey in sorted(ap.changed_stake):
        power = ap.changed_stake[pubkey]
        if members.get(pubkey, 0) == power:
            continue
        if power:
            members[pubkey] = power
            updates.append(Validator(pubkey, power))
        elif pubkey in members:
            del members[pubkey]
            removed.append(pubkey)
    try:
        after = ValidatorSet.from_unsorted(Validator(k, p) for k, p in members.items())
    except InvalidValidatorSet as exc:
        raise InvalidBlock(f"the validator set of height {h + 2} would be invalid: {exc}") from exc
    ap.ov.put(sk.valset(h + 2), _pack(after.to_list()))
    if updates or removed:
        ap.put_record(sk.valupdates(h + 2), [[v.pubkey, v.power] for v in updates] + [[k, 0] for k in removed])
    # sets and updates of past heights stay readable at their versions
    ap.ov.delete(sk.valset(h - 1))
    ap.ov.delete(sk.valupdates(h))
    return tuple(updates), tuple(removed), after


def apply_block(state: State, block: Block, *, verify_app_hash: bool = True, verifier: Any = None) -> BlockResult:
    """Apply `block` on top of `state`'s latest version; raises an InvalidBlock subclass.

    Nothing is written: the node commits `result.staged` with the block, then
    calls state.mark_committed(result). `verify_app_hash=False` is for the
    proposer, which learns the app hash from the result. `verifier` is a
    chain.sigverify.SignatureVerifier (the shared default if None).
    """
    from chain import sigverify

    ov = state.new_overlay()
    process_header(state, ov, block)
    # signatures are checked on the pool while this thread decodes and applies
    pending = (verifier or sigverify.default_verifier()).submit_txs(
        [raw for lane in LANES for raw in block.lane(lane)], state.chain_id
    )
    try:
        lanes = decode_lanes(state, block)
    except InvalidBlock:
        _raise_bad_signature(pending.first_invalid(), block)
        raise
    ap = Apply(state, ov, block.header.height, block.header.time_ms, block.header.proposer)
    results: list[TxResult] = []
    try:
        process_expiry(ap)
        process_cards(ap, lanes[0], results)
        process_seeders(ap, lanes[1], results)
        process_keys(ap, lanes[2], results)
        process_txs(ap, lanes[3], results)
        process_evidence(ap, block)
        process_jail_deferred(ap)
        process_fees(ap)
        ap.flush_accounts()
        updates, removed, next_set = process_validator_updates(ap)
    except InvalidBlock:
        _raise_bad_signature(pending.first_invalid(), block)
        raise
    ap.put_record(sk.META, [ap.height, ap.time_ms, block.header.prev_block_hash])
    puts, deletes = ov.changes()
    # staging needs no signature: it overlaps the pool's last checks
    staged = state.tree.stage(ap.height, puts, deletes)
    # every transaction carries its sender's signature for this chain
    _raise_bad_signature(pending.first_invalid(), block)
    # the header commits to the state this block produces
    if verify_app_hash and block.header.app_hash != staged.root:
        raise AppHashMismatch(f"app_hash {block.header.app_hash.hex()} != state root {staged.root.hex()}")
    return BlockResult(
        height=ap.height, block_hash=block.header.hash(), time_ms=ap.time_ms, app_hash=staged.root,
        staged=staged, tx_results=tuple(results), validator_updates=updates,
        removed_validators=removed, next_validators=next_set, fees=ap.fees, burned=ap.burned,
        writes=ov.writes,
    )  # fmt: skip


def _raise_bad_signature(first_bad: int | None, block: Block) -> None:
    if first_bad is None:
        return
    for lane in LANES:
        n = len(block.lane(lane))
        if first_bad < n:
            raise BlockTxInvalid(lane, first_bad, BadTxSignature("signature does not verify for this chain"))
        first_bad -= n


# --- genesis ------------------------------------------------------------------

_DERIVED_TAGS = {sk.T_META, sk.T_ACCOUNT, sk.T_STAKE, sk.T_VALSET, sk.T_VALUPDATES}


@dataclass(frozen=True, slots=True)
class GenesisState:
    """The records a genesis carries: accounts, validators and every other state record."""

    accounts: tuple[tuple[bytes, int], ...]
    """(address, balance); nonces restart at 0."""
    validators: tuple[tuple[bytes, int], ...]
    """(public key, power); a validator's stake equals its power."""
    records: tuple[tuple[bytes, bytes], ...]
    """Raw (state key, value) pairs of chain.statekeys (cards, feeds, seeders, keys, ...)."""

    def app_state(self) -> tuple[tuple[str, bytes], ...]:
        """The records as genesis app-state (kind, data) pairs (genesis.fork.build_genesis takes them)."""
        return tuple((STATE_RECORD_KIND, _pack([k, v])) for k, v in self.records)


def build_genesis_state(
    tree: StateTree,
    *,
    initial_height: int,
    genesis_time_ms: int,
    accounts: Iterable[tuple[bytes, int]],
    validators: Iterable[tuple[bytes, int]],
    records: Iterable[tuple[bytes, bytes]] = (),
) -> bytes:
    """Write version initial_height - 1 of an empty tree; returns its root (the genesis app hash)."""
    from chain.errors import GenesisError

    if tree.latest_version is not None:
        raise StateError("the state tree already holds versions")
    puts: dict[bytes, bytes] = {}
    total = 0
    for key, value in records:
        # raw records never overwrite what accounts and validators define
        if not key or key[0] in _DERIVED_TAGS:
            raise GenesisError("app_state", f"record key {key[:8].hex()} is derived from accounts or validators")
        puts[key] = value
    for address, balance in accounts:
        if sk.account(address) in puts:
            raise GenesisError("accounts", f"duplicate account {address.hex()}")
        puts[sk.account(address)] = _pack([balance, 0])
        total += balance
    members = []
    for pubkey, power in validators:
        puts[sk.stake(pubkey)] = power.to_bytes(8, "big")
        members.append(Validator(pubkey, power))
        total += power
    if total > txm.MAX_AMOUNT:
        raise GenesisError("accounts", f"total supply {total} exceeds {txm.MAX_AMOUNT}")
    try:
        vset = ValidatorSet.from_unsorted(members)
    except InvalidValidatorSet as exc:
        raise GenesisError("validators", str(exc)) from exc
    encoded = _pack(vset.to_list())
    puts[sk.valset(initial_height)] = encoded
    puts[sk.valset(initial_height + 1)] = encoded
    puts[sk.META] = _pack([initial_height - 1, genesis_time_ms, b""])
    return tree.apply(initial_height - 1, puts, ())


STATE_RECORD_KIND = "state"
"""Kind of a genesis app-state record carrying one raw state record: data = pack([key, value])."""


def decode_app_state(records: Iterable[Any]) -> list[tuple[bytes, bytes]]:
    """The raw (key, value) pairs of genesis app-state records; GenesisError names a bad one."""
    from chain.encoding import take_array, take_bytes, unpack_untrusted
    from chain.errors import GenesisError

    out = []
    for i, rec in enumerate(records):
        if rec.kind != STATE_RECORD_KIND:
            raise GenesisError(f"app_state[{i}].kind", f"unknown record kind {rec.kind!r} (known: {STATE_RECORD_KIND!r})")
        try:
            pair = take_array(unpack_untrusted(rec.data, len(rec.data) or 1), "record", 2)
            out.append((take_bytes(pair[0], "key", max_len=0xFFFF), take_bytes(pair[1], "value")))
        except DecodeError as exc:
            raise GenesisError(f"app_state[{i}].data", str(exc)) from exc
    return out


def init_state(tree: StateTree, genesis_doc: Any) -> bytes:
    """Build version initial_height - 1 from a chain.genesis.GenesisDoc; returns the app hash."""
    return build_genesis_state(
        tree,
        initial_height=genesis_doc.initial_height,
        genesis_time_ms=genesis_doc.genesis_time_ms,
        accounts=((a.address, a.balance) for a in genesis_doc.accounts),
        validators=((v.pubkey, v.power) for v in genesis_doc.validators),
        records=decode_app_state(genesis_doc.app_state),
    )


def export_state(state: State, version: int | None = None) -> GenesisState:
    """The records of `version` (default latest) for a new genesis that continues this state.

    Accounts keep their balances (nonces restart), validators are the set of the
    next height with their stake as power, and every other record is carried
    raw. Heights inside records (seeder expiries, escrow deadlines, unbonding)
    are absolute: the new genesis should use initial_height = version + 1.
    """
    if version is None:
        version = state.tree.latest_version
        if version is None:
            raise StateError("empty state")
    accounts: list[tuple[bytes, int]] = []
    stakes: dict[bytes, int] = {}
    records: list[tuple[bytes, bytes]] = []
    for key, value in state.tree.iter_items(version):
        tag = key[0]
        if tag == sk.T_ACCOUNT:
            accounts.append((key[1:], _unpack(value)[0]))
        elif tag == sk.T_STAKE:
            stakes[key[1:]] = int.from_bytes(value, "big")
        elif tag not in _DERIVED_TAGS:
            records.append((key, value))
    return GenesisState(
        accounts=tuple(sorted(accounts)),
        validators=tuple(sorted((k, v) for k, v in stakes.items() if v > 0)),
        records=tuple(sorted(records)),
    )


def draft_block(
    state: State,
    lanes: Mapping[str, Sequence[bytes]],
    *,
    last_commit: Commit | None,
    evidence: Sequence[bytes] = (),
    proposer: bytes,
) -> Block:
    """The proposer's block for height state.height + 1, before finish_block fills its app_hash.

    Lane roots, evidence hash and validator hashes come from the arguments and the state;
    the time is the BFT time of `last_commit` (the genesis time for the first block); the
    app_hash is 32 zero bytes until finish_block applies the block.
    """
    height = state.height + 1
    if last_commit is None:
        time_ms, prev = state.genesis_time_ms, b""
    else:
        time_ms = compute_block_time(last_commit, state.validator_set(height - 1), state.time_ms)
        prev = state.last_block_hash
    txs = {lane: tuple(lanes.get(lane, ())) for lane in LANES}
    header = Header(
        chain_id=state.chain_id, height=height, time_ms=time_ms, prev_block_hash=prev,
        last_commit_hash=commit_hash(last_commit),
        cards_root=compute_lane_root(txs["cards"]), seeders_root=compute_lane_root(txs["seeders"]),
        keys_root=compute_lane_root(txs["keys"]), txs_root=compute_lane_root(txs["txs"]),
        evidence_hash=compute_evidence_hash(evidence),
        validators_hash=state.validator_set(height).hash(),
        next_validators_hash=state.validator_set(height + 1).hash(),
        app_hash=bytes(32), proposer=proposer,
    )  # fmt: skip
    return Block(header, txs["cards"], txs["seeders"], txs["keys"], txs["txs"],
                 last_commit, tuple(evidence))


def finish_block(state: State, block: Block, *, verifier: Any = None) -> tuple[Block, BlockResult]:
    """For the proposer: apply a block whose header's app_hash is a placeholder and fill it in.

    Returns the final block and its result (block_hash of the final header).
    """
    import dataclasses

    result = apply_block(state, block, verify_app_hash=False, verifier=verifier)
    header = dataclasses.replace(block.header, app_hash=result.app_hash)
    return dataclasses.replace(block, header=header), dataclasses.replace(result, block_hash=header.hash())
