"""Errors of the node package.

`NodeError` is the base: the CLI catches it and prints one line. `RpcError` and
its subclasses travel to RPC clients as JSON-RPC error objects; everything else a
handler raises is a bug of ours and reaches the client as one clean -32603.
"""

from __future__ import annotations

from typing import Any, ClassVar

# JSON-RPC 2.0 reserves -32768..-32000. Inside it, the standard codes below and the
# "server error" range -32099..-32000 that we use for our own application errors.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR_MIN = -32099
SERVER_ERROR_MAX = -32000
_STANDARD = {PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR}


def is_allowed_code(code: int) -> bool:
    """A code an `RpcError` may carry: a standard one, one of the server range, or
    any code outside the reserved block (free for applications per the spec)."""
    if code in _STANDARD:
        return True
    if SERVER_ERROR_MIN <= code <= SERVER_ERROR_MAX:
        return True
    return not -32768 <= code <= -32000


class NodeError(Exception):
    """Base of every error the node raises on purpose."""


class RpcError(NodeError):
    """An error answered to an RPC client as ``{"code", "message", "data"}``.

    Subclasses fix `code` (and usually a default message); `data` is any JSON value
    that helps the client (the offending parameter, a limit). Raised by handlers
    when the *client* asked for something wrong or unavailable.
    """

    code: ClassVar[int] = SERVER_ERROR_MAX
    default_message: ClassVar[str] = "Server error"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not isinstance(cls.code, int) or not is_allowed_code(cls.code):
            raise TypeError(f"{cls.__name__}.code {cls.code!r} is a reserved JSON-RPC code")

    def __init__(self, message: str | None = None, data: Any = None) -> None:
        self.message = message if message is not None else self.default_message
        self.data = data
        super().__init__(self.message)

    def to_json(self) -> dict[str, Any]:
        """The JSON-RPC error object."""
        obj: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            obj["data"] = self.data
        return obj


class ParseError(RpcError):
    """The request body is not valid JSON (the client's fault)."""

    code = PARSE_ERROR
    default_message = "Parse error"


class InvalidRequest(RpcError):
    """The JSON is not a valid JSON-RPC 2.0 request, or a batch breaks a limit."""

    code = INVALID_REQUEST
    default_message = "Invalid Request"
    request_id: Any = None
    """The request's id when it could be read (echoed in the response), else None."""


class MethodNotFound(RpcError):
    """No method of that name is registered (or it is not offered on this transport)."""

    code = METHOD_NOT_FOUND
    default_message = "Method not found"


class InvalidParams(RpcError):
    """A parameter is missing, unknown, of the wrong type or out of range."""

    code = INVALID_PARAMS
    default_message = "Invalid params"


class InternalError(RpcError):
    """A bug on our side; the client sees only this message, the log has the traceback."""

    code = INTERNAL_ERROR
    default_message = "Internal error"


class ServerError(RpcError):
    """Generic application error (-32000)."""

    code = -32000
    default_message = "Server error"


class NotFound(RpcError):
    """The requested object (block, card, transaction, ...) does not exist."""

    code = -32001
    default_message = "Not found"


class Unavailable(RpcError):
    """The method exists but cannot be served here (for example `subscribe` over
    plain HTTP, or data pruned by the retention settings)."""

    code = -32002
    default_message = "Unavailable"


class LimitExceeded(RpcError):
    """A per-client limit was reached (subscriptions per connection, page size)."""

    code = -32003
    default_message = "Limit exceeded"


class Overloaded(RpcError):
    """The node is too busy to take this request now; retry later."""

    code = -32004
    default_message = "Overloaded"


class ConfigError(NodeError):
    """The configuration file (or a value given programmatically) is invalid: the
    operator's fault. Names the file (when there is one) and the dotted key."""

    def __init__(self, key: str, message: str, file: str | None = None) -> None:
        self.key = key
        self.reason = message
        self.file = file
        super().__init__(self._text())

    def _text(self) -> str:
        where = f"{self.file}: " if self.file else ""
        return f"{where}{self.key}: {self.reason}" if self.key else f"{where}{self.reason}"

    def with_file(self, file: str) -> ConfigError:
        """The same error, now naming the file it came from."""
        return ConfigError(self.key, self.reason, file)
