"""The node's ``config.toml``: frozen dataclasses, defaults, validation, TOML I/O.

A home directory holds ``config/config.toml``; every relative path in it is
relative to the home. Durations are written as strings with a unit, as CometBFT
does (``"10s"``, ``"500ms"``, ``"1m"``, ``"24h"``) and held as float seconds.
Unknown sections and keys are rejected (a typo must not silently fall back to a
default); every error is a `ConfigError` naming the file and the dotted key.
Consensus timeouts are not here: they are consensus parameters in genesis.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import tomli_w

from node.errors import ConfigError
from node.log import FORMATS, parse_level_spec

CONFIG_FILE = "config/config.toml"
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PEER_ID = re.compile(r"[0-9a-f]{64}")
_MONIKER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_DURATION = 365 * 24 * 3600.0


def _duration(default: float) -> Any:
    return field(default=default, metadata={"duration": True})


def parse_duration(text: str) -> float:
    """``"1.5s"`` -> 1.5; raises ValueError."""
    m = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"must be a duration such as \"10s\", \"500ms\", \"1m\" or \"24h\", got {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def format_duration(seconds: float) -> str:
    """The shortest exact spelling: 1.0 -> "1s", 0.25 -> "250ms", 86400 -> "24h"."""
    ms = round(seconds * 1000)
    if abs(ms - seconds * 1000) > 1e-6:
        return f"{seconds}s"
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def parse_host_port(text: str, *, scheme: str | None = None) -> tuple[str, int]:
    """``"tcp://127.0.0.1:26657"`` (or without scheme) -> ("127.0.0.1", 26657); raises ValueError."""
    rest = text
    if "://" in text:
        got, rest = text.split("://", 1)
        if scheme is not None and got != scheme:
            raise ValueError(f"scheme must be {scheme}://, got {got}://")
    host, sep, port_s = rest.rpartition(":")
    if not sep or not port_s.isdigit():
        raise ValueError(f"must be host:port, got {text!r}")
    port = int(port_s)
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range in {text!r}")
    host = host.strip("[]")
    if not host:
        raise ValueError(f"missing host in {text!r}")
    return host, port


def parse_peer(text: str) -> tuple[str, str, int]:
    """``"<64 hex node id>@host:port"`` -> (id, host, port); raises ValueError."""
    peer_id, sep, addr = text.partition("@") if isinstance(text, str) else ("", "", "")
    if not sep or not _PEER_ID.fullmatch(peer_id):
        raise ValueError(
            f"peer must be <node id: 64 lowercase hex digits>@host:port, got {str(text)[:120]!r}"
        )
    host, port = parse_host_port(addr)
    if port == 0:
        raise ValueError(f"peer port must not be 0 in {text!r}")
    return peer_id, host, port


def _positive(key: str, value: int | float) -> None:
    if value <= 0:
        raise ConfigError(key, f"must be positive, got {value}")


def _non_negative(key: str, value: int | float) -> None:
    if value < 0:
        raise ConfigError(key, f"must not be negative, got {value}")


def _relative_or_absolute_path(key: str, value: str) -> None:
    if not value or "\x00" in value:
        raise ConfigError(key, "must be a non-empty path")


@dataclass(frozen=True, slots=True)
class BaseConfig:
    """[base]: identity, files and logging."""

    moniker: str = "node"
    """A human name for this node, shown by status and net_info."""
    genesis_file: str = "config/genesis.json"
    """Genesis document (home-relative unless absolute)."""
    node_key_file: str = "config/node_key.json"
    """The node's Ed25519 p2p identity key."""
    priv_validator_key_file: str = "config/priv_validator_key.json"
    """The validator's signing key (absent on a full node)."""
    priv_validator_state_file: str = "data/priv_validator_state.json"
    """Last signed height/round/step: the double-sign guard."""
    log_level: str = "info"
    """"info", or per module: "consensus:debug,p2p:info,*:error"."""
    log_format: str = "logfmt"
    """"logfmt" (key=value) or "json"."""

    def __post_init__(self) -> None:
        if not _MONIKER.fullmatch(self.moniker):
            raise ConfigError(
                "base.moniker", "must be 1-64 characters of letters, digits, '.', '_' or '-'"
            )
        for name in ("genesis_file", "node_key_file", "priv_validator_key_file", "priv_validator_state_file"):
            _relative_or_absolute_path(f"base.{name}", getattr(self, name))
        try:
            parse_level_spec(self.log_level)
        except ValueError as e:
            raise ConfigError("base.log_level", str(e)) from None
        if self.log_format not in FORMATS:
            raise ConfigError("base.log_format", f"must be one of {', '.join(FORMATS)}, got {self.log_format!r}")


