"""JSON-RPC over WebSocket at ``GET /websocket``, with event subscriptions.

The HTTP connection (node/http.py) hands over the upgrade request; h11 sends the
101 and wsproto takes the bytes from there. Each text message is a JSON-RPC
request or batch, answered on the socket. `subscribe` / `unsubscribe` /
`unsubscribe_all` work only here. Events arrive as JSON-RPC notifications::

    {"jsonrpc": "2.0", "method": "subscription",
     "params": {"subscription": "<query>", "topic": "NewBlock", "event": {...}}}

Two tasks per connection: the reader (requests, pings, close) and the writer
(drains the subscriber's buffer). They share one send lock; every send has the
write timeout, so a client that stops reading is cut off instead of holding a
task forever. When the bus drops the subscriber for falling behind, the writer
sends a last ``subscription_dropped`` notification and closes with code 1008
and the reason.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from typing import TYPE_CHECKING, Any

import h11
import trio
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError, generate_accept_token

from node.errors import InvalidRequest, LimitExceeded
from node.events import Subscriber
from node.jsonrpc import CallContext, Param, ParamType, Registry, Result, encode
from node.log import get_logger

if TYPE_CHECKING:
    from node.http import HttpConnection

log = get_logger("rpc")

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED = 1003
CLOSE_PROTOCOL = 1002
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011


class WsSession:
    """Per-connection state that the subscription handlers reach through the
    `CallContext`."""

    def __init__(self, subscriber: Subscriber, max_subscription_clients: int) -> None:
        self.subscriber = subscriber
        self.max_subscription_clients = max_subscription_clients


def _session(ctx: CallContext) -> WsSession:
    if not isinstance(ctx.session, WsSession):  # only reachable through a bad registration
        raise InvalidRequest("subscriptions need a WebSocket connection")
    return ctx.session


def register_subscription_methods(registry: Registry) -> None:
    """Add `subscribe`, `unsubscribe` and `unsubscribe_all` (WebSocket only)."""
    if registry.get("subscribe") is not None:
        return
    query = Param(
        "query",
        ParamType.STRING,
        "A topic (NewBlock, NewBlockHeader, Tx, NewCard, SeederDelta, KeyOp,"
        " ValidatorSetUpdates) or a query such as tm.event = 'Tx' AND sender = '<hex>'.",
        max_length=512,
    )

    def subscribe(ctx: CallContext, query: str) -> dict[str, Any]:
        """Subscribe this connection to events matching the query; events then
        arrive as `subscription` notifications."""
        session = _session(ctx)
        sub = session.subscriber
        bus = sub.bus
        if not sub.queries and bus.subscriber_count >= session.max_subscription_clients:
            raise LimitExceeded(
                f"at most {session.max_subscription_clients} subscribing clients",
                {"max_subscription_clients": session.max_subscription_clients},
            )
        return {"subscription": sub.subscribe(query)}

    def unsubscribe(ctx: CallContext, query: str) -> dict[str, Any]:
        """Cancel one subscription of this connection."""
        _session(ctx).subscriber.unsubscribe(query)
        return {}

    def unsubscribe_all(ctx: CallContext) -> dict[str, Any]:
        """Cancel every subscription of this connection."""
        return {"cancelled": _session(ctx).subscriber.unsubscribe_all()}

    ws_only = ("ws",)
    registry.method(
        "subscribe",
        params=[query],
        result=Result("subscription", "The subscription id (the query text).", {"type": "object"}),
        summary="Subscribe to node events (WebSocket only).",
        needs_context=True,
        transports=ws_only,
        uri=False,
    )(subscribe)
    registry.method(
        "unsubscribe",
        params=[query],
        result=Result("empty", "An empty object.", {"type": "object"}),
        summary="Cancel one subscription (WebSocket only).",
        needs_context=True,
        transports=ws_only,
        uri=False,
    )(unsubscribe)
    registry.method(
        "unsubscribe_all",
        result=Result("cancelled", "How many subscriptions were cancelled.", {"type": "object"}),
        summary="Cancel every subscription of this connection (WebSocket only).",
        needs_context=True,
        transports=ws_only,
        uri=False,
    )(unsubscribe_all)


def _handshake_problem(request: h11.Request) -> tuple[int, str] | None:
    headers: dict[bytes, list[bytes]] = {}
    for k, v in request.headers:
        headers.setdefault(bytes(k), []).append(bytes(v))

    def tokens(name: bytes) -> set[bytes]:
        return {t.strip().lower() for v in headers.get(name, []) for t in v.split(b",")}

    if b"websocket" not in tokens(b"upgrade") or b"upgrade" not in tokens(b"connection"):
        return 400, "GET /websocket needs Upgrade: websocket and Connection: Upgrade"
    if headers.get(b"sec-websocket-version") != [b"13"]:
        return 426, "Sec-WebSocket-Version must be 13"
    keys = headers.get(b"sec-websocket-key", [])
    try:
        ok = len(keys) == 1 and len(base64.b64decode(keys[0], validate=True)) == 16
    except (binascii.Error, ValueError):
        ok = False
    if not ok:
        return 400, "Sec-WebSocket-Key must be 16 bytes in base64"
    return None


async def serve_websocket(http: HttpConnection, request: h11.Request) -> bool:
    """Upgrade `http` to a WebSocket and serve it; True once the connection was
    taken over (even if it then failed), False if an HTTP error was answered."""
    server = http.server
    if server.bus is None:
        await http._json_error(404, InvalidRequest("Invalid Request: WebSocket is not enabled"))
        return False
    problem = _handshake_problem(request)
    if problem is not None:
        status, text = problem
        extra = [("sec-websocket-version", "13")] if status == 426 else []
        await http._json_error(status, InvalidRequest(f"Invalid Request: {text}"), extra)
        return False
    key = next(bytes(v) for k, v in request.headers if k == b"sec-websocket-key")
    reply = h11.InformationalResponse(
        status_code=101,
        headers=[
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-accept", generate_accept_token(key).decode("ascii")),
        ],
    )
    http.last_status = 101
    await http._send(http.conn.send(reply) or b"")
    trailing, _closed = http.conn.trailing_data
    ws = WsConnection(http, bytes(trailing))
    await ws.run()
    return True


class WsConnection:
    """One upgraded connection."""

    def __init__(self, http: HttpConnection, trailing: bytes) -> None:
        self.http = http
        self.stream = http.stream
        self.limits = http.limits
        self.ws = Connection(ConnectionType.SERVER, trailing_data=trailing)
        self.send_lock = trio.Lock()
        self.wake_event = trio.Event()
        bus = http.server.bus
        if bus is None:  # pragma: no cover - serve_websocket checked it
            raise RuntimeError("no event bus")
        self.subscriber = bus.subscriber(
            buffer_size=self.limits.subscription_buffer_size,
            max_subscriptions=self.limits.max_subscriptions_per_client,
            wake=self._wake,
            name=http.remote,
        )
        self.ctx = CallContext(
            "ws", http.remote, WsSession(self.subscriber, self.limits.max_subscription_clients)
        )
        self.closing = False

    def _wake(self) -> None:
        self.wake_event.set()

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, nursery.cancel_scope)
                await self._reader()
                nursery.cancel_scope.cancel()
        finally:
            self.subscriber.close()

    async def _send_event(self, event: Any) -> None:
        """Send one wsproto event under the lock and the write timeout; a client
        that does not read in time is disconnected."""
        if self.ws.state is not ConnectionState.OPEN and not isinstance(event, CloseConnection):
            return
        async with self.send_lock:
            try:
                data = self.ws.send(event)
            except LocalProtocolError:
                return
            with trio.move_on_after(self.limits.timeout_write) as scope:
                await self.stream.send_all(data)
            if scope.cancelled_caught:
                raise trio.BrokenResourceError("websocket client did not read in time")

    async def _close(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._send_event(CloseConnection(code=code, reason=reason[:120]))

    async def _writer(self, cancel_scope: trio.CancelScope) -> None:
        sub = self.subscriber
        try:
            while True:
                await self.wake_event.wait()
                self.wake_event = trio.Event()
                for d in sub.pop_all():
                    event_json = d.memo.get("json")
                    if event_json is None:  # encoded once per publication
                        event_json = d.memo["json"] = encode(d.event).decode()
                    note = (
                        '{"jsonrpc":"2.0","method":"subscription","params":{"subscription":'
                        + encode(d.subscription).decode()
                        + ',"topic":'
                        + encode(d.topic).decode()
                        + ',"event":'
                        + event_json
                        + "}}"
                    )
                    await self._send_event(TextMessage(data=note))
                reason = sub.closed_reason
                if reason is not None and reason != "closed":
                    dropped = {
                        "jsonrpc": "2.0",
                        "method": "subscription_dropped",
                        "params": {"reason": reason},
                    }
                    await self._send_event(TextMessage(data=encode(dropped).decode()))
                    await self._close(CLOSE_POLICY, reason)
                    # The reader sees the client's answering close frame and ends
                    # the connection; a client that never answers gets this long.
                    await trio.sleep(min(1.0, self.limits.timeout_write))
                    cancel_scope.cancel()
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            cancel_scope.cancel()
        except (TypeError, ValueError):
            log.exception("event could not be encoded as JSON", remote=self.http.remote)
            await self._close(CLOSE_INTERNAL, "internal error")
            cancel_scope.cancel()

    async def _reader(self) -> None:
        parts: list[str] = []
        size = 0
        pinged = False
        while True:
            with trio.move_on_after(self.limits.timeout_idle) as scope:
                try:
                    data = await self.stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
            if scope.cancelled_caught:
                if pinged:
                    await self._close(CLOSE_GOING_AWAY, "idle timeout")
                    return
                pinged = True
                try:
                    await self._send_event(Ping(payload=b"blackhole"))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                continue
            pinged = False
            if not data:
                return
            try:
                self.ws.receive_data(data)
                events = list(self.ws.events())
            except RemoteProtocolError as e:
                hint = e.event_hint
                code = hint.code if isinstance(hint, CloseConnection) else CLOSE_PROTOCOL
                await self._close(code, f"protocol error: {e}")
                return
            except LocalProtocolError:  # data after the close handshake: nothing to answer
                return
            try:
                for event in events:
                    if isinstance(event, CloseConnection):
                        if self.ws.state is ConnectionState.REMOTE_CLOSING:
                            await self._send_event(event.response())
                        elif self.ws.state is ConnectionState.OPEN:
                            # wsproto reports a malformed frame as a close event
                            # while the connection is still open: we close.
                            await self._close(event.code, event.reason or "protocol error")
                        return
                    if isinstance(event, Ping):
                        await self._send_event(event.response())
                    elif isinstance(event, BytesMessage):
                        await self._close(CLOSE_UNSUPPORTED, "binary messages are not supported; send JSON text")
                        return
                    elif isinstance(event, Message):
                        size += len(event.data.encode()) if isinstance(event.data, str) else len(event.data)
                        if size > self.limits.max_body_bytes:
                            await self._close(
                                CLOSE_TOO_BIG, f"message larger than {self.limits.max_body_bytes} bytes"
                            )
                            return
                        parts.append(event.data)
                        if event.message_finished:
                            text = "".join(parts)
                            parts, size = [], 0
                            out = await self.http.server.dispatcher.handle_bytes(text, self.ctx)
                            if out is not None:
                                await self._send_event(TextMessage(data=out.decode()))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
