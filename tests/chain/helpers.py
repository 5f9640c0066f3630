"""A small chain for tests: genesis, signed transactions, real blocks and commits.

`TestChain` keeps one State over a real StateTree (MemoryKV by default, LevelKV
when given a path), signs transactions with deterministic keys, builds blocks
the way a proposer does (lane roots, last commit signed by the validators, BFT
time, app hash from chain.state.finish_block) and applies them with apply_block
exactly as a validating node would.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import blake3

from chain import state as st
from chain import statekeys as sk
from chain import tx as txm
from chain.crypto import PrivateKey, seal
from chain.params import AppParams, ConsensusParams
from chain.types import (
    Block,
    Commit,
    Vote,
    VoteType,
)
from storage.kv import LevelKV, MemoryKV
from storage.state import StateTree

CHAIN_ID = "blackhole-test"
GENESIS_TIME = 1_700_000_000_000
START_BALANCE = 10**12
VALIDATOR_POWER = 10_000_000


def key(name: str) -> PrivateKey:
    return PrivateKey(blake3.blake3(name.encode()).digest())


def root_of(name: str) -> bytes:
    return blake3.blake3(b"content:" + name.encode()).digest()


class TestChain:
    __test__ = False

    def __init__(
        self,
        *,
        path: Path | None = None,
        users: Sequence[str] = ("alice", "bob", "carol", "dave"),
        validators: int = 1,
        app_params: AppParams | None = None,
        consensus_params: ConsensusParams | None = None,
        balance: int = START_BALANCE,
        initial_height: int = 1,
    ) -> None:
        self.kv = LevelKV.open(str(path), create=True) if path is not None else MemoryKV()
        self.tree = StateTree(self.kv)
        self.app = app_params or AppParams()
        self.consensus = consensus_params or ConsensusParams()
        self.users = {name: key(name) for name in users}
        self.validator_keys = [key(f"validator-{i}") for i in range(validators)]
        st.build_genesis_state(
            self.tree,
            initial_height=initial_height,
            genesis_time_ms=GENESIS_TIME,
            accounts=[(k.public_key.raw, balance) for k in self.users.values()],
            validators=[(k.public_key.raw, VALIDATOR_POWER) for k in self.validator_keys],
        )
        self.state = st.State(
            self.tree,
            chain_id=CHAIN_ID,
            app_params=self.app,
            consensus_params=self.consensus,
            initial_height=initial_height,
            genesis_time_ms=GENESIS_TIME,
        )
        self.pending_nonces: dict[bytes, int] = defaultdict(int)
        self.last_commit: Commit | None = None
        self.results: list[st.BlockResult] = []

    # --- accounts and reads ---------------------------------------------------

    def addr(self, name: str) -> bytes:
        return self.users[name].public_key.raw

    @property
    def height(self) -> int:
        return self.state.height

    def account(self, who: str | bytes) -> tuple[int, int]:
        address = self.addr(who) if isinstance(who, str) else who
        raw = self.state.get(sk.account(address))
        if raw is None:
            return 0, 0
        import msgpack

        balance, nonce = msgpack.unpackb(raw)
        return balance, nonce

    def balance(self, who: str | bytes) -> int:
        return self.account(who)[0]

    def snapshot(self) -> dict[bytes, bytes]:
        """Every (key, value) of the latest version: compare before and after."""
        return dict(self.tree.iter_items())

    # --- transactions ---------------------------------------------------------

    def tx(
        self,
        who: str,
        body: Any,
        *,
        nonce: int | None = None,
        fee: int | None = None,
        chain_id: str = CHAIN_ID,
        signer: PrivateKey | None = None,
    ) -> bytes:
        k = self.users[who]
        sender = k.public_key.raw
        if nonce is None:
            nonce = self.account(sender)[1] + self.pending_nonces[sender]
            self.pending_nonces[sender] += 1
        if fee is None:
            fee = self.app.min_fee
            for _ in range(3):
                size = len(txm.Tx(sender, nonce, fee, body, bytes(64)).encode())
                fee = st.compute_min_fee(self.app, size)
        signed = txm.Tx.create(signer or k, chain_id, nonce, fee, body)
        if signer is not None:
            signed = dataclasses.replace(signed, sender=sender)
        return signed.encode()

    def forget_pending(self) -> None:
        self.pending_nonces.clear()

    # --- blocks ----------------------------------------------------------------

    def block(
        self,
        txs: Iterable[bytes] = (),
        *,
        evidence: Sequence[bytes] = (),
        lanes: dict[str, list[bytes]] | None = None,
        proposer: int = 0,
    ) -> Block:
        """A finished block (app hash filled in) for the next height; nothing is committed."""
        final, _ = st.finish_block(self.state, self.draft(txs, evidence=evidence, lanes=lanes, proposer=proposer))
        return final

    def draft(
        self,
        txs: Iterable[bytes] = (),
        *,
        evidence: Sequence[bytes] = (),
        lanes: dict[str, list[bytes]] | None = None,
        proposer: int = 0,
    ) -> Block:
        """A block for the next height whose app_hash is a placeholder (all zero)."""
        if lanes is None:
            lanes = {name: [] for name in txm.LANE_NAMES}
            for raw in txs:
                lanes[txm.LANE_NAMES[txm.Tx.decode_untrusted(raw).lane]].append(raw)
        s = self.state
        return st.draft_block(s, lanes, last_commit=self.last_commit, evidence=evidence,
                              proposer=s.validator_set(s.height + 1).validators[proposer].pubkey)

    def sign_commit(self, block: Block) -> Commit:
        vset = self.state.validator_set(block.header.height)
        by_pub = {k.public_key.raw: k for k in [*self.validator_keys, *self.users.values()]}
        votes = []
        for i, v in enumerate(vset.validators):
            if v.pubkey not in by_pub:
                continue
            vote = Vote(VoteType.PRECOMMIT, block.header.height, 0, block.hash(), block.header.time_ms + 1000, i)
            votes.append(vote.signed(by_pub[v.pubkey], CHAIN_ID))
        return Commit.from_votes(votes)

    def apply_block(self, block: Block) -> st.BlockResult:
        """Validate and commit `block` as a validator would."""
        result = st.apply_block(self.state, block)
        self.state.commit(result)
        self.last_commit = self.sign_commit(block)
        self.results.append(result)
        self.forget_pending()
        return result

    def apply(self, txs: Iterable[bytes] = (), **kw: Any) -> st.BlockResult:
        return self.apply_block(self.block(txs, **kw))

    def advance(self, heights: int) -> None:
        for _ in range(heights):
            self.apply()

    def close(self) -> None:
        self.kv.close()


def publish_body(
    name: str = "film",
    *,
    content_type: str = "video",
    tags: Sequence[str] = ("art",),
    preview: bytes = b"preview",
    parent: bytes = b"",
    offer: txm.KeyOffer | None = None,
    title: str | None = None,
) -> txm.PublishCard:
    return txm.PublishCard(
        content_root=root_of(name), size=10_000_000, chunk_size=1 << 20, cipher="chacha20-poly1305",
        content_type=content_type, title=title or f"The {name}", tags=tuple(tags), links=(),
        preview=preview, preview_hash=b"", parent=parent, offer=offer,
    )  # fmt: skip


def offer(price: int = 1000, *, supply_cap: int = 0, royalty_bps: int = 1000, timeout: int = 0,
          program: bytes = b"", params: tuple[int, ...] = ()) -> txm.KeyOffer:
    return txm.KeyOffer(price, supply_cap, royalty_bps, timeout, program, params)


def sealed_for(chain: TestChain, who: str, secret: bytes = b"k" * 32) -> bytes:
    return seal(chain.addr(who), secret)


def card_id_of(chain: TestChain, who: str, nonce: int) -> bytes:
    return txm.compute_card_id(chain.addr(who), nonce)


def expect_reject(chain: TestChain, txs: Sequence[bytes], error: type[Exception], *, check: bool = True) -> Exception:
    """The block of `txs` is invalid because of the last one, with `error`; nothing changes.

    With `check`, check_tx (after the earlier txs in a mempool overlay) rejects
    the last transaction with the same error: the two share their rules.
    """
    import pytest

    from chain.checktx import check_tx
    from chain.errors import BlockTxInvalid

    root, snap, height = chain.tree.root(), chain.snapshot(), chain.height
    with pytest.raises(BlockTxInvalid) as info:
        st.apply_block(chain.state, chain.draft(txs))
    assert isinstance(info.value.error, error), info.value
    assert chain.tree.root() == root and chain.snapshot() == snap and chain.height == height
    if check:
        overlay = chain.state.new_overlay()
        for raw in txs[:-1]:
            check_tx(chain.state, raw, overlay=overlay)
        with pytest.raises(error):
            check_tx(chain.state, txs[-1], overlay=overlay)
    chain.forget_pending()
    return info.value.error
