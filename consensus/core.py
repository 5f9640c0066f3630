"""The Tendermint consensus algorithm as a pure state machine.

Theory of operation
-------------------
This is Algorithm 1 of "The latest gossip on BFT consensus" (Buchman, Kwon,
Milosevic, arXiv 1807.04938). Branches carry the paper's line numbers (``# L36``)
so the code can be held against it. The core never reads a clock, never signs,
never does I/O and never draws a random number: the driver feeds it inputs and
performs the actions it returns.

Inputs (each takes ``now_ms``, the driver's clock, used only for vote and
proposal timestamps and for the block-time drift check before prevoting):

* :meth:`ConsensusCore.start_height` - begin a height with that height's
  validator set (the chain decides the set; updates from block ``h`` take
  effect at ``h + 2``, the core is simply handed the set of each height);
* :meth:`~ConsensusCore.on_proposal` - a signed proposal, with its block if it
  travelled with it;
* :meth:`~ConsensusCore.on_block` - a block that arrived on its own (answer to
  :class:`RequestBlock`);
* :meth:`~ConsensusCore.on_own_block` - the block the driver built after
  :class:`CreateBlock`;
* :meth:`~ConsensusCore.on_vote` - a signed vote (our own come back this way);
* :meth:`~ConsensusCore.on_commit` - a peer's commit for our height (catch-up);
* :meth:`~ConsensusCore.on_timeout` - a timeout the driver scheduled fired;
* :meth:`~ConsensusCore.on_block_verdict` - the chain's verdict on a block
  (answer to :class:`ValidateBlock`);
* :meth:`~ConsensusCore.set_next_validators` - after :class:`Decide`, the set of
  the next height, once the block is applied.

The paper's ``upon`` rules are evaluated after every input until none fires
(:meth:`ConsensusCore._run_rules`), so the order in which messages arrive never
matters, only which have arrived. ``valid(v)`` is the chain's verdict, asked for
once per block with :class:`ValidateBlock`. Stale timeouts are recognised by
(height, round, step) and ignored, never cancelled.

Deviations from the paper, each safe:

* the propose timeout is scheduled for the proposer too (line 21 only schedules
  it for the others): if the driver cannot sign (the sign guard refused after a
  restart) the validator still prevotes nil; line 57 ignores it otherwise;
* line 49 decides on +2/3 precommits for ``id(v)`` once ``v`` is known and
  valid, whether ``v`` came with the proposal or was fetched with
  :class:`RequestBlock` (the precommits, not the proposal, make the decision);
* line 22/28 prevote for ``v`` only if also the block time is not more than
  ``max_clock_drift_ms`` ahead of the validator's clock (the block-time rule);
* after deciding the core waits ``timeout_commit`` (CometBFT's) before the next
  height, so late precommits still reach the commit the next proposer includes;
* on the prevote/precommit/propose timeouts the core re-broadcasts its own
  signed messages of the round (messages lost before the network healed are
  re-sent; the paper assumes reliable links after GST).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from chain import crypto
from chain.params import ConsensusParams
from chain.types import (
    Block,
    Commit,
    DuplicateVoteEvidence,
    Proposal,
    ValidatorSet,
    Vote,
    VoteType,
)
from consensus.errors import InvalidCommitError, InvalidProposal, InvalidVote, UsageError
from consensus.proposer import ProposerSchedule
from consensus.votes import HeightVotes, Verifier

log = logging.getLogger(__name__)

NIL: Final = b""
#: Votes and proposals more than this many rounds above ours are refused (bounds memory).
MAX_ROUNDS_AHEAD: Final = 1000
#: Messages for the next height kept until it starts (bounds memory).
MAX_FUTURE_MESSAGES: Final = 10_000
#: Rule evaluations per input (each moves the state forward; a bound, never reached).
_MAX_RULE_STEPS: Final = 100_000


class Step(IntEnum):
    """The step of the current round; COMMIT once the height is decided."""

    PROPOSE = 1
    PREVOTE = 2
    PRECOMMIT = 3
    COMMIT = 4


# --- actions: what the driver must do -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send an already signed message (our own, re-sent) to every peer."""

    message: Vote | Proposal
    """The signed vote or proposal."""
    block: Block | None = None
    """The proposed block, sent along with a proposal."""