@dataclass(frozen=True, slots=True)
class RpcConfig:
    """[rpc]: the JSON-RPC server (HTTP and WebSocket)."""

    laddr: str = "tcp://127.0.0.1:26657"
    """Listen address; an empty string turns the RPC server off."""
    max_body_bytes: int = 1_000_000
    """Largest request body (and WebSocket message); larger gets 413."""
    max_header_bytes: int = 16_384
    """Largest request line plus headers; larger gets 431."""
    max_batch_size: int = 10
    """Most requests in one JSON-RPC batch."""
    max_open_connections: int = 900
    """Most simultaneous HTTP and WebSocket connections; beyond it 503."""
    max_subscription_clients: int = 100
    """Most WebSocket connections holding subscriptions at once."""
    max_subscriptions_per_client: int = 5
    """Most subscriptions on one WebSocket connection."""
    subscription_buffer_size: int = 200
    """Events queued per subscriber; a subscriber that falls this far behind is dropped."""
    page_size_default: int = 30
    """Page size when a paged method is called without per_page."""
    page_size_max: int = 100
    """Largest per_page accepted."""
    timeout_read: float = _duration(10.0)
    """Time allowed to receive a whole request once it has started."""
    timeout_idle: float = _duration(60.0)
    """How long a kept-alive connection may wait for its next request."""
    timeout_write: float = _duration(10.0)
    """Time allowed to send a response."""
    timeout_broadcast_tx_commit: float = _duration(10.0)
    """How long broadcast_tx_commit waits for the transaction to be committed."""

    def __post_init__(self) -> None:
        if self.laddr:
            try:
                parse_host_port(self.laddr, scheme="tcp")
            except ValueError as e:
                raise ConfigError("rpc.laddr", str(e)) from None
        for name in (
            "max_body_bytes",
            "max_header_bytes",
            "max_batch_size",
            "max_open_connections",
            "max_subscription_clients",
            "max_subscriptions_per_client",
            "subscription_buffer_size",
            "page_size_default",
            "page_size_max",
            "timeout_read",
            "timeout_idle",
            "timeout_write",
            "timeout_broadcast_tx_commit",
        ):
            _positive(f"rpc.{name}", getattr(self, name))
        if self.max_header_bytes < 1024:
            raise ConfigError("rpc.max_header_bytes", "must be at least 1024")
        if self.page_size_default > self.page_size_max:
            raise ConfigError(
                "rpc.page_size_default",
                f"must not exceed rpc.page_size_max ({self.page_size_max}), got {self.page_size_default}",
            )


@dataclass(frozen=True, slots=True)
class P2PConfig:
    """[p2p]: the QUIC transport and peer management."""

    laddr: str = "udp://0.0.0.0:26656"
    """UDP address the QUIC endpoint listens on."""
    external_address: str = ""
    """host:port announced to peers, when it differs from laddr (NAT)."""
    persistent_peers: tuple[str, ...] = ()
    """Peers to keep connected, as "<node id>@host:port" (node id: 64 hex digits)."""
    seeds: tuple[str, ...] = ()
    """Peers asked for addresses at start, same format."""
    max_inbound_peers: int = 40
    """Most peers that dialled us."""
    max_outbound_peers: int = 10
    """Most peers we dialled (persistent peers included)."""
    pex: bool = True
    """Exchange peer addresses with peers."""
    ban_duration: float = _duration(24 * 3600.0)
    """How long a misbehaving peer stays banned."""
    dial_timeout: float = _duration(3.0)
    """Time allowed to connect and check a peer's identity."""

    def __post_init__(self) -> None:
        try:
            parse_host_port(self.laddr, scheme="udp")
        except ValueError as e:
            raise ConfigError("p2p.laddr", str(e)) from None
        if self.external_address:
            try:
                parse_host_port(self.external_address)
            except ValueError as e:
                raise ConfigError("p2p.external_address", str(e)) from None
        for name in ("persistent_peers", "seeds"):
            for i, peer in enumerate(getattr(self, name)):
                try:
                    parse_peer(peer)
                except ValueError as e:
                    raise ConfigError(f"p2p.{name}[{i}]", str(e)) from None
        _non_negative("p2p.max_inbound_peers", self.max_inbound_peers)
        _non_negative("p2p.max_outbound_peers", self.max_outbound_peers)
        if len(self.persistent_peers) > self.max_outbound_peers:
            raise ConfigError(
                "p2p.persistent_peers",
                f"{len(self.persistent_peers)} peers exceed p2p.max_outbound_peers ({self.max_outbound_peers})",
            )
        _positive("p2p.ban_duration", self.ban_duration)
        _positive("p2p.dial_timeout", self.dial_timeout)


