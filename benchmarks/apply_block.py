"""Block application: 50 blocks of 2,000 mixed transactions on a real LevelDB store.

Mix per block (issue 4): 40 % token transfers, 30 % seeder announcements,
20 % cards and reactions (10 % publish, 10 % react), 10 % key operations
(5 % primary-sale purchases into escrow, 5 % deliveries of the previous
block's purchases, which release the escrows).

Two stores, as in a network: a proposer builds each block (chain.state.
finish_block fills in the app hash) on its own LevelDB store, untimed; a
validator then applies the same blocks on a second LevelDB store, timed:
chain.state.apply_block (decode, header checks, signature checks on the
thread pool, every rule, staging the authenticated tree, app-hash check) plus
writing the staged version with one synced batch. All transactions are
generated and signed before any timing.

Baseline, interleaved block by block in the same run: verifying the block's
transaction signatures with plain pynacl (nacl.bindings.crypto_sign_open) on
one core. ratio = (block txs / apply seconds) / (block txs / verify seconds),
median over the blocks; >= 0.5 is the target, >= 1.0 means applying a block
beats one core merely verifying its signatures. The overlap of verification
with applying needs a second free core: `cores_free` (before and after the
run) is 2 x the time of a pure-Python loop alone over the time of two such
loops at once, i.e. how many cores the run actually got (2.0 on an idle
2-core machine).

    .venv/bin/python benchmarks/apply_block.py [--blocks 50] [--txs 2000]

The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))

import blake3  # noqa: E402
import nacl.bindings  # noqa: E402

from chain import sigverify  # noqa: E402
from chain import state as st  # noqa: E402
from chain import tx as txm  # noqa: E402
from chain.crypto import PrivateKey, seal  # noqa: E402
from chain.params import AppParams, ConsensusParams  # noqa: E402
from chain.types import (  # noqa: E402
    Block,
    Commit,
    Vote,
    VoteType,
)
from storage.kv import LevelKV, WriteBatch  # noqa: E402
from storage.state import StateTree  # noqa: E402

CHAIN_ID = "bench-apply"
GENESIS_TIME = 1_700_000_000_000
CREATORS = 50
ROOTS = 400
TAGS = [f"tag{i}" for i in range(40)]


def k(name: str) -> PrivateKey:
    return PrivateKey(blake3.blake3(name.encode()).digest())


def sign(key: PrivateKey, nonce: int, body: txm.AnyBody, fee: int = 2000) -> bytes:
    return txm.Tx.create(key, CHAIN_ID, nonce, fee, body).encode()


class Workload:
    """Every block's transactions, generated and signed up front."""

    def __init__(self, blocks: int, per_block: int, seed: int = 7) -> None:
        rnd = random.Random(seed)
        self.users = [k(f"user-{i}") for i in range(per_block)]
        self.creators = [k(f"creator-{i}") for i in range(CREATORS)]
        self.validator = k("validator")
        self.roots = [blake3.blake3(b"root%d" % i).digest() for i in range(ROOTS)]
        nonce = {key.public_key.raw: 0 for key in self.users + self.creators}

        def next_nonce(key: PrivateKey) -> int:
            n = nonce[key.public_key.raw]
            nonce[key.public_key.raw] = n + 1
            return n

        # setup block: every creator publishes a card with a key offer (not timed)
        setup = []
        self.offer_cards = []
        for c in self.creators:
            body = txm.PublishCard(
                rnd.choice(self.roots), 5_000_000, 1 << 20, "chacha20-poly1305", "video", "offer",
                ("sale",), (), b"p" * 64, b"", b"", txm.KeyOffer(100, 0, 500, 0, b"", ()),
            )  # fmt: skip
            n = next_nonce(c)
            setup.append(sign(c, n, body))
            self.offer_cards.append((c, txm.compute_card_id(c.public_key.raw, n)))
        self.setup = setup
        sold = {cid: 0 for _, cid in self.offer_cards}
        pending: list[tuple[PrivateKey, bytes, int, bytes]] = []  # creator, card, serial, buyer
        self.blocks: list[list[bytes]] = []
        n_transfer = per_block * 40 // 100
        n_announce = per_block * 30 // 100
        n_publish = per_block * 10 // 100
        n_react = per_block * 10 // 100
        n_keys = per_block - n_transfer - n_announce - n_publish - n_react
        published: list[bytes] = [cid for _, cid in self.offer_cards]
        for b in range(blocks):
            height = b + 2  # the setup block is height 1
            txs: list[bytes] = []
            order = list(range(per_block))
            rnd.shuffle(order)
            users = iter(self.users[i] for i in order)
            for _ in range(n_transfer):
                u = next(users)
                to = self.users[rnd.randrange(per_block)].public_key.raw
                txs.append(sign(u, next_nonce(u), txm.Transfer(to, rnd.randrange(1, 1000))))
            for _ in range(n_announce):
                u = next(users)
                body = txm.Announce(
                    rnd.choice(self.roots), (f"10.0.{rnd.randrange(256)}.{rnd.randrange(256)}:4433",),
                    ((0, rnd.randrange(1, 5000)),), height + rnd.randrange(5, 200),
                )  # fmt: skip
                txs.append(sign(u, next_nonce(u), body))
            new_cards = []
            for _ in range(n_publish):
                u = next(users)
                body = txm.PublishCard(
                    rnd.choice(self.roots), rnd.randrange(1, 10**9), 1 << 20, "chacha20-poly1305",
                    rnd.choice(txm.CONTENT_TYPES), "a title", tuple(rnd.sample(TAGS, 2)), (),
                    b"x" * 100, b"", b"", None,
                )  # fmt: skip
                n = next_nonce(u)
                txs.append(sign(u, n, body))
                new_cards.append(txm.compute_card_id(u.public_key.raw, n))
            for _ in range(n_react):
                u = next(users)
                txs.append(sign(u, next_nonce(u), txm.React(rnd.choice(published), rnd.randrange(1, 7))))
            # key operations: deliveries of the previous block's purchases, then new purchases
            deliveries = pending[: n_keys // 2]
            pending = pending[n_keys // 2 :]
            by_creator: dict[bytes, list[tuple[PrivateKey, bytes, int, bytes]]] = {}
            for item in deliveries:
                by_creator.setdefault(item[0].public_key.raw, []).append(item)
            for items in by_creator.values():
                for creator, cid, serial, buyer in items:
                    sealed = seal(buyer, b"K" * 32)
                    txs.append(sign(creator, next_nonce(creator), txm.DeliverKey(cid, serial, sealed)))
            while len(txs) < per_block:
                u = next(users)
                creator, cid = rnd.choice(self.offer_cards)
                sold[cid] += 1
                txs.append(sign(u, next_nonce(u), txm.BuyKey(cid, 0, 100)))
                pending.append((creator, cid, sold[cid], u.public_key.raw))
            published.extend(new_cards)
            self.blocks.append(txs)

    def genesis(self, tree: StateTree) -> None:
        st.build_genesis_state(
            tree, initial_height=1, genesis_time_ms=GENESIS_TIME,
            accounts=[(u.public_key.raw, 10**12) for u in self.users + self.creators],
            validators=[(self.validator.public_key.raw, 10**7)],
        )  # fmt: skip


def new_state(path: Path, work: Workload) -> st.State:
    tree = StateTree(LevelKV.open(str(path), create=True))
    work.genesis(tree)
    return st.State(
        tree, chain_id=CHAIN_ID, app_params=AppParams(min_fee=100, fee_per_byte=1),
        consensus_params=ConsensusParams(), initial_height=1, genesis_time_ms=GENESIS_TIME,
    )  # fmt: skip


def build_chain(state: st.State, work: Workload) -> list[Block]:
    """The proposer's side: finish every block and commit it on its own store."""
    out = []
    last_commit: Commit | None = None
    for txs in [work.setup, *work.blocks]:
        lanes: dict[str, list[bytes]] = {name: [] for name in txm.LANE_NAMES}
        for raw in txs:
            lanes[txm.LANE_NAMES[txm.Tx.decode_untrusted(raw).lane]].append(raw)
        draft = st.draft_block(state, lanes, last_commit=last_commit,
                               proposer=work.validator.public_key.raw)
        block, result = st.finish_block(state, draft)
        state.commit(result)
        h = block.header.height
        vote = Vote(VoteType.PRECOMMIT, h, 0, block.hash(), block.header.time_ms + 1000, 0).signed(
            work.validator, CHAIN_ID)
        last_commit = Commit.from_votes([vote])
        out.append(block)
    return out


def burn(n: int = 2_000_000) -> float:
    t0 = time.perf_counter()
    x = 0
    for i in range(n):
        x += i
    return time.perf_counter() - t0


def measure_free_cores() -> float:
    """How many cores this run gets: 2 x (one loop alone) / (two loops at once)."""
    import multiprocessing

    alone = min(burn() for _ in range(2))
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        together = max(pool.map(burn, [2_000_000, 2_000_000]))
    return round(2 * alone / together, 2)


def verify_one_core(items: list[tuple[bytes, bytes, bytes]]) -> float:
    sign_open = nacl.bindings.crypto_sign_open
    t0 = time.perf_counter()
    for pubkey, signature, digest in items:
        sign_open(signature + digest, pubkey)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=50)
    ap.add_argument("--txs", type=int, default=2000)
    args = ap.parse_args()

    cores_before = measure_free_cores()
    t0 = time.perf_counter()
    work = Workload(args.blocks, args.txs)
    print(f"generated and signed {sum(map(len, work.blocks)) + len(work.setup)} txs in {time.perf_counter() - t0:.1f}s")
    tmp = Path(tempfile.mkdtemp(prefix="bench-apply-"))
    try:
        proposer = new_state(tmp / "proposer", work)
        t0 = time.perf_counter()
        blocks = build_chain(proposer, work)
        print(f"proposer built {len(blocks)} blocks in {time.perf_counter() - t0:.1f}s")
        validator = new_state(tmp / "validator", work)
        sig_items = [
            [
                (txm.Tx.decode_untrusted(raw).sender, txm.signature_of(raw), st.tx_signing_digest(CHAIN_ID, raw))
                for lane in txm.LANE_NAMES for raw in b.lane(lane)
            ]
            for b in blocks
        ]  # fmt: skip
        apply_s: list[float] = []
        verify_s: list[float] = []
        for i, block in enumerate(blocks):
            t = time.perf_counter()
            result = st.apply_block(validator, block)
            batch = WriteBatch()
            result.staged.write_into(batch)
            validator.tree.kv.write(batch, sync=True)
            validator.mark_committed(result)
            elapsed = time.perf_counter() - t
            v = verify_one_core(sig_items[i])
            if i == 0:
                continue  # the setup block
            apply_s.append(elapsed)
            verify_s.append(v)
            if i % 10 == 0:
                print(f"block {i}: apply {elapsed * 1000:.0f} ms, one-core verify {v * 1000:.0f} ms")
        if validator.tree.root() != proposer.tree.root():
            raise SystemExit("the validator's state root differs from the proposer's")
        n_txs = sum(len(b) for b in work.blocks)
        ratios = [v / a for v, a in zip(verify_s, apply_s, strict=True)]
        ms = sorted(a * 1000 for a in apply_s)
        out = {
            "benchmark": "apply_block",
            "blocks": len(apply_s),
            "txs_per_block": args.txs,
            "tx_per_s": round(n_txs / sum(apply_s)),
            "verify_per_s_one_core": round(n_txs / sum(verify_s)),
            "ratio": round(statistics.median(ratios), 3),
            "block_apply_ms_p50": round(statistics.median(ms), 1),
            "block_apply_ms_p99": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 1),
            "store": "leveldb",
            "cores_free": [cores_before, measure_free_cores()],
            "sigverify": f"{sigverify.default_verifier().kind} pool x{sigverify.default_verifier().workers}",
        }
        print(json.dumps(out))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
