"""The JSON-RPC HTTP/1.1 server: h11 driven by trio.

Routes:

- ``POST /``: a JSON-RPC 2.0 request or batch in the body.
- ``GET /<method>?arg=value``: URI-style call (CometBFT habit); string values may
  be "double-quoted", integers bare; answered as a JSON-RPC response with id -1.
- ``GET /health``: the `health` method by URI.
- ``GET /metrics``: Prometheus text exposition, when given a registry.
- ``GET /websocket``: upgrade to a JSON-RPC WebSocket (node/ws.py).
- ``GET /``: the list of methods callable by URI.

Every failure gets an HTTP response with a JSON-RPC error body: malformed HTTP
(400), header block too large (431), body too large (413), slow request (408),
too many connections (503), wrong method (405), unknown path (404). A connection
that stays idle between requests past ``timeout_idle`` is closed quietly. When a
connection must close with unread input, the server half-closes and drains it
briefly first, so that the client reads the response instead of a reset.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import h11
import trio
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from node import errors
from node.config import RpcConfig, parse_host_port
from node.errors import InternalError, InvalidRequest, MethodNotFound, RpcError
from node.events import EventBus
from node.jsonrpc import CallContext, Dispatcher, Registry, Result, encode, error_response
from node.log import get_logger

log = get_logger("rpc")

JSON = "application/json"
RECV_SIZE = 65536
URI_CALL_ID = -1
_DRAIN_SECONDS = 1.0
_DRAIN_BYTES = 1 << 20

# HTTP status for a JSON-RPC error answered to a URI-style call.
_URI_STATUS = {
    errors.PARSE_ERROR: 400,
    errors.INVALID_REQUEST: 400,
    errors.METHOD_NOT_FOUND: 404,
    errors.INVALID_PARAMS: 400,
    errors.INTERNAL_ERROR: 500,
    errors.NotFound.code: 404,
    errors.Unavailable.code: 503,
    errors.LimitExceeded.code: 429,
    errors.Overloaded.code: 503,
}


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """The limits the server enforces (from [rpc] in config.toml)."""

    max_body_bytes: int = 1_000_000
    max_header_bytes: int = 16_384
    max_open_connections: int = 900
    max_subscription_clients: int = 100
    max_subscriptions_per_client: int = 5
    subscription_buffer_size: int = 200
    timeout_read: float = 10.0
    timeout_idle: float = 60.0
    timeout_write: float = 10.0

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) <= 0:
                raise ValueError(f"ServerLimits.{f.name} must be positive")

    @classmethod
    def from_config(cls, rpc: RpcConfig) -> ServerLimits:
        return cls(
            max_body_bytes=rpc.max_body_bytes,
            max_header_bytes=rpc.max_header_bytes,
            max_open_connections=rpc.max_open_connections,
            max_subscription_clients=rpc.max_subscription_clients,
            max_subscriptions_per_client=rpc.max_subscriptions_per_client,
            subscription_buffer_size=rpc.subscription_buffer_size,
            timeout_read=rpc.timeout_read,
            timeout_idle=rpc.timeout_idle,
            timeout_write=rpc.timeout_write,
        )


class _Timeout(Exception):
    """The client did not send what it must within its deadline."""


class _BodyTooLarge(Exception):
    pass


def register_health(registry: Registry) -> None:
    """Add the `health` method (an empty result while the server answers) unless the
    node registered its own."""
    if registry.get("health") is None:
        registry.method(
            "health",
            result=Result("health", "An empty object: the node is up.", {"type": "object"}),
            summary="Liveness check.",
        )(lambda: {})


class RpcServer:
    """One JSON-RPC server: HTTP, URI calls, WebSocket and /metrics on one port.

    Start it with ``port = await nursery.start(serve, server)``; stop it by
    cancelling that nursery.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: ServerLimits | None = None,
        max_batch_size: int = 10,
        metrics_registry: CollectorRegistry | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self.limits = limits or ServerLimits()
        self.dispatcher = Dispatcher(registry, max_batch_size=max_batch_size)
        self.metrics_registry = metrics_registry
        self.bus = bus
        self.open_connections = 0
        self._refusing = 0
        register_health(registry)
        if bus is not None:
            from node.ws import register_subscription_methods

            register_subscription_methods(registry)

    @classmethod
    def from_config(
        cls,
        rpc: RpcConfig,
        registry: Registry,
        *,
        metrics_registry: CollectorRegistry | None = None,
        bus: EventBus | None = None,
    ) -> RpcServer:
        host, port = parse_host_port(rpc.laddr, scheme="tcp")
        return cls(
            registry,
            host=host,
            port=port,
            limits=ServerLimits.from_config(rpc),
            max_batch_size=rpc.max_batch_size,
            metrics_registry=metrics_registry,
            bus=bus,
        )

    # -- connections ------------------------------------------------------------

    async def handle_stream(self, stream: trio.SocketStream) -> None:
        """Serve one accepted connection until it closes; never raises."""
        self.open_connections += 1
        try:
            if self.open_connections > self.limits.max_open_connections:
                await self._refuse(stream)
                return
            await HttpConnection(self, stream).run()
        except Exception:
            log.exception("rpc connection failed")
        finally:
            self.open_connections -= 1
            await trio.aclose_forcefully(stream)

    async def _refuse(self, stream: trio.SocketStream) -> None:
        # Refusals are cheap but not free: past twice the limit, just hang up.
        if self._refusing >= self.limits.max_open_connections:
            return
        self._refusing += 1
        try:
            body = encode(
                error_response(
                    errors.Overloaded(
                        "too many open connections; retry later",
                        {"max_open_connections": self.limits.max_open_connections},
                    )
                )
            )
            with trio.move_on_after(self.limits.timeout_write):
                await stream.send_all(raw_response(503, body, [("retry-after", "1")]))
                await drain_and_close(stream)
        except trio.BrokenResourceError:
            pass
        finally:
            self._refusing -= 1


