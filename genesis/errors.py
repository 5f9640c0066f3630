"""Errors of the genesis tools (testnet generation, key files, forking).

Genesis documents themselves raise :class:`chain.errors.GenesisError`; these
classes cover the files the tools read and write. All derive from
:class:`chain.errors.ChainError`, so the CLI's one catch covers them.
"""

from __future__ import annotations

from chain.errors import ChainError


class GenesisToolError(ChainError):
    """Base of the genesis tools' errors."""


class KeyFileError(GenesisToolError):
    """A key file is missing, unreadable, malformed or holds a key that does not match
    its stated public key. The operator's fault: restore or regenerate the file."""


class OutputExistsError(GenesisToolError):
    """The output directory of a testnet already holds files and overwriting was not
    asked for. The operator's fault: choose another directory or pass overwrite."""


class OverrideError(GenesisToolError):
    """A parameter override ("section.name=value") is malformed: no "=", an unknown
    section, or a value that is not an integer or boolean. The operator's fault."""
