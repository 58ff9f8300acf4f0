"""smbprotocol's exceptions -> ``HostError``s of the kinds named in ``hosts/remote_files.py``,
each naming the host, the path and what to fix."""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from smbprotocol import exceptions as smb
from smbprotocol.header import NtStatus

from hvtui.errors import HostError

SETUP_DOC = "docs/host-setup.md"

# NTSTATUS values that mean the session or the share went away under an open file.
_LOST_STATUSES = {
    NtStatus.STATUS_NETWORK_NAME_DELETED,
    NtStatus.STATUS_USER_SESSION_DELETED,
    getattr(NtStatus, "STATUS_NETWORK_SESSION_EXPIRED", 0xC000035C),
    NtStatus.STATUS_FILE_CLOSED,
}
_AUTH_STATUSES = {
    NtStatus.STATUS_LOGON_FAILURE,
    NtStatus.STATUS_WRONG_PASSWORD,
    NtStatus.STATUS_PASSWORD_EXPIRED,
    getattr(NtStatus, "STATUS_ACCOUNT_DISABLED", 0xC0000072),
    getattr(NtStatus, "STATUS_ACCOUNT_LOCKED_OUT", 0xC0000234),
    getattr(NtStatus, "STATUS_ACCOUNT_RESTRICTION", 0xC000006E),
}
# NTSTATUS values worth the same request again after a pause (the server is busy, not refusing).
_TRANSIENT_STATUSES = {
    NtStatus.STATUS_INSUFFICIENT_RESOURCES,
    NtStatus.STATUS_INSUFF_SERVER_RESOURCES,
    NtStatus.STATUS_IO_TIMEOUT,
    getattr(NtStatus, "STATUS_NETWORK_BUSY", 0xC00000BF),
    getattr(NtStatus, "STATUS_REQUEST_NOT_ACCEPTED", 0xC00000D0),
}
_DEAD_SOCKET_ERRNOS = {errno.EBADF, errno.ENOTCONN, errno.ESHUTDOWN}
_NOT_EMPTY_STATUS = getattr(NtStatus, "STATUS_DIRECTORY_NOT_EMPTY", 0xC0000101)
_NOT_FOUND_STATUSES = {NtStatus.STATUS_OBJECT_NAME_NOT_FOUND, NtStatus.STATUS_OBJECT_PATH_NOT_FOUND, NtStatus.STATUS_NO_SUCH_FILE}


@dataclass(frozen=True, slots=True)
class Where:
    """What an error message names: the host, the host path, its UNC path and how we connected."""

    host: str
    host_path: str
    unc: str
    server: str
    share_unc: str
    port: int
    username: str | None


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "ntstatus", None) if isinstance(exc, smb.SMBOSError) else getattr(exc, "status", None)


def is_connect_failure(exc: BaseException) -> bool:
    """smbclient could not open a TCP connection at all (refused, unreachable, timed out)."""
    return isinstance(exc, ValueError) and str(exc).startswith("Failed to connect")


def is_transient(exc: BaseException) -> bool:
    """A busy server or a request that timed out: the same request may well work after a pause."""
    return _status(exc) in _TRANSIENT_STATUSES or (isinstance(exc, smb.SMBException) and "timeout" in str(exc).lower())


def is_connection_lost(exc: BaseException) -> bool:
    """True when the connection or session is gone (worth reconnecting), not a refusal."""
    if isinstance(exc, smb.SMBConnectionClosed | ConnectionError | socket.timeout | TimeoutError | BrokenPipeError):
        return True
    # A send on the socket smbprotocol closed when the server went away: a plain OSError, not an SMB status.
    if type(exc) is OSError and exc.errno in _DEAD_SOCKET_ERRNOS:
        return True
    if isinstance(exc, smb.SMBResponseException) and exc.status in _LOST_STATUSES:
        return True
    if isinstance(exc, smb.SMBOSError) and exc.ntstatus in _LOST_STATUSES:
        return True
    return is_connect_failure(exc)


def is_access_denied(exc: BaseException) -> bool:
    return isinstance(exc, smb.AccessDenied) or _status(exc) == NtStatus.STATUS_ACCESS_DENIED


def share_denied_error(where: Where, operation: str) -> HostError:
    """The share itself refused the user (a tree connect denied): rights, not a wrong password."""
    return HostError(
        where.host,
        operation,
        f"the share {where.share_unc} refused {where.username or 'the user'} (access denied) for {where.host_path}; "
        "the admin shares C$ and D$ need a member of the host's Administrators group, and a local account also "
        f"LocalAccountTokenFilterPolicy=1 (see {SETUP_DOC}, 'Account'); or map the path to a share the account may use",
        kind="smb-share",
    )


