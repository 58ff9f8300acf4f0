"""``SmbRemoteFiles``: ``RemoteFiles`` over SMB3 with smbprotocol's ``smbclient`` API.

Each object keeps its own connection caches (smbclient's is process-wide), so closing one host's
files never drops another's connections.  Reads of a large file spread over ``connections``
connections to the server (lanes, one cache each): smbprotocol receives and decrypts every answer
of a connection on that connection's one thread, and Samba serves a connection from one process,
so a single connection caps a full backup well below what the link and the cores can do.  Every call passes the credentials, so a connection that
was dropped is set up again on the next call.  Encryption is required unless the host's config
says ``encrypt: false``; signing is always required.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar

import smbclient

from hvtui.errors import HostError, HvtuiError
from hvtui.hosts.ratelimit import RateLimiter
from hvtui.hosts.smb import fastpath
from hvtui.hosts.smb.errors import (
    Where,
    is_access_denied,
    is_connect_failure,
    is_connection_lost,
    is_transient,
    lost_error,
    share_denied_error,
    translate,
)
from hvtui.hosts.smb.reader import SmbReader
from hvtui.hosts.smb.shares import Mapped, ShareMap
from hvtui.hosts.smb.writer import SmbWriter
from hvtui.secrets import SecretError

log = logging.getLogger(__name__)

T = TypeVar("T")
PasswordProvider = Callable[[], str | None]
# Pauses before each new try after a lost connection or a busy server (about 8 s in all): long
# enough for a host's SMB service restart or a network blip, short enough to fail a job promptly.
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0)
# Connections per server that a file's reads spread over (measured with bench/engine.py's paired
# local/SMB fulls on a loaded 2-core loopback; see the issue 19 notes).
READ_CONNECTIONS = 2
_DIALECTS = {0x0202: "2.0.2", 0x0210: "2.1", 0x0300: "3.0", 0x0302: "3.0.2", 0x0311: "3.1.1"}
_CIPHERS = {1: "AES-128-CCM", 2: "AES-128-GCM", 3: "AES-256-CCM", 4: "AES-256-GCM"}


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
        read_ahead: int = 4,
        rate_limiter: RateLimiter | None = None,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
        sleep: Callable[[float], None] = time.sleep,
        connections: int = READ_CONNECTIONS,
    ) -> None:
        """``connections``: how many connections to the server one file's reads spread over
        (the first one also does everything else)."""
        self.host_name = host_name
        self.shares = shares
        self.port = port
        self.username = username
        self.encrypt = encrypt
        self.timeout = timeout
        self.read_ahead = read_ahead
        self.rate_limiter = rate_limiter
        self.retry_delays = retry_delays
        self.sleep = sleep
        self._seen_shares: set[str] = set()  # shares used successfully: one that vanishes later is "lost"
        self._password = password or (lambda: None)
        self.connections = max(1, connections)
        self._caches: list[dict[str, Any]] = [{} for _ in range(self.connections)]  # one per lane
        self._cache = self._caches[0]
        self._lock = threading.Lock()
        self._closed = False
        self._connecting = threading.Lock()  # one first connection per server, not one per thread
        fastpath.install()  # smbprotocol's receive path without its copies (fastpath.py says why)

    # -- RemoteFiles ---------------------------------------------------------------------

    def open_read(self, host_path: str) -> BinaryIO:
        mapped = self._map(host_path, "read")
        return SmbReader(self, mapped, self.open_raw(mapped, "read"), self.read_ahead)  # type: ignore[return-value]

    def open_write(self, host_path: str) -> BinaryIO:
        mapped = self._map(host_path, "write")
        return SmbWriter(self, mapped, self.open_raw_for_writing(mapped), self.read_ahead)  # type: ignore[return-value]

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

    def remove_folder(self, host_path: str) -> None:
        mapped = self._map(host_path, "remove folder")
        try:
            self._call(mapped, "remove folder", lambda: smbclient.rmdir(mapped.unc, **self._kwargs()))
        except HostError as err:
            if err.kind == "not-found":
                return
            if err.kind == "not-empty":
                raise HostError(self.host_name, err.operation, f"{err.detail}: it holds {self._contents(mapped)}", kind="not-empty") from None
            raise

    def _contents(self, mapped: Mapped, shown: int = 5) -> str:
        """A few of a folder's names, for a message (the folder left behind says what is in it)."""
        try:
            names = sorted(smbclient.listdir(mapped.unc, **self._kwargs()))
        except Exception as exc:  # only for the message: the folder's removal failed already
            return f"entries that could not be listed ({type(exc).__name__})"
        more = f" and {len(names) - shown} more" if len(names) > shown else ""
        return ", ".join(names[:shown]) + more

    def __enter__(self) -> SmbRemoteFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def security(self, host_path: str) -> str:
        """How the session behind ``host_path`` is protected, e.g. "SMB 3.1.1, encrypted (AES-128-GCM)"
        (doctor shows it); call after an operation on that path connected."""
        mapped = self._map(host_path, "security")
        connection = self._cache.get(f"{mapped.server.lower()}:{self.port}")
        sessions = list(connection.session_table.values()) if connection is not None else []
        if not sessions:
            return "not connected"
        session = sessions[0]
        dialect = _DIALECTS.get(connection.dialect, f"0x{connection.dialect:04x}")
        trees = list(session.tree_connect_table.values())
        if session.encrypt_data or any(tree.encrypt_data for tree in trees):
            cipher = _CIPHERS.get(connection.cipher_id or 1, "AES")  # SMB 3.0/3.0.2 encrypt with AES-128-CCM
            return f"SMB {dialect}, encrypted ({cipher})"
        return f"SMB {dialect}, signed, not encrypted" if session.signing_required else f"SMB {dialect}, NOT signed or encrypted"

    def listdir(self, host_path: str) -> list[str]:
        """The names in a folder (doctor reads each mapped share's root with it)."""
        mapped = self._map(host_path, "list")
        return self._call(mapped, "list folder", lambda: smbclient.listdir(mapped.unc, **self._kwargs()))

    def close(self) -> None:
        # After a connection still being set up (a reader's next lane): it is closed with the rest.
        with self._connecting, self._lock:
            self._closed = True
            for cache in self._caches:
                smbclient.reset_connection_cache(fail_on_error=False, connection_cache=cache)

    @property
    def open_connections(self) -> int:
        """How many connections (lanes) to servers are set up now."""
        with self._lock:
            return sum(len(cache) for cache in self._caches)

    @property
    def rate_limit(self) -> int | None:
        """The read-rate limit in bytes per second (the jobs view shows it beside the rate)."""
        return self.rate_limiter.rate if self.rate_limiter is not None else None

    # -- inside ---------------------------------------------------------------------------

    def open_raw_for_writing(self, mapped: Mapped, reconnecting: bool = False) -> Any:
        """Created or truncated; after a lost connection opened again as it is ("r+b")."""
        mode = "r+b" if reconnecting else "wb"
        return self._call(
            mapped, "write", lambda: smbclient.open_file(mapped.unc, mode, buffering=0, **self._kwargs()), reconnecting=reconnecting
        )

    def open_raw(self, mapped: Mapped, operation: str, reconnecting: bool = False, lane: int = 0) -> Any:
        """smbclient's unbuffered file object for reading ``mapped`` (shared read access: Hyper-V
        may hold the file open for reading too), on connection ``lane``."""
        return self._call(
            mapped,
            operation,
            lambda: smbclient.open_file(mapped.unc, "rb", buffering=0, share_access="r", **self._kwargs(lane)),
            reconnecting=reconnecting,
            lane=lane,
        )

    def where(self, mapped: Mapped) -> Where:
        return Where(
            host=self.host_name,
            host_path=mapped.host_path,
            unc=mapped.unc,
            server=mapped.server,
            share_unc=mapped.share_unc,
            port=self.port,
            username=self.username,
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

    def _kwargs(self, lane: int = 0) -> dict[str, Any]:
        if self._closed:
            raise HostError(self.host_name, "SMB", "the SMB connections of this host were closed", kind="failed")
        try:
            password = self._password()
        except SecretError as err:  # the source names the variable or command, never a value
            raise HostError(self.host_name, "SMB logon", str(err), kind="smb-auth") from None
        return {
            "username": self.username,
            "password": password,
            "port": self.port,
            "encrypt": self.encrypt,
            "require_signing": True,
            "connection_timeout": self.timeout,
            "connection_cache": self._caches[lane],
        }

    def drop_connection(self, server: str, lane: int = 0) -> None:
        """Forget the (dead) connection ``lane`` to ``server`` so that the next call connects afresh."""
        with self._lock:
            connection = self._caches[lane].pop(f"{server.lower()}:{self.port}", None)
        if connection is not None:
            try:
                connection.disconnect()
            except Exception:  # it is dead already; disconnecting is only tidying up
                log.debug("disconnecting a dead SMB connection to %s failed", server, exc_info=True)

    def _call(
        self, mapped: Mapped, operation: str, action: Callable[[], T], reconnecting: bool = False, lane: int = 0
    ) -> T:
        """``action()``; after a lost connection (or a busy server) it is tried again after each of
        the retry delays.  A first connection that is refused fails at once (a wrong port or a
        firewall does not heal in seconds).  Errors become ``HostError``s."""
        label = f"{operation} {mapped.host_path}"
        attempt = 0
        while True:
            try:
                if f"{mapped.server.lower()}:{self.port}" in self._caches[lane]:
                    result = action()
                else:
                    with self._connecting:
                        result = action()
            except HvtuiError:  # ours already (a refused secret, a closed object): clear as it is
                raise
            except Exception as exc:  # every smbprotocol failure is translated or retried
                lost = is_connection_lost(exc) and (reconnecting or not is_connect_failure(exc))
                if (lost or is_transient(exc)) and attempt < len(self.retry_delays):
                    log.info("%s: SMB %s on %s failed (%s); trying again", self.host_name, operation, mapped.server, exc)
                    if lost:
                        self.drop_connection(mapped.server, lane)
                        reconnecting = True
                    self.sleep(self.retry_delays[attempt])
                    attempt += 1
                    continue
                raise self._error(exc, mapped, label, reconnecting) from None
            self._seen_shares.add(mapped.share_unc.casefold())
            return result

    def _error(self, exc: Exception, mapped: Mapped, label: str, reconnecting: bool) -> HostError:
        error = translate(exc, self.where(mapped), label, reconnecting)
        if is_access_denied(exc) and not self._share_reachable(mapped):
            return share_denied_error(self.where(mapped), label)
        # A share this object has used that now answers "not found" has gone away during the job.
        if error.kind in ("not-found", "smb-share") and mapped.share_unc.casefold() in self._seen_shares and not self._share_reachable(mapped):
            return lost_error(self.where(mapped), label, f"the share {mapped.share_unc} went away")
        return error

    def _share_reachable(self, mapped: Mapped) -> bool:
        try:
            smbclient.stat(mapped.share_unc, **self._kwargs())
        except Exception:  # any failure: the share is not there for us
            return False
        return True
