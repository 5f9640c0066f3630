"""Every key INSIDE the authenticated state tree, in one place.

The state tree (storage.state.StateTree) hashes its keys, so it cannot list a
prefix: every collection that must be enumerated (the seeders of a content, the
tokens of an owner, what falls due at a height) is kept as an *indexed set*:
a count key, one item key per position and one position key per member, so
each member and the count can be proven on their own. Append-only feeds use
the Merkle list of chain.mmr (head, items and interior nodes).

Layout: one tag byte, then fixed-width fields; integers are big-endian (u64
heights, serials and positions; u8 small enums); addresses and ids are 32
bytes. docs/spec-state.md lists every key with its value's encoding.
"""

from __future__ import annotations

import blake3

ADDRESS_SIZE = 32
ID_SIZE = 32

# Tag bytes. Never reuse a retired tag.
T_META = 0x00
T_ACCOUNT = 0x01
T_CARD = 0x02
T_CARD_SOCIAL = 0x03
T_REACTION = 0x04
T_FOLLOW = 0x05
T_CREATOR_SOCIAL = 0x06
T_SEEDER = 0x10
T_KEY_CLASS = 0x20
T_KEY_SUPPLY = 0x21
T_TOKEN = 0x22
T_ESCROW = 0x23
T_LISTING = 0x24
T_HOLDING = 0x25
T_STAKE = 0x30
T_VALSET = 0x31
T_VALUPDATES = 0x32
T_UNBONDING = 0x33
T_EVIDENCE_SEEN = 0x34
T_JAILED = 0x35
T_JAIL_DEFERRED = 0x36
T_GENERIC = 0x40
T_APP_RECORD = 0x50
T_SET_COUNT = 0x60
T_SET_ITEM = 0x61
T_SET_POS = 0x62
T_FEED_HEAD = 0x70
T_FEED_ITEM = 0x71
T_FEED_NODE = 0x72

# Indexed-set spaces (the byte after T_SET_*).
S_SEEDERS_OF = 0x01  # set id: content root; items: chunks of 128 seeder addresses
S_TOKENS_OF = 0x02  # set id: owner address; member: card id ‖ u64 serial
S_DUE = 0x03  # set id: u64 height; items: chunks of due-items (see due_* below)

# Feed classes (the first byte of a 33-byte feed id).
F_CONTENT_TYPE = 0x01
F_CREATOR = 0x02
F_TAG = 0x03
F_KIND = 0x04
F_COMMENTS = 0x05

# What falls due at a height (members of S_DUE sets).
DUE_SEEDER = 0x01  # ‖ content root ‖ seeder
DUE_ESCROW = 0x02  # ‖ card id ‖ u64 serial
DUE_UNBOND = 0x03  # ‖ validator address


def u8(n: int) -> bytes:
    return n.to_bytes(1, "big")


def u32(n: int) -> bytes:
    return n.to_bytes(4, "big")


def u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


META = bytes([T_META])
"""Chain meta record: [height, time_ms, last_block_hash] of the last applied block."""


def account(address: bytes) -> bytes:
    return bytes([T_ACCOUNT]) + address


def card(card_id: bytes) -> bytes:
    return bytes([T_CARD]) + card_id


def card_social(card_id: bytes) -> bytes:
    return bytes([T_CARD_SOCIAL]) + card_id


def reaction(card_id: bytes, user: bytes) -> bytes:
    return bytes([T_REACTION]) + card_id + user


def follow(follower: bytes, creator: bytes) -> bytes:
    return bytes([T_FOLLOW]) + follower + creator


def creator_social(creator: bytes) -> bytes:
    return bytes([T_CREATOR_SOCIAL]) + creator


def seeder(content_root: bytes, seeder_address: bytes) -> bytes:
    return bytes([T_SEEDER]) + content_root + seeder_address


def key_class(card_id: bytes) -> bytes:
    return bytes([T_KEY_CLASS]) + card_id


def key_supply(card_id: bytes) -> bytes:
    return bytes([T_KEY_SUPPLY]) + card_id


def token(card_id: bytes, serial: int) -> bytes:
    return bytes([T_TOKEN]) + card_id + u64(serial)


def escrow(card_id: bytes, serial: int) -> bytes:
    return bytes([T_ESCROW]) + card_id + u64(serial)


def listing(card_id: bytes, serial: int) -> bytes:
    return bytes([T_LISTING]) + card_id + u64(serial)


def holding(owner: bytes, card_id: bytes) -> bytes:
    """Number of delivered tokens of a card an owner holds: "may X decrypt C"."""
    return bytes([T_HOLDING]) + owner + card_id


def stake(validator: bytes) -> bytes:
    return bytes([T_STAKE]) + validator


def valset(height: int) -> bytes:
    return bytes([T_VALSET]) + u64(height)


def valupdates(height: int) -> bytes:
    return bytes([T_VALUPDATES]) + u64(height)


def unbonding(release_height: int, validator: bytes) -> bytes:
    return bytes([T_UNBONDING]) + u64(release_height) + validator


def evidence_seen(evidence_hash: bytes) -> bytes:
    return bytes([T_EVIDENCE_SEEN]) + evidence_hash


def jailed(validator: bytes) -> bytes:
    """Tombstone of a validator jailed for equivocation: u64 height of the jailing."""
    return bytes([T_JAILED]) + validator


JAIL_DEFERRED = bytes([T_JAIL_DEFERRED])
"""Jailed validators still bonded because removing them would empty the set: sorted list of addresses."""


def generic(tx_hash: bytes) -> bytes:
    return bytes([T_GENERIC]) + tx_hash


def app_record(name: bytes) -> bytes:
    """Opaque genesis app-state record (name up to 64 bytes, stored as given)."""
    return bytes([T_APP_RECORD]) + name


# Indexed sets -------------------------------------------------------------


def set_count(space: int, set_id: bytes) -> bytes:
    return bytes([T_SET_COUNT, space]) + set_id


def set_item(space: int, set_id: bytes, position: int) -> bytes:
    return bytes([T_SET_ITEM, space]) + set_id + u64(position)


def set_pos(space: int, set_id: bytes, member: bytes) -> bytes:
    return bytes([T_SET_POS, space]) + set_id + member


def due_set(height: int) -> bytes:
    return u64(height)


def due_seeder(content_root: bytes, seeder_address: bytes) -> bytes:
    return bytes([DUE_SEEDER]) + content_root + seeder_address


def due_escrow(card_id: bytes, serial: int) -> bytes:
    return bytes([DUE_ESCROW]) + card_id + u64(serial)


def due_unbond(validator: bytes) -> bytes:
    return bytes([DUE_UNBOND]) + validator


def token_member(card_id: bytes, serial: int) -> bytes:
    return card_id + u64(serial)


# Feeds --------------------------------------------------------------------


def feed_id(feed_class: int, name: bytes) -> bytes:
    """33 bytes: the class byte, then the creator's address or blake3(name)."""
    if feed_class in (F_CREATOR, F_COMMENTS):
        return bytes([feed_class]) + name
    return bytes([feed_class]) + blake3.blake3(name).digest()


def feed_head(fid: bytes) -> bytes:
    return bytes([T_FEED_HEAD]) + fid


def feed_item(fid: bytes, index: int) -> bytes:
    return bytes([T_FEED_ITEM]) + fid + u64(index)


def feed_node(fid: bytes, level: int, index: int) -> bytes:
    return bytes([T_FEED_NODE]) + fid + u8(level) + u64(index)
