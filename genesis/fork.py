"""Fork a genesis (new chain id, parameter overrides) and build one from exported state.

:func:`fork_genesis` derives a new chain from an existing genesis document: it
must get a new chain id (the chain id is inside every signature digest, so a
fork never accepts the old chain's signatures), and may change the time, the
initial height, any parameter, the validators and the accounts.

:func:`build_genesis` is the pure constructor that ``blackhole genesis export``
calls with the accounts, validators and app-state records read from a state at
some height; it validates like the loader and returns a :class:`GenesisDoc`.

``python -m genesis.fork IN OUT --chain-id NEW --set consensus.timeout_commit_ms=500``
does the first from the command line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from chain.errors import ChainError, GenesisError
from chain.genesis import (
    AppStateRecord,
    GenesisAccount,
    GenesisDoc,
    GenesisValidator,
    override_params,
    parse_time,
)
from chain.params import AppParams, ConsensusParams
from chain.types import Validator
from genesis.errors import OverrideError

SECTIONS = {"consensus": "consensus_params", "app": "app_params"}


def build_genesis(
    *,
    chain_id: str,
    genesis_time_ms: int,
    validators: Iterable[GenesisValidator | Validator],
    accounts: Iterable[GenesisAccount | tuple[bytes, int]],
    app_state: Iterable[AppStateRecord | tuple[str, bytes]] = (),
    initial_height: int = 1,
    consensus_params: ConsensusParams | None = None,
    app_params: AppParams | None = None,
) -> GenesisDoc:
    """A validated genesis from plain parts (any order); raises :class:`GenesisError`.

    Validators may be :class:`chain.types.Validator` (no name) or
    :class:`GenesisValidator`; accounts ``(address, balance)`` pairs or
    :class:`GenesisAccount`; app-state records ``(kind, data)`` pairs or
    :class:`AppStateRecord`.
    """
    vals = [
        v if isinstance(v, GenesisValidator) else _validator(i, v) for i, v in enumerate(validators)
    ]
    accts = [a if isinstance(a, GenesisAccount) else _account(i, a) for i, a in enumerate(accounts)]
    recs = [r if isinstance(r, AppStateRecord) else _record(i, r) for i, r in enumerate(app_state)]
    return GenesisDoc.build(
        chain_id=chain_id,
        genesis_time_ms=genesis_time_ms,
        initial_height=initial_height,
        consensus_params=consensus_params,
        app_params=app_params,
        validators=vals,
        accounts=accts,
        app_state=recs,
    )


def fork_genesis(
    doc: GenesisDoc,
    *,
    chain_id: str,
    genesis_time_ms: int | None = None,
    initial_height: int | None = None,
    consensus_overrides: Mapping[str, Any] | None = None,
    app_overrides: Mapping[str, Any] | None = None,
    validators: Iterable[GenesisValidator] | None = None,
    accounts: Iterable[GenesisAccount] | None = None,
) -> GenesisDoc:
    """``doc`` under a new chain id with the given changes; raises :class:`GenesisError`."""
    if chain_id == doc.chain_id:
        raise GenesisError("chain_id", "a fork needs a chain id different from the original's")
    return doc.replace(
        chain_id=chain_id,
        genesis_time_ms=doc.genesis_time_ms if genesis_time_ms is None else genesis_time_ms,
        initial_height=doc.initial_height if initial_height is None else initial_height,
        consensus_params=override_params(
            doc.consensus_params, consensus_overrides or {}, "consensus_params"
        ),
        app_params=override_params(doc.app_params, app_overrides or {}, "app_params"),
        validators=doc.validators if validators is None else tuple(validators),
        accounts=doc.accounts if accounts is None else tuple(accounts),
    )


def parse_overrides(items: Iterable[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Parse ``section.name=value`` items (section ``consensus`` or ``app``).

    Values are integers or ``true``/``false``. Returns (consensus, app)
    overrides; raises :class:`OverrideError`. Names and ranges are checked
    when the overrides are applied.
    """
    out: dict[str, dict[str, Any]] = {"consensus": {}, "app": {}}
    for item in items:
        key, sep, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise OverrideError(
                f"{item!r}: expected section.name=value (section: consensus or app)"
            )
        if section not in out:
            raise OverrideError(f"{item!r}: unknown section {section!r} (consensus or app)")
        raw = raw.strip()
        value: Any
        if raw in ("true", "false"):
            value = raw == "true"
        else:
            try:
                value = int(raw.replace("_", ""), 10)
            except ValueError as exc:
                raise OverrideError(f"{item!r}: {raw!r} is not an integer or true/false") from exc
        if name in out[section]:
            raise OverrideError(f"{item!r}: {section}.{name} given twice")
        out[section][name] = value
    return out["consensus"], out["app"]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m genesis.fork", description="Fork a genesis file.")
    ap.add_argument("source", help="existing genesis.json")
    ap.add_argument("output", help="where to write the fork")
    ap.add_argument("--chain-id", required=True, help="the fork's (new) chain id")
    ap.add_argument("--genesis-time", default=None, help="RFC 3339 time, e.g. 2026-01-01T00:00:00Z")
    ap.add_argument("--initial-height", type=int, default=None)
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.NAME=VALUE")
    args = ap.parse_args(argv)
    try:
        src = GenesisDoc.load(args.source)
        consensus, app = parse_overrides(args.set)
        forked = fork_genesis(
            src,
            chain_id=args.chain_id,
            genesis_time_ms=None
            if args.genesis_time is None
            else parse_time("genesis_time", args.genesis_time),
            initial_height=args.initial_height,
            consensus_overrides=consensus,
            app_overrides=app,
        )
        forked.dump(args.output)
    except (ChainError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}: chain {forked.chain_id}, genesis hash {forked.hash().hex()}")
    return 0


def _validator(i: int, v: Any) -> GenesisValidator:
    if not isinstance(v, Validator):
        raise GenesisError(f"validators[{i}]", "expected a Validator or GenesisValidator")
    return GenesisValidator(v.pubkey, v.power, "")


def _account(i: int, a: Any) -> GenesisAccount:
    if type(a) is not tuple or len(a) != 2:
        raise GenesisError(f"accounts[{i}]", "expected (address, balance) or a GenesisAccount")
    return GenesisAccount(a[0], a[1])


def _record(i: int, r: Any) -> AppStateRecord:
    if type(r) is not tuple or len(r) != 2:
        raise GenesisError(f"app_state[{i}]", "expected (kind, data) or an AppStateRecord")
    return AppStateRecord(r[0], r[1])


if __name__ == "__main__":
    sys.exit(main())
