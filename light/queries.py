"""Verified state queries: every answer proven against a verified header's app hash.

Theory of operation. The client asks the primary for a state answer at a
height ``h`` with ``prove=true``, after verifying header ``h`` (light/client).
The answer's ``reads`` are (key, value, proof) triples; each proof must show
its value, or its absence, under ``header(h).app_hash`` (:class:`BadProof`).
The value is then *recomputed*: the same ``chain.queries`` function the node
ran is run again over :class:`VerifiedTree`, a tree that answers ``get`` only
from the verified reads and raises :class:`MissingRead` for any key the answer
left out. So the result depends on nothing but proven state, and the node's
JSON view is compared with the recomputed one only to report a lying node
(:class:`ViewMismatch`). A feed page is additionally checked with
``chain.queries.verify_feed_page`` against the feed head proven in the state:
it is exactly items [start, stop) of the feed, none dropped or added.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from chain import errors as chain_errors
from chain import queries as cq
from chain import statekeys as sk
from chain.params import AppParams
from chain.queries import FeedPage, Read
from light import errors as le
from light import views
from light.client import LightClient
from light.verifier import LightBlock, decode_hex, hash_of_hex
from storage.errors import ProofDecodeError
from storage.proof import Proof, verify_proof

T = TypeVar("T")
FEEDS = {"type": sk.F_CONTENT_TYPE, "creator": sk.F_CREATOR, "tag": sk.F_TAG, "comments": sk.F_COMMENTS}


class VerifiedTree:
    """A read-only stand-in for storage.state.StateTree over verified reads of one height."""

    def __init__(self, height: int, reads: Mapping[bytes, Read]) -> None:
        self.height = height
        self.reads = dict(reads)
        self.used: set[bytes] = set()

    @property
    def latest_version(self) -> int:
        return self.height

    def _read(self, key: bytes, version: int | None) -> Read:
        if version is not None and version != self.height:
            raise le.WrongHeight(f"a read of height {version} in an answer of height {self.height}")
        found = self.reads.get(key)
        if found is None:
            raise le.MissingRead(f"the answer omitted the read of key {key.hex()} the view needs")
        self.used.add(key)
        return found

    def get(self, key: bytes, version: int | None = None) -> bytes | None:
        return self._read(key, version).value

    def get_with_proof(self, key: bytes, version: int | None = None) -> tuple[bytes | None, Proof]:
        r = self._read(key, version)
        if r.proof is None:  # pragma: no cover - only verified reads get here
            raise le.BadProof(f"read of {key.hex()} has no proof")
        return r.value, r.proof


def parse_read(obj: Any) -> Read:
    if not isinstance(obj, dict):
        raise le.MalformedAnswer("a read is not an object")
    key = decode_hex(obj.get("key"), "read.key")
    raw_value = obj.get("value")
    value = None if raw_value is None else decode_hex(raw_value, "read.value")
    if "proof" not in obj:
        raise le.BadProof(f"read of key {key.hex()} carries no proof")
    try:
        proof = Proof.decode_untrusted(decode_hex(obj["proof"], "read.proof"))
    except ProofDecodeError as exc:
        raise le.BadProof(f"proof of key {key.hex()} does not decode: {exc}") from exc
    return Read(key, value, proof)


def check_reads(app_hash: bytes, reads: Iterable[Read]) -> dict[bytes, Read]:
    """Verify every read against ``app_hash``; the reads by key."""
    out: dict[bytes, Read] = {}
    for r in reads:
        if r.proof is None or not verify_proof(app_hash, r.key, r.value, r.proof):
            raise le.BadProof(f"the proof of key {r.key.hex()} does not check against app hash {app_hash.hex()}")
        out[r.key] = r
    return out


def recompute(fn: Callable[[], T]) -> T:
    """Run a chain.queries function over a VerifiedTree, surfacing our typed errors."""
    try:
        return fn()
    except le.LightError:
        raise
    except chain_errors.ChainError as exc:
        cause = exc.__cause__
        if isinstance(cause, le.LightError):
            raise cause from None
        raise le.QueryError(f"the verified reads do not make a view: {exc}") from exc
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise le.QueryError(f"the verified reads do not make a view: {exc!r}") from exc


def feed_id_of(feed: str, name: str) -> bytes:
    """The feed id the node computes for (feed, name) (docs/rpc.md, cards)."""
    if feed not in FEEDS:
        raise le.UsageError(f"feed must be one of {', '.join(FEEDS)}, not {feed!r}")
    if feed in ("creator", "comments"):
        text = name[2:] if name[:2].lower() == "0x" else name
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise le.UsageError(f"for feed {feed!r} the name is 64 hex digits")
        return sk.feed_id(FEEDS[feed], raw)
    if not name:
        raise le.UsageError("the feed name must not be empty")
    return sk.feed_id(FEEDS[feed], name.encode())


@dataclass(frozen=True, slots=True)
class Verified:
    """A verified answer: the recomputed value and the header it is proven under."""

    value: Any
    """The chain.queries value (AccountView, CardView | None, SeederMap, ...)."""
    json: Any
    """The value in the node's JSON shape (docs/rpc.md)."""
    block: LightBlock
    """The verified light block whose app_hash the reads were proven against."""
    reads: tuple[Read, ...]

    @property
    def height(self) -> int:
        return self.block.height