@dataclass(frozen=True, slots=True)
class ScheduleTimeout:
    """Call ``on_timeout(step, height, round)`` after ``delay_ms`` of the driver's clock."""

    step: Step
    """PROPOSE, PREVOTE, PRECOMMIT (round timeouts) or COMMIT (timeout_commit)."""
    height: int
    """Height the timeout belongs to."""
    round: int
    """Round the timeout belongs to."""
    delay_ms: int
    """Delay from now."""


@dataclass(frozen=True, slots=True)
class SignVote:
    """Sign ``vote`` through the sign guard, write it to the WAL (fsync), broadcast it
    and feed it back with ``on_vote``."""

    vote: Vote
    """The vote to sign (its signature is empty)."""


@dataclass(frozen=True, slots=True)
class SignProposal:
    """Sign ``proposal`` through the sign guard, write it and the block to the WAL
    (fsync), broadcast both and feed them back with ``on_proposal``."""

    proposal: Proposal
    """The proposal to sign (its signature is empty)."""
    block: Block
    """The block it proposes."""


@dataclass(frozen=True, slots=True)
class CreateBlock:
    """We propose at (height, round) and hold no valid value: build a block (with
    ``last_commit()`` and pending evidence) and hand it to ``on_own_block``."""

    height: int
    """Height to build for."""
    round: int
    """Round it is for."""


@dataclass(frozen=True, slots=True)
class ValidateBlock:
    """Run the chain's checks on ``block`` and answer with ``on_block_verdict``."""

    height: int
    """Height of the block."""
    block: Block
    """The block to check."""


@dataclass(frozen=True, slots=True)
class Decide:
    """The height is decided: apply and store ``block`` with ``commit``, write the
    WAL end-of-height marker, then call ``set_next_validators``."""

    height: int
    """The decided height."""
    round: int
    """Round of the decision."""
    block: Block
    """The decided block."""
    commit: Commit
    """+2/3 precommits for it (more may follow: see ``last_commit``)."""


@dataclass(frozen=True, slots=True)
class RequestBlock:
    """Fetch the block with ``block_hash`` from peers and hand it to ``on_block``."""

    height: int
    """Height of the wanted block."""
    round: int
    """Round in which it was voted."""
    block_hash: bytes
    """Its hash."""


@dataclass(frozen=True, slots=True)
class ReportEvidence:
    """Two conflicting signed votes were seen: add to the evidence pool, gossip it
    and include it in a block (the chain's ``process_evidence`` jails the signer)."""

    evidence: DuplicateVoteEvidence
    """The canonical evidence."""


Action = (
    Broadcast | ScheduleTimeout | SignVote | SignProposal | CreateBlock | ValidateBlock
    | Decide | RequestBlock | ReportEvidence
)


@dataclass(frozen=True, slots=True)
class CoreState:
    """A snapshot of the algorithm's variables (for tests, metrics and logs)."""

    height: int
    round: int
    step: Step
    locked_round: int
    locked_hash: bytes | None
    valid_round: int
    valid_hash: bytes | None
    decided_hash: bytes | None


