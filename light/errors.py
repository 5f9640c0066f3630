"""Errors of the light client.

Every answer the light client refuses raises a subclass of :class:`LightError`.
Each class says when it is raised and whose fault it is: the *provider's* (the
node that answered: a primary or a witness), the *user's* (bad arguments or a
bad trusted root), or the *store's* (a damaged file on disk). The CLI catches
:class:`LightError` and prints one line.
"""

from __future__ import annotations


class LightError(Exception):
    """Base class of every deliberate error raised by light/."""


# --- talking to providers ------------------------------------------------------


class ProviderError(LightError):
    """A provider could not be asked or gave an answer of the wrong shape (its fault)."""


class ProviderUnavailable(ProviderError):
    """The provider did not answer (connection refused, reset, timed out)."""


class RpcError(ProviderError):
    """The provider answered with a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: object = None) -> None:
        super().__init__(f"rpc error {code}: {message}")
        self.code = code
        self.message = message
        self.data = data


class MalformedAnswer(ProviderError):
    """An answer is missing a field, has a field of the wrong type, or its canonical
    bytes do not decode (the provider's fault)."""


# --- header verification --------------------------------------------------------


class VerificationError(LightError):
    """A header, commit or validator set failed verification (the provider's fault)."""


class InvalidHeader(VerificationError):
    """A header does not match what was asked for or what is trusted: wrong height,
    wrong chain id, time not after the trusted time or too far in the future, or a
    hash that differs from the commit's block hash."""


class InvalidValidatorSet(VerificationError):
    """A validator set does not hash to the header's validators_hash (or
    next_validators_hash), or an adjacent header breaks the chaining."""


class InvalidCommit(VerificationError):
    """A commit's signatures do not carry the needed power, or one checked is bad."""


class TrustLevelNotMet(VerificationError):
    """The trusted set's signers in a commit do not pass the trust level (1/3):
    the caller should bisect. Not a fault by itself."""


class TrustExpired(LightError):
    """The trusted header is older than the trusting period: re-initialise from a
    new trusted root (the user's duty, as in every light client)."""


class BisectionFailed(VerificationError):
    """Skipping verification could not reach the target height (too many steps)."""


# --- verified queries -----------------------------------------------------------


class QueryError(VerificationError):
    """A state answer failed verification."""


class BadProof(QueryError):
    """A read's proof does not show its value (or absence) under the verified app hash."""


class MissingRead(QueryError):
    """The answer omitted a read the computation of the view needs."""


class ViewMismatch(QueryError):
    """The JSON view in the answer differs from the view recomputed from the verified reads."""


class IncompletePage(QueryError):
    """A feed page is not exactly the asked items of the feed (an item dropped,
    added or changed), or its head does not prove against the app hash."""


class WrongHeight(QueryError):
    """An answer is for another height than asked."""


# --- witnesses and attacks --------------------------------------------------------


class AttackDetected(LightError):
    """A witness holds a verifiable header that conflicts with the primary's at the
    same height: a light-client attack (or a fork). Evidence was recorded and
    submitted; the client halts until re-initialised."""

    def __init__(self, message: str, evidence_path: str | None = None) -> None:
        super().__init__(message)
        self.evidence_path = evidence_path


class Halted(LightError):
    """The client saw an attack earlier and refuses to go on (see AttackDetected)."""


# --- the store ------------------------------------------------------------------------


class StoreError(LightError):
    """The trusted store cannot be used (the store's fault or the user's)."""


class CorruptStore(StoreError):
    """A store file fails its checksum or does not decode."""


class NotInitialised(StoreError):
    """The store has no trusted header: run `light init` first."""


class UsageError(LightError):
    """The caller passed a bad argument (the user's fault)."""
