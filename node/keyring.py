"""The keyring: named account keys kept as 0600 files in ``<home>/keyring/``.

Each key is ``<name>.json`` in the key-file format of genesis.keyfile
(``{"type": "ed25519", "pub_key", "priv_key"}``), written with mode 0600 in a
0700 directory. Keys are not encrypted at rest: this keyring is for testnets
and operators who protect the home directory (like Cosmos's "test" backend).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from chain.crypto import PrivateKey
from chain.errors import InvalidKey
from genesis.errors import KeyFileError
from genesis.keyfile import key_file_json, read_key_file, write_key_file
from node.errors import NodeError

KEYRING_DIR = "keyring"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class KeyringError(NodeError):
    """A keyring operation failed: bad name, missing or existing key, unreadable file.
    The user's fault (or the file system's); the message says which."""


class KeyNotFound(KeyringError):
    """No key of that name (or address) is in the keyring."""


class KeyExists(KeyringError):
    """A key of that name is already in the keyring and overwriting was not asked for."""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    name: str
    address: bytes
    """The account address (the Ed25519 public key)."""


def check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise KeyringError(
            f"key name must be 1-64 letters, digits, '.', '_' or '-' (not starting with . _ -), got {name!r}"
        )


def parse_seed_hex(text: str) -> PrivateKey:
    """A private key from its 64-hex-digit seed; KeyringError otherwise."""
    raw = text.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", raw):
        raise KeyringError("a private key is 64 hex digits (its 32-byte seed)")
    try:
        return PrivateKey(bytes.fromhex(raw))
    except InvalidKey as exc:
        raise KeyringError(str(exc)) from exc


class Keyring:
    """The keys of one home directory."""

    def __init__(self, home: str | Path) -> None:
        self.dir = Path(home) / KEYRING_DIR

    def _path(self, name: str) -> Path:
        check_name(name)
        return self.dir / f"{name}.json"

    def _ensure_dir(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.dir, 0o700)
        except OSError as exc:
            raise KeyringError(f"cannot create the keyring {self.dir}: {exc.strerror or exc}") from exc

    def add(self, name: str, key: PrivateKey, *, overwrite: bool = False) -> KeyInfo:
        """Store ``key`` under ``name``; KeyExists unless ``overwrite``."""
        path = self._path(name)
        self._ensure_dir()
        if path.exists() and not overwrite:
            raise KeyExists(f"a key named {name!r} exists (use --force to replace it)")
        try:
            write_key_file(path, key, overwrite=overwrite)
        except KeyFileError as exc:
            raise KeyringError(str(exc)) from exc
        return KeyInfo(name, key.public_key.raw)

    def create(self, name: str, *, overwrite: bool = False) -> tuple[KeyInfo, PrivateKey]:
        key = PrivateKey.generate()
        return self.add(name, key, overwrite=overwrite), key

    def import_file(self, name: str, path: str | Path, *, overwrite: bool = False) -> KeyInfo:
        """Import a key file (keyring export, priv_validator_key.json or node_key.json)."""
        try:
            key = read_key_file(path)
        except KeyFileError as exc:
            raise KeyringError(str(exc)) from exc
        return self.add(name, key, overwrite=overwrite)

    def get(self, name: str) -> PrivateKey:
        path = self._path(name)
        if not path.exists():
            raise KeyNotFound(f"no key named {name!r} in {self.dir}")
        try:
            return read_key_file(path)
        except KeyFileError as exc:
            raise KeyringError(str(exc)) from exc

    def export(self, name: str) -> str:
        """The key file's JSON text (holds the private key)."""
        return key_file_json(self.get(name))

    def delete(self, name: str) -> None:
        path = self._path(name)
        if not path.exists():
            raise KeyNotFound(f"no key named {name!r} in {self.dir}")
        path.unlink()

    def list(self) -> list[KeyInfo]:
        """Every key, sorted by name."""
        if not self.dir.is_dir():
            return []
        out = []
        for path in sorted(self.dir.glob("*.json")):
            name = path.stem
            if _NAME.fullmatch(name):
                out.append(KeyInfo(name, self.get(name).public_key.raw))
        return out

    def info(self, name: str) -> KeyInfo:
        return KeyInfo(name, self.get(name).public_key.raw)

    def resolve_address(self, text: str) -> bytes:
        """An address from 64 hex digits or the name of a key in this keyring."""
        raw = text.strip().lower()
        if re.fullmatch(r"[0-9a-f]{64}", raw):
            return bytes.fromhex(raw)
        try:
            check_name(text)
        except KeyringError:
            raise KeyringError(f"{text!r} is neither a 64-hex-digit address nor a key name") from None
        return self.info(text).address