class ConsensusCore:
    """One validator's (or full node's) consensus state machine."""

    def __init__(
        self,
        chain_id: str,
        params: ConsensusParams,
        own_pubkey: bytes | None,
        *,
        verify: Verifier | None = crypto.verify,
    ) -> None:
        """``own_pubkey`` None makes a non-validating follower. ``verify`` checks
        vote and proposal signatures (None: the driver verified them already)."""
        self.chain_id = chain_id
        self.params = params
        self.own_pubkey = own_pubkey
        self._verify = verify
        self._schedules: dict[bytes, ProposerSchedule] = {}
        self.height = 0
        self.round = 0
        self.step = Step.PROPOSE
        self._started = False
        self._valset: ValidatorSet | None = None
        self._own_index: int | None = None
        self._votes: HeightVotes | None = None
        self._reset_height_state()
        self._now_ms = 0
        # previous height, kept for late precommits (a fuller last_commit) and evidence
        self._last_votes: HeightVotes | None = None
        self._last_decision: tuple[int, bytes] | None = None
        self._next_valset: ValidatorSet | None = None
        self._commit_timeout_fired = False
        self._future: list[tuple[str, object, object]] = []
        self._reported: set[tuple[int, int, int, int]] = set()

    def _reset_height_state(self) -> None:
        self.round = 0
        self.step = Step.PROPOSE
        self.locked_value: Block | None = None  # L6
        self.locked_round = -1  # L7
        self.valid_value: Block | None = None  # L8
        self.valid_round = -1  # L9
        self.decision: Block | None = None  # L5
        self.decision_round = -1
        self._proposals: dict[int, Proposal] = {}
        self._blocks: dict[bytes, Block] = {}
        self._verdicts: dict[bytes, bool] = {}
        self._validation_asked: set[bytes] = set()
        self._requested: set[bytes] = set()
        self._fired: set[tuple[int, int]] = set()
        self._asked_create: set[int] = set()

    # --- queries -----------------------------------------------------------------

    @property
    def valset(self) -> ValidatorSet:
        if self._valset is None:
            raise UsageError("start_height has not been called")
        return self._valset

    def state(self) -> CoreState:
        return CoreState(
            self.height, self.round, self.step, self.locked_round,
            None if self.locked_value is None else self.locked_value.hash(),
            self.valid_round, None if self.valid_value is None else self.valid_value.hash(),
            None if self.decision is None else self.decision.hash(),
        )

    def proposer_index(self, height: int, round_: int, valset: ValidatorSet | None = None) -> int:
        """Index of the proposer of (height, round) in ``valset`` (default: ours)."""
        vs = valset if valset is not None else self.valset
        key = vs.hash()
        sched = self._schedules.get(key)
        if sched is None:
            if len(self._schedules) > 16:
                self._schedules.clear()
            sched = self._schedules[key] = ProposerSchedule.from_powers(
                [v.power for v in vs.validators]
            )
        return sched.proposer_index(height, round_)

    def is_proposer(self, round_: int) -> bool:
        return self._own_index is not None and self._own_index == self.proposer_index(
            self.height, round_
        )

    def timeout_ms(self, step: Step, round_: int) -> int:
        """The timeout of ``step`` in ``round_`` from the consensus parameters."""
        if step == Step.COMMIT:
            return self.params.timeout_commit_ms
        name = {Step.PROPOSE: "propose", Step.PREVOTE: "prevote", Step.PRECOMMIT: "precommit"}
        return self.params.timeout_ms(name[step], round_)

    def last_commit(self) -> Commit | None:
        """The commit of the previous height with every precommit seen so far."""
        if self._last_votes is None or self._last_decision is None:
            return None
        rnd, block_hash = self._last_decision
        votes = self._last_votes.votes_for(rnd, VoteType.PRECOMMIT, block_hash)
        return Commit.from_votes(votes) if votes else None

    def known_block(self, block_hash: bytes) -> Block | None:
        """A block of the current height we hold (to answer a peer's request)."""
        return self._blocks.get(block_hash)

    def vote_indices(self, round_: int, vote_type: VoteType) -> frozenset[int]:
        """Validator indices whose vote of (round, type) we hold (for vote-set gossip:
        peers send each other the votes the other lacks, as CometBFT's VoteSetBits)."""
        return frozenset(v.validator_index for v in self._require_votes().votes(round_, vote_type))

    def votes_in(self, round_: int, vote_type: VoteType) -> list[Vote]:
        """The first vote of every validator in (round, type) of the current height."""
        return self._require_votes().votes(round_, vote_type)

    def votes_for_block(self, round_: int, vote_type: VoteType, block_hash: bytes) -> list[Vote]:
        """Every vote for ``block_hash`` in (round, type), an equivocator's second vote
        included (to prove a proof-of-lock to a peer, as CometBFT's VoteSetMaj23)."""
        return self._require_votes().votes_for(round_, vote_type, block_hash)

    def proposal_in(self, round_: int) -> tuple[Proposal, Block | None] | None:
        """The proposal of ``round_`` of the current height and its block, if held."""
        p = self._proposals.get(round_)
        return None if p is None else (p, self._blocks.get(p.block_hash))

    def own_messages(self) -> list[Broadcast]:
        """Our signed messages of the current round (for the driver's gossip)."""
        out: list[Action] = []
        self._rebroadcast(out)
        return [a for a in out if isinstance(a, Broadcast)]

    # --- inputs ------------------------------------------------------------------

    def start_height(self, height: int, valset: ValidatorSet, *, now_ms: int) -> list[Action]:
        """Start ``height`` at round 0 with the validator set of that height (L10)."""
        if height < 1:
            raise UsageError("heights start at 1")
        if self._started and height <= self.height:
            raise UsageError(f"height {height} is not above the current height {self.height}")
        self._note_now(now_ms)
        if self._started and self.decision is not None and height == self.height + 1:
            self._last_votes = self._votes
            self._last_decision = (self.decision_round, self.decision.hash())
        elif self._started:
            self._last_votes = None
            self._last_decision = None
        self._started = True
        self.height = height
        self._valset = valset
        self._own_index = None if self.own_pubkey is None else valset.index_of(self.own_pubkey)
        self._votes = HeightVotes(
            self.chain_id, height, valset, self._verify, max_round=None
        )
        self._reset_height_state()
        self._next_valset = None
        self._commit_timeout_fired = False
        out: list[Action] = []
        self._start_round(0, out)  # L10
        future, self._future = self._future, []
        for kind, a, b in future:
            try:
                if kind == "vote" and isinstance(a, Vote) and a.height == height:
                    out.extend(self.on_vote(a, now_ms=now_ms))
                elif kind == "proposal" and isinstance(a, Proposal) and a.height == height:
                    out.extend(
                        self.on_proposal(a, b if isinstance(b, Block) else None, now_ms=now_ms)
                    )
            except (InvalidVote, InvalidProposal) as exc:
                log.debug("dropped a buffered message for height %d: %s", height, exc)
        return out

    def on_proposal(self, proposal: Proposal, block: Block | None, *, now_ms: int) -> list[Action]:
        """A signed proposal (and maybe its block) arrived. Raises :class:`InvalidProposal`
        for a proposal that is badly formed, badly signed or not from the proposer."""
        self._require_started()
        self._note_now(now_ms)
        out: list[Action] = []
        if proposal.height == self.height + 1:
            self._buffer_future("proposal", proposal, block)
            return out
        if proposal.height != self.height:
            return out
        r = proposal.round
        if r < 0 or r > self.round + MAX_ROUNDS_AHEAD:
            raise InvalidProposal(f"proposal round {r} out of the accepted range")
        if not -1 <= proposal.pol_round < r:
            raise InvalidProposal(f"proposal pol_round {proposal.pol_round} not in [-1, {r})")
        expected = self.proposer_index(self.height, r)
        if proposal.proposer_index != expected:
            raise InvalidProposal(
                f"proposal from validator {proposal.proposer_index}, proposer of round {r} "
                f"is {expected}"
            )
        if self._verify is not None:
            pub = self.valset.validators[expected].pubkey
            if not self._verify(pub, proposal.signature, proposal.signing_digest(self.chain_id)):
                raise InvalidProposal(f"bad signature on the proposal of round {r}")
        if block is not None and block.hash() != proposal.block_hash:
            raise InvalidProposal("the block does not match the proposal's block hash")
        prior = self._proposals.get(r)
        if prior is not None and prior != proposal:
            # An equivocating proposer: keep the first, the votes decide which block wins.
            log.info("second, different proposal for height %d round %d ignored", self.height, r)
            return out
        self._proposals[r] = proposal
        self._require_votes().note_sender(r, expected)
        if block is not None:
            self._learn_block(block, out)
        elif proposal.block_hash not in self._blocks:
            self._request(r, proposal.block_hash, out)
        self._run_rules(out)
        return out

    def on_block(self, block: Block, *, now_ms: int) -> list[Action]:
        """A block of our height arrived without a proposal (e.g. after RequestBlock)."""
        self._require_started()
        self._note_now(now_ms)
        out: list[Action] = []
        if block.header.height != self.height:
            return out
        self._learn_block(block, out)
        self._run_rules(out)
        return out

    def on_own_block(self, block: Block, *, now_ms: int) -> list[Action]:
        """The block the driver built after :class:`CreateBlock` (L18). It is taken as
        valid (the driver built it with the chain's rules) and proposed (L19) if we
        are still in the propose step of that round."""
        self._require_started()
        self._note_now(now_ms)
        out: list[Action] = []
        if block.header.height != self.height or self._own_index is None:
            return out
        h = block.hash()
        self._blocks[h] = block
        self._verdicts[h] = True
        if self.step == Step.PROPOSE and self.is_proposer(self.round) and (
            self.round not in self._proposals
        ):
            self._sign_proposal(block, -1, out)  # L19
        self._run_rules(out)
        return out

    def on_vote(self, vote: Vote, *, now_ms: int) -> list[Action]:
        """A signed vote arrived. Raises :class:`InvalidVote` for a vote of our height
        that is badly formed or badly signed; other heights are ignored or buffered."""
        self._require_started()
        self._note_now(now_ms)
        out: list[Action] = []
        if vote.height == self.height + 1:
            self._buffer_future("vote", vote, None)
            return out
        if vote.height == self.height - 1 and self._last_votes is not None:
            res = self._last_votes.add(vote)
            if res.conflicting is not None:
                self._report(res.conflicting, vote, out)
            return out
        if vote.height != self.height:
            return out
        if vote.round > self.round + MAX_ROUNDS_AHEAD:
            raise InvalidVote(f"vote round {vote.round} too far above round {self.round}")
        res = self._require_votes().add(vote)
        if res.conflicting is not None:
            self._report(res.conflicting, vote, out)
        if res.added:
            self._run_rules(out)
        return out

    def on_commit(self, commit: Commit, block: Block | None, *, now_ms: int) -> list[Action]:
        """A peer's commit for our height (a node that fell behind catches up): its
        precommits are tallied like votes, so line 49 decides. Raises
        :class:`InvalidCommitError` if a signature does not verify."""
        self._require_started()
        self._note_now(now_ms)
        out: list[Action] = []
        if commit.height != self.height:
            return out
        votes = self._require_votes()
        checked: list[Vote] = []
        for sig in commit.signatures:
            vote = commit.vote_for(sig)
            try:
                votes.check(vote)
            except InvalidVote as exc:
                raise InvalidCommitError(f"commit for height {commit.height}: {exc}") from exc
            checked.append(vote)
        for vote in checked:
            res = votes.add(vote, checked=True, force=True)
            if res.conflicting is not None:
                self._report(res.conflicting, vote, out)
        if block is not None:
            if block.hash() != commit.block_hash:
                raise InvalidCommitError("the block does not match the commit's block hash")
            self._learn_block(block, out)
        self._run_rules(out)
        return out

    def on_block_verdict(self, block_hash: bytes, valid: bool, *, now_ms: int) -> list[Action]:
        """The chain's verdict on a block we asked about with :class:`ValidateBlock`."""
        self._require_started()
        self._note_now(now_ms)
        out: list[Action] = []
        if block_hash not in self._blocks:
            return out
        self._verdicts[block_hash] = valid
        self._run_rules(out)
        return out

    def on_timeout(self, step: Step, height: int, round_: int, *, now_ms: int) -> list[Action]:
        """A scheduled timeout fired; stale ones (other height, round or step) do nothing."""
        self._require_started()
        self._note_now(now_ms)
        out: list[Action] = []
        if height != self.height:
            return out
        if step == Step.COMMIT:
            if self.decision is not None:
                self._commit_timeout_fired = True
                if self._next_valset is not None:
                    return self.start_height(self.height + 1, self._next_valset, now_ms=now_ms)
            return out
        if round_ != self.round:
            return out
        if step == Step.PROPOSE and self.step == Step.PROPOSE:  # L57
            self._rebroadcast(out)
            self._sign_vote(VoteType.PREVOTE, NIL, out)  # L59
            self.step = Step.PREVOTE  # L60
        elif step == Step.PREVOTE and self.step == Step.PREVOTE:  # L61
            self._rebroadcast(out)
            self._sign_vote(VoteType.PRECOMMIT, NIL, out)  # L63
            self.step = Step.PRECOMMIT  # L64
        elif step == Step.PRECOMMIT and self.step != Step.COMMIT:  # L65
            self._rebroadcast(out)
            self._start_round(self.round + 1, out)  # L67
        self._run_rules(out)
        return out

    def set_next_validators(self, height: int, valset: ValidatorSet, *, now_ms: int) -> list[Action]:
        """After :class:`Decide`: the block is applied and ``valset`` is the set of
        ``height`` (= decided height + 1). The next height starts when the commit
        timeout has fired (at once if it already has)."""
        self._require_started()
        self._note_now(now_ms)
        if self.decision is None or height != self.height + 1:
            raise UsageError(f"set_next_validators({height}) without a decision at {height - 1}")
        self._next_valset = valset
        if self._commit_timeout_fired:
            return self.start_height(height, valset, now_ms=now_ms)
        return []

    # --- the algorithm -----------------------------------------------------------

    def _start_round(self, round_: int, out: list[Action]) -> None:
        """StartRound (L11-21)."""
        self.round = round_  # L12
        self.step = Step.PROPOSE  # L13
        if self.is_proposer(round_):  # L14
            if self.valid_value is not None:  # L15
                self._sign_proposal(self.valid_value, self.valid_round, out)  # L16, L19
            elif round_ not in self._asked_create:
                self._asked_create.add(round_)
                out.append(CreateBlock(self.height, round_))  # L18 (getValue)
        # L21 (for the proposer too; see the module docstring)
        out.append(
            ScheduleTimeout(Step.PROPOSE, self.height, round_, self.timeout_ms(Step.PROPOSE, round_))
        )

    def _run_rules(self, out: list[Action]) -> None:
        for _ in range(_MAX_RULE_STEPS):
            if not self._fire_one_rule(out):
                return
        raise UsageError("consensus rules did not settle")  # unreachable: each rule fires once

    def _fire_one_rule(self, out: list[Action]) -> bool:
        """Fire the first enabled rule; True if one fired."""
        votes = self._require_votes()
        r = self.round
        if self.decision is None and self._try_decide(out):  # L49
            return True
        if self.step == Step.COMMIT:
            return False
        above = votes.rounds_with_one_third_above(r)
        if above:  # L55
            self._start_round(above[-1], out)  # L56
            return True
        proposal = self._proposals.get(r)
        if self.step == Step.PROPOSE and proposal is not None:
            if proposal.pol_round == -1:  # L22
                v = self._blocks.get(proposal.block_hash)
                verdict = self._verdicts.get(proposal.block_hash)
                if v is not None and verdict is not None:
                    if verdict and self._is_timely(v) and (  # L23
                        self.locked_round == -1 or self._is_locked_on(proposal.block_hash)
                    ):
                        self._sign_vote(VoteType.PREVOTE, proposal.block_hash, out)  # L24
                    else:
                        self._sign_vote(VoteType.PREVOTE, NIL, out)  # L26
                    self.step = Step.PREVOTE  # L27
                    return True
            else:  # L28
                vr = proposal.pol_round
                v = self._blocks.get(proposal.block_hash)
                verdict = self._verdicts.get(proposal.block_hash)
                if (
                    v is not None and verdict is not None
                    and votes.has_two_thirds_for(vr, VoteType.PREVOTE, proposal.block_hash)
                ):
                    if verdict and self._is_timely(v) and (  # L29
                        self.locked_round <= vr or self._is_locked_on(proposal.block_hash)
                    ):
                        self._sign_vote(VoteType.PREVOTE, proposal.block_hash, out)  # L30
                    else:
                        self._sign_vote(VoteType.PREVOTE, NIL, out)  # L32
                    self.step = Step.PREVOTE  # L33
                    return True
        if (
            self.step == Step.PREVOTE and (34, r) not in self._fired
            and votes.has_two_thirds_any(r, VoteType.PREVOTE)
        ):  # L34
            self._fired.add((34, r))
            out.append(  # L35
                ScheduleTimeout(Step.PREVOTE, self.height, r, self.timeout_ms(Step.PREVOTE, r))
            )
            return True
        if (
            self.step >= Step.PREVOTE and proposal is not None and (36, r) not in self._fired
            and self._verdicts.get(proposal.block_hash) is True
            and votes.has_two_thirds_for(r, VoteType.PREVOTE, proposal.block_hash)
        ):  # L36
            self._fired.add((36, r))
            v = self._blocks[proposal.block_hash]
            if self.step == Step.PREVOTE:  # L37
                self.locked_value = v  # L38
                self.locked_round = r  # L39
                self._sign_vote(VoteType.PRECOMMIT, proposal.block_hash, out, block=v)  # L40
                self.step = Step.PRECOMMIT  # L41
            self.valid_value = v  # L42
            self.valid_round = r  # L43
            return True
        if self.step == Step.PREVOTE and votes.has_two_thirds_for(r, VoteType.PREVOTE, NIL):  # L44
            self._sign_vote(VoteType.PRECOMMIT, NIL, out)  # L45
            self.step = Step.PRECOMMIT  # L46
            return True
        if (47, r) not in self._fired and votes.has_two_thirds_any(r, VoteType.PRECOMMIT):  # L47
            self._fired.add((47, r))
            out.append(  # L48
                ScheduleTimeout(Step.PRECOMMIT, self.height, r, self.timeout_ms(Step.PRECOMMIT, r))
            )
            return True
        return False

    def _try_decide(self, out: list[Action]) -> bool:
        """L49-54 for any round with +2/3 precommits for one block."""
        votes = self._require_votes()
        for rnd in votes.rounds():
            target = votes.two_thirds_majority(rnd, VoteType.PRECOMMIT)
            if target is None or target == NIL:
                continue
            v = self._blocks.get(target)
            if v is None:
                self._request(rnd, target, out)
                continue
            verdict = self._verdicts.get(target)
            if verdict is None:
                continue
            if not verdict:  # L50 fails: +2/3 committed a block our chain rejects
                log.error(
                    "+2/3 precommitted block %s at height %d that our chain rejects",
                    target.hex(), self.height,
                )
                continue
            self.decision = v  # L51
            self.decision_round = rnd
            self.step = Step.COMMIT
            commit = Commit.from_votes(votes.votes_for(rnd, VoteType.PRECOMMIT, target))
            out.append(Decide(self.height, rnd, v, commit))
            # L52-54 happen in start_height, after timeout_commit and the next set.
            out.append(ScheduleTimeout(Step.COMMIT, self.height, rnd, self.timeout_ms(Step.COMMIT, rnd)))
            return True
        return False

    # --- helpers -----------------------------------------------------------------

    def _is_locked_on(self, block_hash: bytes) -> bool:
        return self.locked_value is not None and self.locked_value.hash() == block_hash

    def _is_timely(self, block: Block) -> bool:
        """The block-time rule checked before prevoting: not too far ahead of our clock."""
        return block.header.time_ms <= self._now_ms + self.params.max_clock_drift_ms

    def _learn_block(self, block: Block, out: list[Action]) -> None:
        h = block.hash()
        if h not in self._blocks:
            self._blocks[h] = block
        if h not in self._verdicts and h not in self._validation_asked:
            self._validation_asked.add(h)
            out.append(ValidateBlock(self.height, block))

    def _request(self, round_: int, block_hash: bytes, out: list[Action]) -> None:
        if block_hash not in self._requested:
            self._requested.add(block_hash)
            out.append(RequestBlock(self.height, round_, block_hash))

    def _sign_vote(self, vote_type: VoteType, block_hash: bytes, out: list[Action],
                   block: Block | None = None) -> None:
        if self._own_index is None:
            return
        ts = self._now_ms
        if block is not None:
            ts = max(ts, block.header.time_ms + 1)
        out.append(SignVote(Vote(vote_type, self.height, self.round, block_hash, ts, self._own_index)))

    def _sign_proposal(self, block: Block, pol_round: int, out: list[Action]) -> None:
        if self._own_index is None:
            return
        p = Proposal(self.height, self.round, pol_round, block.hash(), self._now_ms, self._own_index)
        out.append(SignProposal(p, block))

    def _rebroadcast(self, out: list[Action]) -> None:
        if self._own_index is None or self._votes is None:
            return
        p = self._proposals.get(self.round)
        if p is not None and p.proposer_index == self._own_index:
            out.append(Broadcast(p, self._blocks.get(p.block_hash)))
        for t in (VoteType.PREVOTE, VoteType.PRECOMMIT):
            v = self._votes.get(self.round, t, self._own_index)
            if v is not None:
                out.append(Broadcast(v))

    def _report(self, first: Vote, second: Vote, out: list[Action]) -> None:
        key = (first.height, first.round, int(first.type), first.validator_index)
        if key in self._reported:
            return
        self._reported.add(key)
        if len(self._reported) > 100_000:
            self._reported.clear()
        out.append(ReportEvidence(DuplicateVoteEvidence.from_votes(first, second)))

    def _buffer_future(self, kind: str, a: object, b: object) -> None:
        if len(self._future) < MAX_FUTURE_MESSAGES:
            self._future.append((kind, a, b))

    def _note_now(self, now_ms: int) -> None:
        if now_ms > self._now_ms:
            self._now_ms = now_ms

    def _require_started(self) -> None:
        if not self._started:
            raise UsageError("start_height must be called before any other input")

    def _require_votes(self) -> HeightVotes:
        if self._votes is None:
            raise UsageError("start_height must be called before any other input")
        return self._votes

