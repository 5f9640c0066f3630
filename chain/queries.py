"""Pure reads of the state at a height, each able to carry storage proofs.

Every function takes the StateTree, a height (a retained state version; None =
latest) and `prove`. Answers carry `reads`: the (key, value, proof) triples
they were built from; with prove=True each proof is a storage.proof.Proof of
that value (or of its absence) against the state root of that height, which is
the app_hash in the header of that height. `verify_reads` and
`verify_feed_page` are the light client's side: pure, no LevelDB.

Collections are read through their indexed sets (count, then each position)
and feeds through their Merkle list (head, then a page with an MMR proof), so a
proven answer is complete, not just true item by item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

import vm
from chain import mmr
from chain import statekeys as sk
from chain.errors import ChainError, StateError, UsageError
from chain.params import AppParams
from chain.state import SEEDER_CHUNK
from storage.proof import Proof, verify_proof
from storage.state import StateTree

MAX_PAGE = 1000
"""Most items one feed page or collection answer returns."""
MAX_TOKEN_SCAN = 100_000
"""Most tokens of one owner may_decrypt examines for a key class with a rule program."""


@dataclass(frozen=True, slots=True)
class Read:
    """One state read: the key, its value at the height (None = absent) and its proof."""

    key: bytes
    value: bytes | None
    proof: Proof | None


class _Reader:
    def __init__(self, tree: StateTree, height: int | None, prove: bool) -> None:
        if height is None:
            height = tree.latest_version
            if height is None:
                raise StateError("the state is empty")
        self.tree = tree
        self.height = height
        self.prove = prove
        self.reads: list[Read] = []

    def get(self, key: bytes) -> bytes | None:
        try:
            if self.prove:
                value, proof = self.tree.get_with_proof(key, self.height)
                self.reads.append(Read(key, value, proof))
            else:
                value = self.tree.get(key, self.height)
                self.reads.append(Read(key, value, None))
        except ChainError:
            raise
        except Exception as exc:  # storage's VersionError for a pruned or future height
            raise StateError(f"cannot read height {self.height}: {exc}") from exc
        return value

    def record(self, key: bytes) -> Any:
        raw = self.get(key)
        return None if raw is None else msgpack.unpackb(raw)

    def integer(self, key: bytes) -> int:
        raw = self.get(key)
        return 0 if raw is None else int.from_bytes(raw, "big")

    def set_members(self, space: int, set_id: bytes, limit: int = MAX_PAGE) -> list[bytes]:
        n = self.integer(sk.set_count(space, set_id))
        out = []
        for i in range(min(n, limit)):
            member = self.get(sk.set_item(space, set_id, i))
            if member is None:
                raise StateError("indexed set is inconsistent")
            out.append(member)
        return out


def verify_reads(app_hash: bytes, reads: Sequence[Read]) -> bool:
    """True iff every read carries a proof of its value against `app_hash`."""
    return all(r.proof is not None and verify_proof(app_hash, r.key, r.value, r.proof) for r in reads)


# --- accounts -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountView:
    address: bytes
    balance: int
    nonce: int
    stake: int
    height: int
    reads: tuple[Read, ...]


def get_account(tree: StateTree, address: bytes, *, height: int | None = None, prove: bool = False) -> AccountView:
    r = _Reader(tree, height, prove)
    acct = r.record(sk.account(address)) or [0, 0]
    stake = r.integer(sk.stake(address))
    return AccountView(address, acct[0], acct[1], stake, r.height, tuple(r.reads))


# --- cards --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CardView:
    card_id: bytes
    creator: bytes
    content_root: bytes
    size: int
    chunk_size: int
    cipher: str
    content_type: str
    title: str
    tags: tuple[str, ...]
    links: tuple[bytes, ...]
    preview: bytes
    preview_hash: bytes
    parent: bytes
    created_height: int
    updated_height: int
    reactions: tuple[int, ...]
    """Counts per reaction (chain.tx.REACTIONS[1:])."""
    comments: int
    offer: tuple[int, int, int, int, bytes, tuple[int, ...]] | None
    """(price, supply_cap, royalty_bps, delivery_timeout, program, params)."""
    keys_sold: int
    """Keys sold or in a primary-sale escrow."""
    height: int
    reads: tuple[Read, ...]


def get_card(tree: StateTree, card_id: bytes, *, height: int | None = None, prove: bool = False) -> CardView | None:
    r = _Reader(tree, height, prove)
    c = r.record(sk.card(card_id))
    if c is None:
        return None
    social = r.record(sk.card_social(card_id)) or [0] * 7
    offer = None
    sold = 0
    if c[14]:
        k = r.record(sk.key_class(card_id))
        offer = (k[0], k[1], k[2], k[3], k[4], tuple(k[5]))
        sold = r.record(sk.key_supply(card_id))[1]
    return CardView(
        card_id, c[0], c[1], c[2], c[3], c[4], c[5], c[6], tuple(c[7]), tuple(c[8]), c[9], c[10], c[11],
        c[12], c[13], tuple(social[:6]), social[6], offer, sold, r.height, tuple(r.reads),
    )  # fmt: skip


# --- feeds --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedPage:
    """Items [start, stop) of a feed and what proves the page complete."""

    feed_id: bytes
    length: int
    root: bytes
    start: int
    stop: int
    items: tuple[bytes, ...]
    """Card ids (or, for a kind feed, generic transaction hashes), oldest first."""
    mmr_proof: tuple[bytes, ...]
    head: Read
    """The feed head [length, root, peaks] as read from the state (with its proof when proven)."""
    height: int


def feed_of(feed_class: int, name: bytes) -> bytes:
    """The feed id of a content type (name = b"video"), creator (address), tag, kind or comments (card id)."""
    return sk.feed_id(feed_class, name)


def get_feed_page(
    tree: StateTree, fid: bytes, start: int | None = None, stop: int | None = None, *,
    height: int | None = None, prove: bool = False,
) -> FeedPage:
    """A page of a feed; default: the newest MAX_PAGE items. The page proof is always included."""
    r = _Reader(tree, height, prove)
    head_raw = r.get(sk.feed_head(fid))
    head_read = r.reads[-1]
    length, root = (0, mmr.EMPTY_ROOT) if head_raw is None else msgpack.unpackb(head_raw)[:2]
    if stop is None:
        stop = length
    if start is None:
        start = max(0, stop - MAX_PAGE)
    if not 0 <= start <= stop <= length or stop - start > MAX_PAGE:
        raise UsageError(f"bad page [{start}, {stop}) of a feed of {length} (at most {MAX_PAGE} items)")
    plain = _Reader(tree, r.height, False)
    buckets: dict[int, bytes] = {}

    def get_bucket(bucket: int) -> bytes:
        raw = buckets.get(bucket)
        if raw is None:
            raw = plain.get(sk.feed_item(fid, bucket))
            if raw is None:
                raise StateError("feed is inconsistent")
            buckets[bucket] = raw
        return raw

    def get_stored(level: int, index: int) -> bytes:
        raw = plain.get(sk.feed_node(fid, level, index))
        if raw is None:
            raise StateError("feed node missing")
        return raw

    def get_node(level: int, index: int) -> bytes:
        try:
            return mmr.bucketed_get_node(get_bucket, get_stored, level, index)
        except ValueError as exc:
            raise StateError(str(exc)) from exc

    items = []
    for i in range(start, stop):
        bucket = get_bucket(i >> mmr.BUCKET_LEVELS)
        offset = (i & (mmr.BUCKET - 1)) * mmr.HASH_SIZE
        item = bucket[offset : offset + mmr.HASH_SIZE]
        if len(item) != mmr.HASH_SIZE:
            raise StateError("feed is inconsistent")
        items.append(item)

    proof = mmr.compute_page_proof(length, start, stop, get_node)
    return FeedPage(fid, length, root, start, stop, tuple(items), tuple(proof), head_read, r.height)


def verify_feed_page(app_hash: bytes, page: FeedPage) -> bool:
    """The light client's check: the head is in the state, and the page is exactly items [start, stop)."""
    head = page.head
    if head.key != sk.feed_head(page.feed_id) or head.proof is None:
        return False
    if not verify_proof(app_hash, head.key, head.value, head.proof):
        return False
    if head.value is None:
        length, root = 0, mmr.EMPTY_ROOT
    else:
        try:
            length, root = msgpack.unpackb(head.value)[:2]
        except (ValueError, TypeError, msgpack.UnpackException):
            return False
    if (length, root) != (page.length, page.root):
        return False
    return mmr.verify_page(root, length, page.start, page.stop, page.items, page.mmr_proof)


