"""Sign-state guard: a validator never signs two conflicting messages.

Theory of operation
-------------------
Every signature this validator makes goes through :meth:`SignGuard.sign`. The guard
keeps the last signed ``(height, round, step, digest)`` (plus the signature, the
message timestamp and the signed message itself) in a small file. Before a new
signature is released it compares the request with that record:

* ``(h, r, s)`` strictly greater than the record: allowed. The new record (with
  the signature, made in memory) is written to a temporary file, fsynced,
  renamed over the old one and the directory fsynced, and only *then* is the
  signature returned. A crash at any point leaves either the old or the new
  record on disk, never a torn one, and never a signature that left the process
  without its record being durable.
* equal ``(h, r, s)`` and equal digest: the stored signature is returned (a
  restart that replays the WAL re-derives the same vote; Ed25519 is
  deterministic anyway, this just avoids trusting that).
* equal ``(h, r, s)``, different digest: refused with :class:`DoubleSignRefused`,
  except for the one harmless difference CometBFT also tolerates: a vote or
  proposal that differs only in its timestamp gets the *stored* timestamp and
  signature back (:meth:`sign_vote`, :meth:`sign_proposal`), so the validator
  re-sends exactly what it signed before the crash.
* ``(h, r, s)`` lower than the record: refused (a regression).

Steps are ordered ``PROPOSAL < PREVOTE < PRECOMMIT`` inside a round.

The stored messages (the encoded signed vote or proposal, plus the latest signed
message of each other step of the same height) let a validator whose WAL lost
its votes re-send them after a restart (:meth:`SignGuard.recent_votes`): if a
vote never reached anyone before the crash, the others may need it to reach +2/3
for anything in the round, and without it the round would stall (the simulator
found both cases: seeds 1505 and 5940).

File layout (big-endian)::

    magic "BHSG" | u8 version=1 | u64 height | u32 round | u8 step |
    32 B digest | u64 timestamp_ms | u8 sig_len | sig | u16 msg_len | msg |
    u8 count | count x (u8 step | u16 len | message) | u32 crc32(all before)

A missing file with ``create=True`` means "never signed". A file that exists but
does not check out raises :class:`SignStateCorrupt`: the node must not start on a
guessed sign state.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from consensus.errors import (
    DoubleSignRefused,
    SignStateCorrupt,
    SignStateWriteError,
    UsageError,
)

if TYPE_CHECKING:
    from chain.types import Proposal, Vote

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    _M = TypeVar("_M", Vote, Proposal)
else:
    _M = TypeVar("_M")

MAGIC = b"BHSG"
VERSION = 1
_HEAD = struct.Struct(">4sBQIB32sQB")

Signer = Callable[[bytes], bytes]
"""Signs a 32-byte digest with the validator key; returns the signature."""


class SignStep(IntEnum):
    """What was signed, in the order allowed inside one round."""

    PROPOSAL = 1
    PREVOTE = 2
    PRECOMMIT = 3


@dataclass(frozen=True, slots=True)
class SignState:
    """The last thing this validator signed."""

    height: int
    """Height of the last signed message."""
    round: int
    """Round of the last signed message."""
    step: SignStep
    """Kind of the last signed message."""
    digest: bytes
    """BLAKE3 signing digest (domain, chain id, sign bytes) of the last message."""
    timestamp_ms: int
    """Timestamp carried by the last signed message."""
    signature: bytes
    """The signature that was returned for it."""
    message: bytes = b""
    """The encoded signed message (vote or proposal), b"" for a bare digest."""
    earlier: tuple[tuple[int, bytes], ...] = ()
    """(step, encoded message): the latest signed message of each other step of
    the same height, oldest step first."""

    def hrs(self) -> tuple[int, int, int]:
        return (self.height, self.round, int(self.step))

    def encode(self) -> bytes:
        body = _HEAD.pack(
            MAGIC, VERSION, self.height, self.round, int(self.step), self.digest,
            self.timestamp_ms, len(self.signature),
        ) + self.signature + struct.pack(">H", len(self.message)) + self.message
        body += bytes([len(self.earlier)])
        for step, msg in self.earlier:
            body += struct.pack(">BH", step, len(msg)) + msg
        return body + struct.pack(">I", zlib.crc32(body))

    @classmethod
    def decode(cls, data: bytes) -> SignState:
        if len(data) < _HEAD.size + 4:
            raise SignStateCorrupt(f"sign state is {len(data)} bytes, too short")
        (magic, version, height, round_, step, digest, ts, sig_len) = _HEAD.unpack_from(data)
        if magic != MAGIC or version != VERSION:
            raise SignStateCorrupt("sign state has a wrong magic or version")
        sig_end = _HEAD.size + sig_len
        if len(data) < sig_end + 2 + 4:
            raise SignStateCorrupt("sign state has a wrong length")
        (msg_len,) = struct.unpack_from(">H", data, sig_end)
        msg_end = sig_end + 2 + msg_len
        if len(data) < msg_end + 1 + 4:
            raise SignStateCorrupt("sign state has a wrong length")
        earlier: list[tuple[int, bytes]] = []
        pos = msg_end + 1
        for _ in range(data[msg_end]):
            if len(data) < pos + 3 + 4:
                raise SignStateCorrupt("sign state has a wrong length")
            e_step, e_len = struct.unpack_from(">BH", data, pos)
            earlier.append((e_step, data[pos + 3 : pos + 3 + e_len]))
            pos += 3 + e_len
        end = pos
        if len(data) != end + 4:
            raise SignStateCorrupt("sign state has a wrong length")
        (crc,) = struct.unpack_from(">I", data, end)
        if crc != zlib.crc32(data[:end]):
            raise SignStateCorrupt("sign state checksum mismatch")
        if step not in (1, 2, 3):
            raise SignStateCorrupt(f"sign state has an unknown step {step}")
        return cls(height, round_, SignStep(step), digest, ts, data[_HEAD.size:sig_end],
                   data[sig_end + 2:msg_end], tuple(earlier))


class SignGuard:
    """The persisted last-sign record and the rules above. One per validator key."""

    def __init__(self, path: Path, state: SignState | None) -> None:
        self._path = path
        self._state = state

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = False) -> SignGuard:
        """Load the sign state at ``path``; with ``create`` a missing file means a
        fresh validator. Raises :class:`SignStateCorrupt` on an unreadable file."""
        p = Path(path)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            if not create:
                raise SignStateCorrupt(
                    f"sign state {p} is missing; pass create=True only for a new validator"
                ) from None
            return cls(p, None)
        except OSError as exc:
            raise SignStateCorrupt(f"cannot read sign state {p}: {exc}") from exc
        return cls(p, SignState.decode(data))

    @property
    def state(self) -> SignState | None:
        """The last signed record, or None if this validator never signed."""
        return self._state

    def check(self, height: int, round_: int, step: SignStep, digest: bytes) -> bytes | None:
        """Return the stored signature for an identical request, None if a new
        signature is allowed; raise :class:`DoubleSignRefused` otherwise."""
        if height < 0 or round_ < 0:
            raise UsageError("height and round must not be negative")
        last = self._state
        if last is None:
            return None
        req = (height, round_, int(step))
        if req > last.hrs():
            return None
        if req == last.hrs():
            if digest == last.digest:
                return last.signature
            raise DoubleSignRefused(
                f"conflicting sign request at height={height} round={round_} step={step.name}"
            )
        raise DoubleSignRefused(
            f"sign request height={height} round={round_} step={step.name} regresses below "
            f"height={last.height} round={last.round} step={last.step.name}"
        )

    def sign(
        self, height: int, round_: int, step: SignStep, digest: bytes, timestamp_ms: int,
        signer: Signer, message: Callable[[bytes], bytes] | None = None,
    ) -> bytes:
        """Sign, persist the record (fsync), and only then return the signature; see
        the module docstring. ``message(signature)`` gives the bytes to store with it."""
        stored = self.check(height, round_, step, digest)
        if stored is not None:
            return stored
        signature = signer(digest)
        body = b"" if message is None else message(signature)
        if len(body) > 0xFFFF:
            raise UsageError("a signed message to store is at most 65535 bytes")
        carry: dict[int, bytes] = {}
        prev = self._state
        if prev is not None and prev.height == height:
            carry.update(prev.earlier)
            if prev.message:
                carry[int(prev.step)] = prev.message
        carry.pop(int(step), None)
        new = SignState(height, round_, step, digest, timestamp_ms, signature, body,
                        tuple(sorted(carry.items())))
        try:
            self._persist(new)
        except OSError as exc:
            raise SignStateWriteError(f"cannot persist sign state {self._path}: {exc}") from exc
        self._state = new
        return signature

    def sign_vote(self, vote: Vote, chain_id: str, signer: Signer) -> Vote:
        """Sign a vote (its ``signature`` field is ignored); returns the signed vote,
        with the stored timestamp if only the timestamp differs from the last record."""
        from chain.types import VoteType

        step = SignStep.PREVOTE if vote.type == VoteType.PREVOTE else SignStep.PRECOMMIT
        vote = self._reuse_timestamp(vote, vote.height, vote.round, step, chain_id)
        digest = vote.signing_digest(chain_id)
        sig = self.sign(
            vote.height, vote.round, step, digest, vote.timestamp_ms, signer,
            lambda s: dataclasses.replace(vote, signature=s).encode(),
        )
        return dataclasses.replace(vote, signature=sig)

    def last_vote(self) -> Vote | None:
        """The last signed message if it is a vote (to re-send after a restart)."""
        st = self._state
        if st is None or st.step == SignStep.PROPOSAL:
            return None
        votes = self.recent_votes()
        return votes[-1] if votes else None

    def recent_votes(self) -> list[Vote]:
        """The stored signed votes of the last height signed at (latest per step,
        prevote before precommit), to re-send after a restart."""
        from chain.errors import DecodeError
        from chain.types import Vote

        st = self._state
        if st is None:
            return []
        out: list[Vote] = []
        for step, msg in sorted((*st.earlier, (int(st.step), st.message))):
            if step == SignStep.PROPOSAL or not msg:
                continue
            try:
                out.append(Vote.decode_untrusted(msg))
            except DecodeError:
                continue
        return out

    def sign_proposal(self, proposal: Proposal, chain_id: str, signer: Signer) -> Proposal:
        """Sign a proposal, with the same timestamp tolerance as :meth:`sign_vote`."""
        proposal = self._reuse_timestamp(
            proposal, proposal.height, proposal.round, SignStep.PROPOSAL, chain_id
        )
        digest = proposal.signing_digest(chain_id)
        sig = self.sign(
            proposal.height, proposal.round, SignStep.PROPOSAL, digest, proposal.timestamp_ms,
            signer, lambda s: dataclasses.replace(proposal, signature=s).encode(),
        )
        return dataclasses.replace(proposal, signature=sig)

    def _reuse_timestamp(self, msg: _M, height: int, round_: int, step: SignStep,
                         chain_id: str) -> _M:
        last = self._state
        if last is None or last.hrs() != (height, round_, int(step)):
            return msg
        if msg.timestamp_ms == last.timestamp_ms:
            return msg
        candidate = dataclasses.replace(msg, timestamp_ms=last.timestamp_ms)
        if candidate.signing_digest(chain_id) == last.digest:
            return candidate
        return msg

    def _persist(self, state: SignState) -> None:
        tmp = self._path.with_name(self._path.name + ".tmp")
        data = state.encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self._path)
        dfd = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

