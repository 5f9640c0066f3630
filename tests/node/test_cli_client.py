"""node.client against the real RPC server (node.http) on 127.0.0.1."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from node.client import RpcClient, RpcClientError, RpcTransportError, normalize_url
from node.errors import NotFound
from node.events import EventBus
from node.http import RpcServer, ServerLimits, serve
from node.jsonrpc import Param, ParamType, Registry


def _registry() -> Registry:
    reg = Registry()

    @reg.method("add", params=[Param("a", ParamType.INTEGER), Param("b", ParamType.INTEGER, required=False, default=0)])
    def add(a: int, b: int) -> int:
        return a + b

    @reg.method("missing", params=[Param("what", ParamType.STRING)])
    def missing(what: str) -> Any:
        raise NotFound(f"no {what}", {"what": what})

    return reg


async def _with_server(fn: Any) -> Any:
    async with trio.open_nursery() as nursery:
        server = RpcServer(_registry(), host="127.0.0.1", port=0, limits=ServerLimits(), max_batch_size=10,
                           bus=EventBus())
        port = await nursery.start(serve, server)
        try:
            with trio.fail_after(20):
                return await trio.to_thread.run_sync(fn, port)
        finally:
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_call_batch_and_errors() -> None:
    def body(port: int) -> None:
        with RpcClient(f"tcp://127.0.0.1:{port}") as c:
            assert c.call("add", a=2, b=3) == 5
            assert c.call("add", a=2, b=None) == 2  # None is left out: the default applies
            with pytest.raises(RpcClientError) as err:
                c.call("missing", what="card")
            assert err.value.code == -32001 and err.value.data == {"what": "card"}
            assert "RPC error -32001: no card" in str(err.value)
            with pytest.raises(RpcClientError) as err:
                c.call("nope")
            assert err.value.code == -32601
            with pytest.raises(RpcClientError) as err:
                c.call("add", a="x")
            assert err.value.code == -32602
            out = c.batch([("add", {"a": 1}), ("missing", {"what": "x"}), ("add", {"a": 4, "b": 4})])
            assert out[0] == 1 and isinstance(out[1], RpcClientError) and out[2] == 8
            with pytest.raises(RpcClientError) as err:
                c.batch([("add", {"a": i}) for i in range(11)])  # above max_batch_size
            assert err.value.code == -32600
            assert c.batch([]) == []

    await _with_server(body)


def test_transport_errors() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(RpcTransportError, match="cannot reach"):
        RpcClient(f"http://127.0.0.1:{port}", timeout=2).call("status")
    with pytest.raises(RpcTransportError, match="http://host:port"):
        RpcClient("ftp://x")
    assert normalize_url("127.0.0.1:1") == "http://127.0.0.1:1"
    assert normalize_url("tcp://h:2") == "http://h:2"