# --- seeders ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeederEntry:
    seeder: bytes
    addresses: tuple[str, ...]
    ranges: tuple[tuple[int, int], ...]
    expiry_height: int
    announced_height: int


@dataclass(frozen=True, slots=True)
class SeederMap:
    content_root: bytes
    entries: tuple[SeederEntry, ...]
    height: int
    reads: tuple[Read, ...]


def get_seeders(tree: StateTree, content_root: bytes, *, height: int | None = None, prove: bool = False) -> SeederMap:
    """Who serves `content_root` at `height` (entries are live: lapsed ones are removed at expiry).

    The list is read chunk by chunk (128 seeders a record) with, when proving,
    the absence of the chunk after a full last one, so a proven map is complete;
    at most about MAX_PAGE entries are returned.
    """
    r = _Reader(tree, height, prove)
    entries = []
    members: list[bytes] = []
    for c in range(1 << 24):
        # chunks are full up to the last; a full last chunk is followed by a proven absence
        chunk = r.get(sk.set_item(sk.S_SEEDERS_OF, content_root, c))
        if chunk is None:
            break
        members.extend(chunk[i : i + 32] for i in range(0, len(chunk), 32))
        if len(chunk) < SEEDER_CHUNK * 32 or len(members) >= MAX_PAGE:
            break
    for seeder in members:
        e = r.record(sk.seeder(content_root, seeder))
        if e is None:
            raise StateError("seeder set is inconsistent")
        entries.append(SeederEntry(seeder, tuple(e[0]), tuple((a, b) for a, b in e[1]), e[2], e[3]))
    return SeederMap(content_root, tuple(entries), r.height, tuple(r.reads))


