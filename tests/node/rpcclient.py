"""Test clients for the RPC server: a raw HTTP/1.1 reader and a wsproto WebSocket
client over real trio sockets on 127.0.0.1. Every wait has a deadline."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from node.events import EventBus
from node.http import RpcServer, ServerLimits, serve
from node.jsonrpc import Param, ParamType, Registry
from node.metrics import NodeMetrics

DEADLINE = 5.0


@dataclass
class Running:
    server: RpcServer
    port: int
    bus: EventBus
    metrics: NodeMetrics


def make_registry() -> Registry:
    reg = Registry()

    @reg.method("add", params=[Param("a", ParamType.INTEGER), Param("b", ParamType.INTEGER, required=False, default=0)])
    def add(a: int, b: int) -> int:
        return a + b

    @reg.method("echo", params=[Param("text", ParamType.STRING)])
    async def echo(text: str) -> str:
        return text

    return reg


async def start_server(nursery: trio.Nursery, **limits: Any) -> Running:
    bus = EventBus()
    metrics = NodeMetrics()
    max_batch = limits.pop("max_batch_size", 10)
    server = RpcServer(
        make_registry(),
        host="127.0.0.1",
        port=0,
        limits=ServerLimits(**limits),
        max_batch_size=max_batch,
        metrics_registry=metrics.registry,
        bus=bus,
    )
    port = await nursery.start(serve, server)
    return Running(server, port, bus, metrics)


async def connect(port: int) -> trio.SocketStream:
    with trio.fail_after(DEADLINE):
        return await trio.open_tcp_stream("127.0.0.1", port)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReader:
    """Reads responses (Content-Length framed) from one stream, keeping leftovers."""

    stream: trio.SocketStream
    buf: bytearray = field(default_factory=bytearray)
    eof: bool = False

    async def _fill(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            self.eof = True
        self.buf += data

    async def read(self, timeout: float = DEADLINE) -> Response:
        with trio.fail_after(timeout):
            while b"\r\n\r\n" not in self.buf:
                if self.eof:
                    raise EOFError(f"connection closed before a response: {bytes(self.buf)!r}")
                await self._fill()
            head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ")[1])
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            n = int(headers.get("content-length", "0"))
            while len(rest) < n:
                if self.eof:
                    raise EOFError("connection closed inside a response body")
                await self._fill()
                rest = bytes(self.buf).partition(b"\r\n\r\n")[2]
            self.buf = bytearray(rest[n:])
            return Response(status, headers, rest[:n])

    async def closed(self, timeout: float = DEADLINE) -> bool:
        """True once the server closed the connection (EOF or reset)."""
        with trio.fail_after(timeout):
            while not self.eof:
                try:
                    await self._fill()
                except trio.BrokenResourceError:
                    return True
        return True


async def http(port: int, raw: bytes, timeout: float = DEADLINE) -> Response:
    stream = await connect(port)
    async with stream:
        await stream.send_all(raw)
        return await HttpReader(stream).read(timeout)


def post(body: bytes | str, *, extra: str = "") -> bytes:
    data = body.encode() if isinstance(body, str) else body
    return (
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n{extra}\r\n"
    ).encode() + data


def get(target: str, *, extra: str = "") -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()


class WsClient:
    """A WebSocket client: wsproto over a trio socket."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: list[Any] = []
        self.text: list[str] = []
        self.closed: CloseConnection | None = None

    @classmethod
    async def connect(cls, port: int) -> WsClient:
        c = cls(await connect(port))
        await c.stream.send_all(c.ws.send(Request(host="127.0.0.1", target="/websocket")))
        with trio.fail_after(DEADLINE):
            while True:
                ev = await c._next_event()
                if isinstance(ev, AcceptConnection):
                    return c
                if isinstance(ev, RejectConnection):
                    raise ConnectionError(f"rejected: {ev.status_code}")

    async def _next_event(self) -> Any:
        while not self.pending:
            data = await self.stream.receive_some(65536)
            self.ws.receive_data(data or None)
            self.pending.extend(self.ws.events())
            if not data and not self.pending:
                raise EOFError("websocket stream closed")
        return self.pending.pop(0)

    async def send_json(self, obj: Any) -> None:
        await self.send_text(json.dumps(obj))

    async def send_text(self, text: str) -> None:
        await self.stream.send_all(self.ws.send(TextMessage(data=text)))

    async def send_bytes(self, data: bytes) -> None:
        await self.stream.send_all(self.ws.send(BytesMessage(data=data)))

    async def recv_json(self, timeout: float = DEADLINE) -> Any:
        """The next complete text message, parsed; raises `Closed` on a close frame."""
        with trio.fail_after(timeout):
            while True:
                ev = await self._next_event()
                if isinstance(ev, Ping):
                    await self.stream.send_all(self.ws.send(ev.response()))
                elif isinstance(ev, TextMessage):
                    self.text.append(ev.data)
                    if ev.message_finished:
                        text = "".join(self.text)
                        self.text = []
                        return json.loads(text)
                elif isinstance(ev, CloseConnection):
                    self.closed = ev
                    raise Closed(ev.code, ev.reason)

    async def call(self, method: str, params: Any = None, id: Any = 1) -> Any:
        req: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
        if params is not None:
            req["params"] = params
        await self.send_json(req)
        return await self.recv_json()

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


class Closed(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"closed {code}: {reason}")
        self.code = code
        self.reason = reason
