"""Pure cores: channels and send queues, gossip seen-cache, peer exchange codec, identity."""

from __future__ import annotations

import pytest
from blake3 import blake3
from hypothesis import given
from hypothesis import strategies as st

from p2p import pex
from p2p.channels import (
    DEFAULT_CHANNELS,
    PEX,
    ChannelSpec,
    Overflow,
    Push,
    SendQueue,
    check_channels,
)
from p2p.errors import (
    ConfigError,
    KeyFileError,
    P2PError,
    PeerIdentityError,
    RemoteProtocolError,
)
from p2p.framing import StreamDecoder
from p2p.gossip import SeenCache, compute_forward_targets, message_id
from p2p.identity import NodeKey, parse_peer_address, parse_peer_id, peer_id_from_certificate

# -- channels ---------------------------------------------------------------------


def _specs() -> dict[int, ChannelSpec]:
    return check_channels(
        [
            ChannelSpec(PEX, "pex", 3, 10, 20, Overflow.DROP),
            ChannelSpec(1, "consensus", 0, 10, 20, Overflow.DISCONNECT),
            ChannelSpec(3, "mempool", 2, 10, 20, Overflow.DROP),
            ChannelSpec(2, "blocks", 1, 10, 20, Overflow.DISCONNECT),
        ]
    )


def test_default_priorities_consensus_blocks_mempool_pex() -> None:
    order = [s.name for s in sorted(DEFAULT_CHANNELS, key=lambda s: s.priority)]
    assert order == ["consensus", "blocks", "mempool", "pex"]


def test_queue_gives_channels_in_priority_order() -> None:
    q = SendQueue(_specs())
    for ch in (PEX, 3, 2, 1):
        assert q.push(ch, b"12345") is Push.QUEUED
    assert q.pending_channels() == [1, 2, 3, PEX]


def test_queue_overflow_policy_per_channel() -> None:
    q = SendQueue(_specs())
    for ch in (1, 3):
        assert q.push(ch, b"x" * 10) is Push.QUEUED
        assert q.push(ch, b"x" * 10) is Push.QUEUED
    # mempool may drop, consensus must not: the peer is too slow
    assert q.push(3, b"y") is Push.DROPPED
    assert q.push(1, b"y") is Push.OVERFLOW
    assert q.queued_bytes(3) == 20
    assert q.queued_bytes() == 40


def test_take_respects_budget_but_returns_at_least_one_frame() -> None:
    q = SendQueue(_specs())
    q.push(1, b"aaaa")
    q.push(1, b"bbbb")
    q.push(1, b"cc")
    assert q.take(1, 5) == b"aaaa"
    assert q.take(1, 1) == b"bbbb"
    assert q.take(1, 100) == b"cc"
    assert q.pending_channels() == []


def test_channel_spec_validation() -> None:
    with pytest.raises(ConfigError):
        ChannelSpec(300, "x", 0, 10, 10, Overflow.DROP)
    with pytest.raises(ConfigError):
        ChannelSpec(1, "x", 0, 10, 5, Overflow.DROP)
    with pytest.raises(ConfigError):
        ChannelSpec(1, "x", 0, 10, 17, Overflow.DROP)  # no room for the prefix
    with pytest.raises(ConfigError):
        check_channels([ChannelSpec(1, "x", 0, 10, 18, Overflow.DROP)])  # no channel 0
    with pytest.raises(ConfigError):
        check_channels([ChannelSpec(0, "a", 0, 10, 18, Overflow.DROP)] * 2)


# -- gossip -----------------------------------------------------------------------------


def test_message_id_is_blake3_of_frame() -> None:
    assert message_id(b"vote") == blake3(b"vote").digest()


def test_seen_cache_records_senders_and_expires() -> None:
    c = SeenCache(capacity=10, ttl=5.0)
    mid = message_id(b"m")
    assert c.observe(mid, b"A", now=0.0) is True
    assert c.observe(mid, b"B", now=1.0) is False
    assert c.senders(mid) == {b"A", b"B"}
    assert compute_forward_targets([b"A", b"B", b"C"], c.senders(mid)) == [b"C"]
    assert c.observe(mid, b"C", now=4.9) is False
    # past the ttl the id is forgotten and counts as new again
    assert c.observe(mid, b"C", now=5.1) is True
    assert c.senders(mid) == {b"C"}


def test_seen_cache_is_bounded_oldest_first() -> None:
    c = SeenCache(capacity=3, ttl=100.0, max_senders=2)
    ids = [message_id(bytes([i])) for i in range(5)]
    for i, mid in enumerate(ids):
        c.observe(mid, None, now=float(i))
    assert len(c) == 3
    assert ids[0] not in c and ids[1] not in c and ids[4] in c
    for s in (b"a", b"b", b"c"):
        c.observe(ids[4], s, now=10.0)
    assert len(c.senders(ids[4])) == 2


def test_seen_cache_config() -> None:
    with pytest.raises(ConfigError):
        SeenCache(capacity=0)


# -- peer exchange ----------------------------------------------------------------------

