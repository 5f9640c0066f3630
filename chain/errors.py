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


class StateError(ChainError):
    """The state store cannot serve the transition: not initialised from a genesis,
    a height that was pruned, or a record that does not decode. Ours (or the
    operator's, for a damaged or mismatched data directory)."""


class InvalidTx(ChainError):
    """A transaction breaks a rule of its lane (docs/spec-state.md, in the order
    checked). Raised by ``chain.checktx.check_tx``; inside a block it is wrapped
    in :class:`BlockTxInvalid`. The sender's fault."""


class MalformedTx(InvalidTx):
    """Bytes that are not a canonical transaction, too large, or in the wrong lane."""


class BadTxSignature(InvalidTx):
    """The signature does not verify; a transaction signed for another chain id lands here."""


class WrongNonce(InvalidTx):
    """The nonce is not the sender's next one (a replay or a skipped nonce)."""


class FeeTooLow(InvalidTx):
    """The fee is below max(min_fee, fee_per_byte * size)."""


class InsufficientBalance(InvalidTx):
    """The sender (or payer) cannot pay the fee, price, amount or royalty."""


class InvalidField(InvalidTx):
    """A field has a value outside its documented set or range (content type, chunk size, expiry...)."""


class LimitExceeded(InvalidField):
    """A field is larger than its genesis limit (title, tags, links, addresses, payload...)."""


class OversizePreview(LimitExceeded):
    """An inline preview is larger than app_params.max_preview_bytes."""


class NotFound(InvalidTx):
    """The card, token, listing, seeder entry or escrow the transaction names does not exist."""


class NoOpenEscrow(NotFound):
    """A delivery names a key with no open escrow (already delivered, refunded or never bought)."""


class NotAuthorized(InvalidTx):
    """The sender may not do this: not the card's creator, the key's owner or the escrow's seller."""


class NotCreator(NotAuthorized):
    """Only the card's creator may update it."""


class RuleViolation(InvalidTx):
    """The state forbids the action: sold out, price above the buyer's limit, key in escrow,
    already following, last validator leaving, evidence already handled..."""


class VMDenied(RuleViolation):
    """The key class's rule program denied the resale or transfer; :attr:`reason` is its code."""

    def __init__(self, reason: int, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class InvalidHeader(InvalidBlock):
    """The header does not follow from the state: chain id, height, time, previous
    block, last commit, validator hashes or proposer. The proposer's fault."""


class LaneLimitExceeded(InvalidBlock):
    """A lane holds more transactions (or the block more evidence) than the consensus params allow."""


class BlockTxInvalid(InvalidBlock):
    """A transaction of the block is invalid; :attr:`error` is the InvalidTx,
    :attr:`lane` and :attr:`index` locate it. Signature failures take precedence."""

    def __init__(self, lane: str, index: int, error: InvalidTx) -> None:
        super().__init__(f"{lane}[{index}]: {type(error).__name__}: {error}")
        self.lane = lane
        self.index = index
        self.error = error


class BlockEvidenceInvalid(InvalidBlock):
    """An evidence item of the block does not decode, does not verify, is too old or was already handled."""


class AppHashMismatch(InvalidBlock):
    """The header's app_hash differs from the state root the block produces."""


class ValidatorJailed(RuleViolation):
    """The sender's key was jailed (tombstoned) for proven equivocation: it can never bond again.
    The user's fault: bond with a new key."""
