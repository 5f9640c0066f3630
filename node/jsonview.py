"""JSON views of chain values, shared by the RPC methods and the CLI.

Bytes are lowercase hex without 0x; heights, amounts and times are integers.
These views are conveniences: an answer a light client verifies also carries
the canonical bytes, and the client decodes those itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from chain import tx as txm
from chain.checktx import CheckResult
from chain.queries import (
    AccountView,
    CardView,
    Entitlement,
    FeedPage,
    GenericTx,
    KeysOf,
    KeyToken,
    Read,
    SeederMap,
)
from chain.state import TxResult
from chain.types import Block, Commit, Header, ValidatorSet


def hexs(data: bytes | None) -> str | None:
    return None if data is None else data.hex()


def plain(value: Any) -> Any:
    """Any dataclass, tuple, list, dict or scalar as JSON (bytes as hex)."""
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    raise TypeError(f"no JSON view of {type(value).__name__}")


# --- consensus values ---------------------------------------------------------


def header_json(h: Header) -> dict[str, Any]:
    return {
        "chain_id": h.chain_id,
        "height": h.height,
        "time_ms": h.time_ms,
        "prev_block_hash": h.prev_block_hash.hex(),
        "last_commit_hash": h.last_commit_hash.hex(),
        "cards_root": h.cards_root.hex(),
        "seeders_root": h.seeders_root.hex(),
        "keys_root": h.keys_root.hex(),
        "txs_root": h.txs_root.hex(),
        "evidence_hash": h.evidence_hash.hex(),
        "validators_hash": h.validators_hash.hex(),
        "next_validators_hash": h.next_validators_hash.hex(),
        "app_hash": h.app_hash.hex(),
        "proposer": h.proposer.hex(),
    }


def commit_json(c: Commit) -> dict[str, Any]:
    return {
        "height": c.height,
        "round": c.round,
        "block_hash": c.block_hash.hex(),
        "signatures": [
            {"validator_index": s.validator_index, "timestamp_ms": s.timestamp_ms, "signature": s.signature.hex()}
            for s in c.signatures
        ],
    }


def block_json(b: Block) -> dict[str, Any]:
    """Header, per-lane counts and transaction hashes, last commit and evidence."""
    lanes = {}
    for lane in txm.LANE_NAMES:
        items = b.lane(lane)
        lanes[lane] = {"count": len(items), "tx_hashes": [txm.tx_hash(raw).hex() for raw in items]}
    return {
        "header": header_json(b.header),
        "num_txs": sum(v["count"] for v in lanes.values()),
        "lanes": lanes,
        "last_commit": None if b.last_commit is None else commit_json(b.last_commit),
        "evidence": [e.hex() for e in b.evidence],
    }


def validators_json(vset: ValidatorSet) -> list[dict[str, Any]]:
    return [{"pub_key": v.pubkey.hex(), "voting_power": v.power} for v in vset.validators]


# --- transactions -------------------------------------------------------------


def body_json(body: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type(body).__name__}
    for f in dataclasses.fields(body):
        out[f.name] = plain(getattr(body, f.name))
    if isinstance(body, txm.Generic):
        out["kind_text"] = body.kind.decode("utf-8", "replace")
    return out


def tx_json(tx: txm.Tx) -> dict[str, Any]:
    return {
        "sender": tx.sender.hex(),
        "nonce": tx.nonce,
        "fee": tx.fee,
        "lane": txm.LANE_NAMES[tx.lane],
        "body": body_json(tx.body),
        "signature": tx.signature.hex(),
    }


def tx_result_json(r: TxResult) -> dict[str, Any]:
    return plain(r)  # type: ignore[no-any-return]


def check_result_json(r: CheckResult) -> dict[str, Any]:
    return {
        "hash": r.tx_hash.hex(),
        "lane": r.lane,
        "sender": r.sender.hex(),
        "nonce": r.nonce,
        "fee": r.fee,
        "size": r.size,
        "gas_used": r.gas_used,
    }


# --- state answers --------------------------------------------------------------


def read_json(r: Read) -> dict[str, Any]:
    out: dict[str, Any] = {"key": r.key.hex(), "value": hexs(r.value)}
    if r.proof is not None:
        out["proof"] = r.proof.encode().hex()
    return out


def account_json(a: AccountView) -> dict[str, Any]:
    return {"address": a.address.hex(), "balance": a.balance, "nonce": a.nonce, "stake": a.stake}


def card_json(c: CardView) -> dict[str, Any]:
    offer = None
    if c.offer is not None:
        price, cap, royalty, timeout, program, params = c.offer
        offer = {
            "price": price,
            "supply_cap": cap,
            "royalty_bps": royalty,
            "delivery_timeout": timeout,
            "program": program.hex(),
            "params": list(params),
        }
    return {
        "card_id": c.card_id.hex(),
        "creator": c.creator.hex(),
        "content_root": c.content_root.hex(),
        "size": c.size,
        "chunk_size": c.chunk_size,
        "cipher": c.cipher,
        "content_type": c.content_type,
        "title": c.title,
        "tags": list(c.tags),
        "links": [x.hex() for x in c.links],
        "preview": c.preview.hex(),
        "preview_hash": c.preview_hash.hex(),
        "parent": c.parent.hex(),
        "created_height": c.created_height,
        "updated_height": c.updated_height,
        "reactions": dict(zip(txm.REACTIONS[1:], c.reactions, strict=False)),
        "comments": c.comments,
        "offer": offer,
        "free": offer is None or offer["price"] == 0,
        "keys_sold": c.keys_sold,
    }


def seeders_json(m: SeederMap) -> dict[str, Any]:
    return {
        "content_root": m.content_root.hex(),
        "seeders": [
            {
                "seeder": e.seeder.hex(),
                "addresses": list(e.addresses),
                "ranges": [list(r) for r in e.ranges],
                "expiry_height": e.expiry_height,
                "announced_height": e.announced_height,
            }
            for e in m.entries
        ],
    }


def token_json(t: KeyToken) -> dict[str, Any]:
    return {
        "card_id": t.card_id.hex(),
        "serial": t.serial,
        "owner": t.owner.hex(),
        "acquired_height": t.acquired_height,
        "times_resold": t.times_resold,
        "sealed_key": t.sealed_key.hex(),
    }


def keys_of_json(k: KeysOf) -> dict[str, Any]:
    return {"owner": k.owner.hex(), "tokens": [token_json(t) for t in k.tokens]}


def entitlement_json(e: Entitlement) -> dict[str, Any]:
    return {"allowed": e.allowed, "why": e.why, "serial": e.serial}


def generic_tx_json(g: GenericTx) -> dict[str, Any]:
    return {
        "tx_hash": g.tx_hash.hex(),
        "kind": g.kind.hex(),
        "kind_text": g.kind.decode("utf-8", "replace"),
        "payload": g.payload.hex(),
        "sender": g.sender.hex(),
        "height": g.height,
    }


def feed_proof_json(p: FeedPage) -> dict[str, Any]:
    """What chain.queries.verify_feed_page needs, as JSON."""
    return {
        "feed_id": p.feed_id.hex(),
        "length": p.length,
        "root": p.root.hex(),
        "start": p.start,
        "stop": p.stop,
        "items": [x.hex() for x in p.items],
        "mmr_proof": [x.hex() for x in p.mmr_proof],
        "head": read_json(p.head),
    }