@dataclass(frozen=True, slots=True)
class MempoolConfig:
    """[mempool]: limits and behaviour of the transaction pool."""

    size: int = 5000
    """Most transactions held."""
    max_txs_bytes: int = 1 << 30
    """Most bytes of transactions held."""
    max_tx_bytes: int = 1 << 20
    """Largest single transaction accepted."""
    cache_size: int = 10_000
    """Hashes remembered to drop duplicates cheaply."""
    recheck: bool = True
    """Re-check the remaining transactions against the new state after each block."""
    broadcast: bool = True
    """Gossip transactions to peers."""

    def __post_init__(self) -> None:
        for name in ("size", "max_txs_bytes", "max_tx_bytes"):
            _positive(f"mempool.{name}", getattr(self, name))
        _non_negative("mempool.cache_size", self.cache_size)
        if self.max_tx_bytes > self.max_txs_bytes:
            raise ConfigError("mempool.max_tx_bytes", "must not exceed mempool.max_txs_bytes")


@dataclass(frozen=True, slots=True)
class ConsensusConfig:
    """[consensus]: local consensus settings (timeouts are consensus parameters in genesis)."""

    wal_file: str = "data/cs.wal/wal"
    """The consensus write-ahead log."""
    double_sign_check_height: int = 0
    """At start, look this many heights back for our own signature and refuse to
    sign if found (another instance with our key is running); 0 disables."""
    create_empty_blocks: bool = True
    """Propose blocks without transactions."""
    create_empty_blocks_interval: float = _duration(0.0)
    """With empty blocks on, wait at least this long before proposing an empty one."""

    def __post_init__(self) -> None:
        _relative_or_absolute_path("consensus.wal_file", self.wal_file)
        _non_negative("consensus.double_sign_check_height", self.double_sign_check_height)
        _non_negative("consensus.create_empty_blocks_interval", self.create_empty_blocks_interval)


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """[storage]: the LevelDB database and retention."""

    db_path: str = "data/blackhole.db"
    """The LevelDB directory holding blocks, state versions and indexes (one
    database, so a block commits in one write batch)."""
    retain_blocks: int = 0
    """Keep at least this many recent blocks; 0 keeps all."""
    retain_state_versions: int = 0
    """Keep at least this many recent state versions; 0 keeps all."""
    prune_interval: float = _duration(60.0)
    """How often the pruner runs when retention is on."""

    def __post_init__(self) -> None:
        _relative_or_absolute_path("storage.db_path", self.db_path)
        _non_negative("storage.retain_blocks", self.retain_blocks)
        _non_negative("storage.retain_state_versions", self.retain_state_versions)
        _positive("storage.prune_interval", self.prune_interval)


@dataclass(frozen=True, slots=True)
class InstrumentationConfig:
    """[instrumentation]: the Prometheus endpoint."""

    prometheus: bool = False
    """Serve metrics at prometheus_listen_addr (they are also at the RPC /metrics)."""
    prometheus_listen_addr: str = "127.0.0.1:26660"
    """host:port of the metrics listener."""

    def __post_init__(self) -> None:
        try:
            parse_host_port(self.prometheus_listen_addr, scheme="tcp")
        except ValueError as e:
            raise ConfigError("instrumentation.prometheus_listen_addr", str(e)) from None