# --- keys ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyToken:
    card_id: bytes
    serial: int
    owner: bytes
    acquired_height: int
    times_resold: int
    sealed_key: bytes


def get_token(tree: StateTree, card_id: bytes, serial: int, *, height: int | None = None) -> KeyToken | None:
    t = _Reader(tree, height, False).record(sk.token(card_id, serial))
    return None if t is None else KeyToken(card_id, serial, t[0], t[1], t[2], t[3])


def prove_token(tree: StateTree, card_id: bytes, serial: int, *, height: int | None = None) -> Read:
    """The token record of a key at a height with its proof (value None: no such token)."""
    r = _Reader(tree, height, True)
    r.get(sk.token(card_id, serial))
    return r.reads[0]


@dataclass(frozen=True, slots=True)
class KeysOf:
    owner: bytes
    tokens: tuple[KeyToken, ...]
    height: int
    reads: tuple[Read, ...]


def get_keys_of(tree: StateTree, owner: bytes, *, height: int | None = None, prove: bool = False) -> KeysOf:
    r = _Reader(tree, height, prove)
    tokens = []
    for member in r.set_members(sk.S_TOKENS_OF, owner):
        card_id, serial = member[:32], int.from_bytes(member[32:], "big")
        t = r.record(sk.token(card_id, serial))
        if t is None:
            raise StateError("token set is inconsistent")
        tokens.append(KeyToken(card_id, serial, t[0], t[1], t[2], t[3]))
    return KeysOf(owner, tuple(tokens), r.height, tuple(r.reads))


