"""SMB3 access to a WinRM host's files (``RemoteFiles``), with smbprotocol.

``open_remote_files`` builds one host's ``SmbRemoteFiles`` from its config (``smb:`` block).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from hvtui.config import SecretSource, SmbSettings
from hvtui.hosts.ratelimit import RateLimiter
from hvtui.hosts.smb.files import READ_CONNECTIONS, RETRY_DELAYS, SmbRemoteFiles
from hvtui.hosts.smb.reader import SmbReader
from hvtui.hosts.smb.shares import ShareMap, default_shares
from hvtui.hosts.smb.writer import SmbWriter

__all__ = ["RETRY_DELAYS", "SmbReader", "SmbRemoteFiles", "SmbWriter", "open_remote_files"]


def open_remote_files(
    host_name: str,
    address: str,
    smb: SmbSettings,
    winrm_username: str | None,
    winrm_password: Callable[[], str | None] | None,
    prompter: Callable[[str], str] | None = None,
    *,
    rate_limiter: RateLimiter | None = None,
    retry_delays: tuple[float, ...] = RETRY_DELAYS,
    connections: int = READ_CONNECTIONS,
) -> SmbRemoteFiles:
    """The host's files over SMB3: ``smb.shares`` (or the admin shares of ``address``), with the
    ``smb:`` block's user and password when it names them, else the WinRM ones.

    ``winrm_password`` is called at the first connection (a prompt is asked only then); the
    ``smb:`` block's own password source is resolved then too, with ``prompter`` for a prompt.
    ``rate_limiter`` is the host's (shared by all its readers); without one, ``smb.rate_limit``
    makes a new one.  ``connections``: how many connections one file's reads spread over.
    """
    if rate_limiter is None and smb.rate_limit is not None:
        rate_limiter = RateLimiter(smb.rate_limit)
    if smb.username is not None:
        source = smb.password or SecretSource()
        username, password = smb.username, _LazySecret(source, f"SMB password for {smb.username} on {host_name}", prompter)
    else:
        username, password = winrm_username, winrm_password
    return SmbRemoteFiles(
        host_name,
        ShareMap(smb.shares or default_shares(address)),
        port=smb.port,
        username=username,
        password=password,
        encrypt=smb.encrypt,
        timeout=smb.timeout,
        read_ahead=smb.read_ahead,
        rate_limiter=rate_limiter,
        retry_delays=retry_delays,
        connections=connections,
    )


class _LazySecret:
    """Resolves a secret on first use and keeps it in memory only."""

    def __init__(self, source: SecretSource, what: str, prompter: Callable[[str], str] | None) -> None:
        self._source, self._what, self._prompter = source, what, prompter
        self._value: str | None = None
        self._lock = threading.Lock()

    def __call__(self) -> str | None:
        with self._lock:
            if self._value is None:
                from hvtui.secrets import resolve_secret

                self._value = resolve_secret(self._source, self._what, self._prompter)
            return self._value
