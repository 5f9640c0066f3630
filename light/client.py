"""The light client: a trusted root, a primary, witnesses and a store.

`LightClient.init` fetches the block at the user's trusted height from the
primary, checks that it hashes to the user's trusted hash and that +2/3 of its
set signed it, cross-checks it with the witnesses and stores it. `update()`
verifies up to the primary's latest height and `verify_to_height(h)` up to h
(skipping verification with bisection, or adjacent steps in sequential mode;
below the newest trusted height, backwards by hash links). Every light block
that becomes trusted is compared with each witness's header of that height: a
different hash whose block verifies from the same trusted block is an attack:
evidence against both sides is written to the store, offered to the nodes
through `broadcast_evidence` when they serve it, and the client halts with
:class:`AttackDetected`. A witness whose conflicting block does not verify is
faulty and is dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from chain import errors as chain_errors
from chain.types import Header
from light import errors as le
from light import verifier as vf
from light.evidence import LightClientAttackEvidence, make_evidence
from light.rpc import RpcClient
from light.store import Meta, TrustedStore
from light.verifier import LightBlock

METHOD_NOT_FOUND = -32601
NOT_FOUND = -32001


def _field(obj: Any, name: str) -> Any:
    if not isinstance(obj, dict) or name not in obj:
        raise le.MalformedAnswer(f"answer has no field {name!r}")
    return obj[name]


class Provider:
    """A node answering light-client questions over JSON-RPC."""

    def __init__(self, rpc: RpcClient) -> None:
        self.rpc = rpc
        self._valsets: dict[int, bytes] = {}

    @classmethod
    def at(cls, address: str, *, timeout: float = 10.0) -> Provider:
        return cls(RpcClient(address, timeout=timeout))

    @property
    def address(self) -> str:
        return self.rpc.address

    def __repr__(self) -> str:
        return f"Provider({self.address!r})"

    def latest_height(self) -> int:
        sync = _field(self.rpc.call("status"), "sync_info")
        height = _field(sync, "latest_block_height")
        if type(height) is not int or height < 1:
            raise le.MalformedAnswer("status: latest_block_height is not a positive integer")
        return height

    def chain_id(self) -> str:
        info = _field(self.rpc.call("status"), "node_info")
        chain_id = _field(info, "chain_id")
        if not isinstance(chain_id, str):
            raise le.MalformedAnswer("status: chain_id is not a string")
        return chain_id

    def header_hash(self, height: int) -> bytes:
        """The hash of the provider's header at ``height`` (computed from its bytes)."""
        raw = vf.decode_hex(_field(self.rpc.call("header", height=height), "header_bytes"), "header_bytes")
        try:
            header = Header.decode_untrusted(raw)
        except chain_errors.DecodeError as exc:
            raise le.MalformedAnswer(f"header_bytes do not decode: {exc}") from exc
        if header.height != height:
            raise le.InvalidHeader(f"asked header {height}, got {header.height}")
        return header.hash()

    def _valset_bytes(self, height: int) -> bytes:
        # consecutive light blocks share a set (next of h = set of h + 1): ask once
        found = self._valsets.get(height)
        if found is None:
            answer = self.rpc.call("validators", height=height)
            found = vf.decode_hex(_field(answer, "valset_bytes"), "valset_bytes")
            if len(self._valsets) >= 8:
                self._valsets.pop(next(iter(self._valsets)))
            self._valsets[height] = found
        return found

    def light_block(self, height: int) -> LightBlock:
        """The provider's (unverified) light block at ``height``."""
        c = self.rpc.call("commit", height=height)
        block = vf.decode_light_block(
            vf.decode_hex(_field(c, "header_bytes"), "header_bytes"),
            vf.decode_hex(_field(c, "commit_bytes"), "commit_bytes"),
            self._valset_bytes(height),
            self._valset_bytes(height + 1),
        )
        if block.height != height:
            raise le.InvalidHeader(f"asked light block {height}, got {block.height}")
        return block

    def broadcast_evidence(self, evidence: LightClientAttackEvidence) -> bool:
        """Offer evidence to the node; False if it has no `broadcast_evidence` method."""
        try:
            self.rpc.call("broadcast_evidence", evidence=evidence.encode().hex())
        except le.RpcError as exc:
            if exc.code == METHOD_NOT_FOUND:
                return False
            raise
        return True

    def close(self) -> None:
        self.rpc.close()