@dataclass(frozen=True, slots=True)
class Entitlement:
    """The answer to "may X decrypt card C at height H"."""

    allowed: bool
    why: str
    """"creator", "holder", "no key", "rule denies", "no such card"."""
    serial: int
    """The entitling token's serial (0 if none)."""
    height: int
    reads: tuple[Read, ...]


def may_decrypt(
    tree: StateTree, address: bytes, card_id: bytes, *, height: int | None = None, prove: bool = False,
    app_params: AppParams | None = None, time_ms: int = 0,
) -> Entitlement:
    """Does `address` hold a delivered key of `card_id` that entitles it at `height`?

    The creator always may. A holder may unless the key class's rule program
    says the key no longer entitles (vm.entitled, e.g. an expiring key).
    `time_ms` is the block time of `height` for rules that read it.
    """
    r = _Reader(tree, height, prove)
    card = r.record(sk.card(card_id))
    if card is None:
        return Entitlement(False, "no such card", 0, r.height, tuple(r.reads))
    if card[0] == address:
        return Entitlement(True, "creator", 0, r.height, tuple(r.reads))
    if r.integer(sk.holding(address, card_id)) == 0:
        return Entitlement(False, "no key", 0, r.height, tuple(r.reads))
    klass = r.record(sk.key_class(card_id))
    program = b"" if klass is None else klass[4]
    gas = (app_params or AppParams()).vm_gas_limit
    # without a program any held token entitles: a bounded look for its serial will do
    limit = MAX_PAGE if not program else MAX_TOKEN_SCAN
    for member in r.set_members(sk.S_TOKENS_OF, address, limit=limit):
        if member[:32] != card_id:
            continue
        serial = int.from_bytes(member[32:], "big")
        t = r.record(sk.token(card_id, serial))
        if t is None:
            raise StateError("token set is inconsistent")
        if not program:
            return Entitlement(True, "holder", serial, r.height, tuple(r.reads))
        ctx = vm.Context(
            height=r.height, time_ms=time_ms, seller=address, buyer=address, price=0, serial=serial,
            times_resold=t[2], acquired_height=t[1], creator=card[0], royalty_bps=klass[2],
            params=tuple(klass[5]),
        )  # fmt: skip
        if vm.entitled(program, ctx, gas):
            return Entitlement(True, "holder", serial, r.height, tuple(r.reads))
    if not program:
        return Entitlement(True, "holder", 0, r.height, tuple(r.reads))
    return Entitlement(False, "rule denies", 0, r.height, tuple(r.reads))


# --- generic transactions ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GenericTx:
    tx_hash: bytes
    kind: bytes
    payload: bytes
    sender: bytes
    height: int


@dataclass(frozen=True, slots=True)
class GenericPage:
    page: FeedPage
    txs: tuple[GenericTx, ...]
    reads: tuple[Read, ...]


def get_generic_by_kind(
    tree: StateTree, kind: bytes, start: int | None = None, stop: int | None = None, *,
    height: int | None = None, prove: bool = False,
) -> GenericPage:
    """Generic transactions of `kind`, oldest first, with the kind feed's page proof."""
    page = get_feed_page(tree, sk.feed_id(sk.F_KIND, kind), start, stop, height=height, prove=prove)
    r = _Reader(tree, page.height, prove)
    txs = []
    for h in page.items:
        g = r.record(sk.generic(h))
        if g is None:
            raise StateError("generic transaction record missing")
        txs.append(GenericTx(h, g[0], g[1], g[2], g[3]))
    return GenericPage(page, tuple(txs), tuple(r.reads))
