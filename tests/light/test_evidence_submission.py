"""A detected light-client attack is submitted to the nodes and ends with the signers jailed.

Two chains grow from one genesis and differ from height 3 on, both signed in
round 0 by the same four validators (a same-round fork). The light client
follows one, cross-checks the other, detects the conflict and submits attack
evidence to each side with `broadcast_evidence`. Each node (the real RpcServer
and node.evidence_intake over tests/node/chainfixture's FixtureView) turns it
into duplicate-vote evidence of every validator that signed both commits; a
block carrying it jails them (three removed, the last one kept so the set is
not empty).
"""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

from chain import statekeys as sk
from chain import tx as txm
from chain.types import Block, VoteType
from light import errors as le
from light.client import LightClient, Provider
from light.store import TrustedStore
from tests.light.fixtures import Served, forked_chains
from tests.node.chainfixture import FixtureView


def test_attack_evidence_is_submitted_and_the_nodes_jail_the_double_signers(tmp_path: Path) -> None:
    a, b = forked_chains(tmp_path)
    va, vb = FixtureView(a, tmp_path / "va"), FixtureView(b, tmp_path / "vb")
    sa, sb = Served(va), Served(vb)
    try:
        root = Block.decode_untrusted(a.blocks.get_block(1) or b"").hash()
        client = LightClient.init(TrustedStore(tmp_path / "light"), Provider.at(sa.address),
                                  [Provider.at(sb.address)], trust_height=1, trust_hash=root,
                                  clock=lambda: a.state.time_ms + 60_000)
        with pytest.raises(le.AttackDetected) as info:
            client.update()
        # both nodes took the evidence (neither answered an error)
        assert f"submitted to {sb.address}, {sa.address}" in str(info.value)
        validators = {k.public_key.raw for k in a.validator_keys}
        for view in (va, vb):
            pending = view.evidence.pending(100, view.state.height + 1)
            accused = {view.state.validator_set(a.height).validators[p.evidence.validator_index].pubkey
                       for p in pending}
            assert accused == validators
            for p in pending:
                v = p.evidence.vote_a
                assert (v.type, v.height, v.round) == (VoteType.PRECOMMIT, a.height, 0)
        # chain b commits them: every validator jailed, three leave, the last one stays
        pending = vb.evidence.pending(100, b.height + 1)
        nonce = b.nonce_of("carol")
        _, result = b.commit([b.tx("carol", txm.SubmitEvidence(p.encoded), nonce=nonce + i)
                              for i, p in enumerate(pending)])
        assert result.burned > 0 and len(result.removed_validators) == 3
        assert all(b.state.get(sk.jailed(v)) is not None for v in validators)
        kept = msgpack.unpackb(b.state.get(sk.JAIL_DEFERRED))
        assert [v.pubkey for v in result.next_validators.validators] == kept
        # submitting it again: the chain already handled it, the node says so
        with pytest.raises(le.RpcError, match="already handled"):
            Provider.at(sb.address).rpc.call("broadcast_evidence", evidence=pending[0].encoded.hex())
    finally:
        sa.stop()
        sb.stop()
