"""The HTTP server, exercised over real sockets on 127.0.0.1 with raw requests."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re

import pytest
import trio

from node.config import default_config
from node.events import EventBus
from node.http import RpcServer, serve
from node.jsonrpc import Registry
from tests.node.rpcclient import HttpReader, connect, get, http, post, start_server

pytestmark = pytest.mark.trio


def rpc(method: str, params: object = None, id: object = 1) -> str:
    obj: dict[str, object] = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        obj["params"] = params
    return json.dumps(obj)


async def test_post_json_rpc_and_keep_alive(nursery: trio.Nursery) -> None:
    srv = await start_server(nursery)
    stream = await connect(srv.port)
    reader = HttpReader(stream)
    async with stream:
        await stream.send_all(post(rpc("add", [2, 3])))
        r = await reader.read()
        assert r.status == 200
        assert r.headers["content-type"] == "application/json"
        assert r.json() == {"jsonrpc": "2.0", "id": 1, "result": 5}
        # same connection, next request; then two pipelined in one write
        await stream.send_all(post(rpc("echo", {"text": "hi"}, "x")))
        assert (await reader.read()).json()["result"] == "hi"
        await stream.send_all(post(rpc("add", [1], 1)) + post(rpc("add", [2], 2)))
        assert [(await reader.read()).json()["result"] for _ in range(2)] == [1, 2]
        # an error over POST is still a 200 with a JSON-RPC error body
        await stream.send_all(post(b"{oops"))
        r = await reader.read()
        assert r.status == 200 and r.json()["error"]["code"] == -32700
        # Connection: close is honoured
        await stream.send_all(post(rpc("add", [1]), extra="Connection: close\r\n"))
        assert (await reader.read()).status == 200
        assert await reader.closed()


async def test_notification_gets_204_and_batch_is_answered(nursery: trio.Nursery) -> None:
    srv = await start_server(nursery, max_body_bytes=10_000)
    r = await http(srv.port, post('{"jsonrpc":"2.0","method":"add","params":[1]}'))
    assert r.status == 204 and r.body == b"" and "content-length" not in r.headers
    r = await http(srv.port, post("[" + rpc("add", [1], 1) + "," + rpc("nope", None, 2) + "]"))
    assert [x.get("result") for x in r.json()] == [1, None]
    assert r.json()[1]["error"]["code"] == -32601


async def test_batch_limit(nursery: trio.Nursery) -> None:
    srv = await start_server(nursery, max_batch_size=2)
    r = await http(srv.port, post("[" + ",".join([rpc("add", [1])] * 3) + "]"))
    assert r.status == 200
    assert r.json()["error"]["code"] == -32600
    assert r.json()["error"]["data"] == {"max_batch_size": 2}


async def test_uri_calls(nursery: trio.Nursery) -> None:
    srv = await start_server(nursery)
    r = await http(srv.port, get("/add?a=2&b=%2240%22"))
    assert (r.status, r.json()) == (200, {"jsonrpc": "2.0", "id": -1, "result": 42})
    r = await http(srv.port, get('/echo?text="hello%20world"'))
    assert r.json()["result"] == "hello world"
    r = await http(srv.port, get("/health"))
    assert (r.status, r.json()["result"]) == (200, {})
    r = await http(srv.port, get("/add?a=x"))
    assert (r.status, r.json()["error"]["code"]) == (400, -32602)
    r = await http(srv.port, get("/add?a=1&a=2"))
    assert (r.status, r.json()["error"]["code"]) == (400, -32602)
    r = await http(srv.port, get("/nope"))
    assert (r.status, r.json()["error"]["code"]) == (404, -32601)
    r = await http(srv.port, get("/subscribe?query=NewBlock"))
    assert (r.status, r.json()["error"]["code"]) == (404, -32601)
    r = await http(srv.port, get("/"))
    assert "/add?a=_&b=_" in r.json()["result"]["uri_methods"]
    r = await http(srv.port, get("/rpc.discover"))
    assert {m["name"] for m in r.json()["result"]["methods"]} >= {"add", "echo", "health", "subscribe"}


async def test_subscribe_over_plain_http_is_refused(nursery: trio.Nursery) -> None:
    srv = await start_server(nursery)
    r = await http(srv.port, post(rpc("subscribe", {"query": "NewBlock"})))
    assert r.json()["error"]["code"] == -32601
    assert "ws" in r.json()["error"]["message"]


MALFORMED_HTTP = [
    ("garbage request line", b"GARBAGE\r\n\r\n", 400),
    ("HTTP/1.1 without Host", b"GET /health HTTP/1.1\r\n\r\n", 400),
    ("bad header line", b"GET /health HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400),
    ("bad content-length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
    ("two content-lengths", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    ("unknown transfer coding", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    ("bad chunk size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    ("header block too large", b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n", 431),
    ("method not allowed", b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405),
    ("POST to another path", post("{}").replace(b"POST / ", b"POST /x "), 404),
    ("websocket without upgrade headers", get("/websocket"), 400),
    (
        "websocket with the wrong version",
        get("/websocket", extra="Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"),
        426,
    ),
]


@pytest.mark.parametrize(("desc", "raw", "status"), MALFORMED_HTTP, ids=[m[0] for m in MALFORMED_HTTP])
async def test_malformed_http_gets_an_error_response(
    nursery: trio.Nursery, desc: str, raw: bytes, status: int
) -> None:
    srv = await start_server(nursery, max_header_bytes=4096)
    r = await http(srv.port, raw)
    assert r.status == status, (desc, r)
    body = r.json()
    assert body["jsonrpc"] == "2.0" and isinstance(body["error"]["message"], str)
    assert body["error"]["code"] in (-32600, -32601)


async def test_oversize_body_gets_413(nursery: trio.Nursery) -> None:
    srv = await start_server(nursery, max_body_bytes=1000)
    # declared too large: answered before the body is read
    r = await http(srv.port, post(b"x" * 1001))
    assert r.status == 413
    assert r.json()["error"]["data"] == {"max_body_bytes": 1000}
    assert r.headers["connection"] == "close"
    # chunked, growing past the limit
    chunks = b"".join(b"%x\r\n%s\r\n" % (300, b"y" * 300) for _ in range(4))
    raw = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    assert (await http(srv.port, raw)).status == 413
    # at the limit is fine
    body = json.dumps({"jsonrpc": "2.0", "method": "echo", "params": ["z" * 900], "id": 1})
    assert len(body) <= 1000
    assert (await http(srv.port, post(body))).json()["result"] == "z" * 900


async def test_expect_100_continue(nursery: trio.Nursery) -> None:
    srv = await start_server(nursery)
    stream = await connect(srv.port)
    reader = HttpReader(stream)
    async with stream:
        body = rpc("add", [4]).encode()
        head = post(body, extra="Expect: 100-continue\r\n")[: -len(body)]
        await stream.send_all(head)
        assert (await reader.read()).status == 100
        await stream.send_all(body)
        assert (await reader.read()).json()["result"] == 4


async def test_too_many_connections_get_503(nursery: trio.Nursery) -> None:
    srv = await start_server(nursery, max_open_connections=2, timeout_idle=30.0)
    held = [await connect(srv.port) for _ in range(2)]
    with trio.fail_after(5):
        while srv.server.open_connections < 2:
            await trio.sleep(0.005)
    r = await http(srv.port, get("/health"))
    assert r.status == 503
    assert r.json()["error"]["code"] == -32004
    assert r.headers["retry-after"] == "1"
    # the held connections still work
    reader = HttpReader(held[0])
    await held[0].send_all(get("/health"))
    assert (await reader.read()).status == 200
    for s in held:
        await s.aclose()
    with trio.fail_after(5):
        while srv.server.open_connections > 0:
            await trio.sleep(0.005)
    assert (await http(srv.port, get("/health"))).status == 200


async def test_slow_request_gets_408(nursery: trio.Nursery) -> None:
    srv = await start_server(nursery, timeout_read=0.3, timeout_idle=5.0)
    stream = await connect(srv.port)
    reader = HttpReader(stream)
    async with stream:
        await stream.send_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        r = await reader.read(timeout=5)
        assert r.status == 408
        assert r.json()["error"]["code"] == -32600
        assert await reader.closed()


async def test_next_request_begun_in_the_same_read_gets_408_not_a_quiet_close(nursery: trio.Nursery) -> None:
    # Found by the garbage test (seed 2151773912): a whole request and the start of
    # the next one arrive together; the second must time out as a request (408), not
    # be closed as an idle keep-alive connection.
    srv = await start_server(nursery, timeout_read=0.3, timeout_idle=5.0)
    stream = await connect(srv.port)
    reader = HttpReader(stream)
    async with stream:
        await stream.send_all(b"POST / HTTP/1.1\r\nHost: x\r\n\n\x80\xf8 no line end")
        first = await reader.read(timeout=5)
        assert first.status == 200 and first.json()["error"]["code"] == -32700
        t0 = trio.current_time()
        second = await reader.read(timeout=3)
        assert second.status == 408
        assert trio.current_time() - t0 < 2.0  # the read timeout, not the 5 s idle one
        assert await reader.closed()


async def test_idle_keep_alive_connection_is_closed(nursery: trio.Nursery) -> None:
    srv = await start_server(nursery, timeout_idle=0.3)
    stream = await connect(srv.port)
    reader = HttpReader(stream)
    async with stream:
        await stream.send_all(get("/health"))
        assert (await reader.read()).status == 200
        t0 = trio.current_time()
        assert await reader.closed(timeout=5)
        assert trio.current_time() - t0 >= 0.25
        assert reader.buf == b""  # closed quietly, no error response


async def test_metrics_endpoint(nursery: trio.Nursery) -> None:
    srv = await start_server(nursery)
    srv.metrics.record_block(height=7, num_txs=3, size_bytes=1234, interval_seconds=1.5, processing_seconds=0.02)
    srv.metrics.add_peer_bytes("consensus", received=10, sent=20)
    srv.metrics.cards_published_total.inc()
    r = await http(srv.port, get("/metrics"))
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.body.decode()
    assert "blackhole_consensus_latest_block_height 7.0" in text
    assert "blackhole_consensus_num_txs 3.0" in text
    assert 'blackhole_consensus_block_interval_seconds_bucket{le="2.0"} 1.0' in text
    assert 'blackhole_p2p_peer_receive_bytes_total{channel="consensus"} 10.0' in text
    assert 'blackhole_p2p_peer_send_bytes_total{channel="consensus"} 20.0' in text
    assert "blackhole_cards_published_total 1.0" in text
    assert "blackhole_mempool_size 0.0" in text


async def test_server_stops_when_cancelled() -> None:
    async with trio.open_nursery() as nursery:
        srv = await start_server(nursery)
        r = await http(srv.port, get("/health"))
        assert r.status == 200
        nursery.cancel_scope.cancel()
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", srv.port)


class BrokenCollector:
    def describe(self) -> list[object]:
        return []

    def collect(self) -> list[object]:
        raise RuntimeError("collector bug with a secret")


async def test_bug_in_the_server_gets_a_clean_500(nursery: trio.Nursery, caplog: pytest.LogCaptureFixture) -> None:
    srv = await start_server(nursery)

    @srv.server.registry.method("crash")
    def crash() -> None:
        raise KeyError("secret")

    r = await http(srv.port, get("/crash"))
    assert (r.status, r.json()["error"]) == (500, {"code": -32603, "message": "Internal error"})
    srv.metrics.registry.register(BrokenCollector())  # type: ignore[arg-type]
    r = await http(srv.port, get("/metrics"))
    assert r.status == 500
    assert r.json()["error"] == {"code": -32603, "message": "Internal error"}
    assert "secret" not in r.body.decode()
    assert any("collector bug" in str(rec.exc_info[1]) for rec in caplog.records if rec.exc_info)


async def test_server_from_config(nursery: trio.Nursery) -> None:
    cfg = default_config("/nonexistent")
    rpc_cfg = dataclasses.replace(cfg.rpc, laddr="tcp://127.0.0.1:0", max_body_bytes=2000, max_batch_size=1)
    server = RpcServer.from_config(rpc_cfg, Registry(), bus=EventBus())
    assert server.limits.max_body_bytes == 2000 and server.host == "127.0.0.1"
    port = await nursery.start(serve, server)
    assert port == server.port != 0
    assert (await http(port, get("/health"))).status == 200
    assert (await http(port, post("[" + rpc("health") + "," + rpc("health") + "]"))).json()["error"]["code"] == -32600
    assert (await http(port, post(b"x" * 2001))).status == 413
    # metrics were not given: /metrics is a 404, not a crash
    assert (await http(port, get("/metrics"))).status == 404


async def test_garbage_always_gets_an_http_answer_and_the_server_survives(nursery: trio.Nursery) -> None:
    # Random for developers; fixed under CI=true (as hypothesis is in conftest.py), so a
    # CI failure replays exactly. BLACKHOLE_TEST_SEED replays any seed.
    default = 2151773912 if os.environ.get("CI") else random.randrange(1 << 32)
    seed = int(os.environ.get("BLACKHOLE_TEST_SEED", default))
    rng = random.Random(seed)
    srv = await start_server(nursery, timeout_read=0.3, timeout_idle=0.3, max_header_bytes=2048)
    prefixes = [b"", b"GET / HTTP/1.1\r\n", b"POST / HTTP/1.1\r\nHost: x\r\n", b"GET /websocket HTTP/1.1\r\nHost: x\r\n"]
    inputs = [rng.choice(prefixes) + rng.randbytes(rng.randrange(1, 3000)) for _ in range(24)]
    answers: list[bytes] = [b""] * len(inputs)

    async def one(i: int) -> None:
        stream = await connect(srv.port)
        async with stream:
            await stream.send_all(inputs[i])
            reader = HttpReader(stream)
            await reader.closed(timeout=5)
            answers[i] = bytes(reader.buf)

    async with trio.open_nursery() as inner:
        for i in range(len(inputs)):
            inner.start_soon(one, i)
    for i, ans in enumerate(answers):
        # A prefix may parse as a valid request (h11 accepts bare \n line ends) and
        # get its answer; whatever follows it must end in an HTTP error.
        statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", ans)
        why = f"seed={seed} input={inputs[i][:80]!r} answer={ans[:200]!r}"
        assert ans.startswith(b"HTTP/1.1 ") and statuses, why
        assert int(statuses[-1]) >= 400, why
        assert b"Traceback" not in ans, why
    assert (await http(srv.port, get("/health"))).status == 200


async def test_header_block_growing_past_the_limit_in_pieces_gets_431(nursery: trio.Nursery) -> None:
    srv = await start_server(nursery, max_header_bytes=2048)
    stream = await connect(srv.port)
    reader = HttpReader(stream)
    async with stream:
        await stream.send_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        for _ in range(10):  # no blank line yet: h11 sees an incomplete header block
            try:
                await stream.send_all(b"X-Pad: " + b"p" * 500 + b"\r\n")
            except trio.BrokenResourceError:
                break
        r = await reader.read()
        assert r.status == 431
        assert r.json()["error"]["code"] == -32600
