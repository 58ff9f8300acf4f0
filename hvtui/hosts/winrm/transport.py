"""Running one operation script on a Windows host over WinRS (pywinrm's low-level Protocol).

Calling convention (``shared/contracts/winrm-wire.md``): a fixed bootstrap goes on the
command line as ``-EncodedCommand``; the real script and its JSON arguments go over
standard input as UTF-8 bytes, ``<script> \\0\\0\\0\\0 <json>``.  Nothing a user typed is
ever pasted into script text.

Shells: a small pool per host.  Calls that follow each other reuse one shell (codepage
65001), which is recycled after ``commands_per_shell`` commands and on the WSMan faults a
fresh shell cures (operation quota, shell gone).  A second shell is opened only while the
first is busy, so a one-hour merge does not block the next inventory refresh.  Every shell
has its own ``Protocol`` (and so its own ``requests`` session): nothing is shared between
threads.

Deadlines: pywinrm retries Receive time-outs forever and has no overall time-out, so every
call carries its own deadline: each HTTP request's read time-out and the WS-Man
OperationTimeout are clamped to the time left, and Receive time-outs are retried only while
time is left.  A call that runs out abandons its shell (cleaned up in the background) so
the caller returns on time.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import TypeVar

import requests
from winrm.exceptions import (
    AuthenticationError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)
from winrm.protocol import Protocol

from hvtui.config import WinRMSettings
from hvtui.errors import HostError
from hvtui.hosts.winrm.errors import (
    ERROR_BUSY,
    QUOTA_FAULTS,
    SHELL_RECYCLE_FAULTS,
    reason_of,
)
from hvtui.logsetup import redact

log = logging.getLogger(__name__)

BEGIN_MARKER = "<<<HVTUI-BEGIN>>>"
END_MARKER = "<<<HVTUI-END>>>"
SEPARATOR = b"\0\0\0\0"
CODEPAGE_UTF8 = 65001
STDIN_CHUNK = 64 * 1024  # raw bytes per Send; base64 keeps each envelope far below 150 KiB
SEND_ATTEMPTS = 3
ENCRYPTING_TRANSPORTS = ("ntlm", "kerberos", "credssp")
PYWINRM_TRANSPORTS = {
    "ntlm": "ntlm",
    "kerberos": "kerberos",
    "credssp": "credssp",
    "certificate": "certificate",
    "basic": "basic",
}
_CLEANUP_TIMEOUT = 2.0  # seconds each background Signal/Delete of an abandoned shell may take

T = TypeVar("T")


def script_text(name: str) -> str:
    """A template from ``hosts/winrm/scripts`` (``inventory``, ``checkpoint_create``, ...)."""
    return resources.files("hvtui.hosts.winrm").joinpath("scripts", f"{name}.ps1").read_text(encoding="utf-8")


def bootstrap_command() -> str:
    """The command line: PowerShell with the fixed bootstrap as ``-EncodedCommand``."""
    encoded = base64.b64encode(script_text("bootstrap").encode("utf-16-le")).decode("ascii")
    return f"powershell -NoProfile -NonInteractive -ExecutionPolicy Unrestricted -EncodedCommand {encoded}"


def operation_payload(script: str, arguments: dict) -> bytes:
    """What goes over standard input. JSON is ASCII-escaped so no code page can garble it."""
    return script.encode("utf-8") + SEPARATOR + json.dumps(arguments, ensure_ascii=True).encode("ascii")


@dataclass(frozen=True, slots=True)
class CommandOutput:
    stdout: bytes
    stderr: bytes
    exit_code: int


class _Timeout(Exception):
    """Our own deadline passed, or the host stopped answering an HTTP request."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Shell:
    """One WinRS shell and the Protocol (HTTP session) that owns it."""

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self.shell_id: str | None = None
        self.commands = 0


_CLIXML_STRING = re.compile(r'<S S="Error">(.*?)</S>', re.DOTALL)
_CLIXML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def clixml_errors(stderr: bytes) -> str:
    """The error text in standard error; CLIXML (progress records, error strings) decoded."""
    text = stderr.decode("utf-8", errors="replace")
    if "#< CLIXML" in text:
        parts = [_CLIXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), part) for part in _CLIXML_STRING.findall(text)]
        text = "".join(parts)
    text = " ".join(text.split())
    return text[:400]


