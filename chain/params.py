"""Consensus and app parameters: every limit of the chain, fixed in genesis.

Theory of operation. Each parameter is a field of a frozen dataclass declared
with :func:`param`, which records its default and its validation rule (an
inclusive integer range) in the field's metadata, and followed by a docstring
that says what it means. Construction validates every field generically over
``dataclasses.fields``, and the genesis loader reads, validates and writes the
parameters the same way, so a field appended here (with a default, at the end,
so older genesis files still load and the positional encoding only grows) is
loaded, validated, encoded and documented without touching any loader.

Field types are ``int`` (ranges in the metadata) or ``bool``. The encoding of a
parameter set is the array of its field values in declaration order.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

from chain.errors import InvalidParams

_I64 = 2**63 - 1

T = TypeVar("T")


def param(default: int | bool, *, lo: int = 0, hi: int = _I64) -> Any:
    """Declare a parameter field with its default and inclusive range [lo, hi]."""
    return field(default=default, metadata={"lo": lo, "hi": hi})


def field_range(f: dataclasses.Field[Any]) -> tuple[int, int]:
    """The inclusive range [lo, hi] of an integer parameter field."""
    return int(f.metadata.get("lo", 0)), int(f.metadata.get("hi", _I64))


def is_bool_field(f: dataclasses.Field[Any]) -> bool:
    """True if the field holds a bool (else it holds an int)."""
    return f.type in ("bool", bool)


def check_param_value(owner: str, f: dataclasses.Field[Any], value: Any) -> None:
    """Raise :class:`InvalidParams` unless ``value`` is valid for field ``f``."""
    name = f"{owner}.{f.name}"
    if is_bool_field(f):
        if type(value) is not bool:
            raise InvalidParams(f"{name}: expected true or false, got {value!r}")
        return
    if type(value) is not int:
        raise InvalidParams(f"{name}: expected an integer, got {value!r}")
    lo, hi = field_range(f)
    if not lo <= value <= hi:
        raise InvalidParams(f"{name}: {value} is outside [{lo}, {hi}]")


def validate_params(obj: Any, owner: str) -> None:
    """Check every field of a parameter dataclass against its declared rule."""
    for f in dataclasses.fields(obj):
        check_param_value(owner, f, getattr(obj, f.name))


def params_to_list(obj: Any) -> list[Any]:
    """Field values in declaration order (the canonical array form)."""
    return [getattr(obj, f.name) for f in dataclasses.fields(obj)]


def params_from_mapping(cls: type[T], values: dict[str, Any], owner: str) -> T:
    """Build ``cls`` from a name -> value mapping; missing fields take their defaults.

    Raises :class:`InvalidParams` naming ``owner.field`` for an unknown name or
    an invalid value.
    """
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in values:
        if key not in known:
            raise InvalidParams(f"{owner}.{key}: unknown parameter")
    return cls(**values)


@dataclass(frozen=True, slots=True)
class ConsensusParams:
    """Parameters of the consensus engine and of block structure."""

    timeout_propose_ms: int = param(3000, lo=1, hi=600_000)
    """How long a validator waits for the round's proposal before prevoting nil (round 0)."""
    timeout_propose_delta_ms: int = param(500, lo=0, hi=60_000)
    """Added to timeout_propose_ms for each further round."""
    timeout_prevote_ms: int = param(1000, lo=1, hi=600_000)
    """How long to wait after +2/3 prevotes for anything before precommitting nil."""
    timeout_prevote_delta_ms: int = param(500, lo=0, hi=60_000)
    """Added to timeout_prevote_ms for each further round."""
    timeout_precommit_ms: int = param(1000, lo=1, hi=600_000)
    """How long to wait after +2/3 precommits for anything before moving to the next round."""
    timeout_precommit_delta_ms: int = param(500, lo=0, hi=60_000)
    """Added to timeout_precommit_ms for each further round."""
    timeout_commit_ms: int = param(1000, lo=0, hi=600_000)
    """How long to wait after committing a block before starting the next height (gathers late precommits)."""
    max_block_bytes: int = param(4_194_304, lo=1024, hi=104_857_600)
    """Largest encoded block, header and last commit included."""
    max_lane_txs_cards: int = param(10_000, lo=0, hi=100_000)
    """Most transactions in the cards lane of one block."""
    max_lane_txs_seeders: int = param(10_000, lo=0, hi=100_000)
    """Most transactions in the seeders lane of one block."""
    max_lane_txs_keys: int = param(10_000, lo=0, hi=100_000)
    """Most transactions in the keys lane of one block."""
    max_lane_txs_txs: int = param(10_000, lo=0, hi=100_000)
    """Most transactions in the txs lane of one block."""
    max_evidence_per_block: int = param(100, lo=0, hi=10_000)
    """Most pieces of evidence in one block."""
    evidence_max_age_heights: int = param(100_000, lo=1, hi=_I64)
    """Evidence older than this many heights (block height minus evidence height) is rejected."""
    max_clock_drift_ms: int = param(10_000, lo=0, hi=3_600_000)
    """A validator prevotes nil on a proposal whose block time is more than this far ahead of its clock."""
    max_validators: int = param(150, lo=1, hi=10_000)
    """Most validators in an active set (the strongest by power, ties by pubkey)."""

    def __post_init__(self) -> None:
        validate_params(self, "consensus_params")

    def timeout_ms(self, step: str, round_: int) -> int:
        """The timeout of ``step`` ("propose", "prevote", "precommit") in round ``round_``."""
        if step == "propose":
            return self.timeout_propose_ms + round_ * self.timeout_propose_delta_ms
        if step == "prevote":
            return self.timeout_prevote_ms + round_ * self.timeout_prevote_delta_ms
        if step == "precommit":
            return self.timeout_precommit_ms + round_ * self.timeout_precommit_delta_ms
        raise InvalidParams(f"no timeout for step {step!r}")

    def max_lane_txs(self, lane: str) -> int:
        """The transaction limit of ``lane`` ("cards", "seeders", "keys", "txs")."""
        limits = {
            "cards": self.max_lane_txs_cards,
            "seeders": self.max_lane_txs_seeders,
            "keys": self.max_lane_txs_keys,
            "txs": self.max_lane_txs_txs,
        }
        if lane not in limits:
            raise InvalidParams(f"no lane {lane!r}")
        return limits[lane]


