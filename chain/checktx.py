"""The mempool-side validity check: check_tx(state, tx_bytes).

It runs exactly the rules of the state transition (chain.state.deliver_tx and
the lane handlers) for a transaction placed in the next block, against an
overlay: a scratch one that is thrown away, or the mempool's running overlay
(State.new_overlay(), renewed after each commit) so that a sender's second
transaction is checked after its first. Fees are charged to the sender but
credited to nobody (the proposer is not known yet). What check_tx cannot know:
the block's time (the last block's is used for VM rules) and what other
transactions a proposer puts before this one, so a transaction that passed
can still fail in a block; the proposer re-checks while it builds.
"""

from __future__ import annotations

from dataclasses import dataclass

from chain import crypto
from chain import tx as txm
from chain.errors import BadTxSignature
from chain.state import Apply, Overlay, State, decode_tx, deliver_tx, tx_signing_digest


@dataclass(frozen=True, slots=True)
class CheckResult:
    """A transaction that passed check_tx."""

    tx_hash: bytes
    lane: str
    sender: bytes
    nonce: int
    fee: int
    size: int
    gas_used: int

    @property
    def fee_per_byte(self) -> float:
        """Mempool priority: fee per encoded byte."""
        return self.fee / self.size


def check_tx(state: State, tx_bytes: bytes, *, overlay: Overlay | None = None) -> CheckResult:
    """Check one transaction for inclusion in the next block.

    Raises a chain.errors.InvalidTx subclass naming the rule that failed. With
    `overlay`, a passing transaction's changes are kept in it.
    """
    # the bytes are a canonical transaction within max_tx_bytes
    tx = decode_tx(state.app, tx_bytes)
    # the sender signed it for this chain
    if not crypto.verify(tx.sender, tx.signature, tx_signing_digest(state.chain_id, tx_bytes)):
        raise BadTxSignature("signature does not verify for this chain")
    base = overlay if overlay is not None else state.new_overlay()
    scratch = base.child()
    ap = Apply(state, scratch, state.height + 1, state.time_ms, None)
    tx_hash = txm.tx_hash(tx_bytes)
    gas = deliver_tx(ap, tx, tx_bytes, tx_hash)
    if overlay is not None:
        ap.flush_accounts()
        overlay.merge(scratch)
    return CheckResult(tx_hash, txm.LANE_NAMES[tx.lane], tx.sender, tx.nonce, tx.fee, len(tx_bytes), gas)
