"""The node's p2p messages, one family per channel.

Theory of operation. p2p moves opaque frames; this module gives them meaning.
Every frame is one canonical msgpack array ``[tag, *fields]``; the tag names the
message and the channel it may travel on (a frame with a tag of another channel
is refused). Votes, proposals, commits and evidence travel as their own
positional arrays (``to_list``); blocks travel as their encoded bytes, so a
block is decoded once (``Block.decode_untrusted``) and stored as received.

``decode_untrusted(channel, frame, limits)`` is the only parser of peer bytes:
it enforces the channel's size limit before decoding, re-encodes (the shared
``chain.encoding.unpack_untrusted`` rejects non-canonical input) and raises only
:class:`WireError`, never ``IndexError``/``KeyError``/``DecodeError``.

==========  ===  ===================================================================
channel     tag  message
==========  ===  ===================================================================
consensus   1    ProposalMessage   proposal, block bytes
consensus   2    VoteMessage       vote
consensus   3    CommitMessage     commit, block bytes (b"" when not sent along)
consensus   4    EvidenceMessage   duplicate-vote evidence
consensus   5    CompactProposal   proposal, block shell (lanes empty), each lane's tx hashes
blocks      16   Status            stored height, base (lowest retained) height
blocks      17   BlockRequest      height
blocks      18   BlockResponse     block bytes, commit bytes
blocks      19   NoBlock           height
blocks      20   CandidateRequest  height, block hash (a consensus RequestBlock)
blocks      21   CandidateBlock    block bytes (answer to CandidateRequest)
mempool     32   TxMessage         transaction bytes
mempool     33   TxBatchMessage    transactions (1..MAX_BATCH_TXS, within the frame limit)
==========  ===  ===================================================================

A proposer sends its proposal as ``CompactProposal``: the block without its
transactions plus, per lane, the concatenated 32-byte hashes of its
transactions, which peers normally hold already (gossip). A peer rebuilds the
block with :func:`expand_compact` from what it has; the header's lane roots must
match (the hashes are checked against the signed header), and a peer missing
any transaction asks for the whole block (``CandidateRequest``).

Transactions are gossiped as ``TxBatchMessage``: everything a node has for a
peer when its gossip flusher wakes goes out as one frame (or a few, each within
the mempool channel's frame limit), so a peer decodes, de-duplicates and relays
per transaction but pays the per-frame costs once per batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from chain.encoding import (
    pack_trusted,
    take_array,
    take_bytes,
    take_int,
    unpack_untrusted,
)
from chain.errors import ChainError
from chain.params import AppParams, ConsensusParams
from chain.tx import tx_hash
from chain.types import (
    LANES,
    MAX_COMMIT_BYTES,
    MAX_LANE_TXS,
    Block,
    Commit,
    DuplicateVoteEvidence,
    Proposal,
    Vote,
)
from node.errors import NodeError
from p2p import BLOCKS, CONSENSUS, MEMPOOL

#: Room for the envelope and the non-block fields of a message.
ENVELOPE_BYTES: Final = 4096
#: Most transactions in one TxBatchMessage (the frame limit also bounds the bytes).
MAX_BATCH_TXS: Final = 1024
#: Bytes the batch encoding adds around one transaction (a msgpack bin header).
BATCH_TX_OVERHEAD: Final = 5
#: Height limit on the wire (heights are u63).
_MAX_HEIGHT: Final = 2**63 - 1


class WireError(NodeError):
    """A peer sent a frame that is not a valid message for its channel (the peer's fault)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits of each channel, derived from the chain's parameters."""

    max_block_bytes: int
    """consensus_params.max_block_bytes."""
    max_commit_bytes: int
    """Largest commit encoding accepted (sized from max_validators)."""
    max_tx_bytes: int
    """app_params.max_tx_bytes."""

    @classmethod
    def from_params(cls, consensus: ConsensusParams, app: AppParams) -> Limits:
        commit = min(MAX_COMMIT_BYTES, 256 + consensus.max_validators * 128)
        return cls(consensus.max_block_bytes, commit, app.max_tx_bytes)

    def frame_limit(self, channel: int) -> int:
        """Largest frame of ``channel`` (the p2p channel spec uses the same figure)."""
        if channel == CONSENSUS:
            return self.max_block_bytes + self.max_commit_bytes + ENVELOPE_BYTES
        if channel == BLOCKS:
            return self.max_block_bytes + self.max_commit_bytes + ENVELOPE_BYTES
        if channel == MEMPOOL:
            return self.max_tx_bytes + ENVELOPE_BYTES
        raise WireError(f"no messages are defined for channel {channel}")


# --- consensus channel ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProposalMessage:
    """A signed proposal travelling with its block."""

    TAG = 1
    proposal: Proposal
    """The signed proposal."""
    block_bytes: bytes
    """The proposed block's encoding (its hash is ``proposal.block_hash``)."""

    def fields(self) -> list[Any]:
        return [self.proposal.to_list(), self.block_bytes]


@dataclass(frozen=True, slots=True)
class VoteMessage:
    """A signed prevote or precommit."""

    TAG = 2
    vote: Vote
    """The vote."""

    def fields(self) -> list[Any]:
        return [self.vote.to_list()]


@dataclass(frozen=True, slots=True)
class CommitMessage:
    """The commit of a height, sent to a peer still working on it (catch-up)."""

    TAG = 3
    commit: Commit
    """+2/3 precommits for the block."""
    block_bytes: bytes
    """The committed block, or b"" when the peer is known to hold it."""

    def fields(self) -> list[Any]:
        return [self.commit.to_list(), self.block_bytes]


@dataclass(frozen=True, slots=True)
class EvidenceMessage:
    """Proof that a validator equivocated."""

    TAG = 4
    evidence: DuplicateVoteEvidence
    """Two conflicting signed votes."""

    def fields(self) -> list[Any]:
        return [self.evidence.to_list()]


@dataclass(frozen=True, slots=True)
class CompactProposal:
    """A signed proposal with its block as a shell plus transaction hashes."""

    TAG = 5
    proposal: Proposal
    """The signed proposal."""
    shell_bytes: bytes
    """The block's encoding with all four lanes empty (its header commits to the real lanes)."""
    lane_hashes: tuple[bytes, bytes, bytes, bytes]
    """Per lane (cards, seeders, keys, txs), the 32-byte hashes of its transactions, concatenated."""

    @classmethod
    def from_block(cls, proposal: Proposal, block: Block) -> CompactProposal:
        shell = Block(block.header, (), (), (), (), block.last_commit, block.evidence)
        hashes = tuple(b"".join(tx_hash(tx) for tx in block.lane(lane)) for lane in LANES)
        return cls(proposal, shell.encode(), hashes)  # type: ignore[arg-type]

    def fields(self) -> list[Any]:
        return [self.proposal.to_list(), self.shell_bytes, *self.lane_hashes]


def expand_compact(msg: CompactProposal, limits: Limits,
                   lookup: Callable[[bytes], bytes | None]) -> tuple[Block, int]:
    """The block of a compact proposal rebuilt from ``lookup`` (tx hash -> tx bytes)
    and the number of transactions ``lookup`` did not have (the block is only
    usable when that is 0). Raises :class:`WireError` for a shell that does not decode
    or carries transactions, and, once every transaction was found, for hashes that do
    not match the header's lane roots (the sender's fault: honest nodes relay only
    compact proposals they rebuilt and checked)."""
    shell = decode_block(msg.shell_bytes, limits)
    if any(shell.lane(lane) for lane in LANES):
        raise WireError("compact proposal: the shell carries transactions")
    lanes: list[tuple[bytes, ...]] = []
    missing = 0
    for blob in msg.lane_hashes:
        txs: list[bytes] = []
        for i in range(0, len(blob), 32):
            tx = lookup(blob[i:i + 32])
            if tx is None:
                missing += 1
            else:
                txs.append(tx)
        lanes.append(tuple(txs))
    block = Block(shell.header, lanes[0], lanes[1], lanes[2], lanes[3], shell.last_commit,
                  shell.evidence)
    if missing:
        return block, missing
    try:
        block.verify_roots()
    except ChainError as exc:
        raise WireError(f"compact proposal: {exc}") from exc
    return block, 0


# --- blocks channel ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Status:
    """What the sender has stored."""

    TAG = 16
    height: int
    """Latest stored block height (0: none yet)."""
    base: int
    """Lowest stored block height (0: none yet)."""

    def fields(self) -> list[Any]:
        return [self.height, self.base]


@dataclass(frozen=True, slots=True)
class BlockRequest:
    """Send me the block and commit of ``height``."""

    TAG = 17
    height: int
    """The wanted height."""

    def fields(self) -> list[Any]:
        return [self.height]


@dataclass(frozen=True, slots=True)
class BlockResponse:
    """A stored block with the commit that proves it."""

    TAG = 18
    block_bytes: bytes
    """The block's encoding."""
    commit_bytes: bytes
    """The commit for it (canonical if known, else the commit the sender saw)."""

    def fields(self) -> list[Any]:
        return [self.block_bytes, self.commit_bytes]


@dataclass(frozen=True, slots=True)
class NoBlock:
    """The sender does not have ``height`` (pruned or not reached)."""

    TAG = 19
    height: int
    """The height asked for."""

    def fields(self) -> list[Any]:
        return [self.height]


@dataclass(frozen=True, slots=True)
class CandidateRequest:
    """Send me the block with this hash of the height consensus works on."""

    TAG = 20
    height: int
    """Height of the wanted block."""
    block_hash: bytes
    """Its hash."""

    def fields(self) -> list[Any]:
        return [self.height, self.block_hash]


@dataclass(frozen=True, slots=True)
class CandidateBlock:
    """A block of a height still being decided (answer to CandidateRequest)."""

    TAG = 21
    block_bytes: bytes
    """The block's encoding."""

    def fields(self) -> list[Any]:
        return [self.block_bytes]


# --- mempool channel -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TxMessage:
    """A transaction for the mempool."""

    TAG = 32
    tx_bytes: bytes
    """The signed transaction."""

    def fields(self) -> list[Any]:
        return [self.tx_bytes]


@dataclass(frozen=True, slots=True)
class TxBatchMessage:
    """Several transactions for the mempool in one frame."""

    TAG = 33
    txs: tuple[bytes, ...]
    """Signed transactions, 1 to MAX_BATCH_TXS, each non-empty."""

    def fields(self) -> list[Any]:
        return [list(self.txs)]


Message = (
    ProposalMessage | VoteMessage | CommitMessage | EvidenceMessage | CompactProposal | Status
    | BlockRequest
    | BlockResponse | NoBlock | CandidateRequest | CandidateBlock | TxMessage | TxBatchMessage
)

CHANNEL_OF: Final[dict[int, int]] = {
    ProposalMessage.TAG: CONSENSUS,
    VoteMessage.TAG: CONSENSUS,
    CommitMessage.TAG: CONSENSUS,
    EvidenceMessage.TAG: CONSENSUS,
    CompactProposal.TAG: CONSENSUS,
    Status.TAG: BLOCKS,
    BlockRequest.TAG: BLOCKS,
    BlockResponse.TAG: BLOCKS,
    NoBlock.TAG: BLOCKS,
    CandidateRequest.TAG: BLOCKS,
    CandidateBlock.TAG: BLOCKS,
    TxMessage.TAG: MEMPOOL,
    TxBatchMessage.TAG: MEMPOOL,
}
"""The channel each message tag travels on."""


def channel_of(msg: Message) -> int:
    """The channel ``msg`` must be sent on."""
    return CHANNEL_OF[msg.TAG]


def encode(msg: Message) -> bytes:
    """The canonical frame of ``msg``."""
    return pack_trusted([msg.TAG, *msg.fields()])


def decode_untrusted(channel: int, frame: bytes, limits: Limits) -> Message:
    """Parse a peer's frame received on ``channel``; raises only :class:`WireError`."""
    if type(frame) is not bytes:
        raise WireError("a frame is bytes")
    limit = limits.frame_limit(channel)
    if len(frame) > limit:
        raise WireError(f"frame of {len(frame)} bytes exceeds the channel limit {limit}")
    try:
        obj = unpack_untrusted(frame, limit)
        items = take_array(obj, "message", max_len=8)
        if not items:
            raise WireError("empty message")
        tag = take_int(items[0], "message.tag", 0, 255)
        if CHANNEL_OF.get(tag) != channel:
            raise WireError(f"message tag {tag} is not valid on channel {channel}")
        return _decode_fields(tag, items[1:], limits)
    except (ChainError, ValueError, TypeError) as exc:  # DecodeError is a ChainError
        raise WireError(f"bad message on channel {channel}: {exc}") from exc


def _fields(rest: list[Any], n: int, name: str) -> list[Any]:
    if len(rest) != n:
        raise WireError(f"{name}: expected {n} fields, got {len(rest)}")
    return rest


def _block(raw: Any, name: str, limits: Limits, *, allow_empty: bool = False) -> bytes:
    data = take_bytes(raw, name, max_len=limits.max_block_bytes)
    if not data and not allow_empty:
        raise WireError(f"{name}: empty block")
    return data


def _decode_fields(tag: int, rest: list[Any], limits: Limits) -> Message:
    if tag == ProposalMessage.TAG:
        f = _fields(rest, 2, "proposal message")
        return ProposalMessage(Proposal.from_list(f[0]), _block(f[1], "block", limits))
    if tag == VoteMessage.TAG:
        f = _fields(rest, 1, "vote message")
        return VoteMessage(Vote.from_list(f[0]))
    if tag == CommitMessage.TAG:
        f = _fields(rest, 2, "commit message")
        return CommitMessage(Commit.from_list(f[0]), _block(f[1], "block", limits, allow_empty=True))
    if tag == EvidenceMessage.TAG:
        f = _fields(rest, 1, "evidence message")
        return EvidenceMessage(DuplicateVoteEvidence.from_list(f[0]))
    if tag == CompactProposal.TAG:
        f = _fields(rest, 6, "compact proposal")
        shell = _block(f[1], "compact_proposal.shell", limits)
        hashes = []
        for lane, raw in zip(LANES, f[2:], strict=True):
            blob = take_bytes(raw, f"compact_proposal.{lane}", max_len=32 * MAX_LANE_TXS)
            if len(blob) % 32:
                raise WireError(f"compact proposal: {lane} hashes of {len(blob)} bytes")
            hashes.append(blob)
        return CompactProposal(Proposal.from_list(f[0]), shell,
                               (hashes[0], hashes[1], hashes[2], hashes[3]))
    if tag == Status.TAG:
        f = _fields(rest, 2, "status")
        height = take_int(f[0], "status.height", 0, _MAX_HEIGHT)
        base = take_int(f[1], "status.base", 0, _MAX_HEIGHT)
        if base > height:
            raise WireError(f"status: base {base} above height {height}")
        return Status(height, base)
    if tag == BlockRequest.TAG:
        f = _fields(rest, 1, "block request")
        return BlockRequest(take_int(f[0], "block_request.height", 1, _MAX_HEIGHT))
    if tag == BlockResponse.TAG:
        f = _fields(rest, 2, "block response")
        commit = take_bytes(f[1], "block_response.commit", max_len=limits.max_commit_bytes)
        if not commit:
            raise WireError("block response: empty commit")
        return BlockResponse(_block(f[0], "block_response.block", limits), commit)
    if tag == NoBlock.TAG:
        f = _fields(rest, 1, "no block")
        return NoBlock(take_int(f[0], "no_block.height", 1, _MAX_HEIGHT))
    if tag == CandidateRequest.TAG:
        f = _fields(rest, 2, "candidate request")
        return CandidateRequest(
            take_int(f[0], "candidate_request.height", 1, _MAX_HEIGHT),
            take_bytes(f[1], "candidate_request.block_hash", size=32),
        )
    if tag == CandidateBlock.TAG:
        f = _fields(rest, 1, "candidate block")
        return CandidateBlock(_block(f[0], "candidate_block.block", limits))
    if tag == TxMessage.TAG:
        f = _fields(rest, 1, "tx message")
        tx = take_bytes(f[0], "tx", max_len=limits.max_tx_bytes)
        if not tx:
            raise WireError("tx message: empty transaction")
        return TxMessage(tx)
    if tag == TxBatchMessage.TAG:
        f = _fields(rest, 1, "tx batch")
        items = take_array(f[0], "tx_batch.txs", max_len=MAX_BATCH_TXS)
        if not items:
            raise WireError("tx batch: no transactions")
        for i, item in enumerate(items):
            if not take_bytes(item, f"tx_batch.txs[{i}]", max_len=limits.max_tx_bytes):
                raise WireError(f"tx batch: transaction {i} is empty")
        return TxBatchMessage(tuple(items))
    raise WireError(f"unknown message tag {tag}")


def pack_tx_batches(txs: list[bytes], limits: Limits) -> list[bytes]:
    """``txs`` as TxBatchMessage frames, in order, each within the mempool channel's
    frame limit and MAX_BATCH_TXS (a transaction above max_tx_bytes is left out: no
    peer would take it)."""
    budget = limits.frame_limit(MEMPOOL) - ENVELOPE_BYTES
    frames: list[bytes] = []
    chunk: list[bytes] = []
    used = 0
    for tx in txs:
        size = len(tx)
        if not size or size > limits.max_tx_bytes:
            continue
        cost = size + BATCH_TX_OVERHEAD
        if chunk and (used + cost > budget or len(chunk) >= MAX_BATCH_TXS):
            frames.append(pack_trusted([TxBatchMessage.TAG, chunk]))
            chunk, used = [], 0
        chunk.append(tx)
        used += cost
    if chunk:
        frames.append(pack_trusted([TxBatchMessage.TAG, chunk]))
    return frames


def decode_block(data: bytes, limits: Limits) -> Block:
    """A block carried by a message; raises :class:`WireError`."""
    try:
        return Block.decode_untrusted(data, limits.max_block_bytes)
    except (ChainError, ValueError, TypeError) as exc:
        raise WireError(f"bad block: {exc}") from exc


def decode_commit(data: bytes, limits: Limits) -> Commit:
    """A commit carried by a message; raises :class:`WireError`."""
    if len(data) > limits.max_commit_bytes:
        raise WireError("commit too large")
    try:
        return Commit.decode_untrusted(data)
    except (ChainError, ValueError, TypeError) as exc:
        raise WireError(f"bad commit: {exc}") from exc
