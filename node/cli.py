"""The ``blackhole`` command: init, start, testnet, keys, tx, query, status, genesis.

Every command that fails on purpose (bad input, a node error, a missing file)
prints one ``Error: ...`` line and exits 1; usage mistakes exit 2 (click's
convention). Errors are caught by their packages' base classes only, so
anything else is a bug and crashes with its traceback.

Run ``python -m node.cli --help`` (or ``blackhole --help`` once installed).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn

import click
import msgpack

from chain import crypto
from chain import statekeys as sk
from chain import tx as txm
from chain.errors import ChainError
from chain.genesis import GenesisDoc, GenesisValidator, format_time_ms, override_params, parse_time
from chain.params import AppParams
from consensus.errors import ConsensusError
from genesis.errors import GenesisToolError
from genesis.keyfile import write_key_file
from node import content, txbuild
from node.client import DEFAULT_URL, RpcClient
from node.config import CONFIG_FILE, Config, default_config, load_config, write_config
from node.errors import NodeError
from node.keyring import Keyring, KeyringError, parse_seed_hex
from storage.errors import StorageError
from vm.errors import VMError

DEFAULT_HOME = "~/.blackhole"
USER_ERRORS: tuple[type[Exception], ...] = (
    NodeError, ChainError, StorageError, ConsensusError, VMError,
)  # fmt: skip
"""The packages' error bases: raised on purpose, printed as one line."""
CONTENT_DIR = "content"
PORTS_PER_NODE = 3
"""p2p, RPC, Prometheus: node i of a testnet uses starting_port + 3 * i + (0, 1, 2)."""


class UserError(NodeError):
    """A CLI-level mistake (conflicting options, missing files): the user's fault."""


class BlackholeGroup(click.Group):
    """A group that turns the packages' deliberate errors into one-line failures."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            raise click.ClickException(str(exc) or type(exc).__name__) from exc


def fail(message: str) -> NoReturn:
    raise UserError(message)


# --- shared options ---------------------------------------------------------------


def _home_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--home",
        envvar="BLACKHOLE_HOME",
        default=DEFAULT_HOME,
        show_default=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="Node home directory (env BLACKHOLE_HOME).",
    )(f)


def _node_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--node",
        "node_url",
        envvar="BLACKHOLE_NODE",
        default=None,
        help="RPC URL (default: the home's [rpc] laddr, else http://127.0.0.1:26657; env BLACKHOLE_NODE).",
    )(f)


def _output_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--output", "-o", type=click.Choice(["text", "json"]), default="text", show_default=True,
        help="Output format.",
    )(f)  # fmt: skip


def _home(home: Path) -> Path:
    return Path(os.path.expanduser(str(home)))


def _client(node_url: str | None, home: Path) -> RpcClient:
    if node_url is None:
        cfg_path = _home(home) / CONFIG_FILE
        url = DEFAULT_URL
        if cfg_path.exists():
            laddr = load_config(cfg_path).rpc.laddr
            if laddr:
                url = laddr.replace("0.0.0.0", "127.0.0.1")
        node_url = url
    return RpcClient(node_url)


def _emit(obj: Any, output: str) -> None:
    if output == "json":
        click.echo(json.dumps(obj, indent=2))
        return
    for line in _text_lines(obj, 0):
        click.echo(line)


def _text_lines(obj: Any, depth: int) -> Iterable[str]:
    pad = "  " * depth
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, dict | list) and v:
                yield f"{pad}{k}:"
                yield from _text_lines(v, depth + 1)
            else:
                yield f"{pad}{k}: {_scalar(v)}"
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, dict | list) and v:
                yield f"{pad}-"
                yield from _text_lines(v, depth + 1)
            else:
                yield f"{pad}- {_scalar(v)}"
    else:
        yield f"{pad}{_scalar(obj)}"


def _scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict | list):
        return json.dumps(v)
    return str(v)


def _parse_height(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit():
        fail(f"height must be a non-negative integer, got {value!r}")
    return int(value)


# --- the group ----------------------------------------------------------------------


@click.group(cls=BlackholeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="blackhole", prog_name="blackhole")
def cli() -> None:
    """Blackhole: a content-aware BFT blockchain node."""


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``blackhole = "node.cli:main"``)."""
    _register_light()
    cli.main(args=argv, prog_name="blackhole")


def _register_light() -> None:
    """``blackhole light ...``: the light client's commands (node/light_cli.py)."""
    if "light" not in cli.commands:
        from node.light_cli import group as light_group

        cli.add_command(light_group, "light")


# --- init / start ---------------------------------------------------------------------


def _write_home_config(cfg: Config) -> Path:
    try:
        return write_config(cfg)
    except OSError as exc:
        raise UserError(f"cannot write {cfg.home / CONFIG_FILE}: {exc.strerror or exc}") from exc


@cli.command()
@_home_option
@click.option("--chain-id", default="blackhole-local", show_default=True, help="Chain id of the new genesis.")
@click.option("--moniker", default="node", show_default=True, help="A human name for this node.")
@click.option("--force", is_flag=True, help="Overwrite an existing config, genesis and keys.")
def init(home: Path, chain_id: str, moniker: str, force: bool) -> None:
    """Create a home directory: config, a one-validator genesis, node and validator keys."""
    from genesis.testnet import build_testnet_genesis, load_devnet_template

    home = _home(home)
    cfg = default_config(home)
    cfg = _replace(cfg, base=_replace(cfg.base, moniker=moniker))
    targets = [
        home / CONFIG_FILE,
        cfg.path(cfg.base.genesis_file),
        cfg.path(cfg.base.node_key_file),
        cfg.path(cfg.base.priv_validator_key_file),
    ]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not force:
        fail(f"{existing[0]} exists; refusing to overwrite (use --force)")
    val_key, node_key = crypto.PrivateKey.generate(), crypto.PrivateKey.generate()
    doc = build_testnet_genesis(
        load_devnet_template(), [val_key], chain_id=chain_id,
        genesis_time_ms=int(time.time() * 1000), names=[moniker],
    )  # fmt: skip
    try:
        (home / "config").mkdir(parents=True, exist_ok=True)
        (home / "data").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {home}: {exc.strerror or exc}") from exc
    _write_home_config(cfg)
    doc.dump(cfg.path(cfg.base.genesis_file))
    write_key_file(cfg.path(cfg.base.node_key_file), node_key, overwrite=force)
    write_key_file(cfg.path(cfg.base.priv_validator_key_file), val_key, overwrite=force)
    click.echo(f"initialized {home}")
    click.echo(f"  chain id:  {chain_id}")
    click.echo(f"  node id:   {node_key.public_key.hex()}")
    click.echo(f"  validator: {val_key.public_key.hex()} (also a funded account)")
    click.echo(f"  genesis:   {doc.hash().hex()}")


