"""A small JSON-RPC 2.0 client over HTTP (the standard library's http.client).

``RpcClient("http://127.0.0.1:26657").call("status")`` returns the result or
raises :class:`RpcClientError` carrying the server's JSON-RPC ``code``,
``message`` and ``data``; transport failures (refused, timeout, a body that is
not JSON-RPC) raise :class:`RpcTransportError`. Both are NodeErrors, so the
CLI prints them as one line.
"""

from __future__ import annotations

import http.client
import itertools
import json
from typing import Any
from urllib.parse import urlsplit

from node.errors import NodeError

DEFAULT_URL = "http://127.0.0.1:26657"
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class RpcClientError(NodeError):
    """The node answered with a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        self.code = code
        self.message = message
        self.data = data
        detail = f" ({json.dumps(data)[:300]})" if data is not None else ""
        super().__init__(f"RPC error {code}: {message}{detail}")


class RpcTransportError(NodeError):
    """The node could not be reached or did not answer JSON-RPC."""


def normalize_url(url: str) -> str:
    """``tcp://h:p`` (config style) or ``h:p`` -> ``http://h:p``."""
    if url.startswith("tcp://"):
        return "http://" + url[len("tcp://") :]
    if "://" not in url:
        return "http://" + url
    return url


class RpcClient:
    """One keep-alive HTTP connection to a node's RPC port (not thread-safe)."""

    def __init__(self, url: str = DEFAULT_URL, *, timeout: float = 15.0) -> None:
        self.url = normalize_url(url)
        parts = urlsplit(self.url)
        if parts.scheme != "http" or not parts.hostname:
            raise RpcTransportError(f"RPC URL must be http://host:port, got {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 26657
        self.path = parts.path or "/"
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _post(self, payload: Any) -> Any:
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        for attempt in range(2):  # a kept-alive connection the server closed: retry once on a new one
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._conn.request("POST", self.path, body, headers)
                resp = self._conn.getresponse()
                data = resp.read(MAX_RESPONSE_BYTES + 1)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if attempt:
                    raise RpcTransportError(f"{self.url}: connection closed: {exc}") from exc
                continue
            except (TimeoutError, OSError, http.client.HTTPException) as exc:
                self.close()
                raise RpcTransportError(f"cannot reach the node at {self.url}: {exc}") from exc
            if len(data) > MAX_RESPONSE_BYTES:
                self.close()
                raise RpcTransportError(f"{self.url}: response larger than {MAX_RESPONSE_BYTES} bytes")
            if resp.status == 204:
                return None
            try:
                return json.loads(data)
            except ValueError as exc:
                raise RpcTransportError(
                    f"{self.url}: HTTP {resp.status} with a body that is not JSON: {data[:200]!r}"
                ) from exc
        raise RpcTransportError(f"{self.url}: no answer")  # pragma: no cover - loop always returns

    @staticmethod
    def _result(obj: Any) -> Any:
        if not isinstance(obj, dict) or obj.get("jsonrpc") != "2.0":
            raise RpcTransportError(f"not a JSON-RPC 2.0 response: {str(obj)[:200]}")
        if "error" in obj:
            err = obj["error"]
            if not isinstance(err, dict):
                raise RpcTransportError(f"malformed JSON-RPC error: {str(err)[:200]}")
            raise RpcClientError(int(err.get("code", 0)), str(err.get("message", "")), err.get("data"))
        if "result" not in obj:
            raise RpcTransportError(f"JSON-RPC response without result: {str(obj)[:200]}")
        return obj["result"]

    def call(self, method: str, /, **params: Any) -> Any:
        """Call ``method`` with named parameters (None values are left out)."""
        req = {
            "jsonrpc": "2.0",
            "id": next(self._ids),
            "method": method,
            "params": {k: v for k, v in params.items() if v is not None},
        }
        return self._result(self._post(req))

    def batch(self, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        """Several calls in one request; results in order. Each item is the result or
        the RpcClientError of that call (returned, not raised)."""
        if not calls:
            return []
        reqs = []
        for method, params in calls:
            reqs.append(
                {
                    "jsonrpc": "2.0",
                    "id": next(self._ids),
                    "method": method,
                    "params": {k: v for k, v in params.items() if v is not None},
                }
            )
        answer = self._post(reqs)
        if isinstance(answer, dict):  # the whole batch was refused
            self._result(answer)
        if not isinstance(answer, list):
            raise RpcTransportError(f"batch answer is not a list: {str(answer)[:200]}")
        by_id = {a.get("id"): a for a in answer if isinstance(a, dict)}
        out: list[Any] = []
        for req in reqs:
            obj = by_id.get(req["id"])
            if obj is None:
                raise RpcTransportError(f"batch answer lacks id {req['id']}")
            try:
                out.append(self._result(obj))
            except RpcClientError as exc:
                out.append(exc)
        return out
