"""Where a repository lives: a folder on this machine, or a bucket on S3-compatible storage.

The one place that knows the difference: whether a repository is there, whether what is there
is damaged, how to open or create it, how big it is, and which operations need a local folder.
Everything above asks a ``Location``; nothing branches on ``rc.s3``.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hvtui.backups.reachability import HeldBackend, ReachabilityHold
from hvtui.clock import Clock
from hvtui.config import RepositoryConfig
from hvtui.engine import remote_repo
from hvtui.engine.backends.base import BackendError, ObjectMissing
from hvtui.engine.backends.s3 import S3Backend, S3Settings
from hvtui.engine.compression import Compressor
from hvtui.engine.remote_repo import open_on_backend
from hvtui.engine.repository import Passphrase, Repository
from hvtui.errors import RepositoryError
from hvtui.secrets import Prompter, SecretError, resolve_secret


class LocalOnly(RepositoryError):
    """An operation that works on a repository's files in place, asked of one in a bucket."""


class Location(ABC):
    """How to reach one configured repository."""

    backend_name: str  # "local" or "s3", for listings
    where: str  # the folder, or s3://bucket/prefix

    def __init__(self, rc: RepositoryConfig) -> None:
        self.rc = rc

    @abstractmethod
    def exists(self) -> bool:
        """The repository is there (its config.json is)."""

    @abstractmethod
    def read_config(self) -> dict[str, Any]:
        """The existing repository's ``config.json`` (no passphrase needed)."""

    @abstractmethod
    def check_missing(self) -> None:
        """For one that does not exist: raise when what is there is a damaged repository, not nothing."""

    @abstractmethod
    def open(self, create: bool, version: int, pack_size_mib: int, passphrase: Passphrase | None, encrypt: bool) -> Repository:
        """The repository (``create``: made when absent)."""

    @abstractmethod
    def size(self) -> int:
        """Bytes the repository takes where it lives."""

    def require_local(self, operation: str) -> Path:
        """The repository's folder, for ``operation`` that works on its files in place."""
        return self.rc.path

    @property
    def endpoint(self) -> str | None:
        return None

    def retry_now(self) -> None:
        """An explicit action: ask the storage again now, even when it was unreachable a moment ago."""
        return None  # a folder is asked every time


class LocalFolder(Location):
    backend_name = "local"

    def __init__(self, rc: RepositoryConfig) -> None:
        super().__init__(rc)
        self.where = str(rc.path)

    def exists(self) -> bool:
        return Repository.exists(self.rc.path)

    def read_config(self) -> dict[str, Any]:
        return Repository.read_config(self.rc.path)

    def check_missing(self) -> None:
        Repository.check_missing(self.rc.path)

    def open(self, create: bool, version: int, pack_size_mib: int, passphrase: Passphrase | None, encrypt: bool) -> Repository:
        rc = self.rc
        return Repository.open(
            rc.path, name=rc.name, create=create, version=version, pack_size=pack_size_mib * 1024 * 1024,
            passphrase=passphrase, encrypt=encrypt, compressor=Compressor(rc.compression, rc.zstd_level),
        )  # fmt: skip

    def size(self) -> int:
        return folder_size(self.rc.path)


class S3Bucket(Location):
    """A repository in a bucket; ``rc.path`` is this machine's working folder for it.

    The backend (a boto3 client) is made at first use, with the keys resolved then from their
    sources; they live in the client only, never in a message or a log line.  Its calls go
    through ``hold``: a storage that did not answer is not asked again for a while
    (``reachability``)."""

    backend_name = "s3"

    def __init__(self, rc: RepositoryConfig, prompter: Callable[[], Prompter | None], clock: Clock) -> None:
        super().__init__(rc)
        assert rc.s3 is not None
        self.s3 = rc.s3
        self.where = rc.s3.where
        self._prompter = prompter
        self.hold = ReachabilityHold(self.where, clock)
        self._backend: HeldBackend | None = None
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str | None:
        return self.s3.endpoint or f"AWS S3 ({self.s3.region})"

    def backend(self) -> HeldBackend:
        with self._lock:
            if self._backend is None:
                self._backend = HeldBackend(S3Backend(self._settings()), self.hold)
            return self._backend

    def retry_now(self) -> None:
        self.hold.retry_now()

    def _settings(self) -> S3Settings:
        s3 = self.s3
        access_key = secret_key = None
        if s3.access_key is not None and s3.secret_key is not None:
            try:
                access_key = resolve_secret(s3.access_key, f"S3 access key of repository {self.rc.name}", self._prompter())
                secret_key = resolve_secret(s3.secret_key, f"S3 secret key of repository {self.rc.name}", self._prompter())
            except SecretError as err:  # a repository error: listings name it beside the others
                raise RepositoryError(str(err)) from None
        return S3Settings(
            endpoint=s3.endpoint, bucket=s3.bucket, prefix=s3.prefix, region=s3.region, access_key=access_key,
            secret_key=secret_key, ca_bundle=str(s3.ca_bundle) if s3.ca_bundle else None,
            storage_class=s3.storage_class, insecure_http=s3.insecure_http,
        )  # fmt: skip

    def exists(self) -> bool:
        backend = self.backend()
        if backend.stat("config.json") is not None:
            return True
        # A HEAD has no body to say why it found nothing: a missing bucket must not pass for an empty one.
        try:
            backend.check_bucket()
        except ObjectMissing:  # HEAD on a missing bucket: a bare 404, which the backend takes for a missing key
            raise BackendError(
                self.where, f"the bucket {self.s3.bucket!r} does not exist at {self.endpoint}: create it, or fix bucket: "
                f"in the config entry of repository {self.rc.name}", kind="bucket",
            ) from None
        return False

    def read_config(self) -> dict[str, Any]:
        try:
            config = json.loads(self.backend().get("config.json"))
        except ValueError:
            raise RepositoryError(f"the config.json of repository {self.rc.name} at {self.where} is not JSON") from None
        if not isinstance(config, dict):
            raise RepositoryError(f"the config.json of repository {self.rc.name} at {self.where} is not a JSON object")
        return config

    def check_missing(self) -> None:
        # config.json is published last: a bucket holding points, packs or index files without it is damaged.
        remote_repo.check_missing(self.backend(), self.rc.path, self.rc.name)

    def open(self, create: bool, version: int, pack_size_mib: int, passphrase: Passphrase | None, encrypt: bool) -> Repository:
        rc = self.rc  # always format 2 and encrypted: the config refuses anything else
        repo = open_on_backend(self.backend(), rc.path, rc.name, passphrase, create=create, pack_size=pack_size_mib * 1024 * 1024)
        repo.compressor = Compressor(rc.compression, rc.zstd_level)  # what new chunks are written with
        return repo

    def size(self) -> int:
        return sum(info.size for info in self.backend().list(""))

    def require_local(self, operation: str) -> Path:
        raise LocalOnly(
            f"{operation} works on a repository's files in a folder, and repository {self.rc.name} is in a bucket "
            f"({self.where}): {_ALTERNATIVES.get(operation, 'it is not available for repositories on S3')}"
        )


_ALTERNATIVES = {
    "repo migrate": "it is always format 2 already, nothing to migrate",
    "repair-repository": "its config.json is never rewritten there; if it is lost, copy the points to a new repository "
    "with `hvtui copy` from another copy of them",
}


def location_of(rc: RepositoryConfig, prompter: Callable[[], Prompter | None], clock: Clock) -> Location:
    return S3Bucket(rc, prompter, clock) if rc.s3 is not None else LocalFolder(rc)


def folder_size(path: Path) -> int:
    """Bytes allocated under ``path`` (links not followed)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total
