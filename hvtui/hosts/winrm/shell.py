"""One WinRS shell and the protocol steps run on it, each bounded by the caller's deadline.

pywinrm retries Receive time-outs forever and has no overall time-out, so every step
carries the call's deadline: each HTTP request's read time-out and the WS-Man
OperationTimeout are clamped to the time left, and Receive time-outs are retried only while
time is left (``DeadlineExceeded`` once it is not).  Start recycles the shell once on the
WSMan faults a fresh shell cures; Send retries a busy host a few times.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import requests
from winrm.exceptions import WinRMOperationTimeoutError, WSManFaultError
from winrm.protocol import Protocol

from hvtui.hosts.winrm.encoding import CommandOutput, bootstrap_command
from hvtui.hosts.winrm.errors import ERROR_BUSY, SHELL_RECYCLE_FAULTS, reason_of

log = logging.getLogger(__name__)

CODEPAGE_UTF8 = 65001
STDIN_CHUNK = 64 * 1024  # raw bytes per Send; base64 keeps each envelope far below 150 KiB
SEND_ATTEMPTS = 3
CLEANUP_TIMEOUT = 2.0  # seconds each background Signal/Delete of an abandoned shell may take

T = TypeVar("T")


class DeadlineExceeded(Exception):
    """Our own deadline passed, or the host stopped answering an HTTP request."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Shell:
    """One WinRS shell and the Protocol (HTTP session) that owns it."""

    def __init__(self, protocol: Protocol, host_name: str, timeouts: tuple[int, int]) -> None:
        self.protocol = protocol
        self.host_name = host_name  # for the log
        self.timeouts = timeouts  # (WS-Man OperationTimeout, HTTP read time-out) in seconds, from the settings
        self.shell_id: str | None = None
        self.commands = 0

    # -- protocol steps, each bounded by the deadline --------------------------------------------
    def call(self, deadline: float, fn: Callable[[], T], receive: bool = False) -> T:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded("no answer before our deadline")
        operation_timeout, read_timeout = self.timeouts
        if receive:
            # The server holds a Receive up to OperationTimeout: never past our deadline.
            self.protocol.operation_timeout_sec = max(1, min(operation_timeout, int(left) - 1))
        else:
            self.protocol.operation_timeout_sec = operation_timeout
        self.protocol.transport.read_timeout_sec = max(0.05, min(read_timeout, left))
        try:
            return fn()
        except requests.exceptions.ReadTimeout:
            if read_timeout >= left:
                raise DeadlineExceeded("no answer before our deadline") from None
            raise DeadlineExceeded(
                f"the host stopped answering (no reply to one request within {read_timeout}s)"
            ) from None

    def open(self, deadline: float) -> None:
        if self.shell_id is None:
            self.shell_id = self.call(deadline, lambda: self.protocol.open_shell(codepage=CODEPAGE_UTF8))
            self.commands = 0
            log.debug("%s: opened a WinRS shell", self.host_name)

    def start(self, operation: str, deadline: float) -> str:
        command = bootstrap_command()
        for attempt in (1, 2):
            self.open(deadline)
            shell_id = self.shell_id
            assert shell_id is not None
            try:
                command_id = self.call(
                    deadline,
                    lambda shell_id=shell_id: self.protocol.run_command(shell_id, command, console_mode_stdin=False),
                )
            except WSManFaultError as fault:
                codes = {fault.wsman_fault_code, fault.wmierror_code}
                if attempt == 1 and codes & SHELL_RECYCLE_FAULTS:
                    # WinRS never gives back operations of finished commands: a new shell is the cure.
                    log.info("%s: %s: WinRM quota or shell fault, recycling the shell", self.host_name, operation)
                    old = Shell(self.protocol, self.host_name, self.timeouts)
                    old.shell_id = self.shell_id
                    self.shell_id = None
                    old.close_quietly(deadline)
                    continue
                raise
            self.commands += 1
            return command_id
        raise AssertionError("unreachable")  # pragma: no cover

    def send(self, command_id: str, payload: bytes, deadline: float) -> None:
        shell_id = self.shell_id
        assert shell_id is not None
        chunks = [payload[i : i + STDIN_CHUNK] for i in range(0, len(payload), STDIN_CHUNK)] or [b""]
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            for attempt in range(1, SEND_ATTEMPTS + 1):
                try:
                    self.call(
                        deadline,
                        lambda chunk=chunk, last=last: self.protocol.send_command_input(
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

    def receive(self, command_id: str, deadline: float) -> CommandOutput:
        shell_id = self.shell_id
        assert shell_id is not None
        stdout: list[bytes] = []
        stderr: list[bytes] = []
        while True:
            try:
                out, err, code, done = self.call(
                    deadline,
                    lambda: self.protocol.get_command_output_raw(shell_id, command_id),
                    receive=True,
                )
            except WinRMOperationTimeoutError:
                continue  # nothing yet; call raises DeadlineExceeded once our deadline has passed
            stdout.append(out)
            stderr.append(err)
            if done:
                return CommandOutput(b"".join(stdout), b"".join(stderr), code)

    def finish(self, command_id: str, deadline: float, commands_per_shell: int) -> None:
        shell_id = self.shell_id
        assert shell_id is not None
        try:
            self.call(deadline, lambda: self.protocol.cleanup_command(shell_id, command_id))
        except Exception as exc:  # the output is in; a failed Signal only costs this shell
            log.debug("%s: Signal after the command failed (%s); dropping the shell", self.host_name, reason_of(exc))
            self.commands = max(self.commands, commands_per_shell)

    # -- closing --------------------------------------------------------------------------------
    def close_quietly(self, deadline: float) -> None:
        if self.shell_id is None:
            return
        shell_id = self.shell_id
        try:
            self.call(deadline, lambda: self.protocol.close_shell(shell_id, close_session=False))
        except Exception as exc:
            log.debug("%s: closing a shell failed (%s)", self.host_name, reason_of(exc))

    def cleanup(self, command_id: str | None) -> None:
        shell_id = self.shell_id
        protocol = self.protocol
        protocol.transport.read_timeout_sec = CLEANUP_TIMEOUT
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
            self.shell_id = None
            protocol.transport.close_session()

