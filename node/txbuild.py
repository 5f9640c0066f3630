"""Build and sign transactions of every body type from plain arguments.

Shared by the CLI, tools/loadgen.py and tools/devnet.py. Builders take Python
values (bytes, ints, strings) and return chain.tx bodies; :func:`sign` wraps a
body in a signed envelope with the smallest sufficient fee unless one is
given, and checks that the result decodes as the chain will decode it, so a
bad argument is a :class:`TxBuildError` here and not a rejection at the node.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from chain import crypto
from chain import tx as txm
from chain.errors import ChainError, DecodeError
from chain.params import AppParams
from node.errors import NodeError

MAX_FEE_ROUNDS = 8


class TxBuildError(NodeError):
    """A transaction cannot be built from these arguments (the user's fault)."""


def parse_hex(text: str, name: str, size: int | None = None) -> bytes:
    """Hex (optionally 0x-prefixed) to bytes, of ``size`` bytes when given."""
    raw = text.strip().lower()
    raw = raw.removeprefix("0x")
    if not re.fullmatch(r"(?:[0-9a-f]{2})*", raw):
        raise TxBuildError(f"{name}: not hex: {text[:80]!r}")
    out = bytes.fromhex(raw)
    if size is not None and len(out) != size:
        raise TxBuildError(f"{name}: expected {size} bytes ({2 * size} hex digits), got {len(out)}")
    return out


def _amount(value: int, name: str) -> int:
    if type(value) is not int or not 0 <= value <= txm.MAX_AMOUNT:
        raise TxBuildError(f"{name}: must be an integer in [0, {txm.MAX_AMOUNT}], got {value!r}")
    return value


def _hash(value: bytes, name: str, *, optional: bool = False) -> bytes:
    if type(value) is not bytes or not (len(value) == 32 or (optional and not value)):
        raise TxBuildError(f"{name}: must be 32 bytes")
    return value


# --- cards lane -------------------------------------------------------------


def key_offer(
    price: int,
    *,
    supply_cap: int = 0,
    royalty_bps: int = 0,
    delivery_timeout: int = 0,
    rule: str | None = None,
    program: bytes = b"",
    params: Sequence[int] = (),
    allowlist: Iterable[bytes] = (),
) -> txm.KeyOffer:
    """Sale terms; ``rule`` names a vm.stdlib rule (its bytecode becomes the program)."""
    if rule is not None:
        import vm.stdlib
        from vm.errors import VMError

        try:
            members = list(allowlist)
            program = (
                vm.stdlib.program(rule, allowlist=members) if rule == "allowlist" else vm.stdlib.program(rule)
            )
        except VMError as exc:
            raise TxBuildError(f"rule: {exc}") from exc
    if not 0 <= royalty_bps <= txm.MAX_ROYALTY_BPS:
        raise TxBuildError(f"royalty_bps: must be in [0, {txm.MAX_ROYALTY_BPS}], got {royalty_bps}")
    return txm.KeyOffer(
        price=_amount(price, "price"),
        supply_cap=_amount(supply_cap, "supply_cap"),
        royalty_bps=royalty_bps,
        delivery_timeout=_amount(delivery_timeout, "delivery_timeout"),
        program=program,
        params=tuple(_amount(p, "params") for p in params),
    )


def publish_card(
    *,
    content_root: bytes,
    size: int,
    chunk_size: int,
    content_type: str,
    title: str,
    tags: Sequence[str] = (),
    links: Sequence[bytes] = (),
    preview: bytes = b"",
    preview_hash: bytes = b"",
    parent: bytes = b"",
    offer: txm.KeyOffer | None = None,
    cipher: str = txm.CIPHERS[0],
) -> txm.PublishCard:
    if content_type not in txm.CONTENT_TYPES:
        raise TxBuildError(f"content type must be one of {', '.join(txm.CONTENT_TYPES)}, got {content_type!r}")
    if cipher not in txm.CIPHERS:
        raise TxBuildError(f"cipher must be one of {', '.join(txm.CIPHERS)}, got {cipher!r}")
    if preview and preview_hash:
        raise TxBuildError("give an inline preview or a preview hash, not both")
    if not txm.MIN_CHUNK_SIZE <= chunk_size <= txm.MAX_CHUNK_SIZE or chunk_size & (chunk_size - 1):
        raise TxBuildError(
            f"chunk size must be a power of two in [{txm.MIN_CHUNK_SIZE}, {txm.MAX_CHUNK_SIZE}], got {chunk_size}"
        )
    if not 1 <= size <= txm.MAX_CONTENT_SIZE:
        raise TxBuildError(f"size must be in [1, {txm.MAX_CONTENT_SIZE}], got {size}")
    return txm.PublishCard(
        content_root=_hash(content_root, "content_root"),
        size=size,
        chunk_size=chunk_size,
        cipher=cipher,
        content_type=content_type,
        title=title,
        tags=tuple(tags),
        links=tuple(_hash(x, "link") for x in links),
        preview=preview,
        preview_hash=_hash(preview_hash, "preview_hash", optional=True),
        parent=_hash(parent, "parent", optional=True),
        offer=offer,
    )


def update_card(
    card_id: bytes, *, title: str, links: Sequence[bytes] = (), preview: bytes = b"", preview_hash: bytes = b""
) -> txm.UpdateCard:
    return txm.UpdateCard(
        _hash(card_id, "card_id"),
        title,
        tuple(_hash(x, "link") for x in links),
        preview,
        _hash(preview_hash, "preview_hash", optional=True),
    )


def react(card_id: bytes, reaction: str | int) -> txm.React:
    if isinstance(reaction, str):
        if reaction not in txm.REACTIONS:
            raise TxBuildError(f"reaction must be one of {', '.join(txm.REACTIONS)}, got {reaction!r}")
        reaction = txm.REACTIONS.index(reaction)
    if not 0 <= reaction < len(txm.REACTIONS):
        raise TxBuildError(f"reaction index must be in [0, {len(txm.REACTIONS) - 1}]")
    return txm.React(_hash(card_id, "card_id"), reaction)


def follow(creator: bytes) -> txm.Follow:
    return txm.Follow(_hash(creator, "creator"))


def unfollow(creator: bytes) -> txm.Unfollow:
    return txm.Unfollow(_hash(creator, "creator"))


# --- seeders lane -------------------------------------------------------------


def announce(
    content_root: bytes, addresses: Sequence[str], ranges: Sequence[tuple[int, int]], expiry_height: int
) -> txm.Announce:
    if not addresses:
        raise TxBuildError("an announcement needs at least one address")
    for start, stop in ranges:
        if not 0 <= start < stop:
            raise TxBuildError(f"chunk range [{start}, {stop}) is empty or negative")
    return txm.Announce(
        _hash(content_root, "content_root"), tuple(addresses), tuple(ranges), _amount(expiry_height, "expiry_height")
    )


def parse_ranges(text: str) -> tuple[tuple[int, int], ...]:
    """``"0-10,20-30"`` -> ((0, 10), (20, 30)): [start, stop) chunk ranges."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"(\d+)-(\d+)", part)
        if m is None:
            raise TxBuildError(f"chunk range {part!r}: expected START-STOP")
        out.append((int(m.group(1)), int(m.group(2))))
    if not out:
        raise TxBuildError("at least one chunk range is needed")
    return tuple(out)


def withdraw(content_root: bytes) -> txm.Withdraw:
    return txm.Withdraw(_hash(content_root, "content_root"))


# --- keys lane ----------------------------------------------------------------


def buy_key(card_id: bytes, max_price: int, serial: int = 0) -> txm.BuyKey:
    return txm.BuyKey(_hash(card_id, "card_id"), _amount(serial, "serial"), _amount(max_price, "max_price"))


def seal_key(recipient: bytes, content_key: bytes) -> bytes:
    """The content key sealed to ``recipient``'s account key."""
    try:
        return crypto.seal(_hash(recipient, "recipient"), content_key)
    except ChainError as exc:
        raise TxBuildError(f"cannot seal to {recipient.hex()}: {exc}") from exc


def deliver_key(card_id: bytes, serial: int, buyer: bytes, content_key: bytes) -> txm.DeliverKey:
    if serial < 1:
        raise TxBuildError("serial: keys are numbered from 1")
    return txm.DeliverKey(_hash(card_id, "card_id"), serial, seal_key(buyer, content_key))


def list_key(card_id: bytes, serial: int, price: int) -> txm.ListKey:
    if serial < 1:
        raise TxBuildError("serial: keys are numbered from 1")
    return txm.ListKey(_hash(card_id, "card_id"), serial, _amount(price, "price"))


def transfer_key(card_id: bytes, serial: int, to: bytes, content_key: bytes) -> txm.TransferKey:
    if serial < 1:
        raise TxBuildError("serial: keys are numbered from 1")
    return txm.TransferKey(_hash(card_id, "card_id"), serial, _hash(to, "to"), seal_key(to, content_key))


# --- txs lane -----------------------------------------------------------------


def transfer(to: bytes, amount: int) -> txm.Transfer:
    return txm.Transfer(_hash(to, "to"), _amount(amount, "amount"))


def bond(amount: int) -> txm.Bond:
    return txm.Bond(_amount(amount, "amount"))


def unbond(amount: int) -> txm.Unbond:
    return txm.Unbond(_amount(amount, "amount"))


def generic(kind: bytes, payload: bytes) -> txm.Generic:
    if not 1 <= len(kind) <= 32:
        raise TxBuildError("kind: must have 1..32 bytes")
    return txm.Generic(kind, payload)


# --- envelope -----------------------------------------------------------------


def min_fee(app: AppParams, size: int) -> int:
    """The chain's minimum fee for ``size`` encoded bytes (chain.state.compute_min_fee)."""
    return max(app.min_fee, app.fee_per_byte * size)


def sign(
    key: crypto.PrivateKey,
    chain_id: str,
    nonce: int,
    body: txm.AnyBody,
    *,
    fee: int | None = None,
    app: AppParams | None = None,
) -> tuple[txm.Tx, bytes]:
    """Sign ``body``; without ``fee`` the smallest fee the chain accepts for its size.

    The fee is part of the signed bytes and its encoding length depends on its
    value, so the minimum is found by iterating to the fixed point (it grows
    monotonically and settles within a few rounds).
    """
    app = app if app is not None else AppParams()
    if type(nonce) is not int or nonce < 0:
        raise TxBuildError(f"nonce must be a non-negative integer, got {nonce!r}")
    chosen = 0 if fee is None else _amount(fee, "fee")
    try:
        for _ in range(MAX_FEE_ROUNDS):
            tx = txm.Tx.create(key, chain_id, nonce, chosen, body)
            data = tx.encode()
            need = min_fee(app, len(data))
            if fee is not None or chosen >= need:
                break
            chosen = need
        else:  # pragma: no cover - the fee's encoding grows by at most 8 bytes
            raise TxBuildError("could not settle the minimum fee")
        txm.Tx.decode_untrusted(data, app.max_tx_bytes)
    except DecodeError as exc:
        raise TxBuildError(f"invalid transaction: {exc}") from exc
    except (OverflowError, ValueError, TypeError) as exc:
        raise TxBuildError(f"invalid transaction field: {exc}") from exc
    except ChainError as exc:
        raise TxBuildError(str(exc)) from exc
    return tx, data
