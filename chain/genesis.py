"""The genesis document: what a chain starts from, its JSON form and its hash.

Theory of operation. A :class:`GenesisDoc` is a frozen value, built only through
:meth:`GenesisDoc.build` (or the JSON loader, which calls it), which normalizes
it (validators sorted by pubkey, accounts sorted by address) and validates every
field; every failure is a :class:`chain.errors.GenesisError` naming the field in
the JSON's terms (``validators[2].pub_key``, ``app_params.min_fee``).

The parameter sections are read generically over ``dataclasses.fields`` of
:class:`ConsensusParams` and :class:`AppParams`: a missing parameter takes its
default, an unknown one is rejected, each value is checked against the range
declared with the field. So a parameter appended to either class loads, dumps
and hashes with no change here.

The genesis hash is BLAKE3 of the canonical msgpack array
``[chain_id, genesis_time_ms, initial_height, consensus_params, app_params,
validators, accounts, app_state]`` (docs/spec.md, "Genesis"); the JSON layout,
key order and whitespace do not affect it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from chain import crypto
from chain.encoding import pack
from chain.errors import GenesisError, InvalidKey, InvalidParams
from chain.params import AppParams, ConsensusParams, check_param_value, params_to_list
from chain.types import MAX_TOTAL_POWER, Validator, ValidatorSet

MAX_BALANCE: Final = 2**63 - 1
"""Largest balance of one account and largest total supply."""
MAX_GENESIS_HEIGHT: Final = 2**62
MAX_VALIDATOR_NAME_BYTES: Final = 64
MAX_APP_STATE_KIND_BYTES: Final = 32
MAX_APP_STATE_RECORD_BYTES: Final = 16 * 1024 * 1024
MAX_GENESIS_FILE_BYTES: Final = 512 * 1024 * 1024
#: Latest genesis time accepted (the year 9999).
MAX_GENESIS_TIME_MS: Final = 253_402_300_799_999
APP_STATE_KIND_PATTERN: Final = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
RFC3339_PATTERN: Final = re.compile(
    r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})", re.ASCII
)

P = TypeVar("P", ConsensusParams, AppParams)


@dataclass(frozen=True, slots=True)
class GenesisValidator:
    """A validator of the first height."""

    pubkey: bytes
    """Ed25519 consensus key, 32 bytes (JSON: ``pub_key``, hex)."""
    power: int
    """Voting power, 1..MAX_TOTAL_POWER."""
    name: str = ""
    """Operator's label, up to 64 bytes; informational but hashed."""


@dataclass(frozen=True, slots=True)
class GenesisAccount:
    """An account funded at genesis."""

    address: bytes
    """The account's Ed25519 public key, 32 bytes (JSON: hex)."""
    balance: int
    """Initial balance, 0..MAX_BALANCE."""


@dataclass(frozen=True, slots=True)
class AppStateRecord:
    """One opaque record of initial app state; its kind is defined by the state transition."""

    kind: str
    """Record type: lowercase letter, then [a-z0-9_.-], at most 32 bytes."""
    data: bytes
    """The record, in the encoding its kind defines (JSON: hex)."""


