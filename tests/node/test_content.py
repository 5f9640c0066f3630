from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain import merkle
from node import content as c

CHUNK = 1024
PIECE = CHUNK - c.TAG_SIZE


def _enc(data: bytes, key: bytes | None = None) -> tuple[bytes, bytes, c.Encrypted]:
    key = key or c.generate_key()
    ct, info = c.encrypt_bytes(data, key, CHUNK)
    return key, ct, info


@given(st.binary(max_size=4 * PIECE + 3))
def test_roundtrip_and_root(data: bytes) -> None:
    key, ct, info = _enc(data)
    assert info.size == len(ct) == len(data) + c.TAG_SIZE * info.chunks
    assert info.chunks == max(1, -(-len(data) // PIECE))
    assert c.decrypt_bytes(ct, key, CHUNK, expected_root=info.root) == data
    chunks = [ct[i : i + CHUNK] for i in range(0, len(ct), CHUNK)]
    assert info.root == merkle.merkle_root([c.compute_chunk_hash(x) for x in chunks])


@pytest.mark.parametrize("n", [0, 1, PIECE - 1, PIECE, PIECE + 1, 3 * PIECE])
def test_chunk_boundaries(n: int) -> None:
    data = bytes(range(256)) * (n // 256 + 1)
    data = data[:n]
    key, ct, _ = _enc(data)
    assert all(len(ct[i : i + CHUNK]) <= CHUNK for i in range(0, len(ct), CHUNK))
    assert c.decrypt_bytes(ct, key, CHUNK) == data


def test_truncation_is_detected_at_a_chunk_boundary() -> None:
    data = b"x" * (3 * PIECE)
    key, ct, _ = _enc(data)
    with pytest.raises(c.DecryptError, match="truncated"):
        c.decrypt_bytes(ct[: 2 * CHUNK], key, CHUNK)


def test_reordered_dropped_or_altered_chunks_fail() -> None:
    data = bytes(range(256)) * 12
    key, ct, _ = _enc(data)
    chunks = [ct[i : i + CHUNK] for i in range(0, len(ct), CHUNK)]
    assert len(chunks) >= 3
    swapped = chunks[1] + chunks[0] + b"".join(chunks[2:])
    with pytest.raises(c.DecryptError):
        c.decrypt_bytes(swapped, key, CHUNK)
    with pytest.raises(c.DecryptError):
        c.decrypt_bytes(chunks[0] + b"".join(chunks[2:]), key, CHUNK)
    flipped = bytearray(ct)
    flipped[5] ^= 1
    with pytest.raises(c.DecryptError):
        c.decrypt_bytes(bytes(flipped), key, CHUNK)
    with pytest.raises(c.DecryptError):
        c.decrypt_bytes(ct, c.generate_key(), CHUNK)
    with pytest.raises(c.DecryptError, match="truncated"):
        c.decrypt_bytes(ct[:10], key, CHUNK)


def test_wrong_root_and_chunk_size() -> None:
    key, ct, _ = _enc(b"hello")
    with pytest.raises(c.DecryptError, match="root"):
        c.decrypt_bytes(ct, key, CHUNK, expected_root=bytes(32))
    with pytest.raises(c.DecryptError):
        c.decrypt_bytes(ct, key, 2048)  # the chunk size is bound by the associated data
    for bad in (1000, 512, 3000, 1 << 25):
        with pytest.raises(c.BadChunkSize):
            c.encrypt_bytes(b"x", key, bad)
    with pytest.raises(c.ContentError):
        c.encrypt_bytes(b"x", b"short", CHUNK)


def test_nonces_are_unique_and_flagged() -> None:
    assert c.compute_nonce(0, False) != c.compute_nonce(0, True)
    assert len(c.compute_nonce(2**88 - 1, True)) == 12
    # the same plaintext chunk at another position gives other ciphertext
    key = c.generate_key()
    ct, _ = c.encrypt_bytes(b"a" * PIECE * 2 + b"a", key, CHUNK)
    assert ct[:CHUNK] != ct[CHUNK : 2 * CHUNK]


def test_chunk_proofs_check_ciphertext_without_the_key() -> None:
    _, ct, info = _enc(b"z" * (5 * PIECE))
    chunks = [ct[i : i + CHUNK] for i in range(0, len(ct), CHUNK)]
    hashes = [c.compute_chunk_hash(x) for x in chunks]
    for i, chunk in enumerate(chunks):
        proof = c.chunk_proof(hashes, i)
        assert c.verify_chunk(info.root, chunk, proof)
        assert not c.verify_chunk(info.root, chunk[:-1] + bytes([chunk[-1] ^ 1]), proof)


def test_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "in.bin"
    src.write_bytes(b"file content " * 500)
    key = c.generate_key()
    info = c.encrypt_file(src, tmp_path / "ct", key, CHUNK)
    out = tmp_path / "out.bin"
    c.decrypt_file(tmp_path / "ct", out, key, CHUNK, expected_root=info.root)
    assert out.read_bytes() == src.read_bytes()
    with pytest.raises(c.DecryptError):
        c.decrypt_file(tmp_path / "ct", out, c.generate_key(), CHUNK)
    assert not out.exists()
    with pytest.raises(c.ContentError, match="cannot encrypt"):
        c.encrypt_file(tmp_path / "missing", tmp_path / "x", key, CHUNK)


def test_stream_reads_no_more_than_two_chunks_ahead() -> None:
    class Counting(io.BytesIO):
        biggest = 0

        def read(self, n: int | None = -1) -> bytes:
            assert n is not None and n > 0
            Counting.biggest = max(Counting.biggest, n)
            return super().read(n)

    out = io.BytesIO()
    c.encrypt_stream(Counting(b"q" * 10_000), out, c.generate_key(), CHUNK)
    assert Counting.biggest == PIECE