def _replace(obj: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(obj, **changes)


@cli.command()
@_home_option
def start(home: Path) -> None:
    """Run the node in the foreground until SIGINT or SIGTERM."""
    home = _home(home)
    if not (home / CONFIG_FILE).exists():
        fail(f"{home / CONFIG_FILE} does not exist; run `blackhole init --home {home}` first")
    from node import daemon  # imported here: trio and aioquic load only for `start`

    code = daemon.run(home)
    if code:
        raise SystemExit(code)


# --- testnet --------------------------------------------------------------------------------


@cli.command()
@click.option("--v", "validators", type=click.IntRange(1, 1000), default=4, show_default=True,
              help="Number of validators.")
@click.option("--n", "non_validators", type=click.IntRange(0, 1000), default=0, show_default=True,
              help="Number of non-validating full nodes.")
@click.option("--output-dir", "-o", type=click.Path(path_type=Path), default=Path("./mytestnet"),
              show_default=True, help="Where the node homes go.")
@click.option("--starting-port", type=click.IntRange(1024, 65000), default=26656, show_default=True,
              help=f"Node i listens on starting-port + {PORTS_PER_NODE}*i (p2p), +1 (RPC), +2 (metrics).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address every node listens on.")
@click.option("--chain-id", default=None, help="Chain id (default: the template's).")
@click.option("--template", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Genesis template (default: the shipped devnet template).")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.NAME=VALUE",
              help="Parameter override on the template (consensus.* or app.*); repeatable.")
@click.option("--seed", default=None, help="Derive every key from this string (reproducible testnets).")
@click.option("--overwrite", is_flag=True, help="Replace the node directories in a non-empty output dir.")
def testnet(
    validators: int, non_validators: int, output_dir: Path, starting_port: int, host: str,
    chain_id: str | None, template: Path | None, overrides: tuple[str, ...], seed: str | None,
    overwrite: bool,
) -> None:  # fmt: skip
    """Generate a local testnet: one home per node, shared genesis, peers filled in."""
    from genesis.fork import parse_overrides
    from genesis.testnet import generate_testnet, load_devnet_template

    total = validators + non_validators
    if starting_port + PORTS_PER_NODE * total > 65535:
        fail(f"{total} nodes from port {starting_port} need ports above 65535")
    doc = GenesisDoc.load(template, template=True) if template else load_devnet_template()
    if overrides:
        cons, app = parse_overrides(overrides)
        doc = doc.replace(
            template=True,
            consensus_params=override_params(doc.consensus_params, cons, "consensus_params"),
            app_params=override_params(doc.app_params, app, "app_params"),
        )
    net = generate_testnet(
        output_dir, validators=validators, non_validators=non_validators, chain_id=chain_id,
        template=doc, seed=None if seed is None else seed.encode(), overwrite=overwrite,
    )  # fmt: skip
    ports = [starting_port + PORTS_PER_NODE * i for i in range(total)]
    peers = [f"{n.node_key.public_key.hex()}@{host}:{p}" for n, p in zip(net.nodes, ports, strict=True)]
    for i, node in enumerate(net.nodes):
        base = default_config(node.home)
        mine = tuple(p for j, p in enumerate(peers) if j != i)
        cfg = Config(
            home=node.home,
            base=_replace(base.base, moniker=node.name),
            rpc=_replace(base.rpc, laddr=f"tcp://{host}:{ports[i] + 1}"),
            p2p=_replace(base.p2p, laddr=f"udp://{host}:{ports[i]}", persistent_peers=mine,
                         max_outbound_peers=max(base.p2p.max_outbound_peers, len(mine)),
                         max_inbound_peers=max(base.p2p.max_inbound_peers, len(mine))),
            mempool=base.mempool,
            consensus=base.consensus,
            storage=base.storage,
            instrumentation=_replace(base.instrumentation, prometheus_listen_addr=f"{host}:{ports[i] + 2}"),
        )  # fmt: skip
        _write_home_config(cfg)
    click.echo(f"wrote {total} nodes to {net.output_dir} (chain {net.genesis.chain_id}, "
               f"genesis {net.genesis.hash().hex()[:16]})")  # fmt: skip
    for node, port in zip(net.nodes, ports, strict=True):
        role = "validator" if node.is_validator else "full node"
        click.echo(f"  {node.name}: {role}, p2p udp://{host}:{port}, rpc http://{host}:{port + 1}, "
                   f"home {node.home}")  # fmt: skip


# --- keys -----------------------------------------------------------------------------


@cli.group()
def keys() -> None:
    """Manage the account keys of the keyring in <home>/keyring (0600 files)."""


@keys.command("create")
@_home_option
@click.argument("name")
@click.option("--force", is_flag=True, help="Replace a key of the same name.")
def keys_create(home: Path, name: str, force: bool) -> None:
    """Create a new key NAME."""
    info, _ = Keyring(_home(home)).create(name, overwrite=force)
    click.echo(f"{info.name}: {info.address.hex()}")


@keys.command("list")
@_home_option
@_output_option
def keys_list(home: Path, output: str) -> None:
    """List the keys and their addresses."""
    infos = Keyring(_home(home)).list()
    if output == "json":
        _emit([{"name": i.name, "address": i.address.hex()} for i in infos], output)
        return
    for i in infos:
        click.echo(f"{i.name}\t{i.address.hex()}")


@keys.command("show")
@_home_option
@click.argument("name")
@click.option("--address", "address_only", is_flag=True, help="Print only the address.")
def keys_show(home: Path, name: str, address_only: bool) -> None:
    """Show a key's address (its Ed25519 public key)."""
    info = Keyring(_home(home)).info(name)
    click.echo(info.address.hex() if address_only else f"{info.name}: {info.address.hex()}")


@keys.command("import")
@_home_option
@click.argument("name")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--seed-hex", default=None, help="Import from a 64-hex-digit private seed instead of a file.")
@click.option("--force", is_flag=True, help="Replace a key of the same name.")
def keys_import(home: Path, name: str, file: Path | None, seed_hex: str | None, force: bool) -> None:
    """Import NAME from a key FILE (an export, or a priv_validator_key.json) or --seed-hex."""
    kr = Keyring(_home(home))
    if (file is None) == (seed_hex is None):
        raise click.UsageError("give exactly one of FILE or --seed-hex")
    info = kr.import_file(name, file, overwrite=force) if file else kr.add(
        name, parse_seed_hex(seed_hex or ""), overwrite=force
    )
    click.echo(f"{info.name}: {info.address.hex()}")


@keys.command("export")
@_home_option
@click.argument("name")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file (mode 0600) instead of standard output.")
def keys_export(home: Path, name: str, out: Path | None) -> None:
    """Export a key (WITH its private part) as a key file."""
    kr = Keyring(_home(home))
    if out is None:
        click.echo(kr.export(name), nl=False)
        return
    try:
        write_key_file(out, kr.get(name))
    except GenesisToolError as exc:
        raise KeyringError(str(exc)) from exc
    click.echo(f"wrote {out}")


@keys.command("delete")
@_home_option
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def keys_delete(home: Path, name: str, yes: bool) -> None:
    """Delete a key from the keyring."""
    kr = Keyring(_home(home))
    kr.info(name)
    if not yes:
        click.confirm(f"delete key {name!r}? It cannot be recovered without an export", abort=True)
    kr.delete(name)
    click.echo(f"deleted {name}")


# --- tx -------------------------------------------------------------------------------------


class TxContext:
    """What every tx command needs: the signer, the node, the chain's id and fee rules."""

    def __init__(self, home: Path, node_url: str | None, from_: str, fee: int | None, nonce: int | None,
                 wait: bool, chain_id: str | None, dry_run: bool, output: str) -> None:  # fmt: skip
        self.home = _home(home)
        self.keyring = Keyring(self.home)
        self.key = self.keyring.get(from_)
        self.node_url = node_url
        self.fee = fee
        self.nonce = nonce
        self.wait = wait
        self.dry_run = dry_run
        self.output = output
        self._client: RpcClient | None = None
        self.chain_id, self.app = self._chain(chain_id)

    @property
    def client(self) -> RpcClient:
        if self._client is None:
            self._client = _client(self.node_url, self.home)
        return self._client

    def _chain(self, chain_id: str | None) -> tuple[str, AppParams]:
        """The chain id and app params: from the home's genesis, else the node's."""
        gen_path = self.home / "config" / "genesis.json"
        doc: GenesisDoc | None = None
        if gen_path.exists():
            doc = GenesisDoc.load(gen_path)
        elif not self.dry_run:
            answer = self.client.call("genesis")
            doc = GenesisDoc.from_dict(answer.get("genesis", answer) if isinstance(answer, dict) else answer)
        if doc is None:
            if chain_id is None:
                fail("--dry-run without a genesis in the home needs --chain-id")
            return chain_id, AppParams()
        if chain_id is not None and chain_id != doc.chain_id:
            fail(f"--chain-id {chain_id} differs from the genesis chain id {doc.chain_id}")
        return doc.chain_id, doc.app_params

    def address(self) -> bytes:
        return self.key.public_key.raw

    def next_nonce(self) -> int:
        if self.nonce is not None:
            return self.nonce
        if self.dry_run:
            fail("--dry-run needs --nonce (it does not ask the node)")
        return fetch_nonce(self.client, self.address())

    def send(self, body: txm.AnyBody, *, nonce: int | None = None, extra: dict[str, Any] | None = None) -> Any:
        n = self.next_nonce() if nonce is None else nonce
        tx, data = txbuild.sign(self.key, self.chain_id, n, body, fee=self.fee, app=self.app)
        out: dict[str, Any] = {"hash": txm.tx_hash(data).hex(), "nonce": n, "fee": tx.fee, "bytes": len(data)}
        out.update(extra or {})
        if self.dry_run:
            out["tx"] = data.hex()
        else:
            method = "broadcast_tx_commit" if self.wait else "broadcast_tx_sync"
            out["result"] = self.client.call(method, tx=data.hex())
        _emit(out, self.output)
        problem = rejection(out.get("result"))
        if problem:
            raise UserError(f"transaction {out['hash']} {problem}")
        return out


def rejection(result: Any) -> str | None:
    """Why a broadcast answer means failure, or None: a failed check, or no commit in time."""
    if not isinstance(result, dict):
        return None
    check = result.get("check_tx", result)
    if isinstance(check, dict) and check.get("code", 0):
        return f"rejected: {check.get('log') or check.get('error') or check.get('code')}"
    if result.get("committed") is False:
        return "was accepted but not committed before the timeout"
    return None


def fetch_nonce(client: RpcClient, address: bytes) -> int:
    """The account's next nonce at the latest height, read from the account record."""
    answer = client.call("account", address=address.hex())
    return account_from_answer(answer, address)[1]


def account_from_answer(answer: Any, address: bytes) -> tuple[int, int]:
    """(balance, nonce) from an ``account`` answer: the raw record in ``reads`` is
    authoritative; the JSON view is the fallback."""
    want = sk.account(address).hex()
    for read in answer.get("reads", []) if isinstance(answer, dict) else []:
        if isinstance(read, dict) and read.get("key") == want:
            raw = read.get("value")
            if raw is None:
                return 0, 0
            rec = msgpack.unpackb(bytes.fromhex(raw))
            return int(rec[0]), int(rec[1])
    value = answer.get("value") if isinstance(answer, dict) else None
    if isinstance(value, dict) and "nonce" in value:
        return int(value.get("balance", 0)), int(value["nonce"])
    raise NodeError(f"the node's account answer has no record for {address.hex()}")


def _tx_options(f: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        _home_option,
        _node_option,
        _output_option,
        click.option("--from", "from_", required=True, help="Keyring key that signs (and pays)."),
        click.option("--fee", type=click.IntRange(0), default=None, help="Fee (default: the chain's minimum)."),
        click.option("--nonce", type=click.IntRange(0), default=None, help="Nonce (default: asked from the node)."),
        click.option("--wait", is_flag=True, help="Wait for the commit (broadcast_tx_commit)."),
        click.option("--chain-id", default=None, help="Only with --dry-run when the home has no genesis."),
        click.option("--dry-run", is_flag=True, help="Print the signed transaction instead of sending it."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _ctx(kw: dict[str, Any]) -> TxContext:
    return TxContext(
        kw.pop("home"), kw.pop("node_url"), kw.pop("from_"), kw.pop("fee"), kw.pop("nonce"),
        kw.pop("wait"), kw.pop("chain_id"), kw.pop("dry_run"), kw.pop("output"),
    )  # fmt: skip


def _h32(text: str, name: str) -> bytes:
    return txbuild.parse_hex(text, name, 32)


@cli.group()
def tx() -> None:
    """Build, sign and broadcast transactions (signed with a keyring key)."""


@tx.command("transfer")
@_tx_options
@click.argument("to")
@click.argument("amount", type=click.IntRange(0))
def tx_transfer(to: str, amount: int, **kw: Any) -> None:
    """Send AMOUNT tokens to TO (an address or a key name)."""
    t = _ctx(kw)
    t.send(txbuild.transfer(t.keyring.resolve_address(to), amount))


def _content_dir(home: Path) -> Path:
    d = home / CONTENT_DIR
    try:
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise UserError(f"cannot create {d}: {exc.strerror or exc}") from exc
    return d


def write_secret(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file with mode 0600 (set before any byte is written)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise UserError(f"cannot create {path}: {exc.strerror or exc}") from exc
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def read_content_key(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the content key {path}: {exc}") from exc
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        fail(f"{path}: a content key file holds 64 hex digits")
    return bytes.fromhex(text)


@tx.command("publish-card")
@_tx_options
@click.option("--title", required=True)
@click.option("--type", "content_type", type=click.Choice(txm.CONTENT_TYPES), required=True)
@click.option("--file", "file_", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Encrypt this file; the ciphertext and the content key go to <home>/content/.")
@click.option("--content-root", default=None, help="Root of content encrypted elsewhere (with --size).")
@click.option("--size", type=click.IntRange(1), default=None, help="Ciphertext size (with --content-root).")
@click.option("--chunk-size", type=int, default=content.DEFAULT_CHUNK_SIZE, show_default=True)
@click.option("--tag", "tags", multiple=True)
@click.option("--link", "links", multiple=True, help="Card id or content root to link (hex); repeatable.")
@click.option("--preview", default=None, help="Inline preview text.")
@click.option("--preview-file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None)
@click.option("--preview-hash", default=None, help="BLAKE3 of an off-chain preview (hex).")
@click.option("--parent", default=None, help="Card id this card comments on.")
@click.option("--price", type=click.IntRange(0), default=None, help="Sell keys at this price (no offer if absent).")
@click.option("--supply-cap", type=click.IntRange(0), default=0, show_default=True)
@click.option("--royalty-bps", type=click.IntRange(0, txm.MAX_ROYALTY_BPS), default=0, show_default=True)
@click.option("--delivery-timeout", type=click.IntRange(0), default=0, show_default=True)
@click.option("--rule", default=None, help="A vm.stdlib resale rule (resale, soulbound, hold_blocks, ...).")
@click.option("--rule-param", "rule_params", type=click.IntRange(0), multiple=True)
def tx_publish_card(
    title: str, content_type: str, file_: Path | None, content_root: str | None, size: int | None,
    chunk_size: int, tags: tuple[str, ...], links: tuple[str, ...], preview: str | None,
    preview_file: Path | None, preview_hash: str | None, parent: str | None, price: int | None,
    supply_cap: int, royalty_bps: int, delivery_timeout: int, rule: str | None,
    rule_params: tuple[int, ...], **kw: Any,
) -> None:  # fmt: skip
    """Publish a hash card (encrypting --file first if given)."""
    t = _ctx(kw)
    if (file_ is None) == (content_root is None):
        raise click.UsageError("give exactly one of --file or --content-root")
    if preview is not None and preview_file is not None:
        raise click.UsageError("give --preview or --preview-file, not both")
    extra: dict[str, Any] = {}
    if file_ is not None:
        content.check_chunk_size(chunk_size)
        key = content.generate_key()
        d = _content_dir(t.home)
        tmp = d / f".encrypting-{os.getpid()}"
        info = content.encrypt_file(file_, tmp, key, chunk_size)
        ct_path = d / f"{info.root.hex()}.bin"
        key_path = d / f"{info.root.hex()}.key"
        tmp.replace(ct_path)
        write_secret(key_path, key.hex().encode() + b"\n")
        root, csize = info.root, info.size
        extra.update(content_root=root.hex(), ciphertext=str(ct_path), content_key=str(key_path))
    else:
        if size is None:
            raise click.UsageError("--content-root needs --size")
        root, csize = _h32(content_root or "", "content root"), size
    if preview_file is not None:
        try:
            preview_bytes = preview_file.read_bytes()
        except OSError as exc:
            raise UserError(f"cannot read {preview_file}: {exc.strerror or exc}") from exc
    else:
        preview_bytes = (preview or "").encode()
    offer = None
    if price is not None:
        offer = txbuild.key_offer(
            price, supply_cap=supply_cap, royalty_bps=royalty_bps, delivery_timeout=delivery_timeout,
            rule=rule, params=rule_params,
        )  # fmt: skip
    elif rule is not None:
        raise click.UsageError("--rule needs --price (a key offer)")
    body = txbuild.publish_card(
        content_root=root, size=csize, chunk_size=chunk_size, content_type=content_type, title=title,
        tags=tags, links=[_h32(x, "link") for x in links], preview=preview_bytes,
        preview_hash=b"" if preview_hash is None else _h32(preview_hash, "preview hash"),
        parent=b"" if parent is None else _h32(parent, "parent"), offer=offer,
    )  # fmt: skip
    nonce = t.next_nonce()
    extra["card_id"] = txm.compute_card_id(t.address(), nonce).hex()
    t.send(body, nonce=nonce, extra=extra)


@tx.command("update-card")
@_tx_options
@click.argument("card_id")
@click.option("--title", required=True)
@click.option("--link", "links", multiple=True)
@click.option("--preview", default="")
@click.option("--preview-hash", default=None)
def tx_update_card(card_id: str, title: str, links: tuple[str, ...], preview: str, preview_hash: str | None,
                   **kw: Any) -> None:  # fmt: skip
    """Change a card's title, links and preview (creator only)."""
    t = _ctx(kw)
    t.send(txbuild.update_card(
        _h32(card_id, "card id"), title=title, links=[_h32(x, "link") for x in links],
        preview=preview.encode(), preview_hash=b"" if preview_hash is None else _h32(preview_hash, "preview hash"),
    ))  # fmt: skip


@tx.command("react")
@_tx_options
@click.argument("card_id")
@click.argument("reaction", type=click.Choice(txm.REACTIONS))
def tx_react(card_id: str, reaction: str, **kw: Any) -> None:
    """React to a card ("none" withdraws your reaction)."""
    t = _ctx(kw)
    t.send(txbuild.react(_h32(card_id, "card id"), reaction))


@tx.command("follow")
@_tx_options
@click.argument("creator")
def tx_follow(creator: str, **kw: Any) -> None:
    """Follow a creator (address or key name)."""
    t = _ctx(kw)
    t.send(txbuild.follow(t.keyring.resolve_address(creator)))


@tx.command("unfollow")
@_tx_options
@click.argument("creator")
def tx_unfollow(creator: str, **kw: Any) -> None:
    """Stop following a creator."""
    t = _ctx(kw)
    t.send(txbuild.unfollow(t.keyring.resolve_address(creator)))


@tx.command("announce-seed")
@_tx_options
@click.argument("content_root")
@click.option("--address", "addresses", multiple=True, required=True, help="QUIC host:port; repeatable.")
@click.option("--ranges", default="0-1", show_default=True, help="Chunk ranges held, START-STOP,...")
@click.option("--ttl", type=click.IntRange(1), default=1000, show_default=True,
              help="Heights the entry lives (expiry = latest height + ttl).")
@click.option("--expiry-height", type=click.IntRange(1), default=None, help="Explicit expiry height.")
def tx_announce_seed(content_root: str, addresses: tuple[str, ...], ranges: str, ttl: int,
                     expiry_height: int | None, **kw: Any) -> None:  # fmt: skip
    """Announce that you serve CONTENT_ROOT at these addresses."""
    t = _ctx(kw)
    if expiry_height is None:
        if t.dry_run:
            raise click.UsageError("--dry-run needs --expiry-height")
        expiry_height = latest_height(t.client) + ttl
    t.send(txbuild.announce(_h32(content_root, "content root"), addresses, txbuild.parse_ranges(ranges),
                            expiry_height))  # fmt: skip


def latest_height(client: RpcClient) -> int:
    return int(client.call("status")["sync_info"]["latest_block_height"])


@tx.command("withdraw-seed")
@_tx_options
@click.argument("content_root")
def tx_withdraw_seed(content_root: str, **kw: Any) -> None:
    """Withdraw your seeder entry for CONTENT_ROOT."""
    t = _ctx(kw)
    t.send(txbuild.withdraw(_h32(content_root, "content root")))


@tx.command("buy-key")
@_tx_options
@click.argument("card_id")
@click.option("--max-price", type=click.IntRange(0), required=True, help="Pay at most this much.")
@click.option("--serial", type=click.IntRange(0), default=0, show_default=True,
              help="0: the next primary sale; else a listed key's serial.")
def tx_buy_key(card_id: str, max_price: int, serial: int, **kw: Any) -> None:
    """Pay into escrow for a key of CARD_ID; the seller then delivers it sealed to you."""
    t = _ctx(kw)
    t.send(txbuild.buy_key(_h32(card_id, "card id"), max_price, serial))


def escrow_buyer(client: RpcClient, card_id: bytes, serial: int) -> bytes:
    """The buyer of an open escrow, read from the raw state record."""
    key = sk.escrow(card_id, serial)
    answer = client.call("query", key=key.hex())
    for read in answer.get("reads", []):
        if read.get("key") == key.hex():
            if read.get("value") is None:
                break
            return bytes(msgpack.unpackb(bytes.fromhex(read["value"]))[0])
    raise UserError(f"no open escrow for card {card_id.hex()} serial {serial}")


def _content_key_arg(home: Path, given: Path | None, card_root: str | None) -> bytes:
    if given is not None:
        return read_content_key(given)
    if card_root is None:
        raise click.UsageError("give --content-key FILE or --content-root ROOT (key in <home>/content/)")
    return read_content_key(home / CONTENT_DIR / f"{_h32(card_root, 'content root').hex()}.key")


@tx.command("deliver-key")
@_tx_options
@click.argument("card_id")
@click.argument("serial", type=click.IntRange(1))
@click.option("--buyer", default=None, help="The buyer's address (default: read from the escrow).")
@click.option("--content-key", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--content-root", default=None, help="Find the key in <home>/content/ by content root.")
def tx_deliver_key(card_id: str, serial: int, buyer: str | None, content_key: Path | None,
                   content_root: str | None, **kw: Any) -> None:  # fmt: skip
    """Deliver the content key sealed to the buyer of an open escrow (releases payment)."""
    t = _ctx(kw)
    cid = _h32(card_id, "card id")
    key = _content_key_arg(t.home, content_key, content_root)
    if buyer is not None:
        to = t.keyring.resolve_address(buyer)
    elif t.dry_run:
        raise click.UsageError("--dry-run needs --buyer")
    else:
        to = escrow_buyer(t.client, cid, serial)
    t.send(txbuild.deliver_key(cid, serial, to, key), extra={"buyer": to.hex()})


@tx.command("list-key")
@_tx_options
@click.argument("card_id")
@click.argument("serial", type=click.IntRange(1))
@click.argument("price", type=click.IntRange(0))
def tx_list_key(card_id: str, serial: int, price: int, **kw: Any) -> None:
    """Offer your key for resale at PRICE (0 withdraws the listing)."""
    t = _ctx(kw)
    t.send(txbuild.list_key(_h32(card_id, "card id"), serial, price))


@tx.command("transfer-key")
@_tx_options
@click.argument("card_id")
@click.argument("serial", type=click.IntRange(1))
@click.argument("to")
@click.option("--content-key", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--content-root", default=None)
def tx_transfer_key(card_id: str, serial: int, to: str, content_key: Path | None, content_root: str | None,
                    **kw: Any) -> None:  # fmt: skip
    """Give your key to TO, with the content key sealed to them."""
    t = _ctx(kw)
    key = _content_key_arg(t.home, content_key, content_root)
    t.send(txbuild.transfer_key(_h32(card_id, "card id"), serial, t.keyring.resolve_address(to), key))


@tx.command("bond")
@_tx_options
@click.argument("amount", type=click.IntRange(1))
def tx_bond(amount: int, **kw: Any) -> None:
    """Lock AMOUNT as your validator stake."""
    t = _ctx(kw)
    t.send(txbuild.bond(amount))


@tx.command("unbond")
@_tx_options
@click.argument("amount", type=click.IntRange(1))
def tx_unbond(amount: int, **kw: Any) -> None:
    """Unlock AMOUNT of stake."""
    t = _ctx(kw)
    t.send(txbuild.unbond(amount))


@tx.command("generic")
@_tx_options
@click.argument("kind")
@click.option("--payload", default="", help="Payload text (UTF-8).")
@click.option("--payload-hex", default=None, help="Payload bytes as hex.")
@click.option("--payload-file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None)
def tx_generic(kind: str, payload: str, payload_hex: str | None, payload_file: Path | None, **kw: Any) -> None:
    """A generic application transaction of KIND with an opaque payload."""
    t = _ctx(kw)
    if payload_hex is not None and payload_file is not None:
        raise click.UsageError("give at most one of --payload, --payload-hex, --payload-file")
    if payload_hex is not None:
        data = txbuild.parse_hex(payload_hex, "payload")
    elif payload_file is not None:
        data = payload_file.read_bytes()
    else:
        data = payload.encode()
    t.send(txbuild.generic(kind.encode(), data))


# --- content ----------------------------------------------------------------------------------


@cli.group("content")
def content_group() -> None:
    """Encrypt content, open a key you own and decrypt (docs/content.md)."""


@content_group.command("encrypt")
@_home_option
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--chunk-size", type=int, default=content.DEFAULT_CHUNK_SIZE, show_default=True)
@_output_option
def content_encrypt(home: Path, file: Path, chunk_size: int, output: str) -> None:
    """Encrypt FILE into <home>/content/<root>.bin with a new key in <root>.key (0600)."""
    content.check_chunk_size(chunk_size)
    d = _content_dir(_home(home))
    key = content.generate_key()
    tmp = d / f".encrypting-{os.getpid()}"
    info = content.encrypt_file(file, tmp, key, chunk_size)
    ct_path, key_path = d / f"{info.root.hex()}.bin", d / f"{info.root.hex()}.key"
    tmp.replace(ct_path)
    write_secret(key_path, key.hex().encode() + b"\n")
    _emit({"content_root": info.root.hex(), "size": info.size, "chunk_size": info.chunk_size,
           "chunks": info.chunks, "ciphertext": str(ct_path), "content_key": str(key_path)}, output)  # fmt: skip


@content_group.command("unseal")
@_home_option
@_node_option
@click.argument("card_id")
@click.argument("serial", type=click.IntRange(1))
@click.option("--from", "from_", required=True, help="Keyring key that owns the key token.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the content key (default <home>/content/<root>.key).")
def content_unseal(home: Path, node_url: str | None, card_id: str, serial: int, from_: str, out: Path | None) -> None:
    """Open the content key sealed to you in key token SERIAL of CARD_ID."""
    h = _home(home)
    key = Keyring(h).get(from_)
    client = _client(node_url, h)
    cid = _h32(card_id, "card id")
    token = client.call("key", card_id=cid.hex(), serial=serial).get("value")
    if not token:
        fail(f"card {cid.hex()} has no key {serial}")
    if token.get("owner") != key.public_key.hex():
        fail(f"key {serial} of card {cid.hex()} belongs to {token.get('owner')}, not to {from_}")
    ckey = crypto.unseal(key, bytes.fromhex(token["sealed_key"]))
    card = client.call("card", card_id=cid.hex()).get("value") or {}
    target = out or _content_dir(h) / f"{card.get('content_root', cid.hex())}.key"
    write_secret(target, ckey.hex().encode() + b"\n")
    click.echo(f"wrote the content key of card {cid.hex()} to {target}")


@content_group.command("decrypt")
@click.argument("ciphertext", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", "key_file", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Content key file (64 hex digits).")
@click.option("--chunk-size", type=int, default=content.DEFAULT_CHUNK_SIZE, show_default=True)
@click.option("--root", default=None, help="Check the ciphertext against this content root (the card's).")
def content_decrypt(ciphertext: Path, out: Path, key_file: Path, chunk_size: int, root: str | None) -> None:
    """Decrypt CIPHERTEXT to OUT, authenticating every chunk (OUT is removed on failure)."""
    expected = None if root is None else _h32(root, "content root")
    info = content.decrypt_file(ciphertext, out, read_content_key(key_file), chunk_size, expected_root=expected)
    click.echo(f"decrypted {info.chunks} chunks to {out} (content root {info.root.hex()})")


# --- query --------------------------------------------------------------------------------


def _query_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed([
        _home_option,
        _node_option,
        _output_option,
        click.option("--height", default=None, help="State at this height (default: latest)."),
        click.option("--prove", is_flag=True, help="Ask for proofs against the app hash."),
    ]):  # fmt: skip
        f = opt(f)
    return f


def _q(kw: dict[str, Any], method: str, **params: Any) -> Any:
    client = _client(kw["node_url"], kw["home"])
    height = _parse_height(kw.get("height"))
    if "height" in kw:
        params["height"] = height
    if kw.get("prove"):
        params["prove"] = True
    return client.call(method, **params)


def _show_state(kw: dict[str, Any], answer: Any) -> None:
    """State answers print their value; --prove or json output prints the whole answer."""
    if kw["output"] == "json" or kw.get("prove"):
        _emit(answer, kw["output"])
        return
    value = answer.get("value") if isinstance(answer, dict) else answer
    if value is None:
        raise UserError("not found")
    click.echo(f"height: {answer.get('height')}")
    _emit(value, "text")


@cli.group()
def query() -> None:
    """Read chain state and blocks from a node."""


@query.command("account")
@_query_options
@click.argument("address")
def q_account(address: str, **kw: Any) -> None:
    """An account's balance, nonce and stake (ADDRESS or a key name)."""
    addr = Keyring(_home(kw["home"])).resolve_address(address)
    _show_state(kw, _q(kw, "account", address=addr.hex()))


@query.command("card")
@_query_options
@click.argument("card_id")
def q_card(card_id: str, **kw: Any) -> None:
    """A hash card."""
    _show_state(kw, _q(kw, "card", card_id=_h32(card_id, "card id").hex()))


def card_ids_of(value: Any) -> list[str]:
    """Card ids from a feed page view: a list of ids or of cards, or an object holding one."""
    if isinstance(value, dict):
        for name in ("items", "cards", "card_ids", "ids"):
            if name in value:
                return card_ids_of(value[name])
        return []
    out = []
    for item in value or []:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and isinstance(item.get("card_id"), str):
            out.append(item["card_id"])
    return out


def card_matches(card: dict[str, Any], *, free: bool | None, from_height: int | None, to_height: int | None,
                 creator: str | None, content_type: str | None, tag: str | None) -> bool:  # fmt: skip
    """The feed filters applied to one card view."""
    offer = card.get("offer")
    is_free = card.get("free")
    if not isinstance(is_free, bool):
        is_free = offer is None or (isinstance(offer, dict) and offer.get("price", 0) == 0)
    if free is not None and is_free != free:
        return False
    created = card.get("created_height")
    if from_height is not None and (created is None or created < from_height):
        return False
    if to_height is not None and (created is None or created > to_height):
        return False
    if creator is not None and card.get("creator") != creator:
        return False
    if content_type is not None and card.get("content_type") != content_type:
        return False
    return tag is None or tag in (card.get("tags") or [])


@query.command("feed")
@_query_options
@click.option("--type", "content_type", type=click.Choice(txm.CONTENT_TYPES), default=None)
@click.option("--creator", default=None, help="Creator address or key name.")
@click.option("--tag", default=None)
@click.option("--free/--paid", "free", default=None, help="Only cards without / with a priced key offer.")
@click.option("--from-height", type=click.IntRange(0), default=None, help="Created at or after this height.")
@click.option("--to-height", type=click.IntRange(0), default=None, help="Created at or before this height.")
@click.option("--start", type=click.IntRange(0), default=None, help="First feed position of the page.")
@click.option("--limit", type=click.IntRange(1, 100), default=None, help="Cards per page (node default 30).")
def q_feed(content_type: str | None, creator: str | None, tag: str | None, free: bool | None,
           from_height: int | None, to_height: int | None, start: int | None, limit: int | None, **kw: Any) -> None:  # fmt: skip
    """Browse cards by type, creator or tag; the other filters apply to the page's cards."""
    creator_hex = None if creator is None else Keyring(_home(kw["home"])).resolve_address(creator).hex()
    if content_type is not None:
        feed, name = "type", content_type
    elif creator_hex is not None:
        feed, name = "creator", creator_hex
    elif tag is not None:
        feed, name = "tag", tag
    else:
        raise click.UsageError("choose a feed: --type, --creator or --tag")
    paid = "any" if free is None else ("free" if free else "paid")
    page = _q(kw, "cards", feed=feed, name=name, start=start, limit=limit, paid=paid,
              from_height=from_height, to_height=to_height)  # fmt: skip
    value = page.get("value") or {}
    height = page.get("height")
    ids = card_ids_of(value.get("items", []))
    cards = [c for c in value.get("cards", []) if isinstance(c, dict)]
    # the node filters by price and height; a second feed criterion is applied here
    kept = [
        c for c in cards
        if card_matches(c, free=free, from_height=from_height, to_height=to_height, creator=creator_hex,
                        content_type=content_type, tag=tag)
    ]  # fmt: skip
    if kw["output"] == "json":
        _emit({"height": height, "feed": feed, "name": name, "cards": kept}, "json")
        return
    click.echo(f"height: {height}  feed: {feed}={name}  {len(kept)} of {len(ids)} cards")
    for c in kept:
        offer = c.get("offer")
        price = "free" if not offer else f"price {offer.get('price') if isinstance(offer, dict) else offer}"
        click.echo(f"{c.get('card_id')}  h={c.get('created_height')}  {c.get('content_type')}  {price}  "
                   f"{c.get('title')!r}")  # fmt: skip


@query.command("seeders")
@_query_options
@click.argument("content_root")
def q_seeders(content_root: str, **kw: Any) -> None:
    """Who serves CONTENT_ROOT."""
    _show_state(kw, _q(kw, "seeders", content_root=_h32(content_root, "content root").hex()))


@query.command("key")
@_query_options
@click.argument("card_id")
@click.argument("serial", type=click.IntRange(1))
def q_key(card_id: str, serial: int, **kw: Any) -> None:
    """A key token of a card: owner, acquisition, sealed key."""
    _show_state(kw, _q(kw, "key", card_id=_h32(card_id, "card id").hex(), serial=serial))


@query.command("keys-of")
@_query_options
@click.argument("owner")
def q_keys_of(owner: str, **kw: Any) -> None:
    """The key tokens an account owns."""
    addr = Keyring(_home(kw["home"])).resolve_address(owner)
    _show_state(kw, _q(kw, "keys_of", owner=addr.hex()))


@query.command("may-decrypt")
@_query_options
@click.argument("address")
@click.argument("card_id")
def q_may_decrypt(address: str, card_id: str, **kw: Any) -> None:
    """Whether ADDRESS is entitled to decrypt CARD_ID."""
    addr = Keyring(_home(kw["home"])).resolve_address(address)
    _show_state(kw, _q(kw, "may_decrypt", address=addr.hex(), card_id=_h32(card_id, "card id").hex()))


@query.command("block")
@_home_option
@_node_option
@_output_option
@click.option("--height", default=None, help="Block height (default: latest).")
@click.option("--hash", "block_hash", default=None, help="Block hash instead of a height.")
def q_block(home: Path, node_url: str | None, output: str, height: str | None, block_hash: str | None) -> None:
    """A block (its decoded header and lane counts; --output json adds the bytes)."""
    if height is not None and block_hash is not None:
        raise click.UsageError("give --height or --hash, not both")
    client = _client(node_url, home)
    params: dict[str, Any] = {"height": _parse_height(height)}
    if block_hash is not None:
        params = {"hash": _h32(block_hash, "block hash").hex()}
    answer = client.call("block", **params)
    if output == "text" and isinstance(answer, dict):
        answer = {k: v for k, v in answer.items() if k != "block_bytes"}
    _emit(answer, output)


@query.command("tx")
@_home_option
@_node_option
@_output_option
@click.argument("tx_hash")
def q_tx(home: Path, node_url: str | None, output: str, tx_hash: str) -> None:
    """A committed transaction by hash."""
    _emit(_client(node_url, home).call("tx", hash=_h32(tx_hash, "tx hash").hex()), output)


@cli.command()
@_home_option
@_node_option
@_output_option
def status(home: Path, node_url: str | None, output: str) -> None:
    """The node's identity, latest block and validator info."""
    answer = _client(node_url, home).call("status")
    if output == "json":
        _emit(answer, "json")
        return
    ni, si = answer.get("node_info", {}), answer.get("sync_info", {})
    click.echo(f"node:    {ni.get('moniker')} {ni.get('id')} ({ni.get('chain_id')}, {ni.get('version')})")
    click.echo(f"height:  {si.get('latest_block_height')} "
               f"(earliest {si.get('earliest_block_height')}, catching up: {si.get('catching_up')})")  # fmt: skip
    ms = si.get("latest_block_time_ms")
    click.echo(f"time:    {format_time_ms(ms) if isinstance(ms, int) else ms}")
    click.echo(f"block:   {si.get('latest_block_hash')}")
    click.echo(f"app:     {si.get('latest_app_hash')}")
    vi = answer.get("validator_info") or {}
    click.echo(f"validator: {vi.get('pub_key')} power {vi.get('voting_power')}")


# --- genesis ---------------------------------------------------------------------------------------


@cli.group("genesis")
def genesis_group() -> None:
    """Validate, fork and export genesis files."""


@genesis_group.command("validate")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def genesis_validate(file: Path) -> None:
    """Check a genesis file; prints its chain id and hash."""
    doc = GenesisDoc.load(file)
    click.echo(f"{file}: valid; chain {doc.chain_id}, {len(doc.validators)} validators, "
               f"{len(doc.accounts)} accounts, hash {doc.hash().hex()}")  # fmt: skip


@genesis_group.command("fork")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--chain-id", required=True, help="The fork's new chain id.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.NAME=VALUE",
              help="consensus.NAME=V or app.NAME=V; repeatable.")
@click.option("--genesis-time", default=None, help="RFC 3339 time (default: the original's).")
@click.option("--initial-height", type=click.IntRange(1), default=None)
@click.option("--force", is_flag=True, help="Overwrite OUT.")
def genesis_fork(file: Path, out: Path, chain_id: str, overrides: tuple[str, ...], genesis_time: str | None,
                 initial_height: int | None, force: bool) -> None:  # fmt: skip
    """Write a fork of FILE to OUT: a new chain id and parameter overrides."""
    from genesis.fork import fork_genesis, parse_overrides

    if out.exists() and not force:
        fail(f"{out} exists (use --force)")
    cons, app = parse_overrides(overrides)
    doc = fork_genesis(
        GenesisDoc.load(file), chain_id=chain_id,
        genesis_time_ms=None if genesis_time is None else parse_time("genesis_time", genesis_time),
        initial_height=initial_height, consensus_overrides=cons, app_overrides=app,
    )  # fmt: skip
    doc.dump(out)
    click.echo(f"wrote {out}: chain {doc.chain_id}, hash {doc.hash().hex()}")


@genesis_group.command("export")
@_home_option
@click.option("--height", type=click.IntRange(0), default=None, help="State version (default: latest).")
@click.option("--chain-id", required=True, help="The new chain's id (must differ: nonces restart at 0).")
@click.option("--force", is_flag=True, help="Overwrite OUT.")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
def genesis_export(home: Path, height: int | None, chain_id: str, force: bool, out: Path) -> None:
    """Write the state at --height as a new genesis (the node must be stopped)."""
    from chain.state import State, export_state
    from genesis.fork import build_genesis
    from storage.kv import LevelKV
    from storage.state import StateTree

    home = _home(home)
    if out.exists() and not force:
        fail(f"{out} exists (use --force)")
    cfg = load_config(home / CONFIG_FILE)
    old = GenesisDoc.load(cfg.path(cfg.base.genesis_file))
    if chain_id == old.chain_id:
        fail("the exported genesis needs a new chain id: nonces restart at 0, so old signatures would replay")
    kv = LevelKV.open(cfg.path(cfg.storage.db_path))
    try:
        tree = StateTree(kv)
        state = State.from_genesis(tree, old)
        version = height if height is not None else tree.latest_version
        if version is None:
            fail("the node's database holds no state")
        meta = tree.get(sk.META, version)
        if meta is None:
            fail(f"no state at height {version}")
        time_ms = int(msgpack.unpackb(meta)[1])
        gs = export_state(state, version)
    finally:
        kv.close()
    names = {v.pubkey: v.name for v in old.validators}
    doc = build_genesis(
        chain_id=chain_id, genesis_time_ms=time_ms, initial_height=version + 1,
        validators=[GenesisValidator(k, p, names.get(k, "")) for k, p in gs.validators],
        accounts=gs.accounts, app_state=gs.app_state(),
        consensus_params=old.consensus_params, app_params=old.app_params,
    )  # fmt: skip
    doc.dump(out)
    click.echo(f"wrote {out}: state of {old.chain_id} at height {version} as chain {chain_id} "
               f"from height {version + 1}; {len(gs.accounts)} accounts, {len(gs.validators)} validators, "
               f"{len(gs.records)} records, hash {doc.hash().hex()}")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
