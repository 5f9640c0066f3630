"""Errors of the chain package.

Every error that chain/ raises on purpose derives from :class:`ChainError`, so a
caller (the node, the CLI, the light client) can catch one base and print one
clear line. Each class says when it is raised and whose fault it is: *ours*
(a caller inside this process misused an API), *the peer's* (bytes or messages
that arrived from the network are wrong) or *the operator's* (a file they
wrote, such as a genesis file, is wrong).
"""

from __future__ import annotations


class ChainError(Exception):
    """Base class of every deliberate error raised by chain/."""


class UsageError(ChainError):
    """A caller in this process passed a value that an API does not accept.

    Raised for example for a trust fraction outside [1/3, 1] or a chain id too
    long to hash. Our fault: fix the calling code.
    """


class EncodeError(UsageError):
    """A value cannot be encoded canonically.

    Raised by :func:`chain.encoding.pack` for maps, floats, integers outside
    [-2**63, 2**64 - 1] and other types outside the canonical subset. Our fault:
    we built a value that has no wire form.
    """


class DecodeError(ChainError):
    """Bytes are not the canonical encoding of the expected value.

    Raised by every ``*_untrusted`` decoder: truncated or oversize input,
    trailing bytes, non-canonical msgpack (over-long integers, maps, floats,
    extension types), wrong field types, counts or lengths. The peer's fault
    (or the fault of whoever produced the bytes).
    """


class InvalidKey(ChainError):
    """Bytes given as a key are not a usable Ed25519 key.

    Raised for a public key or private seed of the wrong length, or a public
    key that is not a valid curve point where one is needed (sealing). The
    fault of whoever supplied the key.
    """


class InvalidSignature(ChainError):
    """A signature does not verify against the signer's public key.

    Raised where a signature is mandatory and checked in one step (a vote, a
    proposal, a transaction). The signer's or the relaying peer's fault.
    """


class UnsealError(ChainError):
    """A sealed box cannot be opened with the given private key.

    Raised by :func:`chain.crypto.unseal` when the box was sealed to another
    key, is truncated, or was tampered with. The sender's fault.
    """


class InvalidValidatorSet(ChainError):
    """A validator set breaks a structural rule.

    Raised on construction: empty set, pubkeys not strictly ascending (sorted,
    no duplicates), a power below 1, or a total power above
    :data:`chain.types.MAX_TOTAL_POWER`. The fault of whoever built the set:
    the operator for a genesis file, the chain's state transition otherwise.
    """


class InvalidCommit(ChainError):
    """A commit does not prove that the block was committed.

    Raised by ``ValidatorSet.verify_commit`` and ``verify_commit_light``: wrong
    height or block hash, signature indices not strictly ascending or out of
    range, a bad signature, or not enough voting power. The fault of the peer
    or proposer that supplied the commit.
    """


class InvalidEvidence(ChainError):
    """Evidence of misbehaviour does not prove what it claims.

    Raised by ``DuplicateVoteEvidence.verify``: the two votes differ in
    height, round, type or validator, vote for the same block, are not in
    canonical order, or carry a bad signature. The fault of whoever reported
    the evidence (a proposer that includes it makes its block invalid).
    """


class InvalidParams(ChainError):
    """A consensus or app parameter is outside its documented range.

    Raised on construction of ``ConsensusParams`` or ``AppParams``. The fault
    of whoever chose the value (usually the operator's genesis file; the
    genesis loader rewraps it as :class:`GenesisError` naming the field).
    """


class GenesisError(ChainError):
    """A genesis document is malformed or breaks a rule.

    Raised by the genesis loader and builder. The message names the field
    (for example ``consensus_params.timeout_commit_ms``), available as
    :attr:`field`. The operator's fault: fix the genesis file.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"genesis: {field}: {message}")
        self.field = field
        self.message = message


class InvalidBlock(ChainError):
    """A block breaks a rule; applying it changes nothing.

    Base class of every block-validity error. The wire half raises it
    directly when a block's lane, commit or evidence roots do not match its
    header; the state transition raises precise subclasses (defined in the
    state transition section below). The proposer's fault.
    """


# --- state transition errors ---
