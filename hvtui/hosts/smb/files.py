"""``SmbRemoteFiles``: ``RemoteFiles`` over SMB3 with smbprotocol's ``smbclient`` API.

Each object keeps its own connection cache (smbclient's is process-wide), so closing one host's
files never drops another's connections.  Every call passes the credentials, so a connection that
was dropped is set up again on the next call.  Encryption is required unless the host's config
says ``encrypt: false``; signing is always required.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar

import smbclient

from hvtui.errors import HostError, HvtuiError
from hvtui.hosts.smb.errors import Where, is_connection_lost, translate
from hvtui.hosts.smb.shares import Mapped, ShareMap

log = logging.getLogger(__name__)

T = TypeVar("T")
PasswordProvider = Callable[[], str | None]
RECONNECT_ATTEMPTS = 2  # after a lost connection, on top of the first try


class SmbRemoteFiles:
    """One host's files over SMB3, addressed by host path."""

    def __init__(
        self,
        host_name: str,
        shares: ShareMap,
        *,
        port: int = 445,
        username: str | None = None,
        password: PasswordProvider | None = None,
        encrypt: bool = True,
        timeout: float = 30.0,
    ) -> None:
        self.host_name = host_name
        self.shares = shares
        self.port = port
        self.username = username
        self.encrypt = encrypt
        self.timeout = timeout
        self._password = password or (lambda: None)
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._closed = False

    # -- RemoteFiles ---------------------------------------------------------------------

    def open_read(self, host_path: str) -> BinaryIO:
        mapped = self._map(host_path, "read")
        raw = self._call(mapped, "read", lambda: smbclient.open_file(mapped.unc, "rb", buffering=0, share_access="r", **self._kwargs()))
        return SmbReader(self, mapped, raw)  # type: ignore[return-value]

    def open_write(self, host_path: str) -> BinaryIO:
        mapped = self._map(host_path, "write")
        raw = self._call(mapped, "write", lambda: smbclient.open_file(mapped.unc, "wb", buffering=0, **self._kwargs()))
        return SmbWriter(self, mapped, raw)  # type: ignore[return-value]

    def size(self, host_path: str) -> int:
        mapped = self._map(host_path, "size")
        return self._call(mapped, "size", lambda: smbclient.stat(mapped.unc, **self._kwargs()).st_size)

    def makedirs(self, host_path: str) -> None:
        mapped = self._map(host_path, "makedirs")
        self._call(mapped, "create folder", lambda: smbclient.makedirs(mapped.unc, exist_ok=True, **self._kwargs()))

    def remove(self, host_path: str) -> None:
        mapped = self._map(host_path, "remove")
        try:
            self._call(mapped, "remove", lambda: smbclient.remove(mapped.unc, **self._kwargs()))
        except HostError as err:
            if err.kind != "not-found":
                raise

    def __enter__(self) -> SmbRemoteFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            smbclient.reset_connection_cache(fail_on_error=False, connection_cache=self._cache)

    # -- inside ---------------------------------------------------------------------------

    def where(self, mapped: Mapped) -> Where:
        return Where(
            host=self.host_name,
            host_path=mapped.host_path,
            unc=mapped.unc,
            server=mapped.server,
            share_unc=mapped.share_unc,
            port=self.port,
            username=self.username,
            encrypt=self.encrypt,
        )

    def _map(self, host_path: str, operation: str) -> Mapped:
        mapped = self.shares.map(host_path)
        if mapped is None:
            mapped_list = ", ".join(self.shares.prefixes) or "none"
            raise HostError(
                self.host_name,
                f"{operation} {host_path}",
                f"{host_path} is outside every mapped SMB share (mapped: {mapped_list}); add a share for it under "
                "the host's smb: shares: in the config, e.g. 'E:\\': '\\\\<host>\\E$'",
                kind="smb-path",
            )
        return mapped

    def _kwargs(self) -> dict[str, Any]:
        if self._closed:
            raise HostError(self.host_name, "SMB", "the SMB connections of this host were closed", kind="failed")
        return {
            "username": self.username,
            "password": self._password(),
            "port": self.port,
            "encrypt": self.encrypt,
            "require_signing": True,
            "connection_timeout": self.timeout,
            "connection_cache": self._cache,
        }

    def drop_connection(self, server: str) -> None:
        """Forget the (dead) connection to ``server`` so that the next call connects afresh."""
        with self._lock:
            connection = self._cache.pop(f"{server.lower()}:{self.port}", None)
        if connection is not None:
            try:
                connection.disconnect()
            except Exception:  # it is dead already; disconnecting is only tidying up
                log.debug("disconnecting a dead SMB connection to %s failed", server, exc_info=True)

    def _call(self, mapped: Mapped, operation: str, action: Callable[[], T]) -> T:
        """``action()``, reconnecting after a lost connection; errors become ``HostError``s."""
        label = f"{operation} {mapped.host_path}"
        for attempt in range(RECONNECT_ATTEMPTS + 1):
            try:
                return action()
            except HvtuiError:  # ours already (a refused secret, a closed object): clear as it is
                raise
            except Exception as exc:  # every smbprotocol failure is translated
                if is_connection_lost(exc) and attempt < RECONNECT_ATTEMPTS and not str(exc).startswith("Failed to connect"):
                    log.info("%s: SMB connection to %s lost (%s); reconnecting", self.host_name, mapped.server, exc)
                    self.drop_connection(mapped.server)
                    continue
                raise translate(exc, self.where(mapped), label) from None
        raise AssertionError("unreachable")


