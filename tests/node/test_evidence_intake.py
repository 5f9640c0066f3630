"""Evidence submitted from outside: node.evidence_intake and the `broadcast_evidence` RPC.

The pure part runs on tests/chain/helpers' TestChain: a "conflicting" header is
the canonical one with another app hash, signed by chosen validators (the test
holds every key) in the canonical commit's round or another one. The
in-process part submits over HTTP to four real nodes and watches the chain
jail the validators the evidence names.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import trio

from chain import statekeys as sk
from chain import tx as txm
from chain.crypto import PrivateKey
from chain.sigverify import SignatureVerifier
from chain.types import (
    Block,
    Commit,
    DuplicateVoteEvidence,
    Header,
    Validator,
    ValidatorSet,
    Vote,
    VoteType,
)
from light.evidence import LightClientAttackEvidence
from light.verifier import LightBlock
from node.evidence_intake import (
    EVIDENCE_DIR,
    EvidenceRejected,
    decode_submitted_untrusted,
    derive_duplicate_votes,
)
from tests.chain.helpers import CHAIN_ID, TestChain, key
from tests.node.harness import make_testnet, rpc_call, start_all, wait_until


def sign_conflicting(chain_id: str, header: Header, keys: dict[int, PrivateKey], round_: int) -> Commit:
    """A commit of `header` by the validators at the given indices, in `round_`."""
    votes = [Vote(VoteType.PRECOMMIT, header.height, round_, header.hash(), header.time_ms + 7 + i, i)
             .signed(k, chain_id) for i, k in keys.items()]
    return Commit.from_votes(votes)


def attack_evidence(header: Header, commit: Commit, vset, next_vset, common: Header) -> LightClientAttackEvidence:  # type: ignore[no-untyped-def]
    block = LightBlock(header, commit, vset, next_vset)
    signers = tuple(sorted(vset.validators[s.validator_index].pubkey for s in commit.signatures))
    return LightClientAttackEvidence(block, common.height, common.hash(), signers, vset.total_power, common.time_ms)


class Fork:
    """A 4-validator TestChain at height 3 and a header conflicting with its block 3."""

    def __init__(self) -> None:
        self.chain = chain = TestChain(validators=4)
        chain.advance(1)
        common = chain.block()
        chain.apply_block(common)
        self.common = common.header
        blk = chain.block()
        chain.apply_block(blk)
        self.header = blk.header
        self.canonical = chain.last_commit
        assert self.canonical is not None and self.canonical.round == 0
        s = chain.state
        self.vset, self.next_vset = s.validator_set(3), s.validator_set(4)
        self.fake = dataclasses.replace(blk.header, app_hash=b"\x66" * 32)
        by_pub = {k.public_key.raw: k for k in chain.validator_keys}
        self.keys = {i: by_pub[v.pubkey] for i, v in enumerate(self.vset.validators)}

    def attack(self, indices: tuple[int, ...], round_: int, header: Header | None = None) -> LightClientAttackEvidence:
        h = header or self.fake
        commit = sign_conflicting(CHAIN_ID, h, {i: self.keys[i] for i in indices}, round_)
        return attack_evidence(h, commit, self.vset, self.next_vset, self.common)


def test_same_round_signers_of_both_commits_become_duplicate_votes_that_jail_them() -> None:
    f = Fork()
    attack = f.attack((0, 1, 2), 0)
    # the round trip through bytes is what the RPC sees
    decoded = decode_submitted_untrusted(attack.encode())
    assert isinstance(decoded, LightClientAttackEvidence)
    derived = derive_duplicate_votes(CHAIN_ID, decoded, f.vset, f.canonical)
    assert not derived.amnesia
    assert sorted(ev.validator_index for ev in derived.duplicate_votes) == [0, 1, 2]
    for ev in derived.duplicate_votes:
        assert ev.vote_a.type == VoteType.PRECOMMIT and ev.height == 3 and ev.vote_a.round == 0
        assert {ev.vote_a.block_hash, ev.vote_b.block_hash} == {f.header.hash(), f.fake.hash()}
        ev.verify(CHAIN_ID, f.vset)
    # the chain jails them through process_evidence
    result = f.chain.apply(evidence=sorted(ev.encode() for ev in derived.duplicate_votes))
    guilty = {f.vset.validators[i].pubkey for i in (0, 1, 2)}
    assert set(result.removed_validators) == guilty
    assert all(f.chain.state.get(sk.jailed(p)) is not None for p in guilty)


def test_a_validator_missing_from_the_canonical_commit_is_not_accused() -> None:
    f = Fork()
    partial = Commit(f.canonical.height, f.canonical.round, f.canonical.block_hash, f.canonical.signatures[1:])
    derived = derive_duplicate_votes(CHAIN_ID, f.attack((0, 1, 2), 0), f.vset, partial)
    assert sorted(ev.validator_index for ev in derived.duplicate_votes) == [1, 2]


def test_commits_of_different_rounds_are_amnesia_and_prove_nothing() -> None:
    f = Fork()
    derived = derive_duplicate_votes(CHAIN_ID, f.attack((0, 1, 2), 1), f.vset, f.canonical)
    assert derived.amnesia and derived.duplicate_votes == ()


def test_evidence_that_proves_nothing_is_rejected() -> None:
    f = Fork()
    # the "conflicting" header is the node's own block
    with pytest.raises(EvidenceRejected, match="own block"):
        derive_duplicate_votes(CHAIN_ID, f.attack((0, 1, 2), 0, header=f.header), f.vset, f.canonical)
    # signed by less than 2/3 of the set
    with pytest.raises(EvidenceRejected, match="does not verify"):
        derive_duplicate_votes(CHAIN_ID, f.attack((0, 1), 0), f.vset, f.canonical)
    # a forged signature
    good = f.attack((0, 1, 2), 0)
    sigs = list(good.conflicting_block.commit.signatures)
    sigs[0] = dataclasses.replace(sigs[0], signature=bytes(64))
    forged = dataclasses.replace(good, conflicting_block=dataclasses.replace(
        good.conflicting_block, commit=dataclasses.replace(good.conflicting_block.commit, signatures=tuple(sigs))))
    with pytest.raises(EvidenceRejected):
        derive_duplicate_votes(CHAIN_ID, forged, f.vset, f.canonical)
    # a set the node does not have for that height (other keys, same shape)
    other = ValidatorSet.from_unsorted(Validator(key(f"other-{i}").public_key.raw, v.power)
                                       for i, v in enumerate(f.vset.validators))
    with pytest.raises(EvidenceRejected, match="this node's validator set"):
        derive_duplicate_votes(CHAIN_ID, good, other, f.canonical)
    for junk, message in ((b"\x93\x01\x02", "does not decode"), (b"\x91\x09", "unknown evidence kind"),
                          (b"\xc1", "does not decode"), (b"\x91\xc3", "unknown evidence kind")):
        with pytest.raises(EvidenceRejected, match=message):
            decode_submitted_untrusted(junk)


def test_broadcast_evidence_over_rpc_jails_the_validators_it_proves(
        tmp_path: Path, verifier: SignatureVerifier) -> None:
    homes = make_testnet(tmp_path / "net", 4)
    cid = homes.chain_id
    by_pub = {h.validator_key.public_key.raw: h.validator_key for h in homes.nodes}
    cheat = homes.nodes[3].validator_key

    async def call(port: int, method: str, **params: object) -> object:
        return await trio.to_thread.run_sync(lambda: rpc_call(port, method, dict(params), 10.0))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nodes = await start_all(nursery, homes.nodes, verifier, height=3)
            node, port = nodes[0].node, nodes[0].daemon.rpc_port
            with pytest.raises(RuntimeError, match=r"-32602.*does not decode"):
                await call(port, "broadcast_evidence", evidence="93aabb")
            # kind 1: two prevotes of validator 3 at height 1
            idx = node.state.validator_set(1).index_of(cheat.public_key.raw)
            votes = [Vote(VoteType.PREVOTE, 1, 0, bh, 5, idx).signed(cheat, cid) for bh in (b"\x01" * 32, b"\x02" * 32)]
            dv = DuplicateVoteEvidence.from_votes(*votes)
            answer = await call(port, "broadcast_evidence", evidence=dv.encode().hex())
            assert answer["hashes"] == [dv.hash().hex()]  # type: ignore[index]
            # kind 2: validators 1..3 sign another header at height 2 in the canonical round
            h = 2
            header = Block.decode_untrusted(node.blocks.get_block(h) or b"").header
            common = Block.decode_untrusted(node.blocks.get_block(h - 1) or b"").header
            canonical = Commit.decode_untrusted(node.blocks.get_commit(h) or b"")
            vset, next_vset = node.state.validator_set(h), node.state.validator_set(h + 1)
            fake = dataclasses.replace(header, app_hash=b"\x66" * 32)
            chosen = {i: by_pub[v.pubkey] for i, v in enumerate(vset.validators)
                      if v.pubkey != homes.nodes[0].validator_key.public_key.raw}
            attack = attack_evidence(fake, sign_conflicting(cid, fake, chosen, canonical.round), vset, next_vset,
                                     common)
            answer = await call(port, "broadcast_evidence", evidence=attack.encode().hex())
            both = sorted(s.validator_index for s in canonical.signatures if s.validator_index in chosen)
            assert len(answer["hashes"]) == len(both) >= 2  # type: ignore[index]
            # the same attack signed in another round: amnesia, recorded, nothing pooled
            amnesia = attack_evidence(fake, sign_conflicting(cid, fake, chosen, canonical.round + 1), vset,
                                      next_vset, common)
            answer = await call(port, "broadcast_evidence", evidence=amnesia.encode().hex())
            assert answer == {"hashes": [], "log": answer["log"]} and "amnesia" in answer["log"]  # type: ignore[index]
            assert list((homes.nodes[0].home / EVIDENCE_DIR).glob("amnesia-2-*.bin"))
            guilty = {cheat.public_key.raw} | {vset.validators[i].pubkey for i in both}

            def all_jailed() -> bool:
                return all(n.node.state.get(sk.jailed(p)) is not None for n in nodes for p in guilty)

            await wait_until(all_jailed, 30, "the validators jailed on every node")
            jailed_at = max(int.from_bytes(node.state.get(sk.jailed(p)) or b"", "big") for p in guilty)
            await wait_until(lambda: min(n.height for n in nodes) >= jailed_at + 3, 30,
                             "the chain goes on with the validators left")
            latest = node.state.validator_set(node.state.height)
            assert not guilty & {v.pubkey for v in latest.validators} and len(latest) == 4 - len(guilty)
            # the chain refuses the same evidence again
            with pytest.raises(RuntimeError, match="already handled"):
                await call(port, "broadcast_evidence", evidence=dv.encode().hex())
            # a jailed key is refused a bond with a precise reason
            bond = txm.Tx.create(cheat, cid, 0, 20_000, txm.Bond(10**9)).encode()
            check = await call(port, "check_tx", tx=bond.hex())
            assert check["reason"] == "ValidatorJailed"  # type: ignore[index]
            for n in nodes:
                await n.stop()
            nursery.cancel_scope.cancel()

    trio.run(main)