@dataclass(frozen=True, slots=True)
class VerifiedFeed:
    page: FeedPage
    cards: tuple[cq.CardView, ...]


class VerifiedQueries:
    """account, card, feed, seeders, key and may_decrypt, each verified."""

    def __init__(self, client: LightClient, *, app_params: AppParams | None = None,
                 check_views: bool = True) -> None:
        self.client = client
        self.app_params = app_params or AppParams()
        self.check_views = check_views

    def _block(self, height: int | None) -> LightBlock:
        return self.client.update() if height is None else self.client.verify_to_height(height)

    def _ask(self, method: str, height: int | None, **params: Any) -> tuple[dict[str, Any], LightBlock,
                                                                            VerifiedTree, list[Read]]:
        block = self._block(height)
        h = block.height
        answer = self.client.primary.rpc.call(method, height=h, prove=True, **params)
        if not isinstance(answer, dict) or not isinstance(answer.get("reads"), list):
            raise le.MalformedAnswer(f"{method}: answer without reads")
        if answer.get("height") != h:
            raise le.WrongHeight(f"{method}: asked height {h}, answered {answer.get('height')!r}")
        reads = [parse_read(r) for r in answer["reads"]]
        verified = check_reads(block.header.app_hash, reads)
        return answer, block, VerifiedTree(h, verified), reads

    def _compare(self, method: str, sent: Any, mine: Any) -> None:
        if self.check_views and sent != mine:
            raise le.ViewMismatch(f"{method}: the node's JSON view differs from the verified one")

    def account(self, address: bytes, height: int | None = None) -> Verified:
        ans, block, tree, reads = self._ask("account", height, address=address.hex())
        a = recompute(lambda: cq.get_account(cast(Any, tree), address, height=tree.height))
        j = views.account(a)
        self._compare("account", ans.get("value"), j)
        return Verified(a, j, block, tuple(reads))

    def card(self, card_id: bytes, height: int | None = None) -> Verified:
        ans, block, tree, reads = self._ask("card", height, card_id=card_id.hex())
        c = recompute(lambda: cq.get_card(cast(Any, tree), card_id, height=tree.height))
        j = None if c is None else views.card(c)
        self._compare("card", ans.get("value"), j)
        return Verified(c, j, block, tuple(reads))

    def seeders(self, content_root: bytes, height: int | None = None) -> Verified:
        ans, block, tree, reads = self._ask("seeders", height, content_root=content_root.hex())
        m = recompute(lambda: cq.get_seeders(cast(Any, tree), content_root, height=tree.height))
        j = views.seeders(m)
        self._compare("seeders", ans.get("value"), j)
        return Verified(m, j, block, tuple(reads))

    def key(self, card_id: bytes, serial: int, height: int | None = None) -> Verified:
        ans, block, tree, reads = self._ask("key", height, card_id=card_id.hex(), serial=serial)
        t = recompute(lambda: cq.get_token(cast(Any, tree), card_id, serial, height=tree.height))
        j = None if t is None else views.token(t)
        self._compare("key", ans.get("value"), j)
        return Verified(t, j, block, tuple(reads))

    def may_decrypt(self, address: bytes, card_id: bytes, height: int | None = None) -> Verified:
        ans, block, tree, reads = self._ask("may_decrypt", height, address=address.hex(), card_id=card_id.hex())
        time_ms = block.header.time_ms
        e = recompute(lambda: cq.may_decrypt(cast(Any, tree), address, card_id, height=tree.height,
                                             app_params=self.app_params, time_ms=time_ms))
        j = views.entitlement(e, address, card_id, time_ms)
        self._compare("may_decrypt", ans.get("value"), j)
        return Verified(e, j, block, tuple(reads))

    def feed(self, feed: str, name: str, *, start: int | None = None, limit: int | None = None,
             height: int | None = None) -> Verified:
        """A page of a card feed, proven complete: exactly items [start, stop) of the feed."""
        fid = feed_id_of(feed, name)
        ans, block, tree, reads = self._ask("cards", height, feed=feed, name=name, start=start, limit=limit)
        page = parse_feed_proof(ans.get("feed_proof"), block.height)
        check_page(block.header.app_hash, page, fid, start, limit)
        cards = []
        for item in page.items:
            c = recompute(lambda item=item: cq.get_card(cast(Any, tree), item, height=tree.height))  # type: ignore[misc]
            if c is None:
                raise le.QueryError(f"feed item {item.hex()} has no card in the verified state")
            cards.append(c)
        j = {"feed": feed, "name": name, "feed_id": fid.hex(), "length": page.length, "start": page.start,
             "stop": page.stop, "items": [x.hex() for x in page.items], "cards": [views.card(c) for c in cards]}
        self._compare("cards", ans.get("value"), j)
        return Verified(VerifiedFeed(page, tuple(cards)), j, block, tuple(reads))


