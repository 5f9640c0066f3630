"""Structured logs and the metrics object."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from node.log import get_logger, logfmt_value, parse_level_spec, setup_logging
from node.metrics import NodeMetrics


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    yield buf
    setup_logging("info", "logfmt", io.StringIO())  # leave no per-module levels behind


def test_logfmt_lines(stream: io.StringIO) -> None:
    setup_logging("info", "logfmt", stream)
    get_logger("consensus").info("committed block", height=12, hash=b"\xab\xcd", note="two words", empty="", ok=True)
    line = stream.getvalue().strip()
    assert line.startswith("ts=")
    assert " level=info module=consensus msg=\"committed block\" height=12 hash=abcd" in line
    assert 'note="two words" empty="" ok=true' in line


def test_json_lines_and_tracebacks(stream: io.StringIO) -> None:
    setup_logging("debug", "json", stream)
    log = get_logger("rpc")
    try:
        raise ValueError("bad thing")
    except ValueError:
        log.exception("handler failed", method="block")
    obj = json.loads(stream.getvalue().splitlines()[0])
    assert obj["level"] == "error" and obj["module"] == "rpc" and obj["method"] == "block"
    assert obj["err"] == "ValueError('bad thing')" and "Traceback" in obj["traceback"]


def test_level_per_module(stream: io.StringIO) -> None:
    setup_logging("consensus:debug,p2p:error,*:warning", "logfmt", stream)
    get_logger("consensus").debug("shown")
    get_logger("p2p").warning("hidden")
    get_logger("mempool").info("hidden too")
    get_logger("mempool").warning("shown too")
    logging.getLogger("blackhole.rpc").error("stdlib %s", "also")
    lines = stream.getvalue().splitlines()
    assert [line.split("msg=")[1] for line in lines] == ["shown", '"shown too"', '"stdlib also"']
    # a second setup replaces the first: no duplicate handlers, levels reset
    setup_logging("info", "logfmt", stream)
    get_logger("consensus").debug("gone")
    get_logger("p2p").info("back")
    assert stream.getvalue().splitlines()[-1].endswith("msg=back")


def test_level_spec_errors() -> None:
    assert parse_level_spec("debug") == {"*": logging.DEBUG}
    for bad in ("", "loud", "p2p:loud", "a b:info", "x:info,x:debug"):
        with pytest.raises(ValueError):
            parse_level_spec(bad)
    with pytest.raises(ValueError):
        setup_logging("info", "xml")


def test_logfmt_quoting() -> None:
    assert logfmt_value("plain") == "plain"
    assert logfmt_value('a"b') == '"a\\"b"'
    assert logfmt_value("k=v") == '"k=v"'
    assert logfmt_value("line\nbreak") == '"line\\nbreak"'
    assert logfmt_value(None) == "null"


def test_metrics_registries_are_separate_and_labels_bounded() -> None:
    a, b = NodeMetrics(channels=("consensus",)), NodeMetrics()
    a.p2p_peers.set(3)
    for name in ("consensus", "made-up-1", "made-up-2"):
        a.add_peer_bytes(name, received=1)
    text = a.render().decode()
    assert "blackhole_p2p_peers 3.0" in text
    assert 'channel="other"} 2.0' in text and "made-up" not in text
    assert "blackhole_p2p_peers 0.0" in b.render().decode()
    a.set_validators(count=4, power=40, missing=1, missing_power=10)
    a.set_node_info(chain_id="devnet", moniker="v0", version="0.1.0")
    text = a.render().decode()
    assert "blackhole_consensus_missing_validators_power 10.0" in text
    assert 'blackhole_node_info{chain_id="devnet",moniker="v0",version="0.1.0"} 1.0' in text
