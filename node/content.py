"""Content encryption: ChaCha20-Poly1305 in fixed chunks, and the content root.

Theory of operation (docs/content.md has the full format). A content key is 32
random bytes. The plaintext is cut into pieces of ``chunk_size - 16`` bytes;
each piece is sealed with ChaCha20-Poly1305 into exactly one ciphertext chunk
of at most ``chunk_size`` bytes, so the ciphertext's chunk boundaries are the
card's ``chunk_size`` boundaries and a seeder's chunk ranges index ciphertext.
The 96-bit nonce of chunk ``i`` is ``u88be(i) ‖ u8(last)`` where ``last`` is 1
on the final chunk only, and the associated data binds the format version and
the chunk size. So a reordered, dropped, duplicated or truncated chunk fails
authentication: a truncated stream ends on a chunk whose flag says "more".

The content root is chain.merkle's size-bound Merkle root over the BLAKE3
hashes of the ciphertext chunks: anyone holding ciphertext only can check a
chunk against the root with a Merkle proof, and no plaintext hash is ever
published.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from chain import merkle
from chain.tx import MAX_CHUNK_SIZE, MIN_CHUNK_SIZE
from node.errors import NodeError

CIPHER: Final = "chacha20-poly1305"
KEY_SIZE: Final = 32
TAG_SIZE: Final = 16
DEFAULT_CHUNK_SIZE: Final = 65_536
FORMAT_TAG: Final = b"blackhole/content/v1\x00"
MAX_CHUNKS: Final = merkle.MAX_LEAVES


class ContentError(NodeError):
    """Base of content errors (the CLI prints them as one line)."""


class BadChunkSize(ContentError):
    """A chunk size that is not a power of two in [1 KiB, 16 MiB]: the caller's fault."""


class DecryptError(ContentError):
    """Ciphertext that does not authenticate under the key: wrong key, altered,
    reordered or truncated chunks, or a root that does not match."""


def check_chunk_size(chunk_size: int) -> None:
    if (
        type(chunk_size) is not int
        or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE
        or chunk_size & (chunk_size - 1)
    ):
        raise BadChunkSize(
            f"chunk size must be a power of two in [{MIN_CHUNK_SIZE}, {MAX_CHUNK_SIZE}], got {chunk_size}"
        )


def generate_key() -> bytes:
    """A fresh 32-byte content key from the OS's randomness."""
    return os.urandom(KEY_SIZE)


def compute_nonce(index: int, last: bool) -> bytes:
    """u88be(index) ‖ u8(last): unique per chunk of one key, the flag marks the end."""
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def compute_aad(chunk_size: int) -> bytes:
    return FORMAT_TAG + chunk_size.to_bytes(4, "big")


def compute_chunk_hash(chunk: bytes) -> bytes:
    return blake3.blake3(chunk).digest()


def compute_root(chunk_hashes: list[bytes]) -> bytes:
    """The content root: chain.merkle's size-bound root over the chunk hashes."""
    return merkle.merkle_root(chunk_hashes)


@dataclass(frozen=True, slots=True)
class Encrypted:
    """What encrypting a content produced."""

    root: bytes
    """BLAKE3 Merkle root of the ciphertext chunks (the card's content_root)."""
    size: int
    """Ciphertext size in bytes (the card's size)."""
    chunk_size: int
    """Ciphertext chunk size (the card's chunk_size)."""
    chunks: int
    """Number of chunks (at least one: empty content is one empty sealed chunk)."""


def _pieces(src: BinaryIO, piece: int) -> Iterator[tuple[bytes, bool]]:
    """Plaintext pieces with a flag on the last one (one empty piece for empty input)."""
    current = src.read(piece)
    while True:
        nxt = src.read(piece) if len(current) == piece else b""
        yield current, not nxt
        if not nxt:
            return
        current = nxt


