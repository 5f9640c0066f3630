"""The driver contract, implemented once: core + WAL + sign guard.

Theory of operation
-------------------
:class:`Replica` is what a driver (the trio node, the simulator, the benchmark)
wraps around :class:`~consensus.core.ConsensusCore`. It still has no clock, no
socket and no randomness; it adds the two files and the order of operations:

1. every input is appended to the WAL (peers' messages without fsync), then
   handed to the core;
2. a :class:`~consensus.core.SignVote` / :class:`~consensus.core.SignProposal`
   is passed through the sign guard (which fsyncs the sign state before the
   signature exists), the signed message is appended to the WAL with fsync,
   and only then is it returned as a :class:`~consensus.core.Broadcast` for the
   network, and fed back into the core;
3. everything else is returned to the host in order: ``ScheduleTimeout``,
   ``ValidateBlock``, ``CreateBlock``, ``Decide``, ``RequestBlock``,
   ``ReportEvidence`` and ``Broadcast``.

After :class:`~consensus.core.Decide` the host applies and stores the block,
then calls :meth:`Replica.decided` (WAL end-of-height marker, fsync) and
:meth:`Replica.set_next_validators`.

Restart: :meth:`Replica.start` opens the core at the height after the last
stored block and replays the WAL entries of that height. Replayed sign requests
go through the guard again: identical ones get the stored signature, older
ones are refused and skipped (their signed result is in the WAL and is replayed
as our own vote). The host must treat a replayed ``Decide`` of a height it has
already stored as done.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from chain.errors import DecodeError
from chain.params import ConsensusParams
from chain.types import Block, Commit, Proposal, ValidatorSet, Vote, VoteType
from consensus import core as c
from consensus.errors import ConsensusError, DoubleSignRefused, InvalidMessage
from consensus.signguard import Signer, SignGuard
from consensus.votes import Verifier
from consensus.wal import WAL, EntryKind, WALEntry

log = logging.getLogger(__name__)

HostAction = (
    c.Broadcast | c.ScheduleTimeout | c.CreateBlock | c.ValidateBlock | c.Decide
    | c.RequestBlock | c.ReportEvidence
)


class Replica:
    """One validator's consensus with its durable state; see the module docstring."""

    def __init__(
        self,
        chain_id: str,
        params: ConsensusParams,
        wal: WAL,
        guard: SignGuard | None,
        signer: Signer | None,
        own_pubkey: bytes | None,
        *,
        verify: Verifier | None = None,
        on_sign_refused: Callable[[DoubleSignRefused], None] | None = None,
    ) -> None:
        kwargs = {} if verify is None else {"verify": verify}
        self.core = c.ConsensusCore(chain_id, params, own_pubkey, **kwargs)
        self.chain_id = chain_id
        self.wal = wal
        self.guard = guard
        self.signer = signer
        self._replaying = False
        self._replayed_own: set[tuple[int, int, int]] = set()
        self._replayed_verdicts: set[bytes] = set()
        self._replayed_own_blocks: set[int] = set()
        self._on_sign_refused = on_sign_refused
        self.signed_votes: list[Vote] = []
        """Every vote this replica signed in this process (for tests and the simulator)."""
        self.signed_proposals: list[Proposal] = []
        """Every proposal this replica signed in this process."""

    # --- inputs ------------------------------------------------------------------

    def start(self, height: int, valset: ValidatorSet, *, now_ms: int) -> list[HostAction]:
        """Start ``height`` and replay whatever the WAL holds for it."""
        self._replayed_own.clear()
        self._replayed_verdicts.clear()
        self._replayed_own_blocks.clear()
        out = self._perform(self.core.start_height(height, valset, now_ms=now_ms), now_ms)
        out.extend(self._resend_last_vote(height, now_ms))
        entries = self.wal.entries_for_height(height)
        if not entries:
            return out
        self._replaying = True
        try:
            for e in entries:
                if e.kind == EntryKind.VERDICT and isinstance(e.fields[1], bytes):
                    self._replayed_verdicts.add(e.fields[1])
                if e.kind == EntryKind.OWN_BLOCK and isinstance(e.fields[1], int):
                    self._replayed_own_blocks.add(e.fields[1])
                if e.kind == EntryKind.OWN_VOTE and isinstance(e.fields[1], bytes):
                    try:
                        v = Vote.decode_untrusted(e.fields[1])
                        self._replayed_own.add((v.height, v.round, int(v.type)))
                    except DecodeError:
                        pass
            out = [a for a in out if not self._skip_on_replay(a)]
            for e in entries:
                try:
                    out.extend(self._replay_entry(e))
                except (ConsensusError, DecodeError, IndexError, TypeError) as exc:
                    # A record that decodes but does not fit is skipped, never fatal:
                    # the WAL speeds up recovery, the sign guard keeps it safe.
                    log.warning("WAL replay: skipped a %s entry: %s", e.kind.name, exc)
        finally:
            self._replaying = False
            self._replayed_own.clear()
        return out

    def _resend_last_vote(self, height: int, now_ms: int) -> list[HostAction]:
        """The guard's stored votes of this height go back into the core and out to
        peers: the WAL may have lost them, and peers may never have received them."""
        if self.guard is None:
            return []
        out: list[HostAction] = []
        for v in self.guard.recent_votes():
            if v.height != height:
                continue
            try:
                actions = self.core.on_vote(v, now_ms=now_ms)
            except InvalidMessage as exc:  # a sign state of another key or chain: say so
                log.error("the sign state's vote does not verify: %s", exc)
                continue
            out.append(c.Broadcast(v))
            out.extend(self._perform(actions, now_ms))
        return out

    def _replay_entry(self, e: WALEntry) -> list[HostAction]:
        f = e.fields
        now = _int(f[0])
        core = self.core
        if e.kind == EntryKind.PROPOSAL or e.kind == EntryKind.OWN_PROPOSAL:
            p = Proposal.decode_untrusted(_bytes(f[1]))
            b = None if f[2] is None else Block.decode_untrusted(_bytes(f[2]))
            return self._perform(core.on_proposal(p, b, now_ms=now), now)
        if e.kind == EntryKind.VOTE or e.kind == EntryKind.OWN_VOTE:
            return self._perform(core.on_vote(Vote.decode_untrusted(_bytes(f[1])), now_ms=now), now)
        if e.kind == EntryKind.TIMEOUT:
            step = c.Step(_int(f[1]))
            return self._perform(core.on_timeout(step, e.height, _int(f[2]), now_ms=now), now)
        if e.kind == EntryKind.VERDICT:
            return self._perform(
                core.on_block_verdict(_bytes(f[1]), bool(f[2]), now_ms=now), now
            )
        if e.kind == EntryKind.BLOCK:
            return self._perform(core.on_block(Block.decode_untrusted(_bytes(f[1])), now_ms=now), now)
        if e.kind == EntryKind.OWN_BLOCK:
            b = Block.decode_untrusted(_bytes(f[2]))
            return self._perform(core.on_own_block(b, now_ms=now), now)
        if e.kind == EntryKind.COMMIT:
            cm = Commit.decode_untrusted(_bytes(f[1]))
            b = None if f[2] is None else Block.decode_untrusted(_bytes(f[2]))
            return self._perform(core.on_commit(cm, b, now_ms=now), now)
        return []

    def _skip_on_replay(self, a: HostAction) -> bool:
        if isinstance(a, c.ValidateBlock):
            return a.block.hash() in self._replayed_verdicts
        if isinstance(a, c.CreateBlock):
            return a.round in self._replayed_own_blocks
        return False

    def on_proposal(self, proposal: Proposal, block: Block | None, *, now_ms: int) -> list[HostAction]:
        """A peer's proposal; raises :class:`~consensus.errors.InvalidProposal`."""
        self._log(EntryKind.PROPOSAL, proposal.height,
                  (now_ms, proposal.encode(), None if block is None else block.encode()))
        return self._perform(self.core.on_proposal(proposal, block, now_ms=now_ms), now_ms)

    def on_vote(self, vote: Vote, *, now_ms: int) -> list[HostAction]:
        """A peer's vote; raises :class:`~consensus.errors.InvalidVote`."""
        if vote.height == self.core.height:
            self._log(EntryKind.VOTE, vote.height, (now_ms, vote.encode()))
        return self._perform(self.core.on_vote(vote, now_ms=now_ms), now_ms)

    def on_commit(self, commit: Commit, block: Block | None, *, now_ms: int) -> list[HostAction]:
        """A peer's commit for our height (catch-up)."""
        if commit.height == self.core.height:
            self._log(EntryKind.COMMIT, commit.height,
                      (now_ms, commit.encode(), None if block is None else block.encode()))
        return self._perform(self.core.on_commit(commit, block, now_ms=now_ms), now_ms)

    def on_block(self, block: Block, *, now_ms: int) -> list[HostAction]:
        """A block fetched after RequestBlock."""
        if block.header.height == self.core.height:
            self._log(EntryKind.BLOCK, block.header.height, (now_ms, block.encode()))
        return self._perform(self.core.on_block(block, now_ms=now_ms), now_ms)

    def on_own_block(self, block: Block, round_: int, *, now_ms: int) -> list[HostAction]:
        """The block built after CreateBlock(height, round_)."""
        self._log(EntryKind.OWN_BLOCK, block.header.height, (now_ms, round_, block.encode()),
                  sync=True)
        return self._perform(self.core.on_own_block(block, now_ms=now_ms), now_ms)

    def on_block_verdict(self, block_hash: bytes, valid: bool, *, now_ms: int) -> list[HostAction]:
        self._log(EntryKind.VERDICT, self.core.height, (now_ms, block_hash, valid))
        return self._perform(self.core.on_block_verdict(block_hash, valid, now_ms=now_ms), now_ms)

    def on_timeout(self, step: c.Step, height: int, round_: int, *, now_ms: int) -> list[HostAction]:
        if height == self.core.height:
            self._log(EntryKind.TIMEOUT, height, (now_ms, int(step), round_))
        return self._perform(self.core.on_timeout(step, height, round_, now_ms=now_ms), now_ms)

    def decided(self, height: int) -> None:
        """The host stored the decided block of ``height``: end the height in the WAL."""
        self.wal.end_height(height)

    def set_next_validators(self, height: int, valset: ValidatorSet, *, now_ms: int) -> list[HostAction]:
        return self._perform(self.core.set_next_validators(height, valset, now_ms=now_ms), now_ms)

    # --- actions -----------------------------------------------------------------

    def _log(self, kind: EntryKind, height: int, fields: tuple[bytes | int | bool | None, ...],
             *, sync: bool = False) -> None:
        if self._replaying:
            return
        self.wal.append(WALEntry(kind, height, fields), sync=sync)

    def _perform(self, actions: list[c.Action], now_ms: int) -> list[HostAction]:
        out: list[HostAction] = []
        queue = list(actions)
        steps = 0
        while queue:
            steps += 1
            if steps > 100_000:
                raise ConsensusError("action loop did not settle")
            a = queue.pop(0)
            if isinstance(a, c.SignVote):
                signed = self._sign_vote(a.vote)
                if signed is not None:
                    out.append(c.Broadcast(signed))
                    queue.extend(self.core.on_vote(signed, now_ms=now_ms))
            elif isinstance(a, c.SignProposal):
                sp = self._sign_proposal(a.proposal, a.block)
                if sp is not None:
                    out.append(c.Broadcast(sp, a.block))
                    try:
                        queue.extend(self.core.on_proposal(sp, a.block, now_ms=now_ms))
                    except InvalidMessage as exc:  # our own proposal: a bug if it happens
                        log.error("own proposal rejected by the core: %s", exc)
            elif self._replaying and self._skip_on_replay(a):
                continue
            else:
                out.append(a)
        return out

    def _sign_vote(self, vote: Vote) -> Vote | None:
        if self.guard is None or self.signer is None:
            return None
        key = (vote.height, vote.round, int(vote.type))
        try:
            signed = self.guard.sign_vote(vote, self.chain_id, self.signer)
        except DoubleSignRefused as exc:
            if not (self._replaying and key in self._replayed_own):
                log.warning("sign guard refused a %s: %s",
                            "prevote" if vote.type == VoteType.PREVOTE else "precommit", exc)
                if self._on_sign_refused is not None:
                    self._on_sign_refused(exc)
            return None
        if not (self._replaying and key in self._replayed_own):
            self.wal.append(WALEntry(EntryKind.OWN_VOTE, vote.height, (0, signed.encode())),
                            sync=True)
        self.signed_votes.append(signed)
        return signed

    def _sign_proposal(self, proposal: Proposal, block: Block) -> Proposal | None:
        if self.guard is None or self.signer is None:
            return None
        try:
            signed = self.guard.sign_proposal(proposal, self.chain_id, self.signer)
        except DoubleSignRefused as exc:
            if not self._replaying:
                log.warning("sign guard refused a proposal: %s", exc)
                if self._on_sign_refused is not None:
                    self._on_sign_refused(exc)
            return None
        if not self._replaying:
            self.wal.append(
                WALEntry(EntryKind.OWN_PROPOSAL, proposal.height,
                         (0, signed.encode(), block.encode())),
                sync=True,
            )
        self.signed_proposals.append(signed)
        return signed


def _int(x: object) -> int:
    if type(x) is not int:
        raise DecodeError("WAL field is not an integer")
    return x


def _bytes(x: object) -> bytes:
    if type(x) is not bytes:
        raise DecodeError("WAL field is not bytes")
    return x
