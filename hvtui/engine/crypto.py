"""Authenticated encryption of an encrypted repository's objects, and its keyed chunk ids.

Everything a repository stores goes through one ``RepositoryCipher`` (its master key,
unwrapped from a key file by ``keys.py``):

- **blobs and objects**: AES-256-GCM (``cryptography``), a random 96-bit nonce per blob,
  framed ``nonce (12) | ciphertext | tag (16)``.  The associated data is the blob's own name
  (a chunk's id; an object's path in the repository, e.g. ``points/<id>.json``), so a blob
  moved under another name, or swapped for another blob, fails to authenticate.
- **chunk ids**: HMAC-SHA256 of the chunk's data under a separate id key, so whoever holds
  the storage cannot confirm a guess of what a chunk holds; dedup still works inside the
  repository (one id key).  Measured on this machine (docs/repository-format.md):
  HMAC-SHA256 runs at SHA-256's speed (SHA-NI, the GIL released), keyed BLAKE2b at half.

The storage layer (local files today, an object store later) only ever sees sealed bytes:
``seal_object``/``open_object`` are the seam an off-site backend uses as they are.
"""

from __future__ import annotations

import hmac
import os
import threading

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_SIZE = 12
TAG_SIZE = 16
OVERHEAD = NONCE_SIZE + TAG_SIZE  # bytes a sealed blob has over its plaintext
KEY_SIZE = 32
OBJECT_MAGIC = b"HVE1"  # an encrypted whole-file object (manifest, index, point index, record)
CIPHER_NAME = "aes-256-gcm"
CHUNK_ID_NAME = "hmac-sha256"


class NotAuthentic(ValueError):
    """Sealed bytes that do not authenticate: damaged, tampered with, moved, or another key's."""


class RepositoryCipher:
    """The master key of one repository: a data key (AES-256-GCM) and a chunk-id key."""

    def __init__(self, master: bytes) -> None:
        """``master``: 64 random bytes, the data key then the chunk-id key."""
        if len(master) != 2 * KEY_SIZE:
            raise ValueError("a master key is 64 bytes")
        self._master = bytes(master)
        self._aead = AESGCM(self._master[:KEY_SIZE])
        self._id_key = self._master[KEY_SIZE:]
        self._scratch = threading.local()  # per-thread buffers for chunk blobs (see seal_parts)

    def __repr__(self) -> str:  # never the key
        return "RepositoryCipher(...)"

    @classmethod
    def generate(cls) -> RepositoryCipher:
        return cls(os.urandom(2 * KEY_SIZE))

    def master_key(self) -> bytes:
        """The 64 bytes a key slot wraps (keys.py); never logged or shown."""
        return self._master

    def chunk_id(self, data: bytes | bytearray | memoryview) -> bytes:
        return hmac.digest(self._id_key, data, "sha256")

    def seal(self, plaintext: bytes | bytearray | memoryview, aad: bytes) -> bytearray:
        # Sealed in place into one buffer: a 1 MiB copy costs as much as the encryption here.
        nonce = os.urandom(NONCE_SIZE)
        sealed = bytearray(NONCE_SIZE + len(plaintext) + TAG_SIZE)
        sealed[:NONCE_SIZE] = nonce
        self._aead.encrypt_into(nonce, plaintext, aad, memoryview(sealed)[NONCE_SIZE:])
        return sealed

    def _buffer(self, name: str, size: int) -> memoryview:
        buf = getattr(self._scratch, name, None)
        if buf is None or len(buf) < size:
            buf = bytearray(size)
            setattr(self._scratch, name, buf)
        return memoryview(buf)[:size]

    def seal_parts(self, header: bytes, payload: bytes | bytearray | memoryview, aad: bytes) -> memoryview:
        """``header ‖ payload`` sealed into this thread's reused buffer, valid until this thread's
        next call (a pack writer writes it at once).  A fresh 1 MiB buffer per chunk costs its
        page faults, as much as AES-GCM itself on this machine."""
        size = len(header) + len(payload)
        plain = self._buffer("plain", size)
        plain[: len(header)] = header
        plain[len(header) :] = payload
        sealed = self._buffer("sealed", NONCE_SIZE + size + TAG_SIZE)
        nonce = os.urandom(NONCE_SIZE)
        sealed[:NONCE_SIZE] = nonce
        self._aead.encrypt_into(nonce, plain, aad, sealed[NONCE_SIZE:])
        return sealed

    def open_reused(self, sealed: bytes | bytearray | memoryview, aad: bytes) -> memoryview:
        """``open`` into this thread's reused buffer, valid until this thread's next call."""
        if len(sealed) < OVERHEAD:
            raise NotAuthentic(f"too short to be sealed ({len(sealed)} bytes)")
        view = memoryview(sealed)
        plain = self._buffer("opened", len(sealed) - OVERHEAD)
        try:
            self._aead.decrypt_into(bytes(view[:NONCE_SIZE]), view[NONCE_SIZE:], aad, plain)
        except InvalidTag:
            raise NotAuthentic("does not authenticate (damaged, tampered with, or moved from elsewhere)") from None
        return plain

    def open(self, sealed: bytes | bytearray | memoryview, aad: bytes) -> bytes:
        if len(sealed) < OVERHEAD:
            raise NotAuthentic(f"too short to be sealed ({len(sealed)} bytes)")
        view = memoryview(sealed)
        try:
            return self._aead.decrypt(bytes(view[:NONCE_SIZE]), view[NONCE_SIZE:], aad)
        except InvalidTag:
            raise NotAuthentic("does not authenticate (damaged, tampered with, or moved from elsewhere)") from None

    def seal_object(self, plaintext: bytes, name: str) -> bytes:
        """A whole-file object: ``HVE1`` then the sealed bytes; ``name`` is its path in the repository."""
        return OBJECT_MAGIC + bytes(self.seal(plaintext, _object_aad(name)))

    def open_object(self, data: bytes, name: str) -> bytes:
        if not data.startswith(OBJECT_MAGIC):
            raise NotAuthentic("not an encrypted object (no HVE1 marker)")
        return self.open(memoryview(data)[len(OBJECT_MAGIC) :], _object_aad(name))


def _object_aad(name: str) -> bytes:
    return b"hvtui-object:" + name.encode()
