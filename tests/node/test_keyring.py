from __future__ import annotations

import stat

import pytest

from chain.crypto import PrivateKey
from genesis.keyfile import write_key_file
from node.keyring import KeyExists, KeyNotFound, Keyring, KeyringError, parse_seed_hex


def test_create_list_get_export_import(tmp_path) -> None:  # type: ignore[no-untyped-def]
    kr = Keyring(tmp_path)
    assert kr.list() == []
    info, key = kr.create("alice")
    assert info.address == key.public_key.raw
    assert stat.S_IMODE((tmp_path / "keyring" / "alice.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keyring").stat().st_mode) == 0o700
    assert kr.get("alice") == key
    with pytest.raises(KeyExists):
        kr.create("alice")
    kr.create("alice", overwrite=True)
    assert kr.get("alice") != key
    exported = tmp_path / "bob.json"
    exported.write_text(kr.export("alice"))
    other = Keyring(tmp_path / "other")
    other.import_file("bob", exported)
    assert other.get("bob") == kr.get("alice")
    assert [i.name for i in other.list()] == ["bob"]
    assert other.resolve_address("bob") == kr.get("alice").public_key.raw
    assert other.resolve_address("AB" * 32) == bytes.fromhex("ab" * 32)
    other.delete("bob")
    with pytest.raises(KeyNotFound):
        other.get("bob")


def test_imports_validator_key_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = PrivateKey.generate()
    write_key_file(tmp_path / "pv.json", key)
    kr = Keyring(tmp_path / "home")
    kr.import_file("val", tmp_path / "pv.json")
    assert kr.get("val") == key


@pytest.mark.parametrize("name", ["", "-x", "a/b", "../up", "x" * 65, "sp ace"])
def test_bad_names(tmp_path, name: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(KeyringError, match="key name"):
        Keyring(tmp_path).create(name)


def test_bad_files_and_seeds(tmp_path) -> None:  # type: ignore[no-untyped-def]
    kr = Keyring(tmp_path)
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(KeyringError, match="not valid JSON"):
        kr.import_file("x", tmp_path / "junk.json")
    with pytest.raises(KeyringError, match="cannot read"):
        kr.import_file("x", tmp_path / "missing.json")
    with pytest.raises(KeyringError, match="64 hex"):
        parse_seed_hex("abc")
    assert parse_seed_hex("11" * 32).seed == bytes([0x11]) * 32
    with pytest.raises(KeyringError, match="neither"):
        kr.resolve_address("not a name!")