@dataclass(frozen=True, slots=True)
class GenesisDoc:
    """Everything a chain starts from. Build with :meth:`build` or load with :meth:`from_json`."""

    chain_id: str
    """The chain's id (see :func:`chain.crypto.is_valid_chain_id`)."""
    genesis_time_ms: int
    """Time of the first block, ms since the Unix epoch (JSON: RFC 3339 ``genesis_time``)."""
    initial_height: int
    """Height of the first block, >= 1."""
    consensus_params: ConsensusParams
    """Consensus parameters."""
    app_params: AppParams
    """App parameters."""
    validators: tuple[GenesisValidator, ...]
    """Validators of the first height, sorted by pubkey."""
    accounts: tuple[GenesisAccount, ...]
    """Funded accounts, sorted by address."""
    app_state: tuple[AppStateRecord, ...] = ()
    """Initial app state records, in order."""

    # --- construction and validation ---

    @classmethod
    def build(
        cls,
        *,
        chain_id: str,
        genesis_time_ms: int,
        initial_height: int = 1,
        consensus_params: ConsensusParams | None = None,
        app_params: AppParams | None = None,
        validators: Iterable[GenesisValidator] = (),
        accounts: Iterable[GenesisAccount] = (),
        app_state: Iterable[AppStateRecord] = (),
        template: bool = False,
    ) -> GenesisDoc:
        """Normalize (sort) and validate; raise :class:`GenesisError` naming the field.

        ``template`` allows an empty validator list (a template such as
        genesis/devnet.json that a testnet generator fills in).
        """
        doc = cls(
            chain_id=chain_id,
            genesis_time_ms=genesis_time_ms,
            initial_height=initial_height,
            consensus_params=consensus_params
            if consensus_params is not None
            else ConsensusParams(),
            app_params=app_params if app_params is not None else AppParams(),
            validators=tuple(sorted(validators, key=_validator_key)),
            accounts=tuple(sorted(accounts, key=_account_key)),
            app_state=tuple(app_state),
        )
        doc.validate(template=template)
        return doc

    def validate(self, *, template: bool = False) -> None:
        """Check every rule (docs/spec.md, "Genesis"); raise :class:`GenesisError`."""
        if not crypto.is_valid_chain_id(self.chain_id):
            raise GenesisError(
                "chain_id",
                f"{self.chain_id!r} must be 1..50 characters: a letter or digit, then letters, "
                "digits, '.', '_' or '-'",
            )
        _check_int("genesis_time", self.genesis_time_ms, 0, MAX_GENESIS_TIME_MS)
        _check_int("initial_height", self.initial_height, 1, MAX_GENESIS_HEIGHT)
        for owner, value, kind in (
            ("consensus_params", self.consensus_params, ConsensusParams),
            ("app_params", self.app_params, AppParams),
        ):
            if type(value) is not kind:
                raise GenesisError(owner, f"expected {kind.__name__}")
        if self.app_params.max_tx_bytes > self.consensus_params.max_block_bytes:
            raise GenesisError(
                "app_params.max_tx_bytes",
                f"{self.app_params.max_tx_bytes} exceeds consensus_params.max_block_bytes "
                f"({self.consensus_params.max_block_bytes})",
            )
        self._validate_validators(template)
        self._validate_accounts()
        for i, rec in enumerate(self.app_state):
            where = f"app_state[{i}]"
            if not isinstance(rec, AppStateRecord):
                raise GenesisError(where, "expected an AppStateRecord")
            if type(rec.kind) is not str or not APP_STATE_KIND_PATTERN.fullmatch(rec.kind):
                raise GenesisError(
                    f"{where}.kind",
                    f"{rec.kind!r} must be a lowercase letter then [a-z0-9_.-], at most 32",
                )
            if type(rec.data) is not bytes or len(rec.data) > MAX_APP_STATE_RECORD_BYTES:
                raise GenesisError(
                    f"{where}.data", f"must be bytes of at most {MAX_APP_STATE_RECORD_BYTES}"
                )

    def _validate_validators(self, template: bool) -> None:
        vals = self.validators
        if not vals and not template:
            raise GenesisError("validators", "at least one validator is required")
        cap = self.consensus_params.max_validators
        if len(vals) > cap:
            raise GenesisError(
                "validators",
                f"{len(vals)} validators exceed consensus_params.max_validators ({cap})",
            )
        total = 0
        for i, v in enumerate(vals):
            where = f"validators[{i}]"
            if not isinstance(v, GenesisValidator):
                raise GenesisError(where, "expected a GenesisValidator")
            _check_pubkey(f"{where}.pub_key", v.pubkey)
            _check_int(f"{where}.power", v.power, 1, MAX_TOTAL_POWER)
            if type(v.name) is not str or len(v.name.encode()) > MAX_VALIDATOR_NAME_BYTES:
                raise GenesisError(
                    f"{where}.name", f"must be a string of at most {MAX_VALIDATOR_NAME_BYTES} bytes"
                )
            if i and v.pubkey <= vals[i - 1].pubkey:
                if v.pubkey == vals[i - 1].pubkey:
                    raise GenesisError(f"{where}.pub_key", f"duplicate validator {v.pubkey.hex()}")
                raise GenesisError("validators", "not sorted by pub_key (use GenesisDoc.build)")
            total += v.power
        if total > MAX_TOTAL_POWER:
            raise GenesisError("validators", f"total power {total} exceeds {MAX_TOTAL_POWER}")

    def _validate_accounts(self) -> None:
        total = 0
        accts = self.accounts
        for i, a in enumerate(accts):
            where = f"accounts[{i}]"
            if not isinstance(a, GenesisAccount):
                raise GenesisError(where, "expected a GenesisAccount")
            if type(a.address) is not bytes or len(a.address) != crypto.PUBKEY_SIZE:
                raise GenesisError(f"{where}.address", "must be 32 bytes (64 hex characters)")
            _check_int(f"{where}.balance", a.balance, 0, MAX_BALANCE)
            if i and a.address <= accts[i - 1].address:
                if a.address == accts[i - 1].address:
                    raise GenesisError(f"{where}.address", f"duplicate account {a.address.hex()}")
                raise GenesisError("accounts", "not sorted by address (use GenesisDoc.build)")
            total += a.balance
        if total > MAX_BALANCE:
            raise GenesisError("accounts", f"total supply {total} exceeds {MAX_BALANCE}")

    # --- derived values ---

    def validator_set(self) -> ValidatorSet:
        """The validator set of the first height."""
        return ValidatorSet(tuple(Validator(v.pubkey, v.power) for v in self.validators))

    def total_supply(self) -> int:
        return sum(a.balance for a in self.accounts)

    def to_list(self) -> list[Any]:
        """The canonical array the genesis hash covers."""
        return [
            self.chain_id,
            self.genesis_time_ms,
            self.initial_height,
            params_to_list(self.consensus_params),
            params_to_list(self.app_params),
            [[v.pubkey, v.power, v.name] for v in self.validators],
            [[a.address, a.balance] for a in self.accounts],
            [[r.kind, r.data] for r in self.app_state],
        ]

    def encode(self) -> bytes:
        return pack(self.to_list())

    def hash(self) -> bytes:
        """BLAKE3 of :meth:`encode`: the genesis hash."""
        return crypto.hash_bytes(self.encode())

    def replace(self, *, template: bool = False, **changes: Any) -> GenesisDoc:
        """A copy with ``changes`` applied, re-normalized and re-validated."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields.update(changes)
        return GenesisDoc.build(template=template, **fields)

    # --- JSON ---

    def to_dict(self) -> dict[str, Any]:
        """The JSON object form (see docs/spec.md, "Genesis")."""
        return {
            "chain_id": self.chain_id,
            "genesis_time": format_time_ms(self.genesis_time_ms),
            "initial_height": self.initial_height,
            "consensus_params": params_to_dict(self.consensus_params),
            "app_params": params_to_dict(self.app_params),
            "validators": [
                {"pub_key": v.pubkey.hex(), "power": v.power, "name": v.name}
                for v in self.validators
            ],
            "accounts": [{"address": a.address.hex(), "balance": a.balance} for a in self.accounts],
            "app_state": [{"kind": r.kind, "data": r.data.hex()} for r in self.app_state],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def dump(self, path: str | Path) -> None:
        """Write the JSON form to ``path``; :class:`GenesisError` if it cannot be written."""
        try:
            Path(path).write_text(self.to_json(), encoding="utf-8")
        except OSError as exc:
            raise GenesisError("(file)", f"cannot write {path}: {exc.strerror or exc}") from exc

    @classmethod
    def from_dict(cls, obj: Any, *, template: bool = False) -> GenesisDoc:
        """Build from a parsed JSON object; raise :class:`GenesisError` naming the field."""
        if type(obj) is not dict:
            raise GenesisError("(top level)", "expected a JSON object")
        known = {
            "chain_id",
            "genesis_time",
            "initial_height",
            "consensus_params",
            "app_params",
            "validators",
            "accounts",
            "app_state",
        }
        for key in obj:
            if key not in known:
                raise GenesisError(str(key), "unknown field")
        for key in ("chain_id", "genesis_time", "validators"):
            if key not in obj:
                raise GenesisError(key, "missing")
        chain_id = obj["chain_id"]
        if type(chain_id) is not str:
            raise GenesisError("chain_id", "expected a string")
        initial_height = obj.get("initial_height", 1)
        _check_int("initial_height", initial_height, 1, MAX_GENESIS_HEIGHT)
        return cls.build(
            chain_id=chain_id,
            genesis_time_ms=parse_time("genesis_time", obj["genesis_time"]),
            initial_height=initial_height,
            consensus_params=params_from_dict(
                ConsensusParams, obj.get("consensus_params", {}), "consensus_params"
            ),
            app_params=params_from_dict(AppParams, obj.get("app_params", {}), "app_params"),
            validators=[
                _validator_from_json(i, v)
                for i, v in enumerate(_json_list(obj["validators"], "validators"))
            ],
            accounts=[
                _account_from_json(i, a)
                for i, a in enumerate(_json_list(obj.get("accounts", []), "accounts"))
            ],
            app_state=[
                _record_from_json(i, r)
                for i, r in enumerate(_json_list(obj.get("app_state", []), "app_state"))
            ],
            template=template,
        )

    @classmethod
    def from_json(cls, text: str | bytes, *, template: bool = False) -> GenesisDoc:
        """Parse and validate genesis JSON; raise :class:`GenesisError`."""
        try:
            obj = json.loads(
                text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants
            )
        except GenesisError:
            raise
        except (
            ValueError,
            RecursionError,
        ) as exc:  # JSONDecodeError and UnicodeDecodeError included
            raise GenesisError("(file)", f"not valid JSON: {exc}") from exc
        return cls.from_dict(obj, template=template)

    @classmethod
    def load(cls, path: str | Path, *, template: bool = False) -> GenesisDoc:
        """Read, parse and validate a genesis file; raise :class:`GenesisError`."""
        p = Path(path)
        try:
            size = p.stat().st_size
            if size > MAX_GENESIS_FILE_BYTES:
                raise GenesisError("(file)", f"{p} is {size} bytes, above {MAX_GENESIS_FILE_BYTES}")
            data = p.read_bytes()
        except OSError as exc:
            raise GenesisError("(file)", f"cannot read {p}: {exc.strerror or exc}") from exc
        return cls.from_json(data, template=template)


# --- parameters, generic over dataclasses.fields ---


def params_to_dict(params: ConsensusParams | AppParams) -> dict[str, Any]:
    """Every parameter by name, in declaration order."""
    return {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}


def params_from_dict(cls: type[P], obj: Any, owner: str) -> P:
    """Load a parameter section: defaults for missing names, unknown names rejected.

    Each present value is checked by the rule declared with its field; errors
    are :class:`GenesisError` naming ``owner.field``.
    """
    if type(obj) is not dict:
        raise GenesisError(owner, "expected a JSON object of parameters")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in obj.items():
        f = fields.get(key)
        if f is None:
            raise GenesisError(f"{owner}.{key}", "unknown parameter")
        try:
            check_param_value(owner, f, value)
        except InvalidParams as exc:
            raise GenesisError(f"{owner}.{key}", str(exc).split(": ", 1)[-1]) from exc
    try:
        return cls(**obj)
    except InvalidParams as exc:
        raise GenesisError(owner, str(exc)) from exc


def override_params(params: P, overrides: Mapping[str, Any], owner: str) -> P:
    """``params`` with some fields replaced, validated like a loaded section."""
    merged = params_to_dict(params)
    for key in overrides:
        if key not in merged:
            raise GenesisError(f"{owner}.{key}", "unknown parameter")
    merged.update(overrides)
    return params_from_dict(type(params), merged, owner)


# --- time ---


def parse_time(field: str, value: Any) -> int:
    """RFC 3339 time with an explicit offset ("2026-01-01T00:00:00Z") to ms since the epoch."""
    if type(value) is not str:
        raise GenesisError(field, "expected an RFC 3339 time string such as 2026-01-01T00:00:00Z")
    m = RFC3339_PATTERN.fullmatch(value)
    if m is None:
        raise GenesisError(
            field, f"{value!r} is not an RFC 3339 time with an offset, such as 2026-01-01T00:00:00Z"
        )
    base, frac, offset = m.group(1), m.group(2) or "", m.group(3)
    if frac[3:].strip("0"):
        raise GenesisError(field, "precision finer than a millisecond")
    iso = f"{base}.{(frac + '000')[:3]}{'+00:00' if offset == 'Z' else offset}"
    try:
        when = dt.datetime.fromisoformat(iso)
    except ValueError as exc:
        raise GenesisError(field, f"{value!r} is not a valid date and time") from exc
    delta = when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    ms = (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    _check_int(field, ms, 0, MAX_GENESIS_TIME_MS)
    return ms


def format_time_ms(ms: int) -> str:
    """ms since the epoch to RFC 3339 UTC with milliseconds ("...T00:00:00.000Z")."""
    when = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


# --- JSON helpers ---


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise GenesisError(key, "duplicate key in a JSON object")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise GenesisError("(file)", f"{name} is not allowed in genesis JSON")


def _json_list(value: Any, field: str) -> list[Any]:
    if type(value) is not list:
        raise GenesisError(field, "expected a JSON array")
    return value


def _json_obj(
    value: Any, field: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, Any]:
    if type(value) is not dict:
        raise GenesisError(field, "expected a JSON object")
    for key in value:
        if key not in required and key not in optional:
            raise GenesisError(f"{field}.{key}", "unknown field")
    for key in required:
        if key not in value:
            raise GenesisError(f"{field}.{key}", "missing")
    return value


def _hex(value: Any, field: str, size: int | None = None, max_len: int | None = None) -> bytes:
    if type(value) is not str:
        raise GenesisError(field, "expected a hex string")
    if not re.fullmatch(r"(?:[0-9a-f]{2})*", value):
        raise GenesisError(field, "expected lowercase hex with an even number of digits")
    raw = bytes.fromhex(value)
    if size is not None and len(raw) != size:
        raise GenesisError(
            field, f"expected {size} bytes ({2 * size} hex characters), got {len(raw)}"
        )
    if max_len is not None and len(raw) > max_len:
        raise GenesisError(field, f"{len(raw)} bytes exceed {max_len}")
    return raw


def _check_int(field: str, value: Any, lo: int, hi: int) -> None:
    if type(value) is not int:
        raise GenesisError(field, f"expected an integer, got {value!r}")
    if not lo <= value <= hi:
        raise GenesisError(field, f"{value} is outside [{lo}, {hi}]")


def _check_pubkey(field: str, value: Any) -> None:
    if type(value) is not bytes or len(value) != crypto.PUBKEY_SIZE:
        raise GenesisError(field, "must be 32 bytes (64 hex characters)")
    try:
        crypto.ed25519_to_x25519_public(value)
    except InvalidKey as exc:
        raise GenesisError(field, "not a valid Ed25519 public key") from exc


def _validator_from_json(i: int, value: Any) -> GenesisValidator:
    where = f"validators[{i}]"
    obj = _json_obj(value, where, ("pub_key", "power"), ("name",))
    name = obj.get("name", "")
    if type(name) is not str:
        raise GenesisError(f"{where}.name", "expected a string")
    power = obj["power"]
    _check_int(f"{where}.power", power, 1, MAX_TOTAL_POWER)
    return GenesisValidator(
        _hex(obj["pub_key"], f"{where}.pub_key", crypto.PUBKEY_SIZE), power, name
    )


def _account_from_json(i: int, value: Any) -> GenesisAccount:
    where = f"accounts[{i}]"
    obj = _json_obj(value, where, ("address", "balance"))
    balance = obj["balance"]
    _check_int(f"{where}.balance", balance, 0, MAX_BALANCE)
    return GenesisAccount(_hex(obj["address"], f"{where}.address", crypto.PUBKEY_SIZE), balance)


def _record_from_json(i: int, value: Any) -> AppStateRecord:
    where = f"app_state[{i}]"
    obj = _json_obj(value, where, ("kind", "data"))
    kind = obj["kind"]
    if type(kind) is not str:
        raise GenesisError(f"{where}.kind", "expected a string")
    return AppStateRecord(
        kind, _hex(obj["data"], f"{where}.data", max_len=MAX_APP_STATE_RECORD_BYTES)
    )


def _validator_key(v: Any) -> bytes:
    pub = getattr(v, "pubkey", None)
    return pub if type(pub) is bytes else b""


def _account_key(a: Any) -> bytes:
    addr = getattr(a, "address", None)
    return addr if type(addr) is bytes else b""