@dataclass(frozen=True, slots=True)
class AppParams:
    """Parameters of the application: fees and the limits of every lane's transactions."""

    fee_per_byte: int = param(1, lo=0, hi=1_000_000)
    """Fee per byte of the encoded transaction; a transaction's fee must be at least max(min_fee, fee_per_byte * size)."""
    min_fee: int = param(100, lo=0, hi=10**15)
    """Smallest fee of any transaction."""
    max_tx_bytes: int = param(65_536, lo=128, hi=104_857_600)
    """Largest encoded transaction (must not exceed consensus max_block_bytes)."""
    max_preview_bytes: int = param(4096, lo=0, hi=1_048_576)
    """Largest inline preview of a card; larger previews go by hash."""
    max_title_bytes: int = param(200, lo=1, hi=4096)
    """Largest card title in UTF-8 bytes."""
    max_tags: int = param(10, lo=0, hi=256)
    """Most tags on a card."""
    max_tag_bytes: int = param(32, lo=1, hi=256)
    """Largest tag in UTF-8 bytes."""
    max_links: int = param(16, lo=0, hi=1024)
    """Most links from a card to other cards or content roots."""
    max_addresses: int = param(8, lo=1, hi=256)
    """Most QUIC addresses in one seeder announcement."""
    max_chunk_ranges: int = param(64, lo=1, hi=65_536)
    """Most chunk ranges in one seeder announcement."""
    seeder_max_ttl: int = param(100_000, lo=1, hi=100_000_000)
    """Largest expiry height of a seeder entry, counted in heights after the announcing block."""
    delivery_timeout: int = param(1000, lo=1, hi=100_000_000)
    """Heights a seller has to deliver sealed key material before the buyer is refunded (default of a key offer)."""
    vm_gas_limit: int = param(100_000, lo=1, hi=100_000_000)
    """Gas available to one run of a key class's rule program."""
    max_generic_kind_bytes: int = param(32, lo=1, hi=32)
    """Largest kind of a generic typed transaction."""
    max_generic_payload_bytes: int = param(16_384, lo=0, hi=104_857_600)
    """Largest payload of a generic typed transaction."""
    min_bond: int = param(1_000_000, lo=1, hi=_I64)
    """Smallest stake a validator may bond."""
    max_delivery_timeout: int = param(100_000, lo=1, hi=100_000_000)
    """Largest delivery timeout a key offer may set (heights)."""
    max_sealed_key_bytes: int = param(1024, lo=49, hi=65_536)
    """Largest sealed key material in one delivery or transfer."""
    max_program_bytes: int = param(8199, lo=0, hi=65_536)
    """Largest rule program of a key class (the VM's own cap also applies)."""
    max_rule_params: int = param(16, lo=0, hi=256)
    """Most parameters of a key class's rule program."""
    max_address_bytes: int = param(128, lo=8, hi=1024)
    """Largest QUIC address string in a seeder announcement."""
    slash_bps: int = param(500, lo=0, hi=10_000)
    """Share of a validator's stake burned for proven equivocation, in basis points."""

    def __post_init__(self) -> None:
        validate_params(self, "app_params")