def lost_error(where: Where, operation: str, what: str) -> HostError:
    return HostError(
        where.host,
        operation,
        f"{what} while working on {where.host_path} ({where.unc}) and could not be re-established; check that "
        "the host is up and the share still exists, then run the job again",
        kind="smb-lost",
    )


def translate(exc: BaseException, where: Where, operation: str, reconnecting: bool = False) -> HostError:
    """The ``HostError`` for ``exc`` raised while doing ``operation`` on ``where``; ``reconnecting``:
    the session had been working and was lost, so a failure to connect again means ``smb-lost``."""
    if isinstance(exc, HostError):
        return exc
    if reconnecting and is_connection_lost(exc):
        return lost_error(where, operation, f"the SMB session to {where.server} was lost")
    user = where.username or "(no user name)"
    path = f"{where.host_path} ({where.unc})"
    status = _status(exc)
    if isinstance(exc, smb.SMBAuthenticationError) or status in _AUTH_STATUSES:
        reason = "the password has expired" if status == NtStatus.STATUS_PASSWORD_EXPIRED else "the user name or password is wrong"
        return HostError(
            where.host,
            operation,
            f"the SMB server {where.server} refused the logon of {user} ({reason}) while opening {path}; "
            "check the host's smb: username and password source in the config (without them SMB uses the "
            "host's WinRM credentials)",
            kind="smb-auth",
        )
    # A tree connect to a missing share answers BAD_NETWORK_NAME; smbclient then tries a DFS referral,
    # whose failure (NOT_FOUND, not OBJECT_NAME_NOT_FOUND) is what reaches us.
    if isinstance(exc, smb.BadNetworkName | smb.NotFound) or status in (NtStatus.STATUS_BAD_NETWORK_NAME, NtStatus.STATUS_NOT_FOUND):
        return HostError(
            where.host,
            operation,
            f"the share {where.share_unc} does not exist on {where.server} (needed for {where.host_path}); "
            "map the path to an existing share under the host's smb: shares: in the config, or create the share "
            f"(the admin shares C$ and D$ exist unless disabled; see {SETUP_DOC}, 'Shares for the VM files')",
            kind="smb-share",
        )
    if isinstance(exc, smb.SMBException) and "encryption is required" in str(exc):
        return HostError(
            where.host,
            operation,
            f"the SMB server {where.server} cannot encrypt, and encryption is required for {path}; enable SMB 3 "
            "encryption on the host (Set-SmbServerConfiguration -EncryptData $true), or on a trusted network set "
            "smb: {encrypt: false} for this host (signing stays required)",
            kind="smb-encryption",
        )
    if is_access_denied(exc):
        # The share itself refusing the user is told apart by the caller (share_denied_error).
        return HostError(
            where.host,
            operation,
            f"access to {path} was denied to {user}, though the share lets it in; give the account rights on "
            "the file (Hyper-V's VM files grant only SYSTEM, the VMs' own accounts and Administrators; "
            f"see {SETUP_DOC}, 'Shares for the VM files')",
            kind="failed",
        )
    if status in _NOT_FOUND_STATUSES or (isinstance(exc, FileNotFoundError | smb.SMBOSError) and getattr(exc, "errno", None) == errno.ENOENT):
        return HostError(where.host, operation, f"{path} does not exist on the host", kind="not-found")
    if status == _NOT_EMPTY_STATUS or (isinstance(exc, OSError) and exc.errno == errno.ENOTEMPTY):
        return HostError(where.host, operation, f"the folder {path} is not empty", kind="not-empty")
    if is_connect_failure(exc):
        return HostError(
            where.host,
            operation,
            f"cannot connect to the SMB server {where.server} on port {where.port} for {where.host_path}: "
            f"{str(exc).split(': ', 1)[-1]}; check that the host is up and TCP {where.port} is open to this machine "
            f"(see {SETUP_DOC}, 'Firewall')",
            kind="smb-share",
        )
    if is_connection_lost(exc) or is_transient(exc):
        return lost_error(where, operation, f"the SMB session to {where.server} was lost")
    if isinstance(exc, smb.DiskFull):
        return HostError(where.host, operation, f"the host's volume is full while writing {path}; free space on it", kind="failed")
    detail = str(exc) or type(exc).__name__
    return HostError(where.host, operation, f"SMB error on {path}: {detail}", kind="failed")
