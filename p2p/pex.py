"""Peer-exchange messages on channel 0 (pure encode / untrusted decode).

Three messages, each a msgpack positional array:

- `[0, listen_port]` HELLO: sent first by both sides; tells the peer which UDP
  port we accept connections on (the host is the address the peer sees).
- `[1]` REQUEST: ask for addresses.
- `[2, [[peer_id, host, port], ...]]` ADDRS: up to `MAX_ADDRS` known peers.

A decoder of peer bytes re-encodes what it decoded and rejects any
difference, so each message has exactly one encoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from p2p.errors import RemoteProtocolError
from p2p.identity import PEER_ID_SIZE, Address, PeerId

HELLO = 0
REQUEST = 1
ADDRS = 2
MAX_ADDRS = 64
MAX_HOST_LEN = 255


@dataclass(frozen=True, slots=True)
class Hello:
    listen_port: int
    """UDP port the sender accepts connections on (0: it does not listen)."""


@dataclass(frozen=True, slots=True)
class Request:
    """Ask the peer for addresses."""


@dataclass(frozen=True, slots=True)
class Addrs:
    entries: tuple[tuple[PeerId, Address], ...]
    """Known peers and their dialable addresses."""


PexMessage = Hello | Request | Addrs


def encode_pex(msg: PexMessage) -> bytes:
    body: list[Any]
    if isinstance(msg, Hello):
        body = [HELLO, msg.listen_port]
    elif isinstance(msg, Request):
        body = [REQUEST]
    else:
        body = [ADDRS, [[pid, host, port] for pid, (host, port) in msg.entries[:MAX_ADDRS]]]
    out: bytes = msgpack.packb(body, use_bin_type=True)
    return out


def _bad(what: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"bad peer-exchange message: {what}", reason="bad_pex")


def _port(value: Any) -> int:
    if type(value) is not int or not 0 <= value <= 65535:
        raise _bad("port")
    return value


def decode_pex_untrusted(data: bytes) -> PexMessage:
    try:
        obj = msgpack.unpackb(data, use_list=True, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise _bad("not msgpack") from exc
    if not isinstance(obj, list) or not obj or type(obj[0]) is not int:
        raise _bad("not a tagged array")
    msg: PexMessage
    if obj[0] == HELLO and len(obj) == 2:
        msg = Hello(_port(obj[1]))
    elif obj[0] == REQUEST and len(obj) == 1:
        msg = Request()
    elif obj[0] == ADDRS and len(obj) == 2 and isinstance(obj[1], list):
        if len(obj[1]) > MAX_ADDRS:
            raise _bad("too many addresses")
        entries: list[tuple[PeerId, Address]] = []
        for item in obj[1]:
            if not isinstance(item, list) or len(item) != 3:
                raise _bad("address entry")
            pid, host, port = item
            if not isinstance(pid, bytes) or len(pid) != PEER_ID_SIZE:
                raise _bad("peer id")
            if not isinstance(host, str) or not 0 < len(host) <= MAX_HOST_LEN:
                raise _bad("host")
            entries.append((pid, (host, _port(port))))
        msg = Addrs(tuple(entries))
    else:
        raise _bad("unknown tag or arity")
    if encode_pex(msg) != data:
        raise _bad("non-canonical encoding")
    return msg
