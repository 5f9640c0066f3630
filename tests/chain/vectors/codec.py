"""Golden vectors of the wire types: JSON form of values, and the vector set itself.

``python -m tests.chain.vectors.codec`` rewrites the JSON files. Do that only
when docs/spec.md changes a wire form on purpose; the tests compare the code
against the committed files both ways (value -> hex and hex -> value).

JSON form of a value: a dataclass is an object of its fields; bytes are
lowercase hex strings; enums are their integers; tuples are lists.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

from chain import types as ct
from chain.crypto import PrivateKey
from chain.merkle import EMPTY_ROOT, MerkleProof, compute_proof, merkle_root

HERE = Path(__file__).parent
CHAIN_ID = "blackhole-vectors"


def to_json(value: Any) -> Any:
    if isinstance(value, enum.IntEnum):
        return int(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init
        }
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (tuple, list)):
        return [to_json(v) for v in value]
    return value


def from_json(tp: Any, data: Any) -> Any:
    """Rebuild a value of type ``tp`` from its JSON form (test helper, trusted input)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if data is None else from_json(args[0], data)
    if origin is tuple:
        (item, _ellipsis) = typing.get_args(tp)
        return tuple(from_json(item, d) for d in data)
    if tp is bytes:
        return bytes.fromhex(data)
    if isinstance(tp, type) and issubclass(tp, enum.IntEnum):
        return tp(data)
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp, vars(ct))
        kwargs = {
            f.name: from_json(hints[f.name], data[f.name]) for f in dataclasses.fields(tp) if f.init
        }
        return tp(**kwargs)
    return data


def _keys() -> list[PrivateKey]:
    return [PrivateKey(bytes([i + 1]) * 32) for i in range(4)]


def build_vectors() -> dict[str, list[tuple[str, Any]]]:
    """The named example values of every wire type, deterministic (Ed25519 signs deterministically)."""
    keys = _keys()
    valset = ct.ValidatorSet.from_unsorted(
        ct.Validator(k.public_key.raw, 10 + i) for i, k in enumerate(keys)
    )
    by_pub = {k.public_key.raw: k for k in keys}
    block_hash = bytes(range(32))
    other_hash = bytes(range(1, 33))

    prevote_nil = ct.Vote(ct.VoteType.PREVOTE, 1, 0, b"", 1_700_000_000_000, 2).signed(
        by_pub[valset.validators[2].pubkey], CHAIN_ID
    )
    precommits = [
        ct.Vote(ct.VoteType.PRECOMMIT, 7, 1, block_hash, 1_700_000_000_100 + 10 * i, i).signed(
            by_pub[v.pubkey], CHAIN_ID
        )
        for i, v in enumerate(valset.validators)
    ]
    commit = ct.Commit.from_votes(precommits[:3])
    prop0 = ct.Proposal(7, 0, -1, block_hash, 1_700_000_000_050, 1).signed(
        by_pub[valset.validators[1].pubkey], CHAIN_ID
    )
    prop2 = ct.Proposal(7, 3, 2, block_hash, 1_700_000_000_060, 3).signed(
        by_pub[valset.validators[3].pubkey], CHAIN_ID
    )
    conflicting = ct.Vote(ct.VoteType.PRECOMMIT, 7, 1, other_hash, 1_700_000_000_105, 0).signed(
        by_pub[valset.validators[0].pubkey], CHAIN_ID
    )
    evidence = ct.DuplicateVoteEvidence.from_votes(precommits[0], conflicting)

    txs = (b"\x93\x01\x02\x03", b"\xc4\x03abc")
    ev_bytes = (evidence.encode(),)
    header1 = ct.Header(
        CHAIN_ID, 1, 1_700_000_000_000, b"", EMPTY_ROOT,
        EMPTY_ROOT, EMPTY_ROOT, EMPTY_ROOT, EMPTY_ROOT, EMPTY_ROOT,
        valset.hash(), valset.hash(), b"\xaa" * 32, valset.validators[0].pubkey,
    )  # fmt: skip
    block1 = ct.Block(header1, (), (), (), (), None, ())
    header8 = ct.Header(
        CHAIN_ID, 8, ct.compute_block_time(commit, valset, 1_700_000_000_000), block_hash,
        ct.commit_hash(commit), ct.compute_lane_root(txs[:1]), ct.compute_lane_root(txs[1:]),
        EMPTY_ROOT, ct.compute_lane_root(txs), ct.compute_evidence_hash(ev_bytes),
        valset.hash(), valset.hash(), b"\xbb" * 32, valset.validators[1].pubkey,
    )  # fmt: skip
    block8 = ct.Block(header8, txs[:1], txs[1:], (), txs, commit, ev_bytes)
    leaves = [bytes([i]) * 32 for i in range(5)]
    return {
        "vote": [("prevote_nil", prevote_nil), ("precommit", precommits[1])],
        "proposal": [("no_pol", prop0), ("pol_round_2", prop2)],
        "commit_sig": [("first", commit.signatures[0])],
        "commit": [("three_of_four", commit)],
        "validator": [("power_10", valset.validators[0])],
        "validator_set": [("four", valset)],
        "duplicate_vote_evidence": [("precommit_equivocation", evidence)],
        "header": [("initial", header1), ("height_8", header8)],
        "block": [("initial_empty", block1), ("height_8_full", block8)],
        "merkle_proof": [
            ("leaf_4_of_5", compute_proof(leaves, 4)),
            ("leaf_1_of_5", compute_proof(leaves, 1)),
            ("single", MerkleProof(0, 1, ())),
        ],
    }