class SmbReader(io.RawIOBase):
    """A seekable reader of one remote file; ``read(n)`` is short only at the end of the file."""

    def __init__(self, files: SmbRemoteFiles, mapped: Mapped, raw: Any) -> None:
        super().__init__()
        self._files = files
        self._mapped = mapped
        self._raw = raw
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._position + offset
        else:
            target = self._size() + offset
        if target < 0:
            raise ValueError(f"negative seek position {target}")
        self._position = target
        return target

    def _size(self) -> int:
        return self._files.size(self._mapped.host_path)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = max(0, self._size() - self._position)
        chunks: list[bytes] = []
        wanted = size
        while wanted > 0:
            chunk = self._read_at(self._position, wanted)
            if not chunk:
                break
            chunks.append(chunk)
            self._position += len(chunk)
            wanted -= len(chunk)
        return b"".join(chunks)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _read_at(self, offset: int, size: int) -> bytes:
        label = f"read {self._mapped.host_path}"
        try:
            self._raw.seek(offset)
            return self._raw.read(size)
        except Exception as exc:  # every smbprotocol failure is translated
            raise translate(exc, self._files.where(self._mapped), label) from None

    def close(self) -> None:
        if not self.closed:
            try:
                self._raw.close()
            except Exception:  # a dead session cannot close the handle; the server drops it
                log.debug("closing %s failed", self._mapped.unc, exc_info=True)
        super().close()


class SmbWriter(io.RawIOBase):
    """A writer of one remote file (created or truncated)."""

    def __init__(self, files: SmbRemoteFiles, mapped: Mapped, raw: Any) -> None:
        super().__init__()
        self._files = files
        self._mapped = mapped
        self._raw = raw

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def _guard(self, action: Callable[[], T]) -> T:
        try:
            return action()
        except Exception as exc:  # every smbprotocol failure is translated
            raise translate(exc, self._files.where(self._mapped), f"write {self._mapped.host_path}") from None

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        written = 0
        while written < len(view):
            rest = view[written:]
            count = self._guard(lambda rest=rest: self._raw.write(rest))
            if not count:
                break
            written += count
        return written

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._guard(lambda: self._raw.seek(offset, whence))

    def tell(self) -> int:
        return self._guard(self._raw.tell)

    def truncate(self, size: int | None = None) -> int:
        return self._guard(lambda: self._raw.truncate(size))

    def close(self) -> None:
        if not self.closed:
            try:
                self._guard(self._raw.close)
            finally:
                super().close()
