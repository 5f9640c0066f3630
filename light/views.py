"""JSON renderings of query values, in the node's answer shapes (docs/rpc.md, State).

The light client renders the values it recomputed and compares them with the
`value` a node sent: a node that alters its JSON view is caught even though the
client never uses that view. The shapes are docs/rpc.md's; light/ cannot import
node/, so they are written out here.
"""

from __future__ import annotations

from typing import Any

from chain import tx as txm
from chain.queries import AccountView, CardView, Entitlement, KeyToken, SeederMap


def account(a: AccountView) -> dict[str, Any]:
    return {"address": a.address.hex(), "balance": a.balance, "nonce": a.nonce, "stake": a.stake}


def card(c: CardView) -> dict[str, Any]:
    offer = None
    if c.offer is not None:
        price, cap, royalty, timeout, program, params = c.offer
        offer = {"price": price, "supply_cap": cap, "royalty_bps": royalty, "delivery_timeout": timeout,
                 "program": program.hex(), "params": list(params)}
    return {
        "card_id": c.card_id.hex(), "creator": c.creator.hex(), "content_root": c.content_root.hex(),
        "size": c.size, "chunk_size": c.chunk_size, "cipher": c.cipher, "content_type": c.content_type,
        "title": c.title, "tags": list(c.tags), "links": [x.hex() for x in c.links],
        "preview": c.preview.hex(), "preview_hash": c.preview_hash.hex(), "parent": c.parent.hex(),
        "created_height": c.created_height, "updated_height": c.updated_height,
        "reactions": dict(zip(txm.REACTIONS[1:], c.reactions, strict=False)), "comments": c.comments,
        "offer": offer, "free": offer is None or offer["price"] == 0, "keys_sold": c.keys_sold,
    }  # fmt: skip


def seeders(m: SeederMap) -> dict[str, Any]:
    return {
        "content_root": m.content_root.hex(),
        "seeders": [
            {"seeder": e.seeder.hex(), "addresses": list(e.addresses), "ranges": [list(r) for r in e.ranges],
             "expiry_height": e.expiry_height, "announced_height": e.announced_height}
            for e in m.entries
        ],
    }


def token(t: KeyToken) -> dict[str, Any]:
    return {"card_id": t.card_id.hex(), "serial": t.serial, "owner": t.owner.hex(),
            "acquired_height": t.acquired_height, "times_resold": t.times_resold,
            "sealed_key": t.sealed_key.hex()}


def entitlement(e: Entitlement, address: bytes, card_id: bytes, time_ms: int) -> dict[str, Any]:
    return {"allowed": e.allowed, "why": e.why, "serial": e.serial, "address": address.hex(),
            "card_id": card_id.hex(), "time_ms": time_ms}
