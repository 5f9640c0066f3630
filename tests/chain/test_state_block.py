"""apply_block as a whole: header checks, atomicity, signature precedence, genesis, LevelDB."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from chain import queries
from chain import state as st
from chain import tx as txm
from chain.errors import (
    AppHashMismatch,
    BadTxSignature,
    BlockTxInvalid,
    GenesisError,
    InsufficientBalance,
    InvalidBlock,
    InvalidHeader,
    LaneLimitExceeded,
    MalformedTx,
    StateError,
)
from chain.params import AppParams, ConsensusParams
from chain.types import Block, Commit, compute_lane_root
from storage.kv import MemoryKV
from storage.state import StateTree
from tests.chain.helpers import (
    CHAIN_ID,
    GENESIS_TIME,
    TestChain,
    card_id_of,
    key,
    offer,
    publish_body,
    root_of,
    sealed_for,
)


def with_header(block: Block, **change: object) -> Block:
    return dataclasses.replace(block, header=dataclasses.replace(block.header, **change))  # type: ignore[arg-type]


def assert_unchanged(chain: TestChain, block: Block, error: type[Exception]) -> Exception:
    root, snap, height = chain.tree.root(), chain.snapshot(), chain.height
    with pytest.raises(error) as info:
        st.apply_block(chain.state, block)
    assert (chain.tree.root(), chain.snapshot(), chain.height) == (root, snap, height)
    return info.value


@pytest.fixture
def chain() -> TestChain:
    c = TestChain(validators=4)
    c.advance(2)
    return c


@pytest.mark.parametrize(
    "change",
    [
        {"chain_id": "other-chain"},
        {"height": 5},
        {"time_ms": 1},
        {"prev_block_hash": b"\x01" * 32},
        {"validators_hash": b"\x01" * 32},
        {"next_validators_hash": b"\x01" * 32},
        {"proposer": key("alice").public_key.raw},
    ],
    ids=lambda c: next(iter(c)),
)
def test_header_rejections(chain: TestChain, change: dict[str, object]) -> None:
    assert_unchanged(chain, with_header(chain.block(), **change), InvalidHeader)


def test_root_mismatch(chain: TestChain) -> None:
    block = chain.block([chain.tx("alice", txm.Transfer(chain.addr("bob"), 1))])
    chain.forget_pending()
    assert_unchanged(chain, with_header(block, txs_root=compute_lane_root([])), InvalidBlock)


def test_app_hash_mismatch(chain: TestChain) -> None:
    assert_unchanged(chain, with_header(chain.block(), app_hash=b"\x09" * 32), AppHashMismatch)


def test_last_commit_without_enough_power(chain: TestChain) -> None:
    block = chain.block()
    assert block.last_commit is not None
    weak = Commit(block.last_commit.height, 0, block.last_commit.block_hash, block.last_commit.signatures[:2])
    bad = dataclasses.replace(block, last_commit=weak)
    bad = with_header(bad, last_commit_hash=weak.hash())
    err = assert_unchanged(chain, bad, InvalidHeader)
    assert "last commit" in str(err)


def test_first_block_rules() -> None:
    chain = TestChain()
    block = chain.block()
    assert_unchanged(chain, with_header(block, time_ms=GENESIS_TIME + 1), InvalidHeader)
    chain.apply_block(block)


def test_lane_limit() -> None:
    chain = TestChain(consensus_params=ConsensusParams(max_lane_txs_txs=1))
    txs = [chain.tx("alice", txm.Transfer(chain.addr("bob"), 1)) for _ in range(2)]
    assert_unchanged(chain, chain.draft(txs), LaneLimitExceeded)


def test_tx_in_wrong_lane(chain: TestChain) -> None:
    raw = chain.tx("alice", txm.Transfer(chain.addr("bob"), 1))
    lanes: dict[str, list[bytes]] = {"cards": [raw], "seeders": [], "keys": [], "txs": []}
    err = assert_unchanged(chain, chain.draft(lanes=lanes), BlockTxInvalid)
    assert isinstance(err, BlockTxInvalid) and isinstance(err.error, MalformedTx) and err.lane == "cards"


def test_one_invalid_transaction_changes_nothing(chain: TestChain) -> None:
    """Every lane busy, one transfer overspends: the whole block is refused and no read moves."""
    chain.apply([chain.tx("alice", publish_body("film", offer=offer(100)))])
    cid = card_id_of(chain, "alice", 0)
    chain.apply([chain.tx("bob", txm.BuyKey(cid, 0, 100))])
    reads_before = (
        queries.get_card(chain.tree, cid),
        queries.get_seeders(chain.tree, root_of("film")),
        queries.get_account(chain.tree, chain.addr("bob")),
        queries.get_token(chain.tree, cid, 1),
    )
    txs = [
        chain.tx("carol", publish_body("song", content_type="audio")),
        chain.tx("dave", txm.React(cid, 2)),
        chain.tx("dave", txm.Announce(root_of("film"), ("a:1",), ((0, 1),), chain.height + 10)),
        chain.tx("alice", txm.DeliverKey(cid, 1, sealed_for(chain, "bob"))),
        chain.tx("carol", txm.Transfer(chain.addr("dave"), 5)),
        chain.tx("bob", txm.Transfer(chain.addr("dave"), 10**15)),  # more than bob has
        chain.tx("dave", txm.Generic(b"k", b"v")),
    ]
    err = assert_unchanged(chain, chain.draft(txs), BlockTxInvalid)
    assert isinstance(err, BlockTxInvalid) and isinstance(err.error, InsufficientBalance)
    assert (err.lane, err.index) == ("txs", 1)
    chain.forget_pending()
    reads_after = (
        queries.get_card(chain.tree, cid),
        queries.get_seeders(chain.tree, root_of("film")),
        queries.get_account(chain.tree, chain.addr("bob")),
        queries.get_token(chain.tree, cid, 1),
    )
    assert reads_after == reads_before
    # without the bad one, the same transactions apply
    good = [t for i, t in enumerate(txs) if i != 5]
    chain.apply_block(chain.block(good))
    assert queries.get_token(chain.tree, cid, 1) is not None


def test_bad_signature_is_reported_before_rule_errors(chain: TestChain) -> None:
    forged = chain.tx("alice", txm.Transfer(chain.addr("bob"), 10**15), signer=key("mallory"))
    err = assert_unchanged(chain, chain.draft([forged]), BlockTxInvalid)
    assert isinstance(err, BlockTxInvalid) and isinstance(err.error, BadTxSignature)


def test_bad_signature_in_a_large_block_is_located(chain: TestChain) -> None:
    txs = [chain.tx("alice", txm.Transfer(chain.addr("bob"), 1)) for _ in range(300)]
    raw = bytearray(txs[217])
    raw[-5] ^= 0x40
    txs[217] = bytes(raw)
    err = assert_unchanged(chain, chain.draft(txs), BlockTxInvalid)
    assert isinstance(err, BlockTxInvalid) and isinstance(err.error, BadTxSignature) and err.index == 217


def test_block_result_and_commit_flow(chain: TestChain) -> None:
    raw = chain.tx("alice", txm.Transfer(chain.addr("bob"), 7))
    block = chain.block([raw])
    result = st.apply_block(chain.state, block)
    assert result.height == 3 and result.app_hash == block.header.app_hash
    assert result.block_hash == block.hash()
    assert result.tx_results[0].tx_hash == txm.tx_hash(raw)
    assert result.fees == txm.Tx.decode_untrusted(raw).fee
    assert result.staged.version == 3
    chain.state.commit(result)
    assert chain.tree.root() == block.header.app_hash
    assert chain.state.last_block_hash == block.hash()


def test_state_needs_genesis() -> None:
    with pytest.raises(StateError):
        st.State(
            StateTree(MemoryKV()), chain_id=CHAIN_ID, app_params=AppParams(),
            consensus_params=ConsensusParams(), initial_height=1, genesis_time_ms=0,
        )  # fmt: skip


def test_genesis_export_and_fork(chain: TestChain) -> None:
    chain.apply([chain.tx("alice", publish_body("film", tags=("x",))), chain.tx("bob", txm.Bond(chain.app.min_bond))])
    chain.apply([chain.tx("carol", txm.Announce(root_of("film"), ("a:1",), ((0, 1),), 100))])
    exported = st.export_state(chain.state)
    fork = StateTree(MemoryKV())
    st.build_genesis_state(
        fork, initial_height=chain.height + 1, genesis_time_ms=GENESIS_TIME,
        accounts=exported.accounts, validators=exported.validators, records=exported.records,
    )  # fmt: skip
    cid = card_id_of(chain, "alice", 0)
    assert queries.get_card(fork, cid) is not None
    assert queries.get_card(fork, cid).title == queries.get_card(chain.tree, cid).title  # type: ignore[union-attr]
    assert queries.get_seeders(fork, root_of("film")).entries == queries.get_seeders(chain.tree, root_of("film")).entries
    assert queries.get_account(fork, chain.addr("alice")).balance == chain.balance("alice")
    assert queries.get_account(fork, chain.addr("bob")).stake == chain.app.min_bond
    assert dict(exported.validators)[chain.addr("bob")] == chain.app.min_bond


def test_genesis_rejects_bad_input() -> None:
    with pytest.raises(GenesisError):
        st.build_genesis_state(StateTree(MemoryKV()), initial_height=1, genesis_time_ms=0, accounts=[], validators=[])
    with pytest.raises(GenesisError):
        st.build_genesis_state(
            StateTree(MemoryKV()), initial_height=1, genesis_time_ms=0,
            accounts=[(b"\x01" * 32, 2**63)], validators=[(b"\x02" * 32, 10)],
        )  # fmt: skip
    with pytest.raises(GenesisError):
        st.build_genesis_state(
            StateTree(MemoryKV()), initial_height=1, genesis_time_ms=0, accounts=[],
            validators=[(b"\x02" * 32, 10)], records=[(b"\x01" + b"\x03" * 32, b"x")],
        )  # fmt: skip


def test_initial_height_above_one() -> None:
    chain = TestChain(initial_height=100)
    chain.apply([chain.tx("alice", txm.Transfer(chain.addr("bob"), 1))])
    chain.advance(2)
    assert chain.height == 102


def test_lanes_on_leveldb(tmp_path: Path) -> None:
    """All four lanes on a real LevelDB directory, then reopened from disk."""
    chain = TestChain(path=tmp_path / "db", validators=2)
    chain.apply([chain.tx("alice", publish_body("film", offer=offer(100, timeout=5)))])
    cid = card_id_of(chain, "alice", 0)
    chain.apply([
        chain.tx("bob", txm.React(cid, 1)),
        chain.tx("carol", txm.Announce(root_of("film"), ("h:1",), ((0, 9),), 20)),
        chain.tx("bob", txm.BuyKey(cid, 0, 100)),
        chain.tx("dave", txm.Generic(b"note", b"hello")),
    ])  # fmt: skip
    chain.apply([chain.tx("alice", txm.DeliverKey(cid, 1, sealed_for(chain, "bob")))])
    chain.apply([chain.tx("bob", txm.ListKey(cid, 1, 300)), chain.tx("carol", txm.Transfer(chain.addr("dave"), 9))])
    chain.apply([chain.tx("dave", txm.BuyKey(cid, 1, 300))])
    chain.advance(5)  # dave's resale escrow times out, refund
    root, height, last = chain.tree.root(), chain.height, chain.state.last_block_hash
    snap = chain.snapshot()
    chain.close()

    from storage.kv import LevelKV

    kv = LevelKV.open(str(tmp_path / "db"))
    try:
        tree = StateTree(kv)
        assert tree.root() == root and tree.latest_version == height
        assert dict(tree.iter_items()) == snap
        reopened = st.State(
            tree, chain_id=CHAIN_ID, app_params=chain.app, consensus_params=chain.consensus,
            initial_height=1, genesis_time_ms=GENESIS_TIME, last_block_hash=last,
        )  # fmt: skip
        assert reopened.height == height
        assert queries.may_decrypt(tree, chain.addr("bob"), cid).allowed
        assert not queries.may_decrypt(tree, chain.addr("dave"), cid).allowed
        assert [e.seeder for e in queries.get_seeders(tree, root_of("film")).entries] == [chain.addr("carol")]
        assert [g.payload for g in queries.get_generic_by_kind(tree, b"note").txs] == [b"hello"]
    finally:
        kv.close()



def test_init_state_from_a_genesis_doc_and_export_round_trip(chain: TestChain) -> None:
    from chain.genesis import AppStateRecord, GenesisAccount, GenesisDoc, GenesisValidator

    chain.apply([chain.tx("alice", publish_body("film", offer=offer(10))), chain.tx("carol", txm.Generic(b"k", b"v"))])
    exported = st.export_state(chain.state)
    doc = GenesisDoc.build(
        chain_id="forked-chain", genesis_time_ms=GENESIS_TIME, initial_height=chain.height + 1,
        validators=[GenesisValidator(k, p) for k, p in exported.validators],
        accounts=[GenesisAccount(a, b) for a, b in exported.accounts if b > 0],
        app_state=[AppStateRecord(kind, data) for kind, data in exported.app_state()],
    )  # fmt: skip
    doc = GenesisDoc.from_json(doc.to_json())  # through JSON, as `genesis export` writes it
    tree = StateTree(MemoryKV())
    root = st.init_state(tree, doc)
    assert root == tree.root() and tree.latest_version == chain.height
    forked = st.State.from_genesis(tree, doc)
    assert forked.height == chain.height
    cid = card_id_of(chain, "alice", 0)
    assert queries.get_card(tree, cid) == dataclasses.replace(
        queries.get_card(chain.tree, cid), height=chain.height, reads=queries.get_card(tree, cid).reads  # type: ignore[union-attr,arg-type]
    )
    again = st.export_state(forked)
    assert again.records == exported.records and again.validators == exported.validators


def test_init_state_rejects_unknown_record_kind() -> None:
    from chain.genesis import AppStateRecord, GenesisDoc, GenesisValidator

    doc = GenesisDoc.build(
        chain_id="c", genesis_time_ms=GENESIS_TIME, validators=[GenesisValidator(key("v").public_key.raw, 5)],
        app_state=[AppStateRecord("mystery", b"\x90")],
    )  # fmt: skip
    with pytest.raises(GenesisError) as info:
        st.init_state(StateTree(MemoryKV()), doc)
    assert info.value.field == "app_state[0].kind"
    bad = doc.replace(app_state=(AppStateRecord("state", b"\xc1"),))
    with pytest.raises(GenesisError):
        st.init_state(StateTree(MemoryKV()), bad)


def test_devnet_genesis_template_initialises() -> None:
    from chain.genesis import GenesisDoc, GenesisValidator

    template = GenesisDoc.load(Path(__file__).resolve().parents[2] / "genesis" / "devnet.json", template=True)
    doc = template.replace(validators=(GenesisValidator(key("v").public_key.raw, 10),))
    tree = StateTree(MemoryKV())
    st.init_state(tree, doc)
    state = st.State.from_genesis(tree, doc)
    assert state.height == doc.initial_height - 1
    assert state.validator_set(doc.initial_height).total_power == 10
