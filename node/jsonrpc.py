"""JSON-RPC 2.0 core: parsing, validation, dispatch and the OpenRPC document.

Theory of operation. A `Registry` holds `Method`s; each declares its `Param`s
(name, type, required, default, description, bounds) and its `Result`. The
declarations are the single source of truth: `Dispatcher` validates and coerces
every call against them (by-name or by-position, integers also as decimal
strings as CometBFT clients send them) and `openrpc_document` renders them as
an OpenRPC 1.2 document served at `rpc.discover`.

No sockets, no clock, no event loop of its own: `Dispatcher.handle_bytes` is an
`async` function only so that async handlers can be awaited; it works under any
loop. A handler's exception never escapes: `RpcError`s become their error object,
anything else becomes -32603 with the traceback logged here.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import json
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from node.errors import (
    InternalError,
    InvalidParams,
    InvalidRequest,
    MethodNotFound,
    ParseError,
    RpcError,
)
from node.log import get_logger

log = get_logger("rpc")

OPENRPC_VERSION = "1.2.6"
MAX_ID_LENGTH = 256
MAX_METHOD_LENGTH = 128
_MAX_INT_DIGITS = 80  # more than enough for u256; keeps int() of huge strings cheap
_DECIMAL = re.compile(r"-?[0-9]+")
_HEX = re.compile(r"(?:0[xX])?((?:[0-9a-fA-F]{2})*)")


class ParamType:
    """The JSON types a parameter may declare, with their JSON schema."""

    INTEGER = "integer"
    STRING = "string"
    BOOLEAN = "boolean"
    NUMBER = "number"
    OBJECT = "object"
    ARRAY = "array"
    HEX = "hex"  # bytes given as hex (optional 0x); the handler receives bytes
    BASE64 = "base64"  # bytes given as standard base64; the handler receives bytes

    ALL = (INTEGER, STRING, BOOLEAN, NUMBER, OBJECT, ARRAY, HEX, BASE64)


@dataclass(frozen=True, slots=True)
class Param:
    """One declared parameter of a method."""

    name: str
    """Name used by-name and in the OpenRPC document; a valid Python identifier."""
    type: str
    """One of `ParamType.ALL`."""
    description: str = ""
    """One line for the OpenRPC document."""
    required: bool = True
    """A required parameter has no default."""
    default: Any = None
    """Value given to the handler when an optional parameter is absent."""
    minimum: int | float | None = None
    """Inclusive lower bound for integer and number parameters."""
    maximum: int | float | None = None
    """Inclusive upper bound for integer and number parameters."""
    max_length: int | None = None
    """Upper bound on characters (string), items (array) or decoded bytes (hex, base64)."""
    enum: tuple[str, ...] | None = None
    """Allowed values of a string parameter."""

    def __post_init__(self) -> None:
        if self.type not in ParamType.ALL:
            raise ValueError(f"parameter {self.name!r}: unknown type {self.type!r}")
        if not self.name.isidentifier():
            raise ValueError(f"parameter name {self.name!r} is not an identifier")
        if self.required and self.default is not None:
            raise ValueError(f"parameter {self.name!r}: a required parameter has no default")

    def schema(self) -> dict[str, Any]:
        """The JSON schema of the accepted wire value."""
        s: dict[str, Any]
        if self.type == ParamType.HEX:
            s = {"type": "string", "pattern": "^(0[xX])?([0-9a-fA-F]{2})*$"}
            if self.max_length is not None:
                s["maxLength"] = 2 + 2 * self.max_length
        elif self.type == ParamType.BASE64:
            s = {"type": "string", "contentEncoding": "base64"}
        elif self.type == ParamType.INTEGER:
            # CometBFT habit: integers may also come as decimal strings.
            s = {"oneOf": [{"type": "integer"}, {"type": "string", "pattern": "^-?[0-9]+$"}]}
        else:
            s = {"type": self.type}
        if self.minimum is not None:
            s["minimum"] = self.minimum
        if self.maximum is not None:
            s["maximum"] = self.maximum
        if self.max_length is not None and self.type == ParamType.STRING:
            s["maxLength"] = self.max_length
        if self.max_length is not None and self.type == ParamType.ARRAY:
            s["maxItems"] = self.max_length
        if self.enum is not None:
            s["enum"] = list(self.enum)
        if not self.required and self.default is not None:
            s["default"] = self.default
        return s

    def coerce(self, value: Any) -> Any:
        """The validated value handed to the handler; raises `InvalidParams`."""
        t = self.type
        if t == ParamType.INTEGER:
            out: Any = self._coerce_int(value)
        elif t == ParamType.NUMBER:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self._bad("must be a number", value)
            if isinstance(value, float) and not math.isfinite(value):
                raise self._bad("must be a finite number", value)
            out = value
        elif t == ParamType.BOOLEAN:
            if isinstance(value, bool):
                out = value
            elif value in ("true", "false"):
                out = value == "true"
            else:
                raise self._bad("must be a boolean", value)
        elif t == ParamType.STRING:
            if not isinstance(value, str):
                raise self._bad("must be a string", value)
            if self.max_length is not None and len(value) > self.max_length:
                raise self._bad(f"is longer than {self.max_length} characters", None)
            if self.enum is not None and value not in self.enum:
                raise self._bad(f"must be one of {', '.join(self.enum)}", value)
            out = value
        elif t == ParamType.OBJECT:
            if not isinstance(value, dict):
                raise self._bad("must be an object", value)
            out = value
        elif t == ParamType.ARRAY:
            if not isinstance(value, list):
                raise self._bad("must be an array", value)
            if self.max_length is not None and len(value) > self.max_length:
                raise self._bad(f"has more than {self.max_length} items", None)
            out = value
        elif t == ParamType.HEX:
            out = self._coerce_hex(value)
        else:
            out = self._coerce_base64(value)
        if t in (ParamType.INTEGER, ParamType.NUMBER):
            if self.minimum is not None and out < self.minimum:
                raise self._bad(f"must be >= {self.minimum}", value)
            if self.maximum is not None and out > self.maximum:
                raise self._bad(f"must be <= {self.maximum}", value)
        return out

    def _coerce_int(self, value: Any) -> int:
        if isinstance(value, bool):
            raise self._bad("must be an integer", value)
        if isinstance(value, int):
            return value
        if isinstance(value, str) and len(value) <= _MAX_INT_DIGITS and _DECIMAL.fullmatch(value):
            return int(value)
        raise self._bad("must be an integer (a JSON number or a decimal string)", value)

    def _coerce_hex(self, value: Any) -> bytes:
        if not isinstance(value, str):
            raise self._bad("must be a hex string", value)
        m = _HEX.fullmatch(value)
        if m is None:
            raise self._bad("must be an even number of hex digits, optionally 0x-prefixed", None)
        data = bytes.fromhex(m.group(1))
        self._check_bytes_length(data)
        return data

    def _coerce_base64(self, value: Any) -> bytes:
        if not isinstance(value, str):
            raise self._bad("must be a base64 string", value)
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise self._bad("must be standard base64", None) from None
        self._check_bytes_length(data)
        return data

    def _check_bytes_length(self, data: bytes) -> None:
        if self.max_length is not None and len(data) > self.max_length:
            raise self._bad(f"is longer than {self.max_length} bytes", None)

    def _bad(self, what: str, value: Any) -> InvalidParams:
        data: dict[str, Any] = {"param": self.name}
        if value is not None and isinstance(value, str | int | float | bool) and len(str(value)) <= 80:
            data["value"] = value
        return InvalidParams(f"parameter '{self.name}' {what}", data)


def paging_params(default: int, maximum: int) -> tuple[Param, Param]:
    """The `page` (1-based) and `per_page` declarations of a paged method, bounded
    by ``[rpc] page_size_default`` and ``page_size_max``; a larger per_page is a
    -32602 naming the limit rather than a silent clamp."""
    if not 1 <= default <= maximum:
        raise ValueError("need 1 <= default page size <= maximum")
    return (
        Param("page", ParamType.INTEGER, "1-based page number.", required=False, default=1, minimum=1),
        Param(
            "per_page",
            ParamType.INTEGER,
            f"Items per page, at most {maximum}.",
            required=False,
            default=default,
            minimum=1,
            maximum=maximum,
        ),
    )


@dataclass(frozen=True, slots=True)
class Result:
    """The declared result of a method, for the OpenRPC document."""

    name: str
    description: str = ""
    schema: Mapping[str, Any] = field(default_factory=dict)


HASH_LEN = 32


def height_param(desc: str) -> Param:
    """The optional `height` parameter of a method that reads at a height."""
    return Param("height", ParamType.INTEGER, desc, required=False, minimum=1)


def hash32_param(name: str, desc: str) -> Param:
    """A 32-byte hash parameter, given as hex."""
    return Param(name, ParamType.HEX, desc + " (32 bytes, hex).", max_length=HASH_LEN)


def need32(name: str, value: bytes) -> bytes:
    """`value` if it is 32 bytes, else the -32602 naming the parameter."""
    if len(value) != HASH_LEN:
        raise InvalidParams(f"parameter '{name}' must be {HASH_LEN} bytes (64 hex digits), got {len(value)}",
                            {"param": name})
    return value


def object_result(desc: str) -> Result:
    """A method result that is one JSON object, described in words."""
    return Result("result", desc, {"type": "object"})


def package_version() -> str:
    """The installed blackhole version (status answers carry it)."""
    try:
        return metadata.version("blackhole")
    except metadata.PackageNotFoundError:
        return "0.1.0"


Handler = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Method:
    """A registered method: its handler and its declarations."""

    name: str
    handler: Handler
    params: tuple[Param, ...] = ()
    result: Result = Result("result")
    summary: str = ""
    description: str = ""
    needs_context: bool = False
    """If true the handler is called as ``handler(ctx, **params)`` with the `CallContext`."""
    transports: frozenset[str] = frozenset({"http", "ws"})
    """Transports the method is offered on; elsewhere it answers -32601 with a reason."""
    uri: bool = True
    """Whether GET /<name>?arg=value may call it."""

    def __post_init__(self) -> None:
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"method {self.name!r}: duplicate parameter names")
        seen_optional = False
        for p in self.params:
            if p.required and seen_optional:
                raise ValueError(f"method {self.name!r}: required {p.name!r} after an optional one")
            seen_optional = seen_optional or not p.required

    def bind(self, params: Any) -> dict[str, Any]:
        """Validate and coerce raw JSON params (list, dict or absent) into keyword
        arguments for the handler; raises `InvalidParams`."""
        given: dict[str, Any]
        if params is None:
            given = {}
        elif isinstance(params, list):
            if len(params) > len(self.params):
                raise InvalidParams(
                    f"{self.name} takes at most {len(self.params)} positional parameters,"
                    f" got {len(params)}",
                    {"max": len(self.params)},
                )
            given = {p.name: v for p, v in zip(self.params, params, strict=False)}
        elif isinstance(params, dict):
            declared = {p.name for p in self.params}
            unknown = sorted(k for k in params if k not in declared)
            if unknown:
                raise InvalidParams(
                    f"unknown parameter '{unknown[0][:64]}' for {self.name}",
                    {"param": unknown[0][:64], "accepted": sorted(declared)},
                )
            given = params
        else:
            raise InvalidParams("params must be an array or an object")
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name in given:
                out[p.name] = p.coerce(given[p.name])
            elif p.required:
                raise InvalidParams(f"missing required parameter '{p.name}'", {"param": p.name})
            else:
                out[p.name] = p.default
        return out


@dataclass(slots=True)
class CallContext:
    """What a context-aware handler learns about the call."""

    transport: str
    """"http" or "ws"."""
    remote: str = ""
    """The client's address, for logs."""
    session: Any = None
    """Transport state, such as the WebSocket connection's subscriber."""


