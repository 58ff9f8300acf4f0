"""Running one operation script on a Windows host over WinRS (pywinrm's low-level Protocol).

Calling convention (``shared/contracts/winrm-wire.md``): see ``encoding``, which builds the
command line and the standard-input payload and decodes what comes back.

Shells: a small pool per host.  Calls that follow each other reuse one shell (codepage
65001), which is recycled after ``commands_per_shell`` commands and on the WSMan faults a
fresh shell cures (operation quota, shell gone).  A second shell is opened only while the
first is busy, so a one-hour merge does not block the next inventory refresh.  Every shell
has its own ``Protocol`` (and so its own ``requests`` session): nothing is shared between
threads.

Deadlines: pywinrm retries Receive time-outs forever and has no overall time-out, so every
call carries its own deadline: each HTTP request's read time-out and the WS-Man
OperationTimeout are clamped to the time left, and Receive time-outs are retried only while
time is left (the protocol steps in ``shell``).  A call that runs out abandons its shell
(cleaned up in the background) so the caller returns on time.  ``faults`` turns what
pywinrm and requests raise into the ``HostError`` users see.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from winrm.exceptions import WinRMError
from winrm.protocol import Protocol

from hvtui.config import WinRMSettings
from hvtui.errors import HostError
from hvtui.hosts.winrm.encoding import (
    BEGIN_MARKER,
    END_MARKER,
    SEPARATOR,
    CommandOutput,
    bootstrap_command,
    clixml_errors,
    operation_payload,
    script_text,
)
from hvtui.hosts.winrm.faults import map_exception
from hvtui.hosts.winrm.shell import DeadlineExceeded, Shell
from hvtui.logsetup import redact

# Re-exported: hosts/winrm/host.py imports the script encoding from here.
__all__ = [
    "BEGIN_MARKER",
    "END_MARKER",
    "SEPARATOR",
    "CommandOutput",
    "WinRMConnection",
    "bootstrap_command",
    "clixml_errors",
    "operation_payload",
    "script_text",
]

log = logging.getLogger(__name__)

ENCRYPTING_TRANSPORTS = ("ntlm", "kerberos", "credssp")
PYWINRM_TRANSPORTS = {
    "ntlm": "ntlm",
    "kerberos": "kerberos",
    "credssp": "credssp",
    "certificate": "certificate",
    "basic": "basic",
}


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
        self._idle: list[Shell] = []
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
    def _take(self, operation: str, deadline: float) -> Shell:
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
            return Shell(self._new_protocol(operation), self.host_name, self._timeouts())
        except BaseException:
            self._give_back(None)
            raise

    def _give_back(self, shell: Shell | None) -> None:
        with self._cond:
            self._busy -= 1
            if shell is not None and not self._closed:
                self._idle.append(shell)
                shell = None
            self._cond.notify()
        if shell is not None:
            shell.cleanup(None)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
        for shell in idle:
            shell.cleanup(None)

    # -- one call ----------------------------------------------------------------------------
    def run(self, operation: str, script: str, arguments: dict, timeout: float) -> CommandOutput:
        """Run ``script`` with ``arguments``; raise a mapped ``HostError`` on any transport problem."""
        started = time.monotonic()
        deadline = started + timeout
        shell = self._take(operation, deadline)
        keep: Shell | None = None
        command_id: str | None = None
        try:
            command_id = shell.start(operation, deadline)
            payload = operation_payload(script, arguments)
            shell.send(command_id, payload, deadline)
            output = shell.receive(command_id, deadline)
            shell.finish(command_id, deadline, self.settings.commands_per_shell)
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
        except DeadlineExceeded as exc:
            raise HostError(
                self.host_name,
                operation,
                f"{exc.message} ({timeout:g}s for this call): the host is unreachable or overloaded",
                kind="timeout",
            ) from None
        except HostError:
            raise
        except Exception as exc:  # pywinrm, requests, XML: mapped, never passed on raw
            err = map_exception(exc, self.host_name, self.settings, operation, timeout)
            if err.kind == "auth":
                self._forget_password()
            raise err from None
        finally:
            if keep is not None and keep.commands >= max(1, self.settings.commands_per_shell):
                log.debug("%s: recycling the shell after %d commands", self.host_name, keep.commands)
                self._give_back(None)
                keep.cleanup(None)
            elif keep is not None:
                self._give_back(keep)
            else:
                self._give_back(None)
                self._abandon(shell, command_id)

    def _forget_password(self) -> None:
        forget = getattr(self._password, "forget", None)
        if callable(forget):
            forget()

    def _abandon(self, shell: Shell, command_id: str | None) -> None:
        """Clean up a shell whose call failed, in the background: the caller returns now."""
        if shell.shell_id is None:
            shell.protocol.transport.close_session()
            return
        thread = threading.Thread(
            target=shell.cleanup, args=(command_id,), name=f"winrm-cleanup-{self.host_name}", daemon=True
        )
        thread.start()