class WinRMConnection:
    """Runs scripts on one host. Thread-safe; see the module docstring."""

    def __init__(
        self,
        host_name: str,
        settings: WinRMSettings,
        password: Callable[[], str | None],
        *,
        allow_basic_over_http_for_tests: bool = False,
        max_shells: int = 2,
    ) -> None:
        self.host_name = host_name
        self.settings = settings
        self._password = password
        self._allow_test_basic = allow_basic_over_http_for_tests
        self._max_shells = max(1, max_shells)
        self._idle: list[_Shell] = []
        self._busy = 0
        self._cond = threading.Condition()
        self._closed = False

    # -- configuration ---------------------------------------------------------------------
    def security_problem(self) -> str | None:
        """Why these settings must not be used (checked again here, whatever the config layer did)."""
        s = self.settings
        if s.scheme not in ("http", "https"):
            return f"scheme {s.scheme!r} is not supported (expected https or http)"
        if s.transport not in PYWINRM_TRANSPORTS:
            return f"transport {s.transport!r} is not supported (expected one of {', '.join(PYWINRM_TRANSPORTS)})"
        if s.scheme == "http":
            if s.transport == "basic" and self._allow_test_basic:
                return None  # loopback test server only; never reachable from a config file
            if not s.allow_http:
                return "plain HTTP needs allow_http: true (and a transport that encrypts messages)"
            if s.transport not in ENCRYPTING_TRANSPORTS:
                return (
                    f"transport {s.transport} over plain HTTP would not encrypt messages; "
                    "use https, or ntlm, kerberos or credssp"
                )
        if s.transport == "certificate" and (s.cert_pem is None or s.cert_key_pem is None):
            return "the certificate transport needs cert_pem and cert_key_pem"
        return None

    @property
    def endpoint(self) -> str:
        address = self.settings.address
        if ":" in address and not address.startswith("["):
            address = f"[{address}]"  # an IPv6 literal
        return f"{self.settings.scheme}://{address}:{self.settings.port}/wsman"

    def _timeouts(self) -> tuple[int, int]:
        operation = max(1, int(self.settings.operation_timeout))
        return operation, operation + 10

    def _new_protocol(self, operation: str) -> Protocol:
        problem = self.security_problem()
        if problem:
            raise HostError(self.host_name, operation, problem, kind="config")
        s = self.settings
        uses_password = s.transport in ("ntlm", "credssp", "basic")
        password = self._password() if uses_password else None
        operation_timeout, read_timeout = self._timeouts()
        if s.scheme == "http" and s.transport in ENCRYPTING_TRANSPORTS:
            encryption = "always"  # refuse to run unencrypted over plain HTTP
        elif s.scheme == "http":
            encryption = "never"
        else:
            encryption = "auto"  # TLS already encrypts
        try:
            return Protocol(
                endpoint=self.endpoint,
                transport=PYWINRM_TRANSPORTS[s.transport],
                username=s.username,
                password=password,
                server_cert_validation="validate" if s.verify_tls else "ignore",
                ca_trust_path=str(s.ca_bundle) if s.ca_bundle else None,
                cert_pem=str(s.cert_pem) if s.cert_pem else None,
                cert_key_pem=str(s.cert_key_pem) if s.cert_key_pem else None,
                read_timeout_sec=read_timeout,
                operation_timeout_sec=operation_timeout,
                message_encryption=encryption,
                proxy=None,  # environment proxies would route WinRM to internal hosts through them
            )
        except (WinRMError, ValueError) as exc:
            raise HostError(
                self.host_name, operation, f"cannot set up WinRM: {redact(str(exc))}", kind="config"
            ) from None

    # -- the pool --------------------------------------------------------------------------
    def _take(self, operation: str, deadline: float) -> _Shell:
        with self._cond:
            while not self._idle and self._busy >= self._max_shells:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HostError(
                        self.host_name,
                        operation,
                        "the host is busy with other operations (no free WinRM shell before the deadline)",
                        kind="timeout",
                    )
                self._cond.wait(left)
            self._busy += 1
            if self._idle:
                return self._idle.pop()
        try:
            return _Shell(self._new_protocol(operation))
        except BaseException:
            self._give_back(None)
            raise

    def _give_back(self, shell: _Shell | None) -> None:
        with self._cond:
            self._busy -= 1
            if shell is not None and not self._closed:
                self._idle.append(shell)
                shell = None
            self._cond.notify()
        if shell is not None:
            self._cleanup(shell, None)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
        for shell in idle:
            self._cleanup(shell, None)

    # -- one call ----------------------------------------------------------------------------
    def run(self, operation: str, script: str, arguments: dict, timeout: float) -> CommandOutput:
        """Run ``script`` with ``arguments``; raise a mapped ``HostError`` on any transport problem."""
        started = time.monotonic()
        deadline = started + timeout
        shell = self._take(operation, deadline)
        keep: _Shell | None = None
        command_id: str | None = None
        try:
            command_id = self._start(shell, operation, deadline)
            payload = operation_payload(script, arguments)
            self._send(shell, command_id, payload, deadline)
            output = self._receive(shell, command_id, deadline)
            self._finish(shell, command_id, deadline)
            command_id = None
            keep = shell
            log.debug(
                "%s: %s: exit code %d, %d bytes out, %d bytes err, %.2fs (shell used %d times)",
                self.host_name,
                operation,
                output.exit_code,
                len(output.stdout),
                len(output.stderr),
                time.monotonic() - started,
                shell.commands,
            )
            return output
        except _Timeout as exc:
            raise HostError(
                self.host_name,
                operation,
                f"{exc.message} ({timeout:g}s for this call): the host is unreachable or overloaded",
                kind="timeout",
            ) from None
        except HostError:
            raise
        except Exception as exc:  # pywinrm, requests, XML: mapped, never passed on raw
            err = self._map_exception(exc, operation, timeout)
            if err.kind == "auth":
                self._forget_password()
            raise err from None
        finally:
            if keep is not None and keep.commands >= max(1, self.settings.commands_per_shell):
                log.debug("%s: recycling the shell after %d commands", self.host_name, keep.commands)
                self._give_back(None)
                self._cleanup(keep, None)
            elif keep is not None:
                self._give_back(keep)
            else:
                self._give_back(None)
                self._abandon(shell, command_id)

    def _forget_password(self) -> None:
        forget = getattr(self._password, "forget", None)
        if callable(forget):
            forget()

    # -- protocol steps, each bounded by the deadline --------------------------------------------
    def _call(self, shell: _Shell, deadline: float, fn: Callable[[], T], receive: bool = False) -> T:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Timeout("no answer before our deadline")
        operation_timeout, read_timeout = self._timeouts()
        if receive:
            # The server holds a Receive up to OperationTimeout: never past our deadline.
            shell.protocol.operation_timeout_sec = max(1, min(operation_timeout, int(left) - 1))
        else:
            shell.protocol.operation_timeout_sec = operation_timeout
        shell.protocol.transport.read_timeout_sec = max(0.05, min(read_timeout, left))
        try:
            return fn()
        except requests.exceptions.ReadTimeout:
            if read_timeout >= left:
                raise _Timeout("no answer before our deadline") from None
            raise _Timeout(f"the host stopped answering (no reply to one request within {read_timeout}s)") from None

    def _open(self, shell: _Shell, deadline: float) -> None:
        if shell.shell_id is None:
            shell.shell_id = self._call(shell, deadline, lambda: shell.protocol.open_shell(codepage=CODEPAGE_UTF8))
            shell.commands = 0
            log.debug("%s: opened a WinRS shell", self.host_name)

    def _start(self, shell: _Shell, operation: str, deadline: float) -> str:
        command = bootstrap_command()
        for attempt in (1, 2):
            self._open(shell, deadline)
            shell_id = shell.shell_id
            assert shell_id is not None
            try:
                command_id = self._call(
                    shell,
                    deadline,
                    lambda shell_id=shell_id: shell.protocol.run_command(shell_id, command, console_mode_stdin=False),
                )
            except WSManFaultError as fault:
                codes = {fault.wsman_fault_code, fault.wmierror_code}
                if attempt == 1 and codes & SHELL_RECYCLE_FAULTS:
                    # WinRS never gives back operations of finished commands: a new shell is the cure.
                    log.info("%s: %s: WinRM quota or shell fault, recycling the shell", self.host_name, operation)
                    old = _Shell(shell.protocol)
                    old.shell_id = shell.shell_id
                    shell.shell_id = None
                    self._close_shell_quietly(old, deadline)
                    continue
                raise
            shell.commands += 1
            return command_id
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, shell: _Shell, command_id: str, payload: bytes, deadline: float) -> None:
        shell_id = shell.shell_id
        assert shell_id is not None
        chunks = [payload[i : i + STDIN_CHUNK] for i in range(0, len(payload), STDIN_CHUNK)] or [b""]
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            for attempt in range(1, SEND_ATTEMPTS + 1):
                try:
                    self._call(
                        shell,
                        deadline,
                        lambda chunk=chunk, last=last: shell.protocol.send_command_input(
                            shell_id, command_id, chunk, end=last
                        ),
                    )
                    break
                except WinRMOperationTimeoutError:
                    # The host was slow to acknowledge; the input is still processed (as Ansible found).
                    log.debug("%s: Send timed out on the host side; continuing", self.host_name)
                    break
                except WSManFaultError as fault:
                    busy = ERROR_BUSY in (fault.wsman_fault_code, fault.wmierror_code)
                    if not busy or attempt == SEND_ATTEMPTS:
                        raise
                    log.debug("%s: host busy on Send (attempt %d), retrying", self.host_name, attempt)
                    pause = min(0.2 * attempt, max(0.0, deadline - time.monotonic()))
                    time.sleep(pause)

    def _receive(self, shell: _Shell, command_id: str, deadline: float) -> CommandOutput:
        shell_id = shell.shell_id
        assert shell_id is not None
        stdout: list[bytes] = []
        stderr: list[bytes] = []
        while True:
            try:
                out, err, code, done = self._call(
                    shell,
                    deadline,
                    lambda: shell.protocol.get_command_output_raw(shell_id, command_id),
                    receive=True,
                )
            except WinRMOperationTimeoutError:
                continue  # nothing yet; _call raises _Timeout once our deadline has passed
            stdout.append(out)
            stderr.append(err)
            if done:
                return CommandOutput(b"".join(stdout), b"".join(stderr), code)

    def _finish(self, shell: _Shell, command_id: str, deadline: float) -> None:
        shell_id = shell.shell_id
        assert shell_id is not None
        try:
            self._call(shell, deadline, lambda: shell.protocol.cleanup_command(shell_id, command_id))
        except Exception as exc:  # the output is in; a failed Signal only costs this shell
            log.debug("%s: Signal after the command failed (%s); dropping the shell", self.host_name, reason_of(exc))
            shell.commands = max(shell.commands, self.settings.commands_per_shell)

    # -- closing shells -----------------------------------------------------------------------
    def _close_shell_quietly(self, shell: _Shell, deadline: float) -> None:
        if shell.shell_id is None:
            return
        shell_id = shell.shell_id
        try:
            self._call(shell, deadline, lambda: shell.protocol.close_shell(shell_id, close_session=False))
        except Exception as exc:
            log.debug("%s: closing a shell failed (%s)", self.host_name, reason_of(exc))

    def _abandon(self, shell: _Shell, command_id: str | None) -> None:
        """Clean up a shell whose call failed, in the background: the caller returns now."""
        if shell.shell_id is None:
            shell.protocol.transport.close_session()
            return
        thread = threading.Thread(
            target=self._cleanup, args=(shell, command_id), name=f"winrm-cleanup-{self.host_name}", daemon=True
        )
        thread.start()

    def _cleanup(self, shell: _Shell, command_id: str | None) -> None:
        shell_id = shell.shell_id
        protocol = shell.protocol
        protocol.transport.read_timeout_sec = _CLEANUP_TIMEOUT
        try:
            if command_id is not None and shell_id is not None:
                protocol.cleanup_command(shell_id, command_id)
        except Exception as exc:
            log.debug("%s: Signal of an abandoned command failed (%s)", self.host_name, reason_of(exc))
        try:
            if shell_id is not None:
                protocol.close_shell(shell_id, close_session=True)
        except Exception as exc:
            log.debug("%s: Delete of a shell failed (%s)", self.host_name, reason_of(exc))
        finally:
            shell.shell_id = None
            protocol.transport.close_session()

    # -- errors ---------------------------------------------------------------------------------
    def _map_exception(self, exc: Exception, operation: str, timeout: float) -> HostError:
        host = self.host_name
        where = f"{self.settings.address}:{self.settings.port}"
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
                f"and the transport ({self.settings.transport})",
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
