"""Opening a home: first start from genesis, restart, and typed errors for an
inconsistent home (real LevelDB in tmp dirs)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import trio

from chain.genesis import GenesisDoc
from chain.sigverify import SignatureVerifier
from consensus.wal import EntryKind, WALEntry
from node.config import CONFIG_FILE, load_config, write_config
from node.consensus_driver import DoubleSignRisk
from node.node import HomeError, InconsistentHomeError, MissingFileError, Node
from tests.node.harness import InProcessNode, make_testnet, start_all


def _run_to(homes, height: int, verifier: SignatureVerifier) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nodes = await start_all(nursery, homes.nodes, verifier, height=height)
            for n in nodes:
                await n.stop()
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_first_open_writes_genesis_state_and_reopens(tmp_path: Path) -> None:
    homes = make_testnet(tmp_path / "net", 1)
    home = homes.nodes[0].home
    node = Node.open(home)
    try:
        assert node.state.height == homes.net.genesis.initial_height - 1
        assert node.blocks.latest_height is None
        genesis_root = node.tree.root()
        info = node.sync_info()
        assert info.latest_block_height == 0 and info.catching_up
        assert node.validator_pubkey == homes.nodes[0].validator_key.public_key.raw
        assert node.node_id == homes.nodes[0].node_id
    finally:
        node.close()
    again = Node.open(home)
    try:
        assert again.tree.root() == genesis_root
    finally:
        again.close()


def test_restart_after_blocks_keeps_height_and_refuses_a_stale_or_foreign_home(
        tmp_path: Path, verifier: SignatureVerifier) -> None:
    homes = make_testnet(tmp_path / "net", 4)
    _run_to(homes, 3, verifier)
    home = homes.nodes[0].home
    node = Node.open(home)
    height = node.state.height
    try:
        assert height >= 3
        assert node.blocks.latest_height == height
        assert node.state.last_block_hash == node.blocks.get_block_hash(height)
        assert node.blocks.get_commit(height - 1) is not None
        wal = node.wal
        assert wal is not None
        ended = wal.last_ended_height()
        assert ended is not None and ended <= height
    finally:
        node.close()

    # a different genesis in the home: refused, naming both
    g = GenesisDoc.load(home / "config" / "genesis.json")
    g.replace(chain_id="other-chain").dump(home / "config" / "genesis.json")
    with pytest.raises(InconsistentHomeError, match="genesis"):
        Node.open(home)
    shutil.copy(homes.net.output_dir / "genesis.json", home / "config" / "genesis.json")

    # the WAL says a height ended that the store does not hold
    node = Node.open(home)
    assert node.wal is not None
    node.wal.append(WALEntry(EntryKind.END_HEIGHT, height + 5, ()), sync=True)
    node.close()
    with pytest.raises(InconsistentHomeError, match="WAL"):
        Node.open(home)


def test_missing_sign_state_with_blocks_is_refused(tmp_path: Path,
                                                    verifier: SignatureVerifier) -> None:
    homes = make_testnet(tmp_path / "net", 4)
    _run_to(homes, 2, verifier)
    home = homes.nodes[1].home
    (home / "data" / "priv_validator_state.json").unlink()
    with pytest.raises(InconsistentHomeError, match="sign state"):
        Node.open(home)


def test_missing_files_are_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError):
        Node.open(tmp_path / "nowhere")
    homes = make_testnet(tmp_path / "net", 1)
    home = homes.nodes[0].home
    (home / "config" / "node_key.json").unlink()
    with pytest.raises(MissingFileError, match="node key"):
        Node.open(home)
    (home / "config" / "genesis.json").write_text("{")
    with pytest.raises(HomeError, match="genesis"):
        Node.open(home)


def test_double_sign_check_height_refuses_a_key_that_signed_recently(
        tmp_path: Path, verifier: SignatureVerifier) -> None:
    homes = make_testnet(tmp_path / "net", 4)
    _run_to(homes, 3, verifier)
    home = homes.nodes[0]
    cfg = load_config(home.home / CONFIG_FILE, home.home)
    write_config(dataclasses.replace(
        cfg, consensus=dataclasses.replace(cfg.consensus, double_sign_check_height=10)))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await InProcessNode(home, verifier).start(nursery)  # alone: no peers to sync from

    with pytest.raises(BaseExceptionGroup) as info:
        trio.run(main)
    failures, _ = info.value.split(DoubleSignRisk)
    assert failures is not None
    leaves = _leaves(failures)
    assert all(isinstance(e, DoubleSignRisk) for e in leaves)
    assert "double_sign_check_height=10" in str(leaves[0])


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:  # type: ignore[type-arg]
    out: list[BaseException] = []
    for e in group.exceptions:
        out.extend(_leaves(e) if isinstance(e, BaseExceptionGroup) else [e])
    return out
