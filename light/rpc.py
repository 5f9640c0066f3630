"""A minimal JSON-RPC 2.0 client over HTTP/1.1 on the standard library.

One persistent `http.client.HTTPConnection` per provider, reopened after any
failure. Answers are parsed JSON; nothing in them is trusted here: light/verifier
and light/queries decode the canonical bytes the answers carry.
"""

from __future__ import annotations

import http.client
import itertools
import json
from typing import Any
from urllib.parse import urlsplit

from light.errors import MalformedAnswer, ProviderUnavailable, RpcError, UsageError

MAX_ANSWER_BYTES = 64 * 1024 * 1024
"""Largest answer body read from a provider."""


def parse_address(address: str) -> tuple[str, int]:
    """`http://host:port`, `tcp://host:port` or `host:port` -> (host, port)."""
    text = address if "://" in address else "http://" + address
    parts = urlsplit(text)
    if parts.scheme not in ("http", "tcp") or not parts.hostname or parts.port is None:
        raise UsageError(f"not a provider address (http://host:port): {address!r}")
    return parts.hostname, parts.port


class RpcClient:
    """JSON-RPC calls to one node."""

    def __init__(self, address: str, *, timeout: float = 10.0) -> None:
        self.address = address
        self.host, self.port = parse_address(address)
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"RpcClient({self.address!r})"

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def call(self, method: str, **params: Any) -> Any:
        """Call `method` with named params (None values left out); return `result`."""
        req_id = next(self._ids)
        body = json.dumps(
            {"jsonrpc": "2.0", "id": req_id, "method": method,
             "params": {k: v for k, v in params.items() if v is not None}}
        ).encode()
        raw = self._post(body)
        try:
            answer = json.loads(raw)
        except ValueError as exc:
            raise MalformedAnswer(f"{self.address}: {method}: answer is not JSON") from exc
        if not isinstance(answer, dict):
            raise MalformedAnswer(f"{self.address}: {method}: answer is not an object")
        err = answer.get("error")
        if err is not None:
            if not isinstance(err, dict):
                raise MalformedAnswer(f"{self.address}: {method}: bad error object")
            code = err.get("code")
            raise RpcError(code if isinstance(code, int) else 0, str(err.get("message", "")), err.get("data"))
        if answer.get("id") != req_id or "result" not in answer:
            raise MalformedAnswer(f"{self.address}: {method}: answer without result or with another id")
        return answer["result"]

    def _post(self, body: bytes) -> bytes:
        # one retry on a fresh connection: a kept-alive one may have been closed by the server
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._conn.request("POST", "/", body, {"Content-Type": "application/json"})
                resp = self._conn.getresponse()
                data = resp.read(MAX_ANSWER_BYTES + 1)
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if attempt == 1:
                    raise ProviderUnavailable(f"{self.address}: {exc}") from exc
                continue
            if resp.getheader("Connection", "").lower() == "close":
                self.close()
            if len(data) > MAX_ANSWER_BYTES:
                self.close()
                raise MalformedAnswer(f"{self.address}: answer larger than {MAX_ANSWER_BYTES} bytes")
            return data
        raise ProviderUnavailable(f"{self.address}: no answer")  # pragma: no cover - loop always returns
