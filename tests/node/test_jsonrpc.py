"""The JSON-RPC core: malformed inputs, params, batches, notifications, OpenRPC."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from node.errors import NotFound, RpcError
from node.jsonrpc import (
    CallContext,
    Dispatcher,
    Method,
    Param,
    ParamType,
    Registry,
    Result,
    paging_params,
)

CTX = CallContext("http", "test")


class Boom(Exception):
    pass


def make_registry() -> Registry:
    reg = Registry()

    @reg.method(
        "add",
        params=[
            Param("a", ParamType.INTEGER, "first"),
            Param("b", ParamType.INTEGER, "second", required=False, default=0, minimum=0, maximum=100),
        ],
        result=Result("sum", "a + b", {"type": "integer"}),
    )
    def add(a: int, b: int) -> int:
        """Adds two integers."""
        return a + b

    @reg.method("echo_async", params=[Param("text", ParamType.STRING, max_length=8)])
    async def echo_async(text: str) -> str:
        await trio.sleep(0)
        return text

    @reg.method(
        "bytes_len",
        params=[
            Param("h", ParamType.HEX, required=False, max_length=4),
            Param("b64", ParamType.BASE64, required=False),
        ],
    )
    def bytes_len(h: bytes | None, b64: bytes | None) -> list[int | None]:
        return [None if h is None else len(h), None if b64 is None else len(b64)]

    @reg.method("flag", params=[Param("on", ParamType.BOOLEAN), Param("kind", ParamType.STRING, required=False, default="card", enum=("card", "tx"))])
    def flag(on: bool, kind: str) -> list[Any]:
        return [on, kind]

    @reg.method("boom")
    def boom() -> None:
        raise Boom("secret internal detail")

    @reg.method("missing")
    def missing() -> None:
        raise NotFound("no block at height 7", {"height": 7})

    @reg.method("unserialisable")
    def unserialisable() -> object:
        return object()

    @reg.method("ws_only", transports=("ws",))
    def ws_only() -> int:
        return 1

    return reg


async def call(body: bytes | str, max_batch: int = 3) -> Any:
    out = await Dispatcher(make_registry(), max_batch_size=max_batch).handle_bytes(body, CTX)
    return None if out is None else json.loads(out)


def req(method: str, params: Any = None, id: Any = 1) -> str:
    obj: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        obj["params"] = params
    return json.dumps(obj)


# (description, body, expected error code, expected id in the response)
MALFORMED = [
    ("not JSON", b"{not json", -32700, None),
    ("truncated JSON", b'{"jsonrpc": "2.0", "method": "add"', -32700, None),
    ("NaN is not JSON", b'{"jsonrpc":"2.0","method":"add","params":[NaN],"id":1}', -32700, None),
    ("not UTF-8", b"\xff\xfe\xfa", -32700, None),
    ("nested too deeply", b"[" * 100000 + b"]" * 100000, -32700, None),
    ("empty body", b"", -32700, None),
    ("a number", b"42", -32600, None),
    ("a string", b'"hello"', -32600, None),
    ("missing version", b'{"method":"add","params":[1],"id":1}', -32600, 1),
    ("wrong version", b'{"jsonrpc":"1.0","method":"add","params":[1],"id":2}', -32600, 2),
    ("version as number", b'{"jsonrpc":2.0,"method":"add","params":[1],"id":3}', -32600, 3),
    ("id is an object", b'{"jsonrpc":"2.0","method":"add","params":[1],"id":{}}', -32600, None),
    ("id is an array", b'{"jsonrpc":"2.0","method":"add","params":[1],"id":[1]}', -32600, None),
    ("id is a boolean", b'{"jsonrpc":"2.0","method":"add","params":[1],"id":true}', -32600, None),
    ("id is a float", b'{"jsonrpc":"2.0","method":"add","params":[1],"id":1.5}', -32600, None),
    ("id string too long", req("add", [1], "x" * 300).encode(), -32600, None),
    ("method missing", b'{"jsonrpc":"2.0","id":4}', -32600, 4),
    ("method not a string", b'{"jsonrpc":"2.0","method":7,"id":5}', -32600, 5),
    ("method empty", b'{"jsonrpc":"2.0","method":"","id":6}', -32600, 6),
    ("params a string", b'{"jsonrpc":"2.0","method":"add","params":"1","id":7}', -32600, 7),
    ("unexpected member", b'{"jsonrpc":"2.0","method":"add","params":[1],"id":8,"x":1}', -32600, 8),
    ("empty batch", b"[]", -32600, None),
    ("batch too large", ("[" + ",".join([req("add", [1])] * 4) + "]").encode(), -32600, None),
    ("unknown method", req("nope").encode(), -32601, 1),
    ("transport not offered", req("ws_only").encode(), -32601, 1),
    ("missing required param", req("add", {}).encode(), -32602, 1),
    ("unknown named param", req("add", {"a": 1, "c": 2}).encode(), -32602, 1),
    ("too many positional params", req("add", [1, 2, 3]).encode(), -32602, 1),
    ("integer as float", req("add", [1.5]).encode(), -32602, 1),
    ("integer as bool", req("add", [True]).encode(), -32602, 1),
    ("integer as non-decimal string", req("add", ["0x10"]).encode(), -32602, 1),
    ("integer above maximum", req("add", [1, 101]).encode(), -32602, 1),
    ("integer below minimum", req("add", {"a": 1, "b": "-1"}).encode(), -32602, 1),
    ("string too long", req("echo_async", ["123456789"]).encode(), -32602, 1),
    ("string of wrong type", req("echo_async", [5]).encode(), -32602, 1),
    ("hex odd length", req("bytes_len", {"h": "abc"}).encode(), -32602, 1),
    ("hex not hex", req("bytes_len", {"h": "zz"}).encode(), -32602, 1),
    ("hex too long", req("bytes_len", {"h": "0x0102030405"}).encode(), -32602, 1),
    ("base64 invalid", req("bytes_len", {"b64": "!!!"}).encode(), -32602, 1),
    ("boolean wrong", req("flag", ["yes"]).encode(), -32602, 1),
    ("enum wrong", req("flag", [True, "blob"]).encode(), -32602, 1),
    ("handler bug", req("boom").encode(), -32603, 1),
    ("unserialisable result", req("unserialisable").encode(), -32603, 1),
    ("application error", req("missing").encode(), -32001, 1),
]


@pytest.mark.trio
@pytest.mark.parametrize(("desc", "body", "code", "rid"), MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_malformed_inputs_get_the_right_error(desc: str, body: bytes, code: int, rid: Any) -> None:
    resp = await call(body)
    assert isinstance(resp, dict), desc
    assert resp["jsonrpc"] == "2.0"
    assert resp["error"]["code"] == code, resp
    assert isinstance(resp["error"]["message"], str) and resp["error"]["message"]
    assert resp["id"] == rid
    assert "result" not in resp


@pytest.mark.trio
async def test_internal_error_is_logged_with_traceback_but_not_leaked(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="blackhole.rpc"):
        resp = await call(req("boom"))
    assert resp["error"] == {"code": -32603, "message": "Internal error"}
    assert "secret" not in json.dumps(resp)
    rec = [r for r in caplog.records if r.name == "blackhole.rpc"]
    assert rec and rec[0].exc_info is not None and rec[0].exc_info[0] is Boom


@pytest.mark.trio
async def test_application_error_carries_code_and_data() -> None:
    resp = await call(req("missing", id="m"))
    assert resp == {
        "jsonrpc": "2.0",
        "id": "m",
        "error": {"code": -32001, "message": "no block at height 7", "data": {"height": 7}},
    }


@pytest.mark.trio
async def test_params_by_name_by_position_and_coerced() -> None:
    assert (await call(req("add", [2, 3])))["result"] == 5
    assert (await call(req("add", {"a": "40", "b": "2"})))["result"] == 42
    assert (await call(req("add", ["7"])))["result"] == 7  # default for b
    assert (await call(req("echo_async", {"text": "hi"})))["result"] == "hi"
    assert (await call(req("bytes_len", {"h": "0xA1b2"})))["result"] == [2, None]
    assert (await call(req("bytes_len", {"b64": "AAEC"})))["result"] == [None, 3]
    assert (await call(req("bytes_len")))["result"] == [None, None]
    assert (await call(req("flag", ["true"])))["result"] == [True, "card"]
    assert (await call(req("flag", {"on": False, "kind": "tx"})))["result"] == [False, "tx"]
    # null params count as none given
    assert (await call(b'{"jsonrpc":"2.0","method":"bytes_len","params":null,"id":0}'))["result"] == [None, None]


@pytest.mark.trio
async def test_ids_are_echoed() -> None:
    for rid in (0, -5, "abc", None, 2**70):
        assert (await call(req("add", [1], rid)))["id"] == rid


@pytest.mark.trio
async def test_notifications_get_no_response() -> None:
    assert await call(b'{"jsonrpc":"2.0","method":"add","params":[1]}') is None
    # even a failing notification is silent
    assert await call(b'{"jsonrpc":"2.0","method":"nope"}') is None
    assert await call(b'{"jsonrpc":"2.0","method":"boom"}') is None
    # a batch of notifications only: nothing at all
    assert await call(b'[{"jsonrpc":"2.0","method":"add","params":[1]}]') is None


@pytest.mark.trio
async def test_batch_mixes_results_errors_and_notifications_in_order() -> None:
    body = (
        "["
        + ",".join(
            [
                req("add", [1, 1], "a"),
                '{"jsonrpc":"2.0","method":"add","params":[9]}',
                "1",
            ]
        )
        + "]"
    )
    resp = await call(body)
    assert [r["id"] for r in resp] == ["a", None]
    assert resp[0]["result"] == 2
    assert resp[1]["error"]["code"] == -32600


@pytest.mark.trio
async def test_handler_cancellation_is_not_swallowed() -> None:
    reg = Registry()

    @reg.method("sleepy")
    async def sleepy() -> None:
        await trio.sleep_forever()

    d = Dispatcher(reg)
    with trio.move_on_after(0.01) as scope:
        await d.handle_bytes(req("sleepy"), CTX)
    assert scope.cancelled_caught


def test_openrpc_document_is_generated_from_declarations() -> None:
    doc = make_registry().openrpc_document()
    assert doc["openrpc"].startswith("1.2")
    methods = {m["name"]: m for m in doc["methods"]}
    assert "rpc.discover" in methods
    add = methods["add"]
    assert add["description"] == "Adds two integers."
    assert [p["name"] for p in add["params"]] == ["a", "b"]
    assert add["params"][0]["required"] is True
    assert add["params"][1]["schema"]["maximum"] == 100
    assert add["params"][1]["schema"]["default"] == 0
    assert add["result"] == {"name": "sum", "description": "a + b", "schema": {"type": "integer"}}
    assert methods["ws_only"]["x-transports"] == ["ws"]
    json.dumps(doc)


@pytest.mark.trio
async def test_rpc_discover_answers_the_document() -> None:
    resp = await call(req("rpc.discover"))
    assert resp["result"]["openrpc"].startswith("1.2")
    assert "add" in {m["name"] for m in resp["result"]["methods"]}


def test_declaration_mistakes_are_caught_at_registration() -> None:
    reg = Registry()
    with pytest.raises(ValueError, match="already registered"):
        reg.add(Method("rpc.discover", lambda: None))
    with pytest.raises(ValueError, match="unknown type"):
        Param("x", "float")
    with pytest.raises(ValueError, match="required"):
        Method("m", lambda a, b: None, (Param("a", ParamType.INTEGER, required=False), Param("b", ParamType.INTEGER)))
    with pytest.raises(TypeError, match="reserved"):

        class Bad(RpcError):
            code = -32500


@pytest.mark.trio
async def test_paging_params_are_bounded() -> None:
    reg = Registry()

    @reg.method("cards", params=paging_params(30, 100))
    def cards(page: int, per_page: int) -> list[int]:
        return [page, per_page]

    d = Dispatcher(reg)

    async def run(params: object) -> dict[str, object]:
        out = await d.handle_bytes(req("cards", params), CTX)
        assert out is not None
        return json.loads(out)  # type: ignore[no-any-return]

    assert (await run({}))["result"] == [1, 30]
    assert (await run({"page": "3", "per_page": 100}))["result"] == [3, 100]
    too_big = await run({"per_page": 101})
    assert too_big["error"]["code"] == -32602 and "<= 100" in too_big["error"]["message"]  # type: ignore[index]
    assert (await run({"page": 0}))["error"]["code"] == -32602  # type: ignore[index]
    with pytest.raises(ValueError):
        paging_params(200, 100)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
request_like = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2]),
        "id": json_values,
        "method": st.sampled_from(["add", "echo_async", "bytes_len", "flag", "boom", "nope", "rpc.discover"]) | json_values,
        "params": json_values,
    },
)


def check_response(resp: Any) -> None:
    assert resp["jsonrpc"] == "2.0" and "id" in resp
    assert ("result" in resp) != ("error" in resp)
    if "error" in resp:
        assert isinstance(resp["error"]["code"], int) and isinstance(resp["error"]["message"], str)


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=64), request_like.map(json.dumps), st.lists(request_like, max_size=4).map(json.dumps)))
def test_any_input_gets_a_well_formed_answer_and_never_raises(body: bytes | str) -> None:
    out = trio.run(call, body)
    if out is None:
        return
    for resp in out if isinstance(out, list) else [out]:
        check_response(resp)
