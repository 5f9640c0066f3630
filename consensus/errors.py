"""Errors of the consensus package.

One base class, :class:`ConsensusError`; the driver catches it and decides what to
do (drop a peer, refuse to start, log). Each subclass says whose fault it is.
"""

from __future__ import annotations


class ConsensusError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidMessage(ConsensusError):
    """A proposal, vote or commit from a peer is malformed or badly signed (the peer's fault)."""


class InvalidVote(InvalidMessage):
    """A vote names an unknown validator, a wrong height, or carries a bad signature (peer's fault)."""


class InvalidProposal(InvalidMessage):
    """A proposal is not from the round's proposer, is badly signed or malformed (peer's fault)."""


class InvalidCommitError(InvalidMessage):
    """A commit handed to consensus or block sync does not verify against the validator set."""


class UsageError(ConsensusError):
    """The driver called the core out of contract (our fault: a bug in the driver)."""


class DoubleSignRefused(ConsensusError):
    """The sign-state guard refused to sign: the request would regress or conflict with
    what this validator already signed. Never an error to retry; the vote is simply not sent."""


class SignStateCorrupt(ConsensusError):
    """The sign-state file exists but cannot be read back intact (operator's disk).

    The node refuses to start rather than guess: starting from an empty sign state
    is exactly how validators double-sign."""


class SignStateWriteError(ConsensusError):
    """The sign state could not be made durable (operator's disk). Nothing was
    signed: the signature is only released after the record is on disk."""


class WALError(ConsensusError):
    """The WAL file cannot be opened or written (operator's disk or a bug), beyond the
    torn or corrupt tail that opening repairs by itself."""


class BlockSyncError(ConsensusError):
    """Block sync got a block or commit from a peer that does not verify (the peer's fault)."""
