"""The object-store interface a repository writes through, and its errors."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from hvtui.errors import RepositoryError

Payload = bytes | BinaryIO


class BackendError(RepositoryError):
    """The storage refused or failed an operation.

    ``kind`` says why, for callers that act on it: ``auth`` (credentials refused), ``bucket``
    (the bucket or folder does not exist), ``clock`` (request time skewed), ``quota`` (storage
    full or quota reached), ``tls`` (certificate not trusted), ``unreachable`` (no answer after
    the retries), ``config`` (the repository's settings are unusable), ``digest`` (the storage
    received a body different from the one sent, and stored nothing), ``failed`` (anything else).
    """

    def __init__(self, where: str, message: str, kind: str = "failed") -> None:
        self.where = where
        self.kind = kind
        super().__init__(f"{where}: {message}")


class ObjectExists(BackendError):
    """``put_if_absent`` found the object already there: another writer got there first."""

    def __init__(self, where: str, key: str) -> None:
        self.key = key
        super().__init__(where, f"{key} already exists (another writer created it first)", kind="exists")


class ObjectMissing(BackendError):
    """The object does not exist."""

    def __init__(self, where: str, key: str) -> None:
        self.key = key
        super().__init__(where, f"{key} does not exist", kind="missing")


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int


class Backend(ABC):
    """Objects by key (``packs/ab/ab12….pack``, ``manifests/….json``); keys use ``/``."""

    #: Where the objects are, for messages: a folder path or ``s3://bucket/prefix``.
    where: str
    #: The storage refuses a put whose bytes differ from those sent (S3: each PUT's Content-MD5).
    verifies_puts: bool = False

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in no promised order."""

    @abstractmethod
    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """The object's bytes, or ``length`` bytes from ``offset`` (fewer at the end).
        Raises ``ObjectMissing``."""

    @abstractmethod
    def put(self, key: str, data: Payload) -> None:
        """Create or replace the object, atomically: a reader sees the old or the new, whole."""

    @abstractmethod
    def put_if_absent(self, key: str, data: Payload) -> None:
        """Create the object only if no object has that key; raises ``ObjectExists`` otherwise.
        Two writers racing for one key: exactly one succeeds."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; no error when it is already gone."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo | None:
        """The object's size, or None when it does not exist."""

    def close(self) -> None:  # noqa: B027 - optional for backends that hold nothing
        """Release connections."""


def check_key(where: str, key: str) -> str:
    """``key`` when it is a plain relative object name; a ``BackendError`` otherwise.

    Keys come from the repository's own code and from listings of storage other programs can
    write to, so a hostile name (``..``, an absolute path, a NUL) must never reach a path join."""
    parts = key.split("/")
    if not key or key.startswith("/") or "\0" in key or "\\" in key or any(p in ("", ".", "..") for p in parts):
        raise BackendError(where, f"refused an unsafe object name {key!r}", kind="failed")
    return key