def parse_feed_proof(obj: Any, height: int) -> FeedPage:
    if not isinstance(obj, dict):
        raise le.IncompletePage("the answer carries no feed proof")
    try:
        length, start, stop = obj["length"], obj["start"], obj["stop"]
        if not all(type(x) is int for x in (length, start, stop)):
            raise le.MalformedAnswer("feed proof: length, start and stop must be integers")
        items = obj["items"]
        mmr_proof = obj["mmr_proof"]
        if not isinstance(items, list) or not isinstance(mmr_proof, list):
            raise le.MalformedAnswer("feed proof: items and mmr_proof must be lists")
        return FeedPage(
            decode_hex(obj["feed_id"], "feed_id"), length, hash_of_hex(obj["root"], "root"), start, stop,
            tuple(hash_of_hex(x, "item") for x in items), tuple(hash_of_hex(x, "mmr_proof") for x in mmr_proof),
            parse_read(obj["head"]), height,
        )  # fmt: skip
    except KeyError as exc:
        raise le.MalformedAnswer(f"feed proof without {exc}") from exc


def check_page(app_hash: bytes, page: FeedPage, fid: bytes, start: int | None, limit: int | None) -> None:
    """The page is of feed ``fid``, is the asked range, and proves against ``app_hash``."""
    if page.feed_id != fid:
        raise le.IncompletePage("the page is of another feed than asked")
    if start is not None and page.start != start:
        raise le.IncompletePage(f"asked a page from {start}, got one from {page.start}")
    if start is None and page.stop != page.length:
        raise le.IncompletePage("asked the newest page, got one that stops before the end")
    if limit is not None:
        want = min(page.length, page.start + limit) if start is not None else page.length
        want_start = page.start if start is not None else max(0, page.length - limit)
        if (page.start, page.stop) != (want_start, want):
            raise le.IncompletePage(f"asked {limit} items, got [{page.start}, {page.stop})")
    if not cq.verify_feed_page(app_hash, page):
        raise le.IncompletePage(
            f"the page [{page.start}, {page.stop}) is not exactly those items of the feed proven at app hash "
            f"{app_hash.hex()}"
        )
