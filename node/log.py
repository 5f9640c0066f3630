"""Structured logs on the stdlib `logging` module: logfmt (default) or JSON lines.

Every logger of the node is ``blackhole.<module>``; `get_logger("consensus")`
returns a `KVLogger` whose calls take key=value fields::

    log = get_logger("consensus")
    log.info("committed block", height=12, txs=340, hash="ab12..")
    -> ts=2026-11-21T06:00:00.123Z level=info module=consensus msg="committed block" height=12 txs=340 hash=ab12..

The level is set per module with a CometBFT-style spec: ``info`` or
``consensus:debug,p2p:info,*:error`` (``*`` is the default for the rest).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

ROOT = "blackhole"
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "none": logging.CRITICAL + 10,
}
FORMATS = ("logfmt", "json")
_HANDLER_MARK = "_blackhole_handler"


def parse_level_spec(spec: str) -> dict[str, int]:
    """``"info"`` or ``"mod:level,...,*:level"`` -> {module or "*": level}; raises ValueError."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("log level must be a non-empty string")
    out: dict[str, int] = {}
    for item in spec.split(","):
        item = item.strip()
        module, sep, level = item.rpartition(":")
        if not sep:
            module = "*"
        module = module.strip()
        level = level.strip().lower()
        if level not in LEVELS:
            raise ValueError(f"unknown log level {level!r} (use {', '.join(LEVELS)})")
        if not module or (not all(p.isidentifier() for p in module.split(".")) and module != "*"):
            raise ValueError(f"bad module name {module!r} in log level")
        if module in out:
            raise ValueError(f"module {module!r} is given twice in log level")
        out[module] = LEVELS[level]
    return out


def _needs_quotes(s: str) -> bool:
    return s == "" or any(c in s for c in ' ="\\') or any(ord(c) < 32 or ord(c) == 127 for c in s)


def logfmt_value(value: Any) -> str:
    """One value in logfmt: bare when safe, else double-quoted with escapes."""
    if isinstance(value, bytes):
        s = value.hex()
    elif value is None:
        s = "null"
    elif isinstance(value, bool):
        s = "true" if value else "false"
    else:
        s = str(value)
    if not _needs_quotes(s):
        return s
    escaped = json.dumps(s, ensure_ascii=False)  # quotes, backslashes and control chars
    return escaped


def _module_of(record: logging.LogRecord) -> str:
    name = record.name
    return name[len(ROOT) + 1 :] if name.startswith(ROOT + ".") else name


def _timestamp(record: logging.LogRecord) -> str:
    t = time.gmtime(record.created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"


def _fields(record: logging.LogRecord) -> Mapping[str, Any]:
    kv = getattr(record, "kv", None)
    return kv if isinstance(kv, Mapping) else {}


class LogfmtFormatter(logging.Formatter):
    """``ts=... level=... module=... msg=... key=value ...``; a traceback follows on
    its own lines, as ``err=`` for the exception's one-line summary."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"ts={_timestamp(record)}",
            f"level={record.levelname.lower()}",
            f"module={logfmt_value(_module_of(record))}",
            f"msg={logfmt_value(record.getMessage())}",
        ]
        parts += [f"{k}={logfmt_value(v)}" for k, v in _fields(record).items()]
        line = " ".join(parts)
        if record.exc_info and record.exc_info[1] is not None:
            line += f" err={logfmt_value(repr(record.exc_info[1]))}\n" + self.formatException(
                record.exc_info
            )
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line; bytes as hex, other non-JSON values as str."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "module": _module_of(record),
            "msg": record.getMessage(),
        }
        for k, v in _fields(record).items():
            obj.setdefault(k, v.hex() if isinstance(v, bytes) else v)
        if record.exc_info and record.exc_info[1] is not None:
            obj["err"] = repr(record.exc_info[1])
            obj["traceback"] = self.formatException(record.exc_info)
        return json.dumps(obj, default=str, ensure_ascii=False)


def setup_logging(level: str = "info", fmt: str = "logfmt", stream: IO[str] | None = None) -> None:
    """Configure the ``blackhole`` logger tree; calling it again replaces the setup."""
    levels = parse_level_spec(level)
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r} (use {', '.join(FORMATS)})")
    root = logging.getLogger(ROOT)
    for h in list(root.handlers):
        if getattr(h, _HANDLER_MARK, False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(LogfmtFormatter() if fmt == "logfmt" else JsonFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.propagate = False
    root.setLevel(levels.get("*", logging.INFO))
    # Reset levels set by an earlier call, then apply this spec's modules.
    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith(ROOT + "."):
            logging.getLogger(name).setLevel(logging.NOTSET)
    for module, lvl in levels.items():
        if module != "*":
            logging.getLogger(f"{ROOT}.{module}").setLevel(lvl)


class KVLogger:
    """A thin wrapper that turns keyword arguments into structured fields."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def _log(self, level: int, msg: str, kv: dict[str, Any], exc_info: bool = False) -> None:
        if self.logger.isEnabledFor(level):
            self.logger.log(level, msg, extra={"kv": kv}, exc_info=exc_info, stacklevel=3)

    def debug(self, msg: str, **kv: Any) -> None:
        self._log(logging.DEBUG, msg, kv)

    def info(self, msg: str, **kv: Any) -> None:
        self._log(logging.INFO, msg, kv)

    def warning(self, msg: str, **kv: Any) -> None:
        self._log(logging.WARNING, msg, kv)

    def error(self, msg: str, **kv: Any) -> None:
        self._log(logging.ERROR, msg, kv)

    def exception(self, msg: str, **kv: Any) -> None:
        """At error level, with the current exception's traceback."""
        self._log(logging.ERROR, msg, kv, exc_info=True)


def get_logger(module: str) -> KVLogger:
    """The structured logger of one module (``blackhole.<module>``)."""
    return KVLogger(logging.getLogger(f"{ROOT}.{module}"))