def crypto_vectors() -> dict[str, Any]:
    """Digest, signature, X25519 and Merkle root examples (hex)."""
    from chain import crypto

    key = _keys()[0]
    payload = bytes.fromhex("93010203")
    leaves = [bytes([i]) * 32 for i in range(5)]
    return {
        "type": "crypto",
        "seed": key.seed.hex(),
        "public_key": key.public_key.hex(),
        "x25519_public_key": key.public_key.to_x25519().hex(),
        "domains": {name: tag.hex() for name, tag in crypto.DOMAINS.items()},
        "digests": [
            {
                "domain": name,
                "chain_id": CHAIN_ID,
                "payload": payload.hex(),
                "digest": crypto.digest(crypto.DOMAINS[name], CHAIN_ID, payload).hex(),
                "signature": key.sign_message(crypto.DOMAINS[name], CHAIN_ID, payload).hex(),
            }
            for name in ("vote", "proposal", "tx")
        ],
        "merkle": [
            {"leaves": [x.hex() for x in leaves[:n]], "root": merkle_root(leaves[:n]).hex()}
            for n in range(6)
        ],
    }


TYPES: dict[str, Any] = {
    "vote": ct.Vote,
    "proposal": ct.Proposal,
    "commit_sig": ct.CommitSig,
    "commit": ct.Commit,
    "validator": ct.Validator,
    "validator_set": ct.ValidatorSet,
    "duplicate_vote_evidence": ct.DuplicateVoteEvidence,
    "header": ct.Header,
    "block": ct.Block,
    "merkle_proof": MerkleProof,
}


def genesis_vector_doc() -> Any:
    """A small genesis (two validators, three accounts, one app-state record)."""
    from chain.genesis import AppStateRecord, GenesisAccount, GenesisDoc, GenesisValidator
    from chain.params import AppParams, ConsensusParams

    keys = _keys()
    return GenesisDoc.build(
        chain_id=CHAIN_ID,
        genesis_time_ms=1_767_225_600_123,
        initial_height=5,
        consensus_params=ConsensusParams(timeout_commit_ms=700, max_validators=10),
        app_params=AppParams(min_fee=42),
        validators=[
            GenesisValidator(k.public_key.raw, 5 + i, f"v{i}") for i, k in enumerate(keys[:2])
        ],
        accounts=[GenesisAccount(k.public_key.raw, 1000 * (i + 1)) for i, k in enumerate(keys[1:])],
        app_state=[AppStateRecord("test.record", b"\x91\x01")],
    )


def genesis_vector() -> dict[str, Any]:
    """The genesis vector: JSON form, parameter names at the time, encoding and hash.

    Parameters may only be appended, so the test re-derives the encoding with
    the parameter arrays cut to the names recorded here.
    """
    import dataclasses

    doc = genesis_vector_doc()
    data = doc.encode()
    return {
        "type": "genesis",
        "json": doc.to_dict(),
        "consensus_param_names": [f.name for f in dataclasses.fields(doc.consensus_params)],
        "app_param_names": [f.name for f in dataclasses.fields(doc.app_params)],
        "hex": data.hex(),
        "hash": doc.hash().hex(),
    }


def write_all() -> None:
    for kind, items in build_vectors().items():
        if kind not in TYPES:
            continue
        entries = [
            {"name": name, "value": to_json(v), "hex": v.encode().hex()} for name, v in items
        ]
        doc = {"type": kind, "chain_id": CHAIN_ID, "vectors": entries}
        (HERE / f"{kind}.json").write_text(json.dumps(doc, indent=1) + "\n")
    (HERE / "crypto.json").write_text(json.dumps(crypto_vectors(), indent=1) + "\n")
    (HERE / "genesis.json").write_text(json.dumps(genesis_vector(), indent=1) + "\n")


if __name__ == "__main__":
    write_all()
    sys.exit(0)
