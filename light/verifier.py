"""Header verification: pure functions, no I/O, no clock.

Theory of operation. A *light block* is a header with the commit that signs it,
the validator set that signs it and the set of the next height. The client
trusts one light block (from the user's trusted root, then from its own
verification) and extends trust to a new one in one of two ways:

* adjacent (height + 1): the new set must be the trusted block's next set
  (``validators_hash == trusted.next_validators_hash``) and more than 2/3 of
  it must have signed the new header (every signature checked);
* skipping (any greater height): more than the trust level (1/3) of the
  power of the trusted block's *next* set must have signed the new header
  (so at least one correct validator vouches for it, as long as fewer than
  1/3 of that set is faulty during the trusting period), and more than 2/3 of
  the new header's own set must have signed it. When the 1/3 is not met the
  caller bisects: it verifies a header half-way and tries again from there
  (:func:`verify_to`).

Always: the chain id matches; the commit is for this height and its block
hash is the hash of the header's canonical bytes (so the JSON fields a node
also sends never matter); both sets hash to the header's fields; the header's
time is after the trusted one and not beyond ``now + max_clock_drift``; and
the trusted block is still inside its trusting period at ``now``, a time the
caller passes in (CometBFT's rules, see docs/light.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from chain import errors as chain_errors
from chain.encoding import pack, take_array, take_bytes, unpack_untrusted
from chain.types import MAX_COMMIT_BYTES, Commit, Header, ValidatorSet
from light import errors as le

TRUST_LEVEL: Final = (1, 3)
"""Default trust level of skipping verification (CometBFT's)."""
DEFAULT_TRUSTING_PERIOD_MS: Final = 14 * 24 * 3600 * 1000
"""Two weeks: must be shorter than the unbonding period of the chain."""
DEFAULT_MAX_CLOCK_DRIFT_MS: Final = 10_000
"""How far in the future of the caller's clock a header's time may lie."""
MAX_BISECTION_STEPS: Final = 256
"""Most light blocks one call of :func:`verify_to` fetches."""
_MAX_VALSET_BYTES: Final = 16 + 65_536 * 48
_MAX_BLOCK_BYTES: Final = 4096 + MAX_COMMIT_BYTES + 2 * _MAX_VALSET_BYTES


@dataclass(frozen=True, slots=True)
class LightBlock:
    """A header with everything needed to verify it and to verify from it."""

    header: Header
    """The header (its hash is the block hash)."""
    commit: Commit
    """A commit of +2/3 of ``validators`` for the header's hash."""
    validators: ValidatorSet
    """The set that signs the header's height (hashes to ``validators_hash``)."""
    next_validators: ValidatorSet
    """The set of the next height (hashes to ``next_validators_hash``)."""

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def time_ms(self) -> int:
        return self.header.time_ms

    def hash(self) -> bytes:
        return self.header.hash()

    def encode(self) -> bytes:
        return pack([self.header.to_list(), self.commit.to_list(), self.validators.to_list(),
                     self.next_validators.to_list()])

    @classmethod
    def decode_untrusted(cls, data: bytes) -> LightBlock:
        """Decode; raises :class:`chain.errors.DecodeError` (no check of the contents)."""
        f = take_array(unpack_untrusted(data, _MAX_BLOCK_BYTES), "light_block", 4)
        return cls(Header.from_list(f[0]), Commit.from_list(f[1]), ValidatorSet.from_list(f[2]),
                   ValidatorSet.from_list(f[3], "next_validators"))


def decode_light_block(header_bytes: bytes, commit_bytes: bytes, valset_bytes: bytes,
                       next_valset_bytes: bytes) -> LightBlock:
    """A light block from the canonical bytes of RPC answers; raises MalformedAnswer."""
    try:
        return LightBlock(
            Header.decode_untrusted(header_bytes),
            Commit.decode_untrusted(commit_bytes),
            ValidatorSet.decode_untrusted(valset_bytes),
            ValidatorSet.decode_untrusted(next_valset_bytes),
        )
    except chain_errors.DecodeError as exc:
        raise le.MalformedAnswer(f"canonical bytes do not decode: {exc}") from exc


class HashCache:
    """Validator set hashes by encoding: consecutive heights mostly share a set."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._hashes: dict[bytes, bytes] = {}

    def __call__(self, vset: ValidatorSet) -> bytes:
        raw = vset.encode()
        found = self._hashes.get(raw)
        if found is None:
            if len(self._hashes) >= self.size:
                self._hashes.clear()
            found = self._hashes[raw] = vset.hash()
        return found


_HASHES = HashCache()


def validate_basic(block: LightBlock, chain_id: str, *, height: int | None = None,
                   block_hash: bytes | None = None) -> bytes:
    """The checks that need nothing trusted; returns the header's hash."""
    h = block.header
    # the header belongs to this chain and to the asked height
    if h.chain_id != chain_id:
        raise le.InvalidHeader(f"header of chain {h.chain_id!r}, expected {chain_id!r}")
    if height is not None and h.height != height:
        raise le.InvalidHeader(f"header of height {h.height}, asked for {height}")
    header_hash = h.hash()
    if block_hash is not None and header_hash != block_hash:
        raise le.InvalidHeader(f"header {h.height} hashes to {header_hash.hex()}, expected {block_hash.hex()}")
    # the commit signs exactly this header
    if block.commit.height != h.height:
        raise le.InvalidCommit(f"commit of height {block.commit.height} for header {h.height}")
    if block.commit.block_hash != header_hash:
        raise le.InvalidCommit(f"commit at height {h.height} is for another block than the header")
    # the sets are the header's
    if _HASHES(block.validators) != h.validators_hash:
        raise le.InvalidValidatorSet(f"validator set does not hash to validators_hash of header {h.height}")
    if _HASHES(block.next_validators) != h.next_validators_hash:
        raise le.InvalidValidatorSet(f"next validator set does not hash to next_validators_hash of header {h.height}")
    return header_hash


def check_within_trusting_period(trusted: LightBlock, trusting_period_ms: int, now_ms: int) -> None:
    """Raise TrustExpired once ``trusted`` is as old as the trusting period at ``now_ms``."""
    if trusted.time_ms + trusting_period_ms <= now_ms:
        raise le.TrustExpired(
            f"trusted header {trusted.height} (time {trusted.time_ms}) expired at "
            f"{trusted.time_ms + trusting_period_ms}; now is {now_ms}: re-initialise from a new trusted root"
        )


def _check_new_header(trusted: LightBlock, new: LightBlock, now_ms: int, max_clock_drift_ms: int) -> None:
    # the new header is above the trusted one
    if new.height <= trusted.height:
        raise le.InvalidHeader(f"header {new.height} is not above the trusted height {trusted.height}")
    # its time is after the trusted time and not from the future
    if new.time_ms <= trusted.time_ms:
        raise le.InvalidHeader(f"header {new.height} time {new.time_ms} is not after the trusted time {trusted.time_ms}")
    if new.time_ms > now_ms + max_clock_drift_ms:
        raise le.InvalidHeader(f"header {new.height} time {new.time_ms} is in the future (now {now_ms})")


def _full_commit(vset: ValidatorSet, chain_id: str, commit: Commit, height: int) -> None:
    try:
        vset.verify_commit(chain_id, commit, height=height)
    except chain_errors.InvalidCommit as exc:
        raise le.InvalidCommit(f"commit of height {height}: {exc}") from exc


def verify_adjacent(trusted: LightBlock, new: LightBlock, chain_id: str, *, now_ms: int,
                    trusting_period_ms: int = DEFAULT_TRUSTING_PERIOD_MS,
                    max_clock_drift_ms: int = DEFAULT_MAX_CLOCK_DRIFT_MS) -> None:
    """Verify ``new`` at ``trusted.height + 1``: the set chains and +2/3 of it signed."""
    if new.height != trusted.height + 1:
        raise le.UsageError(f"adjacent verification of {new.height} from {trusted.height}")
    check_within_trusting_period(trusted, trusting_period_ms, now_ms)
    validate_basic(new, chain_id)
    _check_new_header(trusted, new, now_ms, max_clock_drift_ms)
    # the chain links: the previous block hash and the announced validator set
    if new.header.prev_block_hash != trusted.hash():
        raise le.InvalidHeader(f"header {new.height} does not link to the trusted header {trusted.height}")
    if new.header.validators_hash != trusted.header.next_validators_hash:
        raise le.InvalidValidatorSet(
            f"header {new.height} validators_hash is not the next_validators_hash of {trusted.height}"
        )
    # +2/3 of the set signed it
    _full_commit(new.validators, chain_id, new.commit, new.height)


def trusted_power_signed(trusted_set: ValidatorSet, signers: ValidatorSet, commit: Commit) -> int:
    """Power of ``trusted_set`` among the commit's signers (signatures not checked)."""
    power = 0
    for s in commit.signatures:
        v = signers.get(s.validator_index)
        if v is None:
            continue
        i = trusted_set.index_of(v.pubkey)
        if i is not None:
            power += trusted_set.validators[i].power
    return power


def verify_non_adjacent(trusted: LightBlock, new: LightBlock, chain_id: str, *, now_ms: int,
                        trusting_period_ms: int = DEFAULT_TRUSTING_PERIOD_MS,
                        max_clock_drift_ms: int = DEFAULT_MAX_CLOCK_DRIFT_MS,
                        trust_level: tuple[int, int] = TRUST_LEVEL) -> None:
    """Skipping verification of ``new`` from ``trusted`` (see the module docstring).

    Raises TrustLevelNotMet when too little of the trusted power signed (bisect).
    """
    num, den = trust_level
    if not (0 < num <= den and 3 * num >= den):
        raise le.UsageError("trust level must be a fraction in [1/3, 1]")
    check_within_trusting_period(trusted, trusting_period_ms, now_ms)
    validate_basic(new, chain_id)
    _check_new_header(trusted, new, now_ms, max_clock_drift_ms)
    trusted_set = trusted.next_validators
    # enough of the trusted set signed (counted first, without a signature check: cheap to refuse)
    try:
        if trusted_power_signed(trusted_set, new.validators, new.commit) * den <= trusted_set.total_power * num:
            raise le.TrustLevelNotMet(
                f"less than {num}/{den} of the trusted power of height {trusted.height + 1} signed header {new.height}"
            )
        trusted_set.verify_commit_light(chain_id, new.commit, num, den, signers=new.validators)
    except chain_errors.InvalidCommit as exc:
        raise le.InvalidCommit(f"commit of height {new.height}: {exc}") from exc
    # +2/3 of the header's own set signed it
    try:
        new.validators.verify_commit_light(chain_id, new.commit, 2, 3)
    except chain_errors.InvalidCommit as exc:
        raise le.InvalidCommit(f"commit of height {new.height}: {exc}") from exc


def verify(trusted: LightBlock, new: LightBlock, chain_id: str, *, now_ms: int, **options: Any) -> None:
    """Adjacent or skipping verification, whichever the heights call for."""
    if new.height == trusted.height + 1:
        options.pop("trust_level", None)
        verify_adjacent(trusted, new, chain_id, now_ms=now_ms, **options)
    else:
        verify_non_adjacent(trusted, new, chain_id, now_ms=now_ms, **options)


def verify_sequential(trusted: LightBlock, fetch: Callable[[int], LightBlock], target: int, chain_id: str,
                      *, now_ms: int, **options: Any) -> list[LightBlock]:
    """Verify every height from ``trusted.height + 1`` to ``target``; returns them in order."""
    options.pop("trust_level", None)
    out = []
    current = trusted
    for height in range(trusted.height + 1, target + 1):
        new = fetch(height)
        verify_adjacent(current, new, chain_id, now_ms=now_ms, **options)
        out.append(new)
        current = new
    return out


def verify_to(trusted: LightBlock, fetch: Callable[[int], LightBlock], target: int, chain_id: str,
              *, now_ms: int, max_steps: int = MAX_BISECTION_STEPS, **options: Any) -> list[LightBlock]:
    """Skipping verification with bisection from ``trusted`` up to ``target``.

    Returns the light blocks that became trusted, in height order, the last one
    at ``target``. ``fetch(height)`` returns the provider's (unverified) light
    block at a height.
    """
    if target <= trusted.height:
        raise le.UsageError(f"target {target} is not above the trusted height {trusted.height}")
    verified: list[LightBlock] = []
    current = trusted
    pending: list[LightBlock] = [fetch(target)]
    steps = 1
    while pending:
        candidate = pending[-1]
        try:
            verify(current, candidate, chain_id, now_ms=now_ms, **options)
        except le.TrustLevelNotMet:
            pivot = (current.height + candidate.height) // 2
            if pivot <= current.height or steps >= max_steps:
                raise le.BisectionFailed(
                    f"cannot bisect between {current.height} and {candidate.height} ({steps} steps)"
                ) from None
            pending.append(fetch(pivot))
            steps += 1
            continue
        verified.append(candidate)
        current = candidate
        pending.pop()
    return verified


def decode_hex(value: Any, what: str) -> bytes:
    """Bytes from a hex string of an answer; MalformedAnswer otherwise."""
    if not isinstance(value, str):
        raise le.MalformedAnswer(f"{what} is not a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise le.MalformedAnswer(f"{what} is not hex") from exc


def hash_of_hex(value: Any, what: str) -> bytes:
    try:
        return take_bytes(decode_hex(value, what), what, size=32)
    except chain_errors.DecodeError as exc:
        raise le.MalformedAnswer(str(exc)) from exc
