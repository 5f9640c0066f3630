"""The node's JSON-RPC methods: chain, mempool and state queries over a NodeView.

`register_methods(registry, view)` declares every method with its parameters
(so `rpc.discover` documents them and the dispatcher checks them). Answer
shapes follow docs/interfaces.md (node section) and are listed with examples in
docs/rpc.md, "Methods". Handlers raise only RpcError subclasses: -32602 for a
malformed parameter, -32001 for something that does not exist (yet), -32002 for
what retention pruned, -32000 for a broadcast_tx_commit that timed out.

State answers are `{height, value, reads}`: `reads` are the chain.queries reads
the value was computed from, each with a storage proof against the app_hash of
header `height` when `prove` is true, so a light client verifies every read and
recomputes `value` with the same chain.queries code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from chain import merkle
from chain import queries as q
from chain import statekeys as sk
from chain import tx as txm
from chain.errors import ChainError, DecodeError, StateError, UsageError
from chain.types import Block, Commit
from node import indexer
from node import jsonview as jv
from node.errors import InvalidParams, NotFound, RpcError, ServerError, Unavailable
from node.evidence_intake import MAX_SUBMITTED_EVIDENCE_BYTES, EvidenceRejected
from node.jsonrpc import (
    HASH_LEN,
    Method,
    Param,
    ParamType,
    Registry,
    Result,
    hash32_param,
    height_param,
    need32,
    object_result,
    package_version,
)
from node.mempool import DuplicateTx, MempoolError, TxInvalid
from node.view import NodeView
from storage.errors import StorageError

T = TypeVar("T")
MAX_BLOCKCHAIN_HEADERS = 20
"""Most headers one `blockchain` call returns (CometBFT's limit)."""
FEEDS = {"type": sk.F_CONTENT_TYPE, "creator": sk.F_CREATOR, "tag": sk.F_TAG, "comments": sk.F_COMMENTS}



# --- parameter declarations ----------------------------------------------------


PROVE = Param("prove", ParamType.BOOLEAN, "Attach a proof of every read against header height's app_hash.",
              required=False, default=False)





STATE_RESULT = object_result("{height, value, reads: [{key, value, proof?}]}")


class RpcMethods:
    """The handlers, bound to one view."""

    def __init__(self, view: NodeView) -> None:
        self.view = view
        rpc = view.config.rpc
        self.page_default = rpc.page_size_default
        self.page_max = rpc.page_size_max
        self.commit_timeout = rpc.timeout_broadcast_tx_commit

    # -- helpers -------------------------------------------------------------------

    @property
    def latest(self) -> int:
        return self.view.state.height

    def _at(self, height: int | None) -> int:
        """A committed height (default latest); NotFound beyond the latest."""
        latest = self.latest
        if height is None:
            if latest < self.view.genesis.initial_height:
                raise NotFound("no block is committed yet", {"latest_height": latest})
            return latest
        if height > latest:
            raise NotFound(f"height {height} is not committed yet (latest is {latest})",
                           {"height": height, "latest_height": latest})
        if height < self.view.genesis.initial_height:
            raise NotFound(f"height {height} is below the chain's initial height "
                           f"{self.view.genesis.initial_height}", {"height": height})
        return height

    def _block_bytes(self, height: int) -> bytes:
        raw = self.view.blocks.get_block(height)
        if raw is None:
            base = self.view.blocks.base_height
            raise Unavailable(f"block {height} is pruned (earliest kept: {base})",
                              {"height": height, "earliest_block_height": base})
        return raw

    def _block(self, height: int) -> tuple[Block, bytes]:
        raw = self._block_bytes(height)
        return Block.decode_untrusted(raw), raw

    def _state(self, fn: Callable[[], T]) -> T:
        """Run a state query, turning its typed errors into RPC errors."""
        try:
            return fn()
        except UsageError as exc:
            raise InvalidParams(str(exc)) from exc
        except (StateError, StorageError) as exc:
            raise Unavailable(f"state not available: {exc}") from exc

    def _state_answer(self, height: int, value: Any, reads: Sequence[q.Read], **extra: Any) -> dict[str, Any]:
        out = {"height": height, "value": value, "reads": [jv.read_json(r) for r in reads]}
        out.update(extra)
        return out

    def _page(self, start: int | None, limit: int | None, length: int) -> tuple[int, int]:
        limit = self.page_default if limit is None else limit
        if start is None:
            return max(0, length - limit), length
        if start > length:
            raise InvalidParams(f"start {start} is past the end of a feed of {length} items",
                                {"param": "start", "length": length})
        return start, min(length, start + limit)

    def _feed_length(self, fid: bytes, height: int) -> int:
        raw = self._state(lambda: self.view.state.tree.get(sk.feed_head(fid), height))
        if raw is None:
            return 0
        import msgpack

        return int(msgpack.unpackb(raw)[0])

    # -- node ------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        v = self.view
        s = v.sync_info()
        pub = v.validator_pubkey
        power = 0
        if pub is not None:
            try:
                vset = v.state.validator_set(v.state.height + 1)
                idx = vset.index_of(pub)
                power = 0 if idx is None else vset.validators[idx].power
            except ChainError:
                power = 0
        return {
            "node_info": {
                "id": v.node_id,
                "moniker": v.config.base.moniker,
                "chain_id": v.genesis.chain_id,
                "network_listen": v.config.p2p.laddr,
                "version": package_version(),
            },
            "sync_info": {
                "latest_block_hash": s.latest_block_hash.hex(),
                "latest_app_hash": s.latest_app_hash.hex(),
                "latest_block_height": s.latest_block_height,
                "latest_block_time_ms": s.latest_block_time_ms,
                "earliest_block_height": s.earliest_block_height,
                "catching_up": s.catching_up,
            },
            "validator_info": {"pub_key": None if pub is None else pub.hex(), "voting_power": power},
        }

    def net_info(self) -> dict[str, Any]:
        peers = self.view.net_info()
        return {"listening": True, "n_peers": len(peers), "peers": [jv.plain(p) for p in peers]}

    def genesis(self) -> dict[str, Any]:
        doc = self.view.genesis
        return {"genesis": doc.to_dict(), "genesis_hash": doc.hash().hex()}

    # -- blocks ----------------------------------------------------------------------

    def header(self, height: int | None) -> dict[str, Any]:
        block, _ = self._block(self._at(height))
        return {"header": jv.header_json(block.header), "header_bytes": block.header.encode().hex()}

    def block(self, height: int | None, hash: bytes | None) -> dict[str, Any]:
        if height is not None and hash is not None:
            raise InvalidParams("give height or hash, not both", {"param": "hash"})
        if hash is not None:
            found = self.view.blocks.get_height_by_hash(need32("hash", hash))
            if found is None:
                raise NotFound(f"no block with hash {hash.hex()}", {"hash": hash.hex()})
            height = found
        block, raw = self._block(self._at(height))
        return {"block_id": block.hash().hex(), "block": jv.block_json(block), "block_bytes": raw.hex()}

    def commit(self, height: int | None) -> dict[str, Any]:
        h = self._at(height)
        block, _ = self._block(h)
        canonical = False
        commit: Commit | None = None
        nxt = self.view.blocks.get_block(h + 1)
        if nxt is not None:
            commit = Block.decode_untrusted(nxt).last_commit
            canonical = commit is not None
        if commit is None:
            raw = self.view.blocks.get_commit(h)
            if raw is None:
                raise NotFound(f"no commit stored for height {h}", {"height": h})
            commit = Commit.decode_untrusted(raw)
        return {
            "height": h,
            "header": jv.header_json(block.header),
            "header_bytes": block.header.encode().hex(),
            "commit": jv.commit_json(commit),
            "commit_bytes": commit.encode().hex(),
            "canonical": canonical,
        }

    def validators(self, height: int | None) -> dict[str, Any]:
        latest = self.latest
        h = latest if height is None else height
        if h > latest + 1:
            raise NotFound(f"the validator set of height {h} is not known yet (latest is {latest})",
                           {"height": h, "latest_height": latest})
        vset = self._state(lambda: self.view.state.validator_set(h))
        return {
            "block_height": h,
            "validators": jv.validators_json(vset),
            "total_voting_power": vset.total_power,
            "valset_bytes": vset.encode().hex(),
        }

    def blockchain(self, min_height: int | None, max_height: int | None) -> dict[str, Any]:
        latest = self.latest
        base = self.view.blocks.base_height or self.view.genesis.initial_height
        hi = latest if max_height is None else min(max_height, latest)
        lo = base if min_height is None else max(min_height, base)
        if min_height is not None and max_height is not None and min_height > max_height:
            raise InvalidParams(f"min_height {min_height} is above max_height {max_height}",
                                {"param": "min_height"})
        lo = max(lo, hi - MAX_BLOCKCHAIN_HEADERS + 1)
        metas = []
        for h in range(hi, lo - 1, -1):
            raw = self.view.blocks.get_block(h)
            if raw is None:
                continue
            block = Block.decode_untrusted(raw)
            metas.append({
                "block_id": block.hash().hex(),
                "header": jv.header_json(block.header),
                "header_bytes": block.header.encode().hex(),
                "num_txs": sum(len(block.lane(lane)) for lane in txm.LANE_NAMES),
            })
        return {"last_height": latest, "block_metas": metas}

    # -- transactions ----------------------------------------------------------------

    def tx(self, hash: bytes, prove: bool) -> dict[str, Any]:
        need32("hash", hash)
        found = indexer.get_tx(self.view.blocks.kv, hash)
        if found is None:
            raise NotFound(f"no committed transaction {hash.hex()}", {"hash": hash.hex()})
        loc = found.location
        block, _ = self._block(loc.height)
        lane_txs = block.lane(loc.lane)
        raw = lane_txs[loc.index]
        out: dict[str, Any] = {
            "hash": hash.hex(),
            "height": loc.height,
            "lane": loc.lane,
            "index": loc.index,
            "block_index": found.block_index,
            "gas_used": found.gas_used,
            "tx": jv.tx_json(txm.Tx.decode_untrusted(raw)),
            "tx_bytes": raw.hex(),
        }
        if prove:
            proof = merkle.compute_proof([txm.tx_hash(t) for t in lane_txs], loc.index)
            out["proof"] = {
                "lane_root": block.header.lane_root(loc.lane).hex(),
                "leaf": hash.hex(),
                "index": proof.index,
                "total": proof.total,
                "proof_bytes": proof.encode().hex(),
            }
        return out

    def tx_search(self, sender: bytes | None, kind: str | None, page: int, per_page: int,
                  order_by: str) -> dict[str, Any]:
        if (sender is None) == (kind is None):
            raise InvalidParams("give exactly one of sender and kind", {"param": "sender"})
        offset = (page - 1) * per_page
        reverse = order_by == "desc"
        kv = self.view.blocks.kv
        if sender is not None:
            found = indexer.search_by_sender(kv, need32("sender", sender), offset=offset, limit=per_page,
                                             reverse=reverse)
        else:
            found = indexer.search_by_kind(kv, _kind_bytes(kind or ""), offset=offset, limit=per_page,
                                           reverse=reverse)
        txs = []
        for height, block_index, tx_hash in found.hits:
            entry: dict[str, Any] = {"hash": tx_hash.hex(), "height": height, "block_index": block_index}
            got = indexer.get_tx(kv, tx_hash)
            if got is not None:
                entry["lane"] = got.location.lane
                entry["index"] = got.location.index
            txs.append(entry)
        return {"txs": txs, "total_count": found.total, "total_capped": found.total_capped,
                "page": page, "per_page": per_page}

    async def broadcast_tx_async(self, tx: bytes) -> dict[str, Any]:
        tx_hash = txm.tx_hash(tx)
        # async: the caller asked not to hear about the check (broadcast_tx_sync reports it)
        with contextlib.suppress(MempoolError):
            await self.view.submit_tx(tx)
        return {"hash": tx_hash.hex()}

    async def broadcast_tx_sync(self, tx: bytes) -> dict[str, Any]:
        return await self._submit(tx)

    async def _submit(self, tx: bytes) -> dict[str, Any]:
        tx_hash = txm.tx_hash(tx)
        try:
            result = await self.view.submit_tx(tx)
        except MempoolError as exc:
            return _check_failure(tx_hash, exc)
        return {"hash": tx_hash.hex(), "code": 0, "log": "", "check": jv.check_result_json(result)}

    async def broadcast_tx_commit(self, tx: bytes, timeout: float | None) -> dict[str, Any]:
        tx_hash = txm.tx_hash(tx)
        check = await self._submit(tx)
        if check["code"] != 0 and not (check["code"] == DuplicateTx.code and tx_hash in self.view.mempool):
            already = indexer.get_tx(self.view.blocks.kv, tx_hash)
            if already is None:
                return {"hash": tx_hash.hex(), "check_tx": check, "committed": False}
        wait = self.commit_timeout if timeout is None else timeout
        loc = await self.view.wait_tx_committed(tx_hash, wait)
        if loc is None:
            raise ServerError(f"timed out after {wait}s waiting for transaction {tx_hash.hex()} to be committed;"
                              " it stays in the mempool", {"hash": tx_hash.hex(), "timeout_s": wait})
        return {"hash": tx_hash.hex(), "check_tx": check, "committed": True, "height": loc.height,
                "lane": loc.lane, "index": loc.index}

    async def broadcast_evidence(self, evidence: bytes) -> dict[str, Any]:
        """Duplicate-vote evidence is verified, pooled and gossiped. A light client attack is
        checked against this node's chain: every validator that signed both the conflicting
        and the canonical commit in the same round yields duplicate-vote evidence; commits
        of different rounds (amnesia) prove nothing per validator and are only recorded."""
        try:
            hashes = await self.view.submit_evidence(evidence)
        except EvidenceRejected as exc:
            raise InvalidParams(f"invalid evidence: {exc}", {"param": "evidence"}) from None
        if hashes:
            log = f"{len(hashes)} duplicate-vote evidence pooled"
        else:
            log = "amnesia attack (commits of different rounds): nothing provable per validator; recorded"
        return {"hashes": [h.hex() for h in hashes], "log": log}

    def check_tx(self, tx: bytes) -> dict[str, Any]:
        tx_hash = txm.tx_hash(tx)
        try:
            result = self.view.mempool.check(tx)
        except MempoolError as exc:
            return _check_failure(tx_hash, exc)
        return {"hash": tx_hash.hex(), "code": 0, "log": "", "check": jv.check_result_json(result)}

    def unconfirmed_txs(self, limit: int | None) -> dict[str, Any]:
        mp = self.view.mempool
        txs = mp.txs(self.page_default if limit is None else limit)
        return {"n_txs": len(txs), "total": mp.size, "total_bytes": mp.total_bytes,
                "txs": [t.hex() for t in txs]}

    def num_unconfirmed_txs(self) -> dict[str, Any]:
        mp = self.view.mempool
        return {"n_txs": mp.size, "total": mp.size, "total_bytes": mp.total_bytes}

    # -- state -------------------------------------------------------------------------

    def query(self, key: bytes, height: int | None, prove: bool) -> dict[str, Any]:
        if not key:
            raise InvalidParams("parameter 'key' must not be empty", {"param": "key"})
        h = self._at(height)
        tree = self.view.state.tree
        if prove:
            value, proof = self._state(lambda: tree.get_with_proof(key, h))
            read = q.Read(key, value, proof)
        else:
            read = q.Read(key, self._state(lambda: tree.get(key, h)), None)
        return self._state_answer(h, jv.hexs(read.value), [read])

    def account(self, address: bytes, height: int | None, prove: bool) -> dict[str, Any]:
        need32("address", address)
        h = self._at(height)
        a = self._state(lambda: q.get_account(self.view.state.tree, address, height=h, prove=prove))
        return self._state_answer(h, jv.account_json(a), a.reads)

    def card(self, card_id: bytes, height: int | None, prove: bool) -> dict[str, Any]:
        need32("card_id", card_id)
        h = self._at(height)
        tree = self.view.state.tree
        c = self._state(lambda: q.get_card(tree, card_id, height=h, prove=prove))
        if c is None:
            # the absence is proven by the one read get_card made
            read = self._state(lambda: _single_read(tree, sk.card(card_id), h, prove))
            return self._state_answer(h, None, [read])
        return self._state_answer(h, jv.card_json(c), c.reads)

    def cards(self, feed: str, name: str, start: int | None, limit: int | None, paid: str,
              from_height: int | None, to_height: int | None, height: int | None,
              prove: bool) -> dict[str, Any]:
        fid = self._feed_id(feed, name)
        h = self._at(height)
        tree = self.view.state.tree
        lo, hi = self._page(start, limit, self._feed_length(fid, h))
        page = self._state(lambda: q.get_feed_page(tree, fid, lo, hi, height=h, prove=prove))
        reads: list[q.Read] = [page.head]
        shown = []
        for card_id in page.items:
            c = self._state(lambda cid=card_id: q.get_card(tree, cid, height=h, prove=prove))  # type: ignore[misc]
            if c is None:
                raise Unavailable(f"feed item {card_id.hex()} has no card record")
            reads.extend(c.reads)
            view = jv.card_json(c)
            if paid != "any" and view["free"] != (paid == "free"):
                continue
            if from_height is not None and c.created_height < from_height:
                continue
            if to_height is not None and c.created_height > to_height:
                continue
            shown.append(view)
        value = {
            "feed": feed, "name": name, "feed_id": fid.hex(), "length": page.length,
            "start": page.start, "stop": page.stop, "items": [x.hex() for x in page.items], "cards": shown,
        }
        return self._state_answer(h, value, reads, feed_proof=jv.feed_proof_json(page))

    def _feed_id(self, feed: str, name: str) -> bytes:
        if feed in ("creator", "comments"):
            try:
                raw = bytes.fromhex(name[2:] if name[:2].lower() == "0x" else name)
            except ValueError:
                raw = b""
            if len(raw) != HASH_LEN:
                what = "an address" if feed == "creator" else "a card id"
                raise InvalidParams(f"for feed '{feed}', name must be {what}: 64 hex digits", {"param": "name"})
            return sk.feed_id(FEEDS[feed], raw)
        if feed == "type" and name not in txm.CONTENT_TYPES:
            raise InvalidParams(f"unknown content type {name[:64]!r}; one of {', '.join(txm.CONTENT_TYPES)}",
                                {"param": "name"})
        if not name:
            raise InvalidParams("parameter 'name' must not be empty", {"param": "name"})
        return sk.feed_id(FEEDS[feed], name.encode())

    def seeders(self, content_root: bytes, height: int | None, prove: bool) -> dict[str, Any]:
        need32("content_root", content_root)
        h = self._at(height)
        m = self._state(lambda: q.get_seeders(self.view.state.tree, content_root, height=h, prove=prove))
        return self._state_answer(h, jv.seeders_json(m), m.reads)

    def key(self, card_id: bytes, serial: int, height: int | None, prove: bool) -> dict[str, Any]:
        need32("card_id", card_id)
        h = self._at(height)
        tree = self.view.state.tree
        read = self._state(lambda: _single_read(tree, sk.token(card_id, serial), h, prove))
        value = None
        if read.value is not None:
            t = _unpack(read.value)
            value = jv.token_json(q.KeyToken(card_id, serial, t[0], t[1], t[2], t[3]))
        return self._state_answer(h, value, [read])

    def keys_of(self, owner: bytes, height: int | None, prove: bool) -> dict[str, Any]:
        need32("owner", owner)
        h = self._at(height)
        k = self._state(lambda: q.get_keys_of(self.view.state.tree, owner, height=h, prove=prove))
        return self._state_answer(h, jv.keys_of_json(k), k.reads)

    def may_decrypt(self, address: bytes, card_id: bytes, height: int | None, prove: bool) -> dict[str, Any]:
        need32("address", address)
        need32("card_id", card_id)
        h = self._at(height)
        block, _ = self._block(h) if self.view.blocks.get_block(h) is not None else (None, b"")
        time_ms = block.header.time_ms if block is not None else self.view.state.time_ms
        e = self._state(lambda: q.may_decrypt(self.view.state.tree, address, card_id, height=h, prove=prove,
                                              app_params=self.view.state.app, time_ms=time_ms))
        value = jv.entitlement_json(e)
        value.update(address=address.hex(), card_id=card_id.hex(), time_ms=time_ms)
        return self._state_answer(h, value, e.reads)

    def generic(self, kind: str, start: int | None, limit: int | None, height: int | None,
                prove: bool) -> dict[str, Any]:
        kb = _kind_bytes(kind)
        h = self._at(height)
        tree = self.view.state.tree
        lo, hi = self._page(start, limit, self._feed_length(sk.feed_id(sk.F_KIND, kb), h))
        g = self._state(lambda: q.get_generic_by_kind(tree, kb, lo, hi, height=h, prove=prove))
        value = {"kind": kb.hex(), "kind_text": kb.decode("utf-8", "replace"), "length": g.page.length,
                 "start": g.page.start, "stop": g.page.stop, "txs": [jv.generic_tx_json(t) for t in g.txs]}
        return self._state_answer(h, value, [g.page.head, *g.reads], feed_proof=jv.feed_proof_json(g.page))

    # -- registration --------------------------------------------------------------------

    def register(self, registry: Registry) -> None:
        page_default, page_max = self.page_default, self.page_max
        start = Param("start", ParamType.INTEGER, "First item (0 = oldest; default: the newest page).",
                      required=False, minimum=0)
        limit = Param("limit", ParamType.INTEGER, f"Items, at most {page_max} (default {page_default}).",
                      required=False, minimum=1, maximum=page_max)
        tx_param = Param("tx", ParamType.HEX, "The signed transaction's canonical bytes, hex.",
                         max_length=self.view.config.mempool.max_tx_bytes)
        specs: list[tuple[str, Callable[..., Any], tuple[Param, ...], Result, str]] = [
            ("status", self.status, (), object_result("{node_info, sync_info, validator_info}"),
             "Node identity, latest block and validator info."),
            ("net_info", self.net_info, (), object_result("{listening, n_peers, peers}"), "Connected peers."),
            ("genesis", self.genesis, (), object_result("{genesis, genesis_hash}"), "The genesis document."),
            ("header", self.header, (height_param("Height (default: the latest committed)."),), object_result("{header, header_bytes}"), "A block header."),
            ("block", self.block,
             (height_param("Height (default: the latest committed)."), Param("hash", ParamType.HEX, "Block hash (32 bytes, hex); not with height.",
                               required=False, max_length=HASH_LEN)),
             object_result("{block_id, block, block_bytes}"), "A block by height or hash."),
            ("commit", self.commit, (height_param("Height (default: the latest committed)."),),
             object_result("{height, header, header_bytes, commit, commit_bytes, canonical}"),
             "The commit of a block: canonical (from the next block) or the node's seen commit."),
            ("validators", self.validators, (height_param("Height whose signers to return (default latest)."),),
             object_result("{block_height, validators, total_voting_power, valset_bytes}"),
             "The validator set that signs block height."),
            ("blockchain", self.blockchain,
             (Param("min_height", ParamType.INTEGER, "Lowest height.", required=False, minimum=1),
              Param("max_height", ParamType.INTEGER, "Highest height (default latest).", required=False,
                    minimum=1)),
             object_result("{last_height, block_metas}"),
             f"Headers of a height range, newest first, at most {MAX_BLOCKCHAIN_HEADERS}."),
            ("tx", self.tx, (hash32_param("hash", "Transaction hash"), PROVE),
             object_result("{hash, height, lane, index, block_index, gas_used, tx, tx_bytes, proof?}"),
             "A committed transaction; with prove, its inclusion proof under the header's lane root."),
            ("tx_search", self.tx_search,
             (Param("sender", ParamType.HEX, "Sender address (32 bytes, hex).", required=False,
                    max_length=HASH_LEN),
              Param("kind", ParamType.STRING, "Generic transaction kind (UTF-8, or 0x-prefixed hex).",
                    required=False, max_length=66),
              Param("page", ParamType.INTEGER, "1-based page.", required=False, default=1, minimum=1),
              Param("per_page", ParamType.INTEGER, f"Items per page, at most {page_max}.", required=False,
                    default=page_default, minimum=1, maximum=page_max),
              Param("order_by", ParamType.STRING, "Height order.", required=False, default="asc",
                    enum=("asc", "desc"))),
             object_result("{txs, total_count, total_capped, page, per_page}"),
             "Committed transactions of a sender or of a generic kind, paged."),
            ("broadcast_tx_async", self.broadcast_tx_async, (tx_param,), object_result("{hash}"),
             "Submit a transaction without reporting the check."),
            ("broadcast_tx_sync", self.broadcast_tx_sync, (tx_param,), object_result("{hash, code, log, error?, check?}"),
             "Submit a transaction and report the mempool check (code 0 = accepted)."),
            ("broadcast_tx_commit", self.broadcast_tx_commit,
             (tx_param, Param("timeout", ParamType.NUMBER,
                              f"Seconds to wait for the block (default and maximum {self.commit_timeout}).",
                              required=False, minimum=0.001, maximum=self.commit_timeout)),
             object_result("{hash, check_tx, committed, height?, lane?, index?}"),
             "Submit a transaction and wait until a block commits it."),
            ("broadcast_evidence", self.broadcast_evidence,
             (Param("evidence", ParamType.HEX, "Encoded evidence, hex: kind 1 DuplicateVoteEvidence or kind 2 "
                    "LightClientAttackEvidence.", max_length=MAX_SUBMITTED_EVIDENCE_BYTES),),
             object_result("{hashes, log}"),
             "Submit evidence of misbehaviour; answers the hashes of the duplicate-vote evidence pooled."),
            ("check_tx", self.check_tx, (tx_param,), object_result("{hash, code, log, error?, check?}"),
             "Check a transaction against the mempool's state without adding it."),
            ("unconfirmed_txs", self.unconfirmed_txs,
             (Param("limit", ParamType.INTEGER, f"Most transactions returned, at most {page_max}.",
                    required=False, minimum=1, maximum=page_max),),
             object_result("{n_txs, total, total_bytes, txs}"), "Transactions in the mempool, oldest first."),
            ("num_unconfirmed_txs", self.num_unconfirmed_txs, (), object_result("{n_txs, total, total_bytes}"),
             "Size of the mempool."),
            ("query", self.query,
             (Param("key", ParamType.HEX, "A raw state key (chain.statekeys), hex.", max_length=4096),
              height_param("Height (default: the latest committed)."), PROVE), STATE_RESULT, "Any state key at a height, with an optional proof."),
            ("account", self.account, (hash32_param("address", "Account address"), height_param("Height (default: the latest committed)."), PROVE),
             STATE_RESULT, "Balance, nonce and stake of an account."),
            ("card", self.card, (hash32_param("card_id", "Card id"), height_param("Height (default: the latest committed)."), PROVE), STATE_RESULT,
             "A hash card (value null if it does not exist, with the proof of absence)."),
            ("cards", self.cards,
             (Param("feed", ParamType.STRING, "Feed: type, creator, tag or comments.",
                    enum=tuple(FEEDS)),
              Param("name", ParamType.STRING,
                    "Content type, creator address (hex), tag, or parent card id (hex).", max_length=256),
              start, limit,
              Param("paid", ParamType.STRING, "Show free cards, paid ones or any.", required=False,
                    default="any", enum=("any", "free", "paid")),
              Param("from_height", ParamType.INTEGER, "Show cards created at or after.", required=False,
                    minimum=0),
              Param("to_height", ParamType.INTEGER, "Show cards created at or before.", required=False,
                    minimum=0),
              height_param("Height (default: the latest committed)."), PROVE),
             object_result("{height, value: {items, cards, ...}, reads, feed_proof}"),
             "A page of a card feed with its Merkle page proof; filters apply to the page's cards."),
            ("seeders", self.seeders, (hash32_param("content_root", "Content root"), height_param("Height (default: the latest committed)."), PROVE),
             STATE_RESULT, "The seeder map of a content."),
            ("key", self.key,
             (hash32_param("card_id", "Card id"),
              Param("serial", ParamType.INTEGER, "Key serial (1-based).", minimum=1, maximum=2**64 - 1),
              height_param("Height (default: the latest committed)."), PROVE), STATE_RESULT, "One key token of a card."),
            ("keys_of", self.keys_of, (hash32_param("owner", "Owner address"), height_param("Height (default: the latest committed)."), PROVE), STATE_RESULT,
             "The key tokens an address holds."),
            ("may_decrypt", self.may_decrypt,
             (hash32_param("address", "Account address"), hash32_param("card_id", "Card id"), height_param("Height (default: the latest committed)."), PROVE),
             STATE_RESULT, "Whether an address is entitled to decrypt a card at a height."),
            ("generic", self.generic,
             (Param("kind", ParamType.STRING, "Generic transaction kind (UTF-8, or 0x-prefixed hex).",
                    max_length=66), start, limit, height_param("Height (default: the latest committed)."), PROVE),
             object_result("{height, value: {txs, ...}, reads, feed_proof}"),
             "Generic transactions of a kind, with the kind feed's page proof."),
        ]
        for name, handler, params, result, summary in specs:
            registry.add(Method(name, handler, params, result, summary, (handler.__doc__ or "").strip()))


def register_methods(registry: Registry, view: NodeView) -> RpcMethods:
    """Register every chain method on `registry`, answering from `view`."""
    methods = RpcMethods(view)
    methods.register(registry)
    return methods


# --- small helpers ------------------------------------------------------------------


def _check_failure(tx_hash: bytes, exc: MempoolError) -> dict[str, Any]:
    out: dict[str, Any] = {"hash": tx_hash.hex(), "code": exc.code, "log": str(exc), "error": type(exc).__name__}
    if isinstance(exc, TxInvalid):
        out["reason"] = type(exc.reason).__name__
    return out


def _kind_bytes(kind: str) -> bytes:
    if kind[:2].lower() == "0x":
        try:
            raw = bytes.fromhex(kind[2:])
        except ValueError:
            raise InvalidParams("parameter 'kind' is not valid hex after 0x", {"param": "kind"}) from None
    else:
        raw = kind.encode()
    if not 1 <= len(raw) <= 32:
        raise InvalidParams("parameter 'kind' must be 1..32 bytes", {"param": "kind"})
    return raw


def _single_read(tree: Any, key: bytes, height: int, prove: bool) -> q.Read:
    if prove:
        value, proof = tree.get_with_proof(key, height)
        return q.Read(key, value, proof)
    return q.Read(key, tree.get(key, height), None)


def _unpack(raw: bytes) -> Any:
    import msgpack

    try:
        return msgpack.unpackb(raw)
    except (ValueError, msgpack.UnpackException) as exc:
        raise DecodeError(f"stored record does not decode: {exc}") from exc


__all__ = ["RpcError", "RpcMethods", "register_methods"]
