from __future__ import annotations

import pytest

from chain import crypto
from chain import tx as txm
from chain.params import AppParams
from chain.state import compute_min_fee
from node import txbuild as tb

KEY = crypto.PrivateKey(bytes(range(32)))
OTHER = crypto.PrivateKey(bytes(range(1, 33)))
H = bytes(range(32))


def _bodies() -> list[txm.AnyBody]:
    content_key = bytes(32)
    return [
        tb.transfer(OTHER.public_key.raw, 5),
        tb.publish_card(
            content_root=H, size=2048, chunk_size=1024, content_type="text", title="t",
            tags=["a", "b"], preview=b"pv", offer=tb.key_offer(10, supply_cap=3, rule="hold_blocks", params=[5]),
        ),
        tb.publish_card(content_root=H, size=1, chunk_size=1024, content_type="video", title="x", preview_hash=H),
        tb.update_card(H, title="new", links=[H]),
        tb.react(H, "love"),
        tb.follow(H),
        tb.unfollow(H),
        tb.announce(H, ["127.0.0.1:4000"], tb.parse_ranges("0-2,5-9"), 100),
        tb.withdraw(H),
        tb.buy_key(H, 10),
        tb.deliver_key(H, 1, OTHER.public_key.raw, content_key),
        tb.list_key(H, 1, 7),
        tb.transfer_key(H, 1, OTHER.public_key.raw, content_key),
        tb.bond(1_000_000),
        tb.unbond(1),
        tb.generic(b"app.kind", b"payload"),
    ]  # fmt: skip


def test_every_body_signs_with_the_minimum_fee_and_decodes() -> None:
    app = AppParams(fee_per_byte=3, min_fee=100)
    kinds = set()
    for body in _bodies():
        tx, data = tb.sign(KEY, "chain-1", 7, body, app=app)
        kinds.add(type(body))
        assert txm.Tx.decode_untrusted(data) == tx
        assert tx.verify_signature("chain-1")
        assert not tx.verify_signature("chain-2")
        need = compute_min_fee(app, len(data))
        assert tx.fee >= need
        # one less would not do: the fee found is the smallest sufficient one
        smaller = txm.Tx.create(KEY, "chain-1", 7, tx.fee - 1, body).encode()
        assert tx.fee - 1 < compute_min_fee(app, len(smaller))
    assert len(kinds) == len(txm.BODY_TYPES) - 1  # all but SubmitEvidence, which the node files itself


def test_explicit_fee_is_kept() -> None:
    tx, _ = tb.sign(KEY, "c", 0, tb.bond(5), fee=12345)
    assert tx.fee == 12345


def test_sealed_key_opens_for_the_recipient_only() -> None:
    body = tb.deliver_key(H, 1, OTHER.public_key.raw, b"k" * 32)
    assert crypto.unseal(OTHER, body.sealed_key) == b"k" * 32
    with pytest.raises(crypto.UnsealError):
        crypto.unseal(KEY, body.sealed_key)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: tb.transfer(H, -1), "amount"),
        (lambda: tb.transfer(b"short", 1), "to"),
        (lambda: tb.react(H, "meh"), "reaction"),
        (lambda: tb.publish_card(content_root=H, size=1, chunk_size=1024, content_type="nope", title="t"), "content type"),
        (lambda: tb.publish_card(content_root=H, size=1, chunk_size=1024, content_type="text", title="t", preview=b"p", preview_hash=H), "not both"),
        (lambda: tb.key_offer(1, rule="no_such_rule"), "rule"),
        (lambda: tb.key_offer(1, royalty_bps=10_001), "royalty"),
        (lambda: tb.announce(H, [], ((0, 1),), 5), "address"),
        (lambda: tb.parse_ranges("3-x"), "START-STOP"),
        (lambda: tb.announce(H, ["a:1"], ((3, 3),), 5), "empty"),
        (lambda: tb.deliver_key(H, 0, H, b"k"), "serial"),
        (lambda: tb.generic(b"", b""), "kind"),
        (lambda: tb.parse_hex("zz", "card"), "not hex"),
        (lambda: tb.parse_hex("ab", "card", 32), "32 bytes"),
        (lambda: tb.sign(KEY, "c", -1, tb.bond(1)), "nonce"),
        (lambda: tb.sign(KEY, "bad chain id!" * 10, 0, tb.bond(1)), "chain id"),
    ],
)
def test_bad_arguments_are_typed_errors(build, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(tb.TxBuildError, match=match):
        build()


def test_structural_limits_surface_as_build_errors() -> None:
    body = tb.publish_card(content_root=H, size=1, chunk_size=1024, content_type="text", title="t", tags=["x"] * 2000)
    with pytest.raises(tb.TxBuildError, match="tags"):
        tb.sign(KEY, "c", 0, body)
    with pytest.raises(tb.TxBuildError):
        tb.sign(KEY, "c", 0, tb.generic(b"k", b"x" * 70_000))  # above max_tx_bytes
