"""Turn what went wrong on the wire into one readable ``HostError``.

Two sources: failure documents the host's script wrote (``{"ok": false, "error",
"fqid"}``, classified by PowerShell's ``FullyQualifiedErrorId``), and exceptions from
pywinrm / requests (classified by type, HTTP status and WS-Management fault code).
Every message names the host and the operation (``HostError`` prefixes both) and never
carries a secret: exception texts are reduced to their reason and passed through the log
redactor, and chained causes are dropped by the callers (``raise ... from None``).
"""

from __future__ import annotations

import re

from hvtui.errors import HostError, NotFoundError
from hvtui.logsetup import redact

# WS-Management fault codes (wsmerror.h).
WSMAN_TIMED_OUT = 2150858793  # Receive had nothing before OperationTimeout
WSMAN_SHELL_NOT_FOUND = 2150858843  # the shell died (idle time-out, MaxShellRunTime, service restart)
WSMAN_QUOTA_MAX_SHELLS = 2150859173
WSMAN_QUOTA_MAX_OPERATIONS = 2150859174  # WinRS never decrements operations per shell
WSMAN_QUOTA_USER = 2150859175
WSMAN_QUOTA_SYSTEM = 2150859176
WSMAN_QUOTA_MAX_SHELLUSERS = 2150859179
WSMAN_QUOTA_MAX_COMMANDS_PER_SHELL_PPQ = 2150859241
WSMAN_QUOTA_MAX_OPERATIONS_USER_PPQ = 2150859240
WINRS_REGISTRY_READ = 2147943418  # "error reading registry key": WinRb resets the shell on it too
ERROR_BUSY = 170

# Faults a fresh shell cures: the per-shell operation count ran out, or the shell is gone
# (the same set WinRb's shell reset uses, plus the per-plugin command quota).
SHELL_RECYCLE_FAULTS = frozenset(
    {WSMAN_QUOTA_MAX_OPERATIONS, WSMAN_QUOTA_MAX_COMMANDS_PER_SHELL_PPQ, WSMAN_SHELL_NOT_FOUND, WINRS_REGISTRY_READ}
)
QUOTA_FAULTS = frozenset(
    {
        WSMAN_QUOTA_MAX_SHELLS,
        WSMAN_QUOTA_MAX_OPERATIONS,
        WSMAN_QUOTA_USER,
        WSMAN_QUOTA_SYSTEM,
        WSMAN_QUOTA_MAX_SHELLUSERS,
        WSMAN_QUOTA_MAX_COMMANDS_PER_SHELL_PPQ,
        WSMAN_QUOTA_MAX_OPERATIONS_USER_PPQ,
    }
)

_MAX_REMOTE_MESSAGE = 400

# FullyQualifiedErrorId -> kind.  PowerShell builds the id as "<ErrorId>,<command type>";
# the Hyper-V module uses e.g. "InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM"
# when Get-VM -Id finds nothing, and "ObjectNotFound,..." for a missing snapshot.
_MODULE_MISSING_IDS = (
    "CommandNotFoundException",
    "Modules_ModuleNotFound",
    "CouldNotAutoLoadModule",
    "HvtuiModuleMissing",
)
_ACCESS_DENIED_IDS = ("AccessDenied", "UnauthorizedAccess", "PermissionDenied", "HvtuiAccessDenied")
_NOT_FOUND_IDS = ("ObjectNotFound", "HvtuiNotFound", "VMNotFound", "VMSnapshotNotFound", "ItemNotFound")


def _short(text: str) -> str:
    text = " ".join(redact(str(text)).split())
    return text if len(text) <= _MAX_REMOTE_MESSAGE else text[: _MAX_REMOTE_MESSAGE - 1] + "…"


def _what_from_fqid(fqid: str) -> str:
    command = fqid.rsplit(".", 1)[-1].lower()
    if "snapshot" in command or "checkpoint" in command:
        return "checkpoint"
    if command in {"getvm", "setvm", "startvm", "stopvm"} or command.endswith("vm"):
        return "VM"
    return "object"


def remote_failure(host: str, operation: str, message: str, fqid: str) -> HostError:
    """The error for a failure document a script wrote on the host."""
    fqid = fqid or ""
    text = _short(message or "the script failed without a message")
    head = fqid.split(",", 1)[0]
    if any(head.startswith(ident) or ident in fqid for ident in _MODULE_MISSING_IDS):
        return HostError(
            host,
            operation,
            "the Hyper-V PowerShell module is not available on the host "
            f"(install the Hyper-V management tools there): {text}",
            kind="module-missing",
        )
    if any(ident in head for ident in _ACCESS_DENIED_IDS):
        return HostError(
            host,
            operation,
            f"access denied (the account needs Hyper-V Administrators or local admin rights): {text}",
            kind="access-denied",
        )
    if any(ident in head for ident in _NOT_FOUND_IDS) or (
        head == "InvalidParameter" and ".HyperV.PowerShell.Commands.Get" in fqid
    ):
        return NotFoundError(host, operation, f"{_what_from_fqid(fqid)} not found: {text}")
    suffix = f" [{fqid}]" if fqid else ""
    return HostError(host, operation, f"{text}{suffix}", kind="failed")


_ERRNO_REASON = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")
# OpenSSL's reason runs up to its "(_ssl.c:NNN)" suffix or the quote that closes the wrapped
# exception's text; it may quote the name itself ("... not valid for 'hv01'."), so a quote
# inside it does not end it.
_VERIFY_DETAIL = re.compile(r"certificate verify failed: (.+?)\s*(?:\(_ssl\.c:\d+\)|[\"']\)|$)")


def reason_of(exc: BaseException) -> str:
    """A short, secret-free reason for a requests/urllib3 exception (no URLs, no headers)."""
    text = str(exc)
    match = _ERRNO_REASON.search(text)
    if match:
        return _short(match.group(1).strip())
    lowered = text.lower()
    for needle, reason in (
        ("name or service not known", "name not known (DNS)"),
        ("nodename nor servname", "name not known (DNS)"),
        ("getaddrinfo failed", "name not known (DNS)"),
        ("temporary failure in name resolution", "temporary failure in name resolution (DNS)"),
        ("connection refused", "connection refused"),
        ("connection reset", "connection reset by the host"),
        ("remotedisconnected", "the host closed the connection without answering"),
        ("connection aborted", "the host closed the connection"),
        ("certificate verify failed", "certificate verify failed"),
        ("wrong version number", "the port does not speak TLS (is it the HTTP listener?)"),
        ("hostname mismatch", "certificate name does not match the host"),
        ("read timed out", "read timed out"),
        ("connect timeout", "connection timed out"),
        ("timed out", "timed out"),
    ):
        if needle in lowered:
            if needle == "certificate verify failed":
                detail = _VERIFY_DETAIL.search(text)
                if detail:
                    return _short(f"certificate verify failed: {detail.group(1).strip()}")
            return reason
    return type(exc).__name__
