"""WebSocket JSON-RPC and subscriptions, with a real wsproto client over trio sockets."""

from __future__ import annotations

import pytest
import trio

from tests.node.rpcclient import Closed, WsClient, start_server

pytestmark = pytest.mark.trio


async def wait_until(cond: object, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not cond():  # type: ignore[operator]
            await trio.sleep(0.005)


async def test_json_rpc_over_websocket(nursery: trio.Nursery) -> None:
    srv = await start_server(nursery)
    c = await WsClient.connect(srv.port)
    assert (await c.call("add", [2, 2]))["result"] == 4
    assert (await c.call("health"))["result"] == {}
    await c.send_text("{broken")
    assert (await c.recv_json())["error"]["code"] == -32700
    await c.send_text('[{"jsonrpc":"2.0","method":"add","params":[1],"id":"a"},{"jsonrpc":"2.0","method":"x","id":"b"}]')
    batch = await c.recv_json()
    assert [r["id"] for r in batch] == ["a", "b"] and batch[1]["error"]["code"] == -32601
    # a notification gets nothing back: the next answer is for the next call
    await c.send_text('{"jsonrpc":"2.0","method":"add","params":[1]}')
    assert (await c.call("add", [5], id=9)) == {"jsonrpc": "2.0", "id": 9, "result": 5}
    await c.aclose()


async def test_subscribe_receives_events_in_order_and_filters(nursery: trio.Nursery) -> None:
    srv = await start_server(nursery)
    c = await WsClient.connect(srv.port)
    r = await c.call("subscribe", {"query": "NewBlock"})
    assert r["result"] == {"subscription": "NewBlock"}
    q = "tm.event = 'Tx' AND sender = 'aa' AND height >= 3"
    assert (await c.call("subscribe", [q], id=2))["result"] == {"subscription": q}
    for h in range(1, 6):
        srv.bus.publish("NewBlock", {"height": h})
        srv.bus.publish("Tx", {"sender": "aa" if h % 2 else "bb", "height": h})
        await trio.sleep(0)
    got = [await c.recv_json() for _ in range(7)]
    assert all(n["method"] == "subscription" and "id" not in n for n in got)
    blocks = [n["params"]["event"]["height"] for n in got if n["params"]["topic"] == "NewBlock"]
    txs = [n["params"]["event"]["height"] for n in got if n["params"]["topic"] == "Tx"]
    assert blocks == [1, 2, 3, 4, 5]
    assert txs == [3, 5]
    assert {n["params"]["subscription"] for n in got if n["params"]["topic"] == "Tx"} == {q}
    # unsubscribe one: its events stop, the other continues
    assert (await c.call("unsubscribe", {"query": "NewBlock"}))["result"] == {}
    srv.bus.publish("NewBlock", {"height": 6})
    srv.bus.publish("Tx", {"sender": "aa", "height": 7})
    n = await c.recv_json()
    assert (n["params"]["topic"], n["params"]["event"]["height"]) == ("Tx", 7)
    assert (await c.call("unsubscribe_all"))["result"] == {"cancelled": 1}
    assert srv.bus.subscriber_count == 0
    await c.aclose()


async def test_subscription_errors_and_limits(nursery: trio.Nursery) -> None:
    srv = await start_server(nursery, max_subscriptions_per_client=2, max_subscription_clients=1)
    c = await WsClient.connect(srv.port)
    assert (await c.call("subscribe", ["Nope"]))["error"]["code"] == -32602
    assert (await c.call("subscribe", ["tm.event = 'Tx' AND"]))["error"]["code"] == -32602
    assert (await c.call("subscribe", ["sender = 'x'"]))["error"]["code"] == -32602
    assert (await c.call("subscribe", {}))["error"]["code"] == -32602
    assert "result" in await c.call("subscribe", ["NewBlock"])
    assert (await c.call("subscribe", ["NewBlock"]))["error"]["code"] == -32602  # duplicate
    assert "result" in await c.call("subscribe", ["NewCard"])
    over = await c.call("subscribe", ["Tx"])
    assert over["error"]["code"] == -32003
    assert over["error"]["data"] == {"max_subscriptions_per_client": 2}
    assert (await c.call("unsubscribe", ["Tx"]))["error"]["code"] == -32602
    # a second client may not subscribe: one subscribing client at most
    d = await WsClient.connect(srv.port)
    r = await d.call("subscribe", ["Tx"])
    assert r["error"]["code"] == -32003 and r["error"]["data"] == {"max_subscription_clients": 1}
    # once the first connection closes, its subscriber leaves the bus
    await c.aclose()
    await wait_until(lambda: srv.bus.subscriber_count == 0)
    assert "result" in await d.call("subscribe", ["Tx"])
    await d.aclose()


async def test_slow_subscriber_is_dropped_and_others_are_unaffected(nursery: trio.Nursery) -> None:
    srv = await start_server(nursery, subscription_buffer_size=4)
    slow = await WsClient.connect(srv.port)
    other = await WsClient.connect(srv.port)
    assert "result" in await slow.call("subscribe", ["Tx"])
    assert "result" in await other.call("subscribe", ["tm.event = 'Tx' AND kind = 'rare'"])
    assert "result" in await other.call("subscribe", ["NewBlock"], id=2)
    # Published faster than any writer can run: no checkpoint between publishes.
    for i in range(10):
        srv.bus.publish("Tx", {"kind": "common", "i": i})
    srv.bus.publish("Tx", {"kind": "rare", "i": 10})
    assert srv.bus.dropped_total == 1
    with pytest.raises(Closed) as closed:
        while True:
            note = await slow.recv_json()
            if note["method"] == "subscription_dropped":
                assert "buffer of 4 events overflowed" in note["params"]["reason"]
    assert closed.value.code == 1008
    assert "too slow" in closed.value.reason
    # the other subscriber got its event and keeps receiving
    n = await other.recv_json()
    assert n["params"]["event"] == {"kind": "rare", "i": 10}
    srv.bus.publish("NewBlock", {"height": 1})
    assert (await other.recv_json())["params"]["event"] == {"height": 1}
    assert srv.bus.subscriber_count == 1
    await other.aclose()
    await slow.aclose()


async def test_publisher_is_never_blocked_by_a_client_that_does_not_read(nursery: trio.Nursery) -> None:
    srv = await start_server(nursery, subscription_buffer_size=8, timeout_write=0.5)
    c = await WsClient.connect(srv.port)
    assert "result" in await c.call("subscribe", ["NewBlock"])
    big = "x" * 60_000
    # The client never reads again: socket buffers fill, the writer stalls, the
    # buffer overflows and the subscriber is dropped; publish stays instant.
    with trio.fail_after(10):
        i = 0
        while srv.bus.subscriber_count:
            t0 = trio.current_time()
            srv.bus.publish("NewBlock", {"height": i, "pad": big})
            assert trio.current_time() - t0 < 0.5  # synchronous: no wait on any socket
            i += 1
            await trio.sleep(0.001)
    assert srv.bus.dropped_total == 1
    # the server then hangs up on it (write timeout), freeing the connection
    await wait_until(lambda: srv.server.open_connections == 0)
    await c.aclose()


async def test_binary_and_oversize_messages_close_the_socket(nursery: trio.Nursery) -> None:
    srv = await start_server(nursery, max_body_bytes=1000)
    c = await WsClient.connect(srv.port)
    await c.send_bytes(b"\x00\x01")
    with pytest.raises(Closed) as closed:
        await c.recv_json()
    assert closed.value.code == 1003
    await c.aclose()
    d = await WsClient.connect(srv.port)
    await d.send_text('{"jsonrpc":"2.0","method":"echo","params":["' + "z" * 2000 + '"],"id":1}')
    with pytest.raises(Closed) as closed:
        await d.recv_json()
    assert closed.value.code == 1009
    await d.aclose()


async def test_malformed_frame_gets_a_protocol_error_close(nursery: trio.Nursery) -> None:
    srv = await start_server(nursery)
    c = await WsClient.connect(srv.port)
    await c.stream.send_all(b"\x81\x02hi")  # a client frame must be masked
    with pytest.raises(Closed) as closed:
        await c.recv_json()
    assert closed.value.code == 1002
    await c.aclose()


async def test_idle_websocket_is_pinged_then_closed(nursery: trio.Nursery) -> None:
    srv = await start_server(nursery, timeout_idle=0.2)
    c = await WsClient.connect(srv.port)
    # recv_json answers pings, so this client stays alive across several idle periods
    with trio.move_on_after(0.7):
        await c.recv_json(timeout=5)
    assert c.closed is None
    assert (await c.call("add", [1]))["result"] == 1
    # a client that never answers is closed after two idle periods
    d = await WsClient.connect(srv.port)
    await wait_until(lambda: srv.server.open_connections == 2)
    with trio.fail_after(5):
        data = b""
        while True:
            chunk = await d.stream.receive_some(65536)
            if not chunk:
                break
            data += chunk
    d.ws.receive_data(data)
    events = list(d.ws.events())
    assert any(getattr(e, "code", None) == 1001 for e in events)
    await c.aclose()
    await d.aclose()
