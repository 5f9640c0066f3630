"""Key files: one Ed25519 private key as JSON, written with mode 0600.

Format (both ``priv_validator_key.json`` and ``node_key.json``)::

    {"type": "ed25519", "pub_key": "<64 hex>", "priv_key": "<64 hex seed>"}

The public key is stored for the operator's convenience and checked on load.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from chain.crypto import PrivateKey
from chain.errors import InvalidKey
from genesis.errors import KeyFileError

KEY_FILE_MODE = 0o600
MAX_KEY_FILE_BYTES = 4096


def key_file_json(key: PrivateKey) -> str:
    doc = {"type": "ed25519", "pub_key": key.public_key.hex(), "priv_key": key.seed.hex()}
    return json.dumps(doc, indent=2) + "\n"


def write_key_file(path: str | Path, key: PrivateKey, *, overwrite: bool = False) -> None:
    """Write ``key`` to ``path`` with mode 0600 (set before any secret byte is written).

    Raises :class:`KeyFileError` if the file exists and ``overwrite`` is false,
    or if it cannot be written.
    """
    p = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(p, flags, KEY_FILE_MODE)
    except FileExistsError as exc:
        raise KeyFileError(f"{p} exists; refusing to overwrite a key") from exc
    except OSError as exc:
        raise KeyFileError(f"cannot create {p}: {exc.strerror or exc}") from exc
    try:
        os.fchmod(fd, KEY_FILE_MODE)  # an existing file keeps its old mode under O_CREAT
        os.write(fd, key_file_json(key).encode())
        os.fsync(fd)
    except OSError as exc:
        raise KeyFileError(f"cannot write {p}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def read_key_file(path: str | Path) -> PrivateKey:
    """Load a key file; :class:`KeyFileError` naming the file and the problem."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_KEY_FILE_BYTES:
            raise KeyFileError(f"{p}: larger than {MAX_KEY_FILE_BYTES} bytes, not a key file")
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read {p}: {exc}") from exc
    try:
        doc: Any = json.loads(text)
    except ValueError as exc:
        raise KeyFileError(f"{p}: not valid JSON: {exc}") from exc
    if type(doc) is not dict or set(doc) != {"type", "pub_key", "priv_key"}:
        raise KeyFileError(f"{p}: expected exactly the fields type, pub_key, priv_key")
    if doc["type"] != "ed25519":
        raise KeyFileError(f"{p}: unsupported key type {doc['type']!r}")
    for name in ("pub_key", "priv_key"):
        if type(doc[name]) is not str or not re.fullmatch(r"[0-9a-f]{64}", doc[name]):
            raise KeyFileError(f"{p}: {name} must be 64 lowercase hex characters")
    try:
        key = PrivateKey(bytes.fromhex(doc["priv_key"]))
    except InvalidKey as exc:
        raise KeyFileError(f"{p}: {exc}") from exc
    if key.public_key.hex() != doc["pub_key"]:
        raise KeyFileError(f"{p}: pub_key does not match priv_key")
    return key