class Registry:
    """The set of methods a server offers."""

    def __init__(self, *, title: str = "Blackhole node JSON-RPC", version: str = "0.1.0") -> None:
        self.title = title
        self.version = version
        self._methods: dict[str, Method] = {}
        self.add(
            Method(
                "rpc.discover",
                self.openrpc_document,
                result=Result(
                    "OpenRPC Schema",
                    "The OpenRPC 1.2 document describing every method of this server.",
                    {"$ref": "https://raw.githubusercontent.com/open-rpc/meta-schema/master/schema.json"},
                ),
                summary="Returns the OpenRPC document of this server.",
            )
        )

    def add(self, method: Method) -> Method:
        """Register a method; names are unique."""
        if not method.name or len(method.name) > MAX_METHOD_LENGTH:
            raise ValueError(f"bad method name {method.name!r}")
        if method.name in self._methods:
            raise ValueError(f"method {method.name!r} is already registered")
        self._methods[method.name] = method
        return method

    def method(
        self,
        name: str,
        *,
        params: Sequence[Param] = (),
        result: Result | None = None,
        summary: str = "",
        description: str = "",
        needs_context: bool = False,
        transports: Iterable[str] = ("http", "ws"),
        uri: bool = True,
    ) -> Callable[[Handler], Handler]:
        """Decorator form of `add`; the description defaults to the handler's docstring."""

        def register(fn: Handler) -> Handler:
            self.add(
                Method(
                    name,
                    fn,
                    tuple(params),
                    result or Result("result"),
                    summary,
                    description or inspect.cleandoc(fn.__doc__ or ""),
                    needs_context,
                    frozenset(transports),
                    uri,
                )
            )
            return fn

        return register

    def get(self, name: str) -> Method | None:
        return self._methods.get(name)

    def names(self) -> list[str]:
        return sorted(self._methods)

    def openrpc_document(self) -> dict[str, Any]:
        """The OpenRPC 1.2 document generated from the declarations."""
        methods = []
        for name in self.names():
            m = self._methods[name]
            entry: dict[str, Any] = {
                "name": m.name,
                "params": [
                    {
                        "name": p.name,
                        "description": p.description,
                        "required": p.required,
                        "schema": p.schema(),
                    }
                    for p in m.params
                ],
                "result": {
                    "name": m.result.name,
                    "description": m.result.description,
                    "schema": dict(m.result.schema),
                },
                "paramStructure": "either",
            }
            if m.summary:
                entry["summary"] = m.summary
            if m.description:
                entry["description"] = m.description
            if m.transports != frozenset({"http", "ws"}):
                entry["x-transports"] = sorted(m.transports)
            methods.append(entry)
        return {
            "openrpc": OPENRPC_VERSION,
            "info": {"title": self.title, "version": self.version},
            "methods": methods,
        }


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(data: bytes | str) -> Any:
    """Strict JSON: no NaN/Infinity; bad encoding, depth or huge numbers are
    `ParseError`s, never other exceptions."""
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except RecursionError:
        raise ParseError("Parse error: nested too deeply") from None
    except (ValueError, UnicodeDecodeError, TypeError) as e:
        # JSONDecodeError is a ValueError; so is the int digit limit.
        raise ParseError("Parse error: " + str(e).split("\n")[0][:200]) from None


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if value is None or isinstance(value, int):
        return True
    return isinstance(value, str) and len(value) <= MAX_ID_LENGTH