def raw_response(status: int, body: bytes, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A complete ``Connection: close`` response, built without h11 (for errors
    found before or instead of a parsed request)."""
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    lines += [f"{k}: {v}" for k, v in headers]
    lines += [
        f"content-type: {JSON}",
        f"content-length: {len(body)}",
        "connection: close",
        "server: blackhole",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def drain_and_close(stream: trio.SocketStream) -> None:
    """Half-close, then read what the client still sends (bounded in time and
    bytes) so that closing does not reset the connection under its response."""
    try:
        await stream.send_eof()
        got = 0
        with trio.move_on_after(_DRAIN_SECONDS):
            while got < _DRAIN_BYTES:
                data = await stream.receive_some(RECV_SIZE)
                if not data:
                    break
                got += len(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass


def _error_body(err: RpcError, req_id: Any = None) -> bytes:
    return encode(error_response(err, req_id))


def _uri_value(raw: str) -> str:
    # CometBFT: strings may be given "quoted"; the method's declared type decides
    # how the rest (numbers, booleans, 0x-hex) is read.
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return raw[1:-1]
    return raw


class HttpConnection:
    """One HTTP/1.1 connection: a loop of request/response cycles over h11."""

    def __init__(self, server: RpcServer, stream: trio.SocketStream) -> None:
        self.server = server
        self.stream = stream
        self.limits = server.limits
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes)
        self.last_status = 0
        try:
            host, port = stream.socket.getpeername()[:2]
            self.remote = f"{host}:{port}"
        except OSError:
            self.remote = ""

    async def run(self) -> None:
        while True:
            try:
                keep_going = await self._cycle()
            except h11.RemoteProtocolError as e:
                status = e.error_status_hint if e.error_status_hint >= 400 else 400
                what = "request header block too large" if status == 431 else f"malformed HTTP: {str(e)[:200]}"
                await self._fail(status, InvalidRequest(f"Invalid Request: {what}"))
                return
            except _Timeout:
                await self._fail(
                    408, InvalidRequest(f"Invalid Request: request not received within {self.limits.timeout_read:g}s")
                )
                return
            except _BodyTooLarge:
                await self._fail(
                    413,
                    InvalidRequest(
                        f"Invalid Request: body larger than {self.limits.max_body_bytes} bytes",
                        {"max_body_bytes": self.limits.max_body_bytes},
                    ),
                )
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            except Exception:
                # A bug of ours: the log gets the traceback, the client one clean 500.
                log.exception("rpc request failed", remote=self.remote)
                await self._fail(500, InternalError())
                return
            if not keep_going:
                return

    async def _fail(self, status: int, err: RpcError) -> None:
        """Answer an error and close, if a response can still be sent."""
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        try:
            with trio.move_on_after(self.limits.timeout_write):
                await self.stream.send_all(raw_response(status, _error_body(err)))
                await drain_and_close(self.stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _receive(self, deadline: float) -> None:
        with trio.move_on_at(deadline):
            data = await self.stream.receive_some(RECV_SIZE)
            self.conn.receive_data(data)
            return
        raise _Timeout()

    async def _cycle(self) -> bool:
        """One request and its response; False when the connection should close."""
        conn = self.conn
        # Bytes of the next request may already sit in h11's buffer (they came in
        # the same read as the previous one): then the request has started and gets
        # the read timeout (and a 408), not the quiet idle close.
        started = bool(conn.trailing_data[0])
        deadline = trio.current_time() + (self.limits.timeout_read if started else self.limits.timeout_idle)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    await self._receive(deadline)
                except _Timeout:
                    if not started:
                        return False  # idle keep-alive connection: close quietly
                    raise
                if not started:
                    started = True
                    deadline = trio.current_time() + self.limits.timeout_read
                continue
            if isinstance(event, h11.ConnectionClosed):
                return False
            if isinstance(event, h11.Request):
                break
            return False  # pragma: no cover - h11 yields nothing else first
        request = event
        # h11 bounds only a header block still incomplete; one that arrived whole
        # in a single read is measured here.
        head_size = len(request.target) + sum(len(k) + len(v) + 4 for k, v in request.headers)
        if head_size > self.limits.max_header_bytes:
            raise h11.RemoteProtocolError("request header block too large", error_status_hint=431)
        body = await self._read_body(request, deadline)
        if conn.our_state is h11.SWITCHED_PROTOCOL:  # pragma: no cover
            return False
        t0 = trio.current_time()
        upgraded = await self._route(request, body)
        log.debug(
            "http request",
            remote=self.remote,
            method=request.method.decode("latin-1"),
            target=request.target[:200].decode("latin-1"),
            status=self.last_status,
            ms=round((trio.current_time() - t0) * 1000, 3),
        )
        if upgraded:
            return False
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            return False
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            return True
        return False

    async def _read_body(self, request: h11.Request, deadline: float) -> bytes:
        length = _header(request, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limits.max_body_bytes:
            raise _BodyTooLarge()
        if self.conn.they_are_waiting_for_100_continue:
            await self._send(self.conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        chunks: list[bytes] = []
        size = 0
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                await self._receive(deadline)
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.limits.max_body_bytes:
                    raise _BodyTooLarge()
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage) or event is h11.PAUSED:
                return b"".join(chunks)
            else:
                raise h11.RemoteProtocolError("connection closed inside the request body")

    async def _send(self, data: bytes) -> None:
        with trio.move_on_after(self.limits.timeout_write) as scope:
            await self.stream.send_all(data)
        if scope.cancelled_caught:
            raise trio.BrokenResourceError("client did not read the response in time")

    async def respond(
        self,
        status: int,
        body: bytes,
        content_type: str = JSON,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.last_status = status
        hdrs = [("server", "blackhole"), *headers]
        if status != 204:  # RFC 9110: no Content-Length (nor body) on a 204
            hdrs += [("content-type", content_type), ("content-length", str(len(body)))]
        out = self.conn.send(
            h11.Response(status_code=status, headers=hdrs, reason=HTTPStatus(status).phrase.encode())
        )
        if body:
            out += self.conn.send(h11.Data(data=body)) or b""
        out += self.conn.send(h11.EndOfMessage()) or b""
        await self._send(out or b"")

    # -- routing ----------------------------------------------------------------

    async def _route(self, request: h11.Request, body: bytes) -> bool:
        """Answer one request; True if the connection was handed to WebSocket."""
        method = request.method.decode("latin-1")
        target = request.target.decode("latin-1")
        parts = urlsplit(target)
        path = unquote(parts.path)
        ctx = CallContext("http", self.remote)
        if method == "POST":
            if path != "/":
                await self._json_error(404, MethodNotFound(f"no such path {path[:80]!r}; POST JSON-RPC to /"))
                return False
            out = await self.server.dispatcher.handle_bytes(body, ctx)
            if out is None:
                await self.respond(204, b"")
            else:
                await self.respond(200, out)
            return False
        if method != "GET":
            await self._json_error(
                405, InvalidRequest(f"Invalid Request: method {method[:16]} not allowed"), [("allow", "GET, POST")]
            )
            return False
        if path == "/websocket":
            from node.ws import serve_websocket

            return await serve_websocket(self, request)
        if path == "/metrics":
            if self.server.metrics_registry is None:
                await self._json_error(404, MethodNotFound("metrics are not enabled"))
            else:
                await self.respond(200, generate_latest(self.server.metrics_registry), CONTENT_TYPE_LATEST)
            return False
        if path == "/":
            await self.respond(200, encode({"jsonrpc": "2.0", "id": URI_CALL_ID, "result": self._uri_index()}))
            return False
        await self._uri_call(path.lstrip("/"), parts.query, ctx)
        return False

    def _uri_index(self) -> dict[str, Any]:
        entries = []
        for name in self.server.registry.names():
            m = self.server.registry.get(name)
            if m is None or not m.uri or "http" not in m.transports:
                continue
            args = "&".join(f"{p.name}=_" for p in m.params)
            entries.append(f"/{name}" + (f"?{args}" if args else ""))
        return {"uri_methods": entries, "jsonrpc": "POST /", "websocket": "/websocket"}

    async def _uri_call(self, name: str, query: str, ctx: CallContext) -> None:
        m = self.server.registry.get(name)
        if m is not None and not m.uri:
            await self._json_error(404, MethodNotFound(f"{name} cannot be called by URI; POST JSON-RPC to /"))
            return
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False, max_num_fields=64)
        except ValueError:
            await self._json_error(400, errors.InvalidParams("too many query parameters"))
            return
        params: dict[str, Any] = {}
        for key, raw in pairs:
            if key in params:
                await self._json_error(400, errors.InvalidParams(f"parameter '{key[:64]}' given twice"))
                return
            params[key] = _uri_value(raw)
        try:
            result = await self.server.dispatcher.call(name, params, ctx)
        except RpcError as e:
            await self._json_error(_URI_STATUS.get(e.code, 500), e)
            return
        await self.respond(200, encode({"jsonrpc": "2.0", "id": URI_CALL_ID, "result": result}))

    async def _json_error(
        self, status: int, err: RpcError, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        await self.respond(status, _error_body(err, URI_CALL_ID), headers=headers)


def _header(request: h11.Request, name: bytes) -> str | None:
    for k, v in request.headers:
        if k == name:
            return bytes(v).decode("latin-1")
    return None


async def serve(server: RpcServer, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Listen on ``server.host:server.port`` (port 0: an ephemeral port) and serve
    until cancelled. Reports the bound port through `task_status`."""
    listeners = await trio.open_tcp_listeners(server.port, host=server.host)
    server.port = listeners[0].socket.getsockname()[1]
    log.info("rpc server listening", host=server.host, port=server.port)
    async with trio.open_nursery() as nursery:
        task_status.started(server.port)
        await trio.serve_listeners(server.handle_stream, listeners, handler_nursery=nursery)
