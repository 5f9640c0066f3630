"""The light client against a real 4-validator testnet of `python -m node` processes
(tests/node/harness.py), across validator set changes made by bond and unbond
transactions, with skipping verification, witnesses and verified queries."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from chain import state as st
from chain import tx as txm
from chain.crypto import PrivateKey
from light.client import LightClient, Options, Provider
from light.queries import VerifiedQueries
from light.store import TrustedStore
from tests.node.harness import NetHomes, ProcessNode, make_testnet, rpc_call, wait_heights

pytestmark = pytest.mark.slow


@pytest.fixture
def net(tmp_path: Path) -> Iterator[tuple[NetHomes, list[ProcessNode]]]:
    homes = make_testnet(tmp_path / "net", 4)
    procs = [ProcessNode(h) for h in homes.nodes]
    try:
        for p in procs:
            p.start()
        yield homes, procs
    finally:
        for p in procs:
            p.kill()


def _send(homes: NetHomes, port: int, key: PrivateKey, body: object) -> int:
    """Sign and commit a transaction through a node; the height it was committed at."""
    address = key.public_key.raw
    nonce = rpc_call(port, "account", {"address": address.hex()})["value"]["nonce"]
    app = homes.net.genesis.app_params
    fee = app.min_fee
    for _ in range(3):
        fee = st.compute_min_fee(app, len(txm.Tx(address, nonce, fee, body, bytes(64)).encode()))
    raw = txm.Tx.create(key, homes.chain_id, nonce, fee, body).encode()
    out = rpc_call(port, "broadcast_tx_commit", {"tx": raw.hex(), "timeout": 10}, timeout=15)
    assert out["committed"], out
    return int(out["height"])


def test_skipping_across_bond_and_unbond_on_a_real_testnet(
        net: tuple[NetHomes, list[ProcessNode]], tmp_path: Path) -> None:
    homes, procs = net
    wait_heights(procs, 2, timeout=40)
    ports = [h.rpc_port for h in homes.nodes]
    # the trusted root comes from another node than the primary
    root = blake3.blake3(bytes.fromhex(rpc_call(ports[1], "header", {"height": 1})["header_bytes"])).digest()
    store = TrustedStore(tmp_path / "light")
    client = LightClient.init(store, Provider.at(f"127.0.0.1:{ports[0]}"),
                              [Provider.at(f"127.0.0.1:{p}") for p in ports[1:3]],
                              trust_height=1, trust_hash=root, options=Options(mode="skipping"))
    genesis_set = client.latest_trusted().next_validators
    assert len(genesis_set) == 4

    v0, v3 = homes.nodes[0].validator_key, homes.nodes[3].validator_key
    app = homes.net.genesis.app_params
    h_bond = _send(homes, ports[0], v0, txm.Bond(app.min_bond))
    stake3 = rpc_call(ports[0], "account", {"address": v3.public_key.raw.hex()})["value"]["stake"]
    h_unbond = _send(homes, ports[1], v3, txm.Unbond(stake3))
    wait_heights(procs[:3], max(h_bond, h_unbond) + 3, timeout=40)

    latest = client.update()
    assert latest.height >= h_unbond + 2
    assert latest.hash() == blake3.blake3(bytes.fromhex(
        rpc_call(ports[2], "header", {"height": latest.height})["header_bytes"])).digest()
    # the set really changed: validator 3 left, validator 0 holds most of the power
    vset = latest.validators
    assert vset.index_of(v3.public_key.raw) is None and len(vset) == 3
    i0 = vset.index_of(v0.public_key.raw)
    assert i0 is not None and vset.validators[i0].power * 3 > vset.total_power * 2
    # it skipped: far fewer headers verified than heights crossed
    assert len(store.heights()) < latest.height
    assert client.dropped_witnesses == []

    q = VerifiedQueries(client)
    acct = q.account(v3.public_key.raw, height=latest.height)
    assert acct.value.stake == 0
    bonded = q.account(v0.public_key.raw, height=latest.height)
    assert bonded.value.stake >= app.min_bond
    # a later height: the client verifies forward again from its newest trusted header
    deadline = time.monotonic() + 20
    while client.primary.latest_height() <= latest.height and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.update().height > latest.height
