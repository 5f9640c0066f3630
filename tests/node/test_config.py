"""config.toml: defaults, round trip, and every validation error naming file and key."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from node.config import (
    Config,
    P2PConfig,
    RpcConfig,
    default_config,
    dumps_config,
    format_duration,
    load_config,
    parse_duration,
    write_config,
)
from node.errors import ConfigError

PEER = "ab" * 32 + "@10.0.0.2:26656"


def test_default_round_trip(tmp_path: Path) -> None:
    cfg = default_config(tmp_path)
    path = write_config(cfg)
    assert path == tmp_path / "config" / "config.toml"
    assert load_config(path) == cfg
    assert load_config(path).home == tmp_path


def test_modified_round_trip_keeps_every_value(tmp_path: Path) -> None:
    cfg = default_config(tmp_path)
    cfg = dataclasses.replace(
        cfg,
        base=dataclasses.replace(cfg.base, moniker="val-3", log_level="consensus:debug,*:error", log_format="json"),
        rpc=dataclasses.replace(cfg.rpc, laddr="tcp://0.0.0.0:1234", timeout_read=0.25, page_size_max=500),
        p2p=dataclasses.replace(cfg.p2p, persistent_peers=(PEER,), seeds=(PEER,), pex=False, ban_duration=90.0),
        mempool=dataclasses.replace(cfg.mempool, size=7, recheck=False),
        consensus=dataclasses.replace(cfg.consensus, create_empty_blocks_interval=1.5, double_sign_check_height=2),
        storage=dataclasses.replace(cfg.storage, retain_blocks=1000, db_path="/var/lib/bh/db"),
        instrumentation=dataclasses.replace(cfg.instrumentation, prometheus=True),
    )
    path = write_config(cfg, tmp_path / "elsewhere.toml")
    again = load_config(path, home=tmp_path)
    assert again == cfg
    assert again.path(again.storage.db_path) == Path("/var/lib/bh/db")
    assert again.path(again.base.genesis_file) == tmp_path / "config" / "genesis.json"
    text = path.read_text()
    assert 'timeout_read = "250ms"' in text and 'ban_duration = "90s"' in text
    assert 'create_empty_blocks_interval = "1500ms"' in text


def test_partial_file_takes_defaults(tmp_path: Path) -> None:
    p = tmp_path / "config.toml"
    p.write_text(f'[rpc]\nmax_batch_size = 3\n[p2p]\npersistent_peers = ["{PEER}"]\n')
    cfg = load_config(p)
    assert cfg.rpc.max_batch_size == 3
    assert cfg.p2p.persistent_peers == (PEER,)
    assert cfg.mempool == default_config(tmp_path).mempool


def test_durations() -> None:
    assert parse_duration("10s") == 10.0
    assert parse_duration("500ms") == 0.5
    assert parse_duration("1.5m") == 90.0
    assert parse_duration("24h") == 86400.0
    for s in (0.0, 0.001, 0.25, 1.0, 59.0, 60.0, 90.0, 3600.0, 86400.0, 1.2345):
        assert parse_duration(format_duration(s)) == pytest.approx(s)
    for bad in ("10", "s", "-1s", "1d", "1 s", ""):
        with pytest.raises(ValueError):
            parse_duration(bad)


# (description, TOML text, key named in the error, part of the message)
BAD = [
    ("unknown section", "[rcp]\n", "rcp", "did you mean 'rpc'"),
    ("unknown key with a hint", "[rpc]\nmax_bodybytes = 5\n", "rpc.max_bodybytes", "did you mean 'max_body_bytes'"),
    ("unknown key without a hint", "[mempool]\nzzz = 1\n", "mempool.zzz", "known:"),
    ("section not a table", "base = 5\n", "base", "must be a table"),
    ("string for an integer", '[rpc]\nmax_body_bytes = "1000"\n', "rpc.max_body_bytes", "must be an integer"),
    ("bool for an integer", "[mempool]\nsize = true\n", "mempool.size", "must be an integer"),
    ("integer for a bool", "[p2p]\npex = 1\n", "p2p.pex", "true or false"),
    ("number for a string", "[base]\nmoniker = 5\n", "base.moniker", "must be a string"),
    ("duration without unit", "[rpc]\ntimeout_read = 10\n", "rpc.timeout_read", "duration"),
    ("duration too long", '[p2p]\nban_duration = "9000h"\n', "p2p.ban_duration", "at most one year"),
    ("zero duration", '[rpc]\ntimeout_idle = "0s"\n', "rpc.timeout_idle", "must be positive"),
    ("bad moniker", '[base]\nmoniker = "has space"\n', "base.moniker", "letters"),
    ("bad log level", '[base]\nlog_level = "loud"\n', "base.log_level", "unknown log level"),
    ("bad log module", '[base]\nlog_level = "p-2p:info"\n', "base.log_level", "bad module"),
    ("bad log format", '[base]\nlog_format = "xml"\n', "base.log_format", "logfmt"),
    ("empty path", '[base]\ngenesis_file = ""\n', "base.genesis_file", "non-empty path"),
    ("rpc laddr scheme", '[rpc]\nladdr = "udp://127.0.0.1:1"\n', "rpc.laddr", "tcp://"),
    ("rpc laddr port", '[rpc]\nladdr = "tcp://127.0.0.1:99999"\n', "rpc.laddr", "port out of range"),
    ("rpc laddr no port", '[rpc]\nladdr = "tcp://127.0.0.1"\n', "rpc.laddr", "host:port"),
    ("zero body limit", "[rpc]\nmax_body_bytes = 0\n", "rpc.max_body_bytes", "positive"),
    ("tiny header limit", "[rpc]\nmax_header_bytes = 100\n", "rpc.max_header_bytes", "1024"),
    ("page default above max", "[rpc]\npage_size_default = 200\n", "rpc.page_size_default", "page_size_max"),
    ("negative batch", "[rpc]\nmax_batch_size = -1\n", "rpc.max_batch_size", "positive"),
    ("p2p laddr scheme", '[p2p]\nladdr = "tcp://0.0.0.0:1"\n', "p2p.laddr", "udp://"),
    ("external address", '[p2p]\nexternal_address = "nohost"\n', "p2p.external_address", "host:port"),
    ("peer without id", '[p2p]\npersistent_peers = ["10.0.0.1:26656"]\n', "p2p.persistent_peers[0]", "node id"),
    ("peer short id", '[p2p]\nseeds = ["abcd@10.0.0.1:26656"]\n', "p2p.seeds[0]", "64 lowercase hex"),
    ("peer port zero", '[p2p]\nseeds = ["{}"]\n'.format(PEER.replace("26656", "0")), "p2p.seeds[0]", "must not be 0"),
    ("peers not strings", "[p2p]\nseeds = [1]\n", "p2p.seeds", "array of strings"),
    ("peers not an array", f'[p2p]\nseeds = "{PEER}"\n', "p2p.seeds", "array of strings"),
    ("too many persistent peers", f'[p2p]\nmax_outbound_peers = 0\npersistent_peers = ["{PEER}"]\n', "p2p.persistent_peers", "exceed"),
    ("negative inbound", "[p2p]\nmax_inbound_peers = -1\n", "p2p.max_inbound_peers", "negative"),
    ("tx above pool bytes", "[mempool]\nmax_txs_bytes = 10\nmax_tx_bytes = 11\n", "mempool.max_tx_bytes", "max_txs_bytes"),
    ("zero mempool size", "[mempool]\nsize = 0\n", "mempool.size", "positive"),
    ("negative double sign", "[consensus]\ndouble_sign_check_height = -1\n", "consensus.double_sign_check_height", "negative"),
    ("negative retain", "[storage]\nretain_blocks = -5\n", "storage.retain_blocks", "negative"),
    ("zero prune interval", '[storage]\nprune_interval = "0ms"\n', "storage.prune_interval", "positive"),
    ("metrics addr", '[instrumentation]\nprometheus_listen_addr = ":x"\n', "instrumentation.prometheus_listen_addr", "host:port"),
]


@pytest.mark.parametrize(("desc", "text", "key", "message"), BAD, ids=[b[0] for b in BAD])
def test_validation_errors_name_file_and_key(tmp_path: Path, desc: str, text: str, key: str, message: str) -> None:
    p = tmp_path / "config.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert e.value.key == key, desc
    assert e.value.file == str(p)
    assert message in str(e.value)
    assert str(e.value).startswith(f"{p}: {key}: ")


def test_unreadable_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    p = tmp_path / "config.toml"
    p.write_text("[rpc\n")
    with pytest.raises(ConfigError, match="invalid TOML") as e:
        load_config(p)
    assert e.value.file == str(p)
    p.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(p)


def test_programmatic_values_are_validated_too() -> None:
    with pytest.raises(ConfigError) as e:
        RpcConfig(max_open_connections=0)
    assert e.value.key == "rpc.max_open_connections" and e.value.file is None
    with pytest.raises(ConfigError, match=r"p2p\.persistent_peers"):
        P2PConfig(persistent_peers=("nope",))


def test_written_file_is_plain_toml_with_every_section(tmp_path: Path) -> None:
    doc = tomllib.loads(dumps_config(default_config(tmp_path)))
    assert set(doc) == {"base", "rpc", "p2p", "mempool", "consensus", "storage", "instrumentation"}
    assert "home" not in doc
    assert isinstance(Config(home=tmp_path).to_dict()["p2p"]["persistent_peers"], list)
