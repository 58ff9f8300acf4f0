"""What went wrong in a WinRM call, in words: transport, TLS, auth and WS-Man faults -> ``HostError``."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import requests
from winrm.exceptions import (
    AuthenticationError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)

from hvtui.config import WinRMSettings
from hvtui.errors import HostError
from hvtui.hosts.winrm.errors import QUOTA_FAULTS, reason_of
from hvtui.logsetup import redact


def map_exception(exc: Exception, host: str, settings: WinRMSettings, operation: str, timeout: float) -> HostError:
    """A pywinrm, requests or XML exception of one call as the ``HostError`` users see (never passed on raw)."""
    where = f"{settings.address}:{settings.port}"
    if isinstance(exc, requests.exceptions.SSLError):
        return HostError(
            host,
            operation,
            f"TLS failure talking to {where}: {reason_of(exc)} "
            "(check the host's certificate, ca_bundle, and that the port is the HTTPS listener)",
            kind="tls",
        )
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return HostError(
            host, operation, f"host unreachable: {where} did not accept a connection", kind="unreachable"
        )
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return HostError(
            host,
            operation,
            f"no answer within {timeout:g}s (our deadline); the host is unreachable or overloaded",
            kind="timeout",
        )
    if isinstance(exc, requests.exceptions.ConnectionError):
        return HostError(host, operation, f"host unreachable: {where}: {reason_of(exc)}", kind="unreachable")
    if isinstance(exc, AuthenticationError):
        return HostError(
            host,
            operation,
            f"authentication refused by {where} (HTTP 401): check the user name, the password "
            f"and the transport ({settings.transport})",
            kind="auth",
        )
    if isinstance(exc, WSManFaultError):
        codes = {exc.wsman_fault_code, exc.wmierror_code}
        reason = redact(" ".join(str(exc.reason or "").split()))[:300]
        if codes & QUOTA_FAULTS:
            return HostError(host, operation, f"WinRM quota exceeded on the host: {reason}", kind="failed")
        if 5 in codes or "access is denied" in reason.lower():
            return HostError(host, operation, f"access denied by the WinRM service: {reason}", kind="access-denied")
        return HostError(host, operation, f"WinRM fault: {reason}", kind="protocol")
    if isinstance(exc, WinRMTransportError):
        return HostError(
            host, operation, f"unexpected HTTP {exc.code} from the WinRM service at {where}", kind="protocol"
        )
    if isinstance(exc, WinRMOperationTimeoutError):
        return HostError(host, operation, "the WinRM service timed out an operation", kind="timeout")
    if isinstance(exc, WinRMError):
        text = redact(str(exc))[:300]
        if "not installed" in text:  # kerberos or credssp without its extra
            extra = "credssp" if "credssp" in text.lower() else "kerberos"
            return HostError(
                host, operation, f"{text} (install it with: pip install 'pywinrm[{extra}]')", kind="config"
            )
        return HostError(host, operation, f"WinRM error: {text}", kind="protocol")
    if isinstance(exc, ET.ParseError | StopIteration | AssertionError | ValueError | KeyError):
        return HostError(
            host,
            operation,
            f"the WinRM service at {where} sent an answer we cannot read ({type(exc).__name__})",
            kind="protocol",
        )
    return HostError(host, operation, f"unexpected {type(exc).__name__}: {reason_of(exc)}", kind="protocol")