@dataclass(frozen=True, slots=True)
class Config:
    """The whole config.toml, plus the home directory it was read for."""

    home: Path
    """Directory every relative path is resolved against (not written to the file)."""
    base: BaseConfig = field(default_factory=BaseConfig)
    rpc: RpcConfig = field(default_factory=RpcConfig)
    p2p: P2PConfig = field(default_factory=P2PConfig)
    mempool: MempoolConfig = field(default_factory=MempoolConfig)
    consensus: ConsensusConfig = field(default_factory=ConsensusConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    instrumentation: InstrumentationConfig = field(default_factory=InstrumentationConfig)

    def path(self, value: str) -> Path:
        """A config path resolved against the home directory."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.home / p

    def to_dict(self) -> dict[str, Any]:
        """The TOML document (durations as strings)."""
        out: dict[str, Any] = {}
        for sec in SECTIONS:
            obj = getattr(self, sec)
            table: dict[str, Any] = {}
            for f in dataclasses.fields(obj):
                v = getattr(obj, f.name)
                if f.metadata.get("duration"):
                    v = format_duration(v)
                elif isinstance(v, tuple):
                    v = list(v)
                table[f.name] = v
            out[sec] = table
        return out


SECTIONS: dict[str, type[Any]] = {
    "base": BaseConfig,
    "rpc": RpcConfig,
    "p2p": P2PConfig,
    "mempool": MempoolConfig,
    "consensus": ConsensusConfig,
    "storage": StorageConfig,
    "instrumentation": InstrumentationConfig,
}


def default_config(home: str | Path) -> Config:
    """Every default, for a node at `home`."""
    return Config(home=Path(home))


def _unknown(key: str, name: str, known: list[str]) -> ConfigError:
    hint = difflib.get_close_matches(name, known, n=1)
    extra = f" (did you mean {hint[0]!r}?)" if hint else f"; known: {', '.join(known)}"
    return ConfigError(key, f"unknown key{extra}")


def _convert(key: str, f: dataclasses.Field[Any], hint: Any, value: Any) -> Any:
    if f.metadata.get("duration"):
        try:
            seconds = parse_duration(value)
        except ValueError as e:
            raise ConfigError(key, str(e)) from None
        if seconds > MAX_DURATION:
            raise ConfigError(key, "must be at most one year")
        return seconds
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be an integer, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {value!r}")
        return value
    # tuple[str, ...]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(key, f"must be an array of strings, got {value!r}")
    return tuple(value)


def config_from_dict(doc: dict[str, Any], home: str | Path, *, file: str | None = None) -> Config:
    """Build and validate a `Config` from a parsed TOML document."""
    try:
        sections: dict[str, Any] = {}
        for sec_name, table in doc.items():
            if sec_name not in SECTIONS:
                raise _unknown(sec_name, sec_name, list(SECTIONS))
            if not isinstance(table, dict):
                raise ConfigError(sec_name, "must be a table ([section])")
            cls = SECTIONS[sec_name]
            fields = {f.name: f for f in dataclasses.fields(cls)}
            hints = get_type_hints(cls)
            kwargs: dict[str, Any] = {}
            for name, value in table.items():
                key = f"{sec_name}.{name}"
                if name not in fields:
                    raise _unknown(key, name, list(fields))
                kwargs[name] = _convert(key, fields[name], hints[name], value)
            sections[sec_name] = cls(**kwargs)
        return Config(home=Path(home), **sections)
    except ConfigError as e:
        raise (e.with_file(file) if file else e) from None


def home_of(config_path: Path) -> Path:
    """``<home>/config/config.toml`` -> ``<home>``; otherwise the file's directory."""
    parent = config_path.parent
    return parent.parent if parent.name == "config" else parent


def load_config(path: str | Path, home: str | Path | None = None) -> Config:
    """Read and validate a config.toml; raises `ConfigError` naming file and key."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ConfigError("", f"cannot read: {e.strerror or e}", str(p)) from None
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError("", "is not UTF-8 text", str(p)) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("", f"invalid TOML: {e}", str(p)) from None
    return config_from_dict(doc, home if home is not None else home_of(p), file=str(p))


def dumps_config(cfg: Config) -> str:
    """The TOML text of a config (every key written, defaults included)."""
    header = (
        "# Blackhole node configuration. Relative paths are relative to the home directory.\n"
        "# Durations take a unit: \"500ms\", \"10s\", \"1m\", \"24h\". See docs/rpc.md for [rpc].\n\n"
    )
    return header + tomli_w.dumps(cfg.to_dict())


def write_config(cfg: Config, path: str | Path | None = None) -> Path:
    """Write `cfg` (to ``<home>/config/config.toml`` by default) atomically."""
    p = Path(path) if path is not None else cfg.home / CONFIG_FILE
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(dumps_config(cfg), encoding="utf-8")
    tmp.replace(p)
    return p