def error_response(err: RpcError, req_id: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": req_id, "error": err.to_json()}


def encode(obj: Any) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


@dataclass(frozen=True, slots=True)
class Request:
    """A validated single request."""

    method: str
    params: Any
    id: Any
    is_notification: bool


def parse_request(obj: Any) -> Request:
    """Validate one request object; raises `InvalidRequest` whose `request_id` is
    the id to echo when one could be read."""
    if not isinstance(obj, dict):
        raise InvalidRequest("Invalid Request: a request must be a JSON object")
    req_id = obj.get("id")
    echo = req_id if _valid_id(req_id) else None
    if obj.get("jsonrpc") != "2.0":
        raise _invalid('Invalid Request: "jsonrpc" must be exactly "2.0"', echo)
    if "id" in obj and not _valid_id(req_id):
        raise _invalid(
            f'Invalid Request: "id" must be a string (at most {MAX_ID_LENGTH} characters),'
            " an integer or null",
            None,
        )
    method = obj.get("method")
    if not isinstance(method, str) or not method:
        raise _invalid('Invalid Request: "method" must be a non-empty string', echo)
    if len(method) > MAX_METHOD_LENGTH:
        raise _invalid("Invalid Request: method name too long", echo)
    params = obj.get("params")
    if params is not None and not isinstance(params, list | dict):
        raise _invalid('Invalid Request: "params" must be an array or an object', echo)
    extra = sorted(set(obj) - {"jsonrpc", "id", "method", "params"})
    if extra:
        raise _invalid(f"Invalid Request: unexpected member '{extra[0][:64]}'", echo)
    return Request(method, params, req_id, "id" not in obj)


def _invalid(message: str, echo: Any) -> InvalidRequest:
    err = InvalidRequest(message)
    err.request_id = echo
    return err


class Dispatcher:
    """Runs requests against a `Registry`. Never raises for any input."""

    def __init__(self, registry: Registry, *, max_batch_size: int = 10) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self.registry = registry
        self.max_batch_size = max_batch_size

    async def handle_bytes(self, data: bytes | str, ctx: CallContext) -> bytes | None:
        """Answer a request body: the response bytes, or None when nothing is to be
        sent back (a notification, or a batch made only of notifications)."""
        try:
            obj = parse_json(data)
        except ParseError as e:
            return encode(error_response(e))
        out = await self.handle_json(obj, ctx)
        return None if out is None else self._encode_safely(out)

    async def handle_json(self, obj: Any, ctx: CallContext) -> Any:
        """Answer an already-parsed body: a response object, a list, or None."""
        if isinstance(obj, list):
            if not obj:
                return error_response(InvalidRequest("Invalid Request: empty batch"))
            if len(obj) > self.max_batch_size:
                return error_response(
                    InvalidRequest(
                        f"Invalid Request: batch of {len(obj)} requests exceeds the limit of"
                        f" {self.max_batch_size}",
                        {"max_batch_size": self.max_batch_size},
                    )
                )
            responses = []
            for item in obj:  # in order; each item is independent
                r = await self._handle_one(item, ctx)
                if r is not None:
                    responses.append(r)
            return responses or None
        return await self._handle_one(obj, ctx)

    async def _handle_one(self, obj: Any, ctx: CallContext) -> dict[str, Any] | None:
        try:
            req = parse_request(obj)
        except InvalidRequest as e:
            return error_response(e, e.request_id)
        try:
            result = await self.call(req.method, req.params, ctx)
        except RpcError as e:
            return None if req.is_notification else error_response(e, req.id)
        if req.is_notification:
            return None
        return {"jsonrpc": "2.0", "id": req.id, "result": result}

    async def call(self, name: str, params: Any, ctx: CallContext) -> Any:
        """Call one method; raises only `RpcError` (an unexpected exception of the
        handler is logged with its traceback and becomes `InternalError`)."""
        method = self.registry.get(name)
        if method is None:
            raise MethodNotFound(f"Method not found: {name[:MAX_METHOD_LENGTH]}", {"method": name})
        if ctx.transport not in method.transports:
            raise MethodNotFound(
                f"Method {name} is only available over {', '.join(sorted(method.transports))}",
                {"method": name, "transports": sorted(method.transports)},
            )
        kwargs = method.bind(params)
        try:
            if method.needs_context:
                value = method.handler(ctx, **kwargs)
            else:
                value = method.handler(**kwargs)
            if inspect.isawaitable(value):
                value = await _await(value)
            encode(value)  # a result we cannot serialise is our bug, caught here
        except RpcError:
            raise
        except Exception:
            log.exception("rpc handler failed", method=name, transport=ctx.transport, remote=ctx.remote)
            raise InternalError() from None
        return value

    def _encode_safely(self, out: Any) -> bytes:
        try:
            return encode(out)
        except (TypeError, ValueError):  # pragma: no cover - results are checked in call()
            log.exception("rpc response could not be encoded")
            return encode(error_response(InternalError()))


async def _await(value: Awaitable[Any]) -> Any:
    return await value