@dataclass(frozen=True, slots=True)
class Options:
    """How the client verifies."""

    trusting_period_ms: int = vf.DEFAULT_TRUSTING_PERIOD_MS
    max_clock_drift_ms: int = vf.DEFAULT_MAX_CLOCK_DRIFT_MS
    mode: str = "skipping"
    """"skipping" (bisection) or "sequential" (every height)."""
    trust_level: tuple[int, int] = vf.TRUST_LEVEL

    def to_dict(self) -> dict[str, Any]:
        return {"trusting_period_ms": self.trusting_period_ms, "max_clock_drift_ms": self.max_clock_drift_ms,
                "mode": self.mode, "trust_level": list(self.trust_level)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Options:
        try:
            out = cls(int(d.get("trusting_period_ms", vf.DEFAULT_TRUSTING_PERIOD_MS)),
                      int(d.get("max_clock_drift_ms", vf.DEFAULT_MAX_CLOCK_DRIFT_MS)),
                      str(d.get("mode", "skipping")),
                      tuple(d.get("trust_level", vf.TRUST_LEVEL)))
        except (TypeError, ValueError) as exc:
            raise le.UsageError(f"bad light client options: {exc}") from exc
        if out.mode not in ("skipping", "sequential"):
            raise le.UsageError(f"mode must be skipping or sequential, not {out.mode!r}")
        return out


def _now_ms() -> int:
    return int(time.time() * 1000)


class LightClient:
    """See the module docstring."""

    def __init__(self, store: TrustedStore, primary: Provider, witnesses: Sequence[Provider] = (), *,
                 options: Options | None = None, clock: Callable[[], int] = _now_ms) -> None:
        self.store = store
        self.meta = store.meta()
        self.chain_id = self.meta.chain_id
        self.primary = primary
        self.witnesses = list(witnesses)
        self.options = options or Options.from_dict(self.meta.options)
        self.clock = clock
        self.dropped_witnesses: list[tuple[str, str]] = []
        """(address, why) of witnesses found faulty (their conflicting block did not verify)."""
        self.skipped_witnesses: list[tuple[str, str]] = []
        """(address, why) of witnesses that could not be asked during a cross-check."""

    # -- construction -----------------------------------------------------------------

    @classmethod
    def init(cls, store: TrustedStore, primary: Provider, witnesses: Sequence[Provider], *,
             trust_height: int, trust_hash: bytes, options: Options | None = None,
             clock: Callable[[], int] = _now_ms) -> LightClient:
        """Start from the user's trusted root (replacing anything stored)."""
        options = options or Options()
        if len(trust_hash) != 32:
            raise le.UsageError("the trusted hash must be 32 bytes")
        chain_id = primary.chain_id()
        block = primary.light_block(trust_height)
        vf.validate_basic(block, chain_id, height=trust_height, block_hash=trust_hash)
        try:
            block.validators.verify_commit(chain_id, block.commit, height=trust_height)
        except chain_errors.InvalidCommit as exc:
            raise le.InvalidCommit(f"commit of the trusted root: {exc}") from exc
        vf.check_within_trusting_period(block, options.trusting_period_ms, clock())
        store.clear()
        store.save_meta(Meta(chain_id, trust_height, trust_hash, primary.address,
                             tuple(w.address for w in witnesses), "", options.to_dict()))
        client = cls(store, primary, witnesses, options=options, clock=clock)
        for w in witnesses:
            got = w.header_hash(trust_height)
            if got != trust_hash:
                raise le.UsageError(
                    f"witness {w.address} has another header at the trusted height {trust_height}: "
                    "the trusted root is disputed"
                )
        store.save(block)
        return client

    @classmethod
    def open(cls, store: TrustedStore, *, timeout: float = 10.0, clock: Callable[[], int] = _now_ms) -> LightClient:
        """Reopen a client from its store (providers from the meta record)."""
        meta = store.meta()
        return cls(store, Provider.at(meta.primary, timeout=timeout),
                   [Provider.at(w, timeout=timeout) for w in meta.witnesses], clock=clock)

    def close(self) -> None:
        self.primary.close()
        for w in self.witnesses:
            w.close()

    # -- state ----------------------------------------------------------------------------

    def _check_running(self) -> None:
        reason = self.store.meta().halted
        if reason:
            raise le.Halted(f"the light client halted: {reason}; re-initialise it from a trusted root")

    def latest_trusted(self) -> LightBlock:
        return self.store.latest()

    def _options(self) -> dict[str, Any]:
        o = self.options
        return {"trusting_period_ms": o.trusting_period_ms, "max_clock_drift_ms": o.max_clock_drift_ms,
                "trust_level": o.trust_level}

    # -- verification -------------------------------------------------------------------

    def update(self) -> LightBlock:
        """Verify up to the primary's latest height; the newest trusted block."""
        self._check_running()
        return self.verify_to_height(self.primary.latest_height())

    def verify_to_height(self, height: int) -> LightBlock:
        """The trusted light block at ``height``, verifying it first if needed."""
        self._check_running()
        if height < 1:
            raise le.UsageError(f"height {height} is below 1")
        found = self.store.get(height)
        if found is not None:
            return found
        latest = self.store.latest()
        if height < latest.height:
            return self._verify_backwards(height)
        now = self.clock()
        fetch = self.primary.light_block
        if self.options.mode == "sequential":
            trace = vf.verify_sequential(latest, fetch, height, self.chain_id, now_ms=now, **self._options())
        else:
            trace = vf.verify_to(latest, fetch, height, self.chain_id, now_ms=now, **self._options())
        self._cross_check(latest, trace)
        for block in trace:
            self.store.save(block)
        return trace[-1]

    def _verify_backwards(self, height: int) -> LightBlock:
        """Below the newest trusted block: follow prev_block_hash links down from the
        nearest trusted block above (CometBFT's backwards verification)."""
        above = self.store.nearest_above(height)
        if above is None:  # pragma: no cover - height < latest guarantees one
            raise le.UsageError(f"no trusted block above {height}")
        expected = above.header.prev_block_hash
        block = above
        for h in range(above.height - 1, height - 1, -1):
            block = self.primary.light_block(h)
            vf.validate_basic(block, self.chain_id, height=h, block_hash=expected)
            expected = block.header.prev_block_hash
        self._cross_check(None, [block])
        self.store.save(block)
        return block

    # -- witnesses ----------------------------------------------------------------------

    def _cross_check(self, common: LightBlock | None, trace: Sequence[LightBlock]) -> None:
        for w in list(self.witnesses):
            for block in trace:
                try:
                    theirs = w.header_hash(block.height)
                except le.RpcError as exc:
                    if exc.code == NOT_FOUND:
                        continue  # the witness is behind: nothing to compare yet
                    self.skipped_witnesses.append((w.address, str(exc)))
                    break
                except le.LightError as exc:
                    # unreachable or garbled: it cannot vouch for anything, and it accuses no one
                    self.skipped_witnesses.append((w.address, str(exc)))
                    break
                if theirs == block.hash():
                    continue
                self._examine_conflict(w, common, block)
                break

    def _examine_conflict(self, witness: Provider, common: LightBlock | None, ours: LightBlock) -> None:
        if common is None:
            common = self.store.nearest_below(ours.height - 1)
        if common is None:
            raise le.AttackDetected(
                f"witness {witness.address} has another header at height {ours.height} than the primary "
                "and no trusted block below it to judge from"
            )
        try:
            if witness.header_hash(common.height) != common.hash():
                raise le.InvalidHeader(f"the witness disputes the trusted height {common.height}")
            fetch = witness.light_block
            if self.options.mode == "sequential":
                wtrace = vf.verify_sequential(common, fetch, ours.height, self.chain_id, now_ms=self.clock(),
                                              **self._options())
            else:
                wtrace = vf.verify_to(common, fetch, ours.height, self.chain_id, now_ms=self.clock(),
                                      **self._options())
        except le.VerificationError as exc:
            # the witness's block does not verify: the witness is faulty, not the primary
            self.witnesses.remove(witness)
            self.dropped_witnesses.append((witness.address, str(exc)))
            return
        theirs = wtrace[-1]
        against_primary = make_evidence(ours, theirs, common)
        against_witness = make_evidence(theirs, ours, common)
        paths = [str(self.store.record_evidence(e.hash(), e.encode())) for e in (against_primary, against_witness)]
        submitted, refused = [], []
        for provider, ev in ((witness, against_primary), (self.primary, against_witness)):
            try:
                if provider.broadcast_evidence(ev):
                    submitted.append(provider.address)
            except le.ProviderError as exc:
                # a node on the accused side sees no conflict with its own chain, or is down
                refused.append(f"{provider.address} ({exc})")
        reason = (f"conflicting headers at height {ours.height}: primary {self.primary.address} has "
                  f"{ours.hash().hex()}, witness {witness.address} has {theirs.hash().hex()}, both verify "
                  f"from trusted height {common.height}")
        self.store.save_meta(replace(self.store.meta(), halted=reason))
        where = f"; evidence recorded at {', '.join(paths)}"
        where += f"; submitted to {', '.join(submitted)}" if submitted else "; no node took the evidence"
        where += f"; refused by {', '.join(refused)}" if refused else ""
        raise le.AttackDetected("light client attack detected: " + reason + where, paths[0])