PID = bytes(range(32))


@pytest.mark.parametrize(
    ("msg", "hexed"),
    [
        (pex.Hello(26656), "92 00 cd 68 20"),
        (pex.Request(), "91 01"),
        (
            pex.Addrs(((PID, ("10.0.0.1", 5)),)),
            "92 02 91 93 c4 20" + PID.hex() + " a8 31302e302e302e31 05",
        ),
    ],
)
def test_pex_golden(msg: pex.PexMessage, hexed: str) -> None:
    data = bytes.fromhex(hexed.replace(" ", ""))
    assert pex.encode_pex(msg) == data
    assert pex.decode_pex_untrusted(data) == msg


@pytest.mark.parametrize(
    "hexed",
    [
        "",  # empty
        "c1",  # never-used msgpack byte
        "90",  # empty array
        "9100",  # HELLO without port
        "920d00",  # unknown tag 13
        "9200d100 20",  # port as int16: non-canonical
        "9200 ce00010000",  # port 65536
        "920291 93c403616263a1610 5".replace(" ", ""),  # short peer id
        "9101 00",  # trailing byte
        "82 00 01 01 02",  # a map
    ],
)
def test_pex_rejects_bad_input(hexed: str) -> None:
    with pytest.raises(RemoteProtocolError):
        pex.decode_pex_untrusted(bytes.fromhex(hexed.replace(" ", "")))


def test_pex_caps_address_count() -> None:
    entries = tuple((PID, ("h", i)) for i in range(pex.MAX_ADDRS + 1))
    import msgpack

    raw = msgpack.packb([2, [[p, h, port] for p, (h, port) in entries]], use_bin_type=True)
    with pytest.raises(RemoteProtocolError):
        pex.decode_pex_untrusted(raw)
    assert len(pex.decode_pex_untrusted(pex.encode_pex(pex.Addrs(entries))).entries) == 64


# -- identity ---------------------------------------------------------------------------


def test_peer_id_is_the_public_key_and_bound_in_certificate() -> None:
    key = NodeKey.from_seed(b"\x01" * 32)
    assert len(key.peer_id) == 32
    assert peer_id_from_certificate(key.certificate()) == key.peer_id
    # deterministic certificate: no clock, no randomness
    assert key.certificate() == NodeKey.from_seed(b"\x01" * 32).certificate()
    assert NodeKey.generate().peer_id != key.peer_id


def test_certificate_checks() -> None:
    with pytest.raises(PeerIdentityError):
        peer_id_from_certificate(None)
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ec_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    t = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(ec_key.public_key()).serial_number(1)
        .not_valid_before(t).not_valid_after(t + datetime.timedelta(days=1))
        .sign(ec_key, hashes.SHA256())
    )
    with pytest.raises(PeerIdentityError):
        peer_id_from_certificate(cert)


def test_key_file_round_trip_and_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = NodeKey.generate()
    path = tmp_path / "node_key"
    key.save(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert NodeKey.load(path).peer_id == key.peer_id
    with pytest.raises(KeyFileError):
        key.save(path)  # never overwrites a key
    with pytest.raises(KeyFileError):
        NodeKey.load(tmp_path / "missing")
    (tmp_path / "bad").write_text("zz")
    with pytest.raises(KeyFileError):
        NodeKey.load(tmp_path / "bad")
    (tmp_path / "short").write_text("abcd")
    with pytest.raises(KeyFileError):
        NodeKey.load(tmp_path / "short")
    with pytest.raises(ConfigError):
        NodeKey.from_seed(b"short")


def test_parse_peer_address() -> None:
    pid = NodeKey.generate().peer_id
    assert parse_peer_address(f"{pid.hex()}@127.0.0.1:26656") == (pid, ("127.0.0.1", 26656))
    assert parse_peer_address(f"{pid.hex()}@[::1]:5") == (pid, ("::1", 5))
    for bad in ("nope", f"{pid.hex()}@host", f"{pid.hex()}@h:0", f"{pid.hex()}@h:x", "ab@h:1"):
        with pytest.raises(ConfigError):
            parse_peer_address(bad)
    with pytest.raises(ConfigError):
        parse_peer_id("zz")


# -- untrusted input never escapes as anything but the package's errors ------------------


@given(st.binary(max_size=200))
def test_pex_decoder_raises_only_remote_protocol_error(data: bytes) -> None:
    try:
        msg = pex.decode_pex_untrusted(data)
    except RemoteProtocolError:
        return
    assert pex.encode_pex(msg) == data


@given(st.lists(st.binary(max_size=40), max_size=10), st.booleans())
def test_stream_decoder_raises_only_p2p_errors(chunks: list[bytes], end: bool) -> None:
    dec = StreamDecoder({0: 50, 1: 1000})
    try:
        for chunk in chunks:
            for frame in dec.feed(chunk):
                assert len(frame) <= dec.max_frame_size
        if end:
            dec.end_of_stream()
    except P2PError as exc:
        assert isinstance(exc, RemoteProtocolError)