def encrypt_stream(src: BinaryIO, dst: BinaryIO, key: bytes, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Encrypted:
    """Encrypt ``src`` to ``dst`` chunk by chunk; returns the root and sizes."""
    check_chunk_size(chunk_size)
    if type(key) is not bytes or len(key) != KEY_SIZE:
        raise ContentError(f"a content key has {KEY_SIZE} bytes")
    aead = ChaCha20Poly1305(key)
    aad = compute_aad(chunk_size)
    hashes: list[bytes] = []
    size = 0
    for index, (plain, last) in enumerate(_pieces(src, chunk_size - TAG_SIZE)):
        if index >= MAX_CHUNKS:
            raise ContentError(f"content has more than {MAX_CHUNKS} chunks")
        chunk = aead.encrypt(compute_nonce(index, last), plain, aad)
        dst.write(chunk)
        hashes.append(compute_chunk_hash(chunk))
        size += len(chunk)
    return Encrypted(compute_root(hashes), size, chunk_size, len(hashes))


def decrypt_stream(
    src: BinaryIO, dst: BinaryIO, key: bytes, chunk_size: int, *, expected_root: bytes | None = None
) -> Encrypted:
    """Decrypt ``src`` to ``dst``, authenticating every chunk; raises DecryptError.

    With ``expected_root`` the ciphertext's root is checked too (after the last
    chunk; a caller writing to a file should discard it on error).
    """
    check_chunk_size(chunk_size)
    if type(key) is not bytes or len(key) != KEY_SIZE:
        raise ContentError(f"a content key has {KEY_SIZE} bytes")
    aead = ChaCha20Poly1305(key)
    aad = compute_aad(chunk_size)
    hashes: list[bytes] = []
    size = 0
    index = 0
    chunk = src.read(chunk_size)
    while True:
        nxt = src.read(chunk_size) if len(chunk) == chunk_size else b""
        last = not nxt
        if len(chunk) < TAG_SIZE:
            raise DecryptError(f"chunk {index} is truncated ({len(chunk)} bytes)")
        try:
            plain = aead.decrypt(compute_nonce(index, last), chunk, aad)
        except InvalidTag:
            why = "the content is truncated or " if last else ""
            raise DecryptError(f"chunk {index} does not authenticate ({why}wrong key or altered data)") from None
        dst.write(plain)
        hashes.append(compute_chunk_hash(chunk))
        size += len(chunk)
        if last:
            break
        chunk = nxt
        index += 1
    root = compute_root(hashes)
    if expected_root is not None and root != expected_root:
        raise DecryptError(f"content root {root.hex()} does not match the card's {expected_root.hex()}")
    return Encrypted(root, size, chunk_size, len(hashes))


def encrypt_bytes(data: bytes, key: bytes, chunk_size: int = DEFAULT_CHUNK_SIZE) -> tuple[bytes, Encrypted]:
    import io

    out = io.BytesIO()
    info = encrypt_stream(io.BytesIO(data), out, key, chunk_size)
    return out.getvalue(), info


def decrypt_bytes(
    data: bytes, key: bytes, chunk_size: int, *, expected_root: bytes | None = None
) -> bytes:
    import io

    out = io.BytesIO()
    decrypt_stream(io.BytesIO(data), out, key, chunk_size, expected_root=expected_root)
    return out.getvalue()


def encrypt_file(
    src: Path, dst: Path, key: bytes, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> Encrypted:
    """Encrypt the file ``src`` into ``dst``; ContentError on I/O errors."""
    try:
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            return encrypt_stream(fin, fout, key, chunk_size)
    except OSError as exc:
        raise ContentError(f"cannot encrypt {src} to {dst}: {exc.strerror or exc}") from exc


def decrypt_file(
    src: Path, dst: Path, key: bytes, chunk_size: int, *, expected_root: bytes | None = None
) -> Encrypted:
    """Decrypt ``src`` into ``dst``; on any failure ``dst`` is removed."""
    try:
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            return decrypt_stream(fin, fout, key, chunk_size, expected_root=expected_root)
    except OSError as exc:
        dst.unlink(missing_ok=True)
        raise ContentError(f"cannot decrypt {src} to {dst}: {exc.strerror or exc}") from exc
    except DecryptError:
        dst.unlink(missing_ok=True)
        raise


def chunk_proof(chunk_hashes: list[bytes], index: int) -> merkle.MerkleProof:
    """The Merkle proof that chunk ``index`` belongs to the content root."""
    return merkle.compute_proof(chunk_hashes, index)


def verify_chunk(root: bytes, chunk: bytes, proof: merkle.MerkleProof) -> bool:
    """What a seeder or downloader checks for one ciphertext chunk: no key needed."""
    return merkle.verify_inclusion(root, compute_chunk_hash(chunk), proof)
