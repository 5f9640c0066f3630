"""Generate a local testnet: validator keys, node keys and one shared genesis.

Like ``cometbft testnet``: for N validators (and optionally M non-validating
nodes) it writes::

    <out>/genesis.json                      the shared genesis
    <out>/node<i>/config/genesis.json       a copy per node
    <out>/node<i>/config/priv_validator_key.json   mode 0600
    <out>/node<i>/config/node_key.json             mode 0600
    <out>/node<i>/data/                     empty, for the node's stores

Validators take their parameters from a template (the default devnet genesis
shipped as genesis/devnet.json unless another is given); each validator's key
is also a funded account. ``seed`` makes every key deterministic (tests,
reproducible demos); without it keys come from the OS's randomness.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import blake3

from chain.crypto import PrivateKey
from chain.errors import ChainError, GenesisError
from chain.genesis import GenesisAccount, GenesisDoc, GenesisValidator
from genesis.errors import GenesisToolError, OutputExistsError
from genesis.keyfile import write_key_file

DEFAULT_POWER = 10
DEFAULT_BALANCE = 1_000_000_000_000
MAX_NODES = 1000


def load_devnet_template() -> GenesisDoc:
    """The shipped devnet genesis template (no validators; a testnet fills them in)."""
    text = resources.files("genesis").joinpath("devnet.json").read_text(encoding="utf-8")
    return GenesisDoc.from_json(text, template=True)


@dataclass(frozen=True, slots=True)
class TestnetNode:
    """One generated node."""

    name: str
    """Directory name and validator name, "node<i>"."""
    home: Path
    """The node's home directory."""
    validator_key: PrivateKey
    """Consensus key (also its funded account when a validator)."""
    node_key: PrivateKey
    """p2p identity key."""
    is_validator: bool
    """Whether the key is in the genesis validator set."""


@dataclass(frozen=True, slots=True)
class Testnet:
    """What :func:`generate_testnet` wrote."""

    output_dir: Path
    genesis: GenesisDoc
    nodes: tuple[TestnetNode, ...]


def _derive_key(seed: bytes, role: str, index: int) -> PrivateKey:
    return PrivateKey(
        blake3.blake3(seed + role.encode() + b"\x00" + index.to_bytes(4, "big")).digest()
    )


def build_testnet_genesis(
    template: GenesisDoc,
    validator_keys: Sequence[PrivateKey],
    *,
    chain_id: str | None = None,
    genesis_time_ms: int,
    power: int = DEFAULT_POWER,
    balance: int = DEFAULT_BALANCE,
    names: Sequence[str] | None = None,
) -> GenesisDoc:
    """The template with these validators added (each funded with ``balance``). Pure."""
    names = names if names is not None else [f"node{i}" for i in range(len(validator_keys))]
    validators = [
        *template.validators,
        *(
            GenesisValidator(k.public_key.raw, power, n)
            for k, n in zip(validator_keys, names, strict=True)
        ),
    ]
    accounts = [
        *template.accounts,
        *(GenesisAccount(k.public_key.raw, balance) for k in validator_keys),
    ]
    return template.replace(
        chain_id=chain_id if chain_id is not None else template.chain_id,
        genesis_time_ms=genesis_time_ms,
        validators=validators,
        accounts=accounts,
    )


def generate_testnet(
    output_dir: str | Path,
    *,
    validators: int = 4,
    non_validators: int = 0,
    chain_id: str | None = None,
    template: GenesisDoc | None = None,
    genesis_time_ms: int | None = None,
    power: int = DEFAULT_POWER,
    balance: int = DEFAULT_BALANCE,
    seed: bytes | None = None,
    overwrite: bool = False,
) -> Testnet:
    """Write a testnet's keys and genesis under ``output_dir`` (layout in the module doc).

    Raises :class:`GenesisError` for bad counts or a genesis that does not
    validate, :class:`OutputExistsError` if ``output_dir`` is non-empty and
    ``overwrite`` is false (with ``overwrite`` only the generated node
    directories are replaced), :class:`genesis.errors.KeyFileError` on I/O.
    """
    if type(validators) is not int or not 1 <= validators <= MAX_NODES:
        raise GenesisError("validators", f"a testnet has 1..{MAX_NODES} validators")
    if type(non_validators) is not int or not 0 <= non_validators <= MAX_NODES - validators:
        raise GenesisError("non_validators", f"a testnet has at most {MAX_NODES} nodes")
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(f"{out} is not empty")
    template = template if template is not None else load_devnet_template()
    when = genesis_time_ms if genesis_time_ms is not None else int(time.time() * 1000)
    total = validators + non_validators
    if seed is None:
        val_keys = [PrivateKey.generate() for _ in range(total)]
        node_keys = [PrivateKey.generate() for _ in range(total)]
    else:
        val_keys = [_derive_key(seed, "validator", i) for i in range(total)]
        node_keys = [_derive_key(seed, "node", i) for i in range(total)]
    names = [f"node{i}" for i in range(total)]
    doc = build_testnet_genesis(
        template,
        val_keys[:validators],
        chain_id=chain_id,
        genesis_time_ms=when,
        power=power,
        balance=balance,
        names=names[:validators],
    )
    nodes = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        doc.dump(out / "genesis.json")
        for i in range(total):
            home = out / names[i]
            if home.exists() and overwrite:
                shutil.rmtree(home)
            (home / "config").mkdir(parents=True)
            (home / "data").mkdir()
            doc.dump(home / "config" / "genesis.json")
            write_key_file(home / "config" / "priv_validator_key.json", val_keys[i])
            write_key_file(home / "config" / "node_key.json", node_keys[i])
            nodes.append(TestnetNode(names[i], home, val_keys[i], node_keys[i], i < validators))
    except OSError as exc:
        raise GenesisToolError(f"cannot write the testnet under {out}: {exc}") from exc
    return Testnet(out, doc, tuple(nodes))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m genesis.testnet --v 4 --o ./mytestnet``: the node CLI wraps the same call."""
    ap = argparse.ArgumentParser(
        prog="python -m genesis.testnet", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--v", type=int, default=4, help="number of validators")
    ap.add_argument("--n", type=int, default=0, help="number of non-validating nodes")
    ap.add_argument("--o", default="./mytestnet", help="output directory")
    ap.add_argument("--chain-id", default=None)
    ap.add_argument(
        "--template", default=None, help="genesis template (default: genesis/devnet.json)"
    )
    ap.add_argument("--power", type=int, default=DEFAULT_POWER)
    ap.add_argument("--balance", type=int, default=DEFAULT_BALANCE)
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    try:
        template = GenesisDoc.load(args.template, template=True) if args.template else None
        net = generate_testnet(
            args.o,
            validators=args.v,
            non_validators=args.n,
            chain_id=args.chain_id,
            template=template,
            power=args.power,
            balance=args.balance,
            overwrite=args.overwrite,
        )
    except ChainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"wrote {len(net.nodes)} nodes and genesis {net.genesis.hash().hex()} to {net.output_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
