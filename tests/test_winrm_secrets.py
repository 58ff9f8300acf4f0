"""The WinRM password never reaches a log, an error message or a traceback."""

from __future__ import annotations

import base64
import logging
import traceback
from collections.abc import Iterator

import pytest
from wsman_server import PASSWORD_ENV, MemoryBackend, WSManServer, failure_answer, free_port, make_winrm_host

from hvtui.config import SecretSource
from hvtui.errors import HostError
from hvtui.logsetup import setup_logging
from hvtui.paths import Paths

SECRET = "Pw-7f3Q#ßecret-only-in-tests"


class RawRecords(logging.Handler):
    """Every record of the hvtui logger, formatted with its exception text, before any redaction."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(logging.Formatter("%(name)s %(message)s").format(record))


@pytest.fixture
def captured(paths: Paths) -> Iterator[tuple[RawRecords, Paths]]:
    logger = logging.getLogger("hvtui")
    saved_handlers, saved_level = list(logger.handlers), logger.level
    for handler in saved_handlers:
        logger.removeHandler(handler)
    setup_logging(paths, "debug")  # the real log file, in this test's own state dir
    raw = RawRecords()
    logger.addHandler(raw)
    yield raw, paths
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    for handler in saved_handlers:
        logger.addHandler(handler)
    logger.setLevel(saved_level)


def texts_of(err: BaseException) -> list[str]:
    return [str(err), repr(err), "".join(traceback.format_exception(err))]


def test_the_password_appears_nowhere(captured: tuple[RawRecords, Paths], monkeypatch: pytest.MonkeyPatch) -> None:
    raw, paths = captured
    backend = MemoryBackend()
    vm = backend.add_vm("web01")
    errors: list[HostError] = []
    with WSManServer(backend, password=SECRET) as server:
        monkeypatch.setenv(PASSWORD_ENV, SECRET)
        host = make_winrm_host(server.port, "hv-secret", commands_per_shell=2)
        host.inventory(5.0)
        host.create_checkpoint(vm, "cp", "Standard")
        host.inventory(5.0)

        server.faults.respond = lambda op, args: failure_answer("Access is denied", "AccessDenied,X")
        with pytest.raises(HostError) as info:
            host.inventory(5.0)
        errors.append(info.value)
        server.faults.respond = None

        server.faults.never_answer = True
        with pytest.raises(HostError) as info:
            make_winrm_host(server.port, "hv-secret", timeout=1.0).inventory(1.0)
        errors.append(info.value)
        server.faults.never_answer = False

        server.password = "something-else"  # the client's (secret) password is now refused
        with pytest.raises(HostError) as info:
            make_winrm_host(server.port, "hv-secret").inventory(5.0)
        errors.append(info.value)
        assert info.value.kind == "auth"

        with pytest.raises(HostError) as info:
            make_winrm_host(server.port, "hv-secret", scheme="https", test_transport=False).inventory(5.0)
        errors.append(info.value)
        host.close()
        received = (
            b"".join(c.stdin for c in server.commands) + "".join(c.command_line for c in server.commands).encode()
        )

    with pytest.raises(HostError) as info:
        make_winrm_host(free_port(), "hv-secret").inventory(5.0)
    errors.append(info.value)

    assert [e.kind for e in errors] == ["access-denied", "timeout", "auth", "tls", "unreachable"]
    basic = base64.b64encode(f"hvtui:{SECRET}".encode("latin-1")).decode()
    for err in errors:
        for text in texts_of(err):
            assert SECRET not in text and basic not in text
        assert err.__cause__ is None  # pywinrm/requests exception texts are not chained on
    log_file = paths.log_file.read_text(encoding="utf-8")
    assert "hv-secret: inventory: authentication refused" in log_file  # the log did get written
    assert any("exit code 0" in line for line in raw.lines)
    for text in (log_file, *raw.lines):
        assert SECRET not in text and basic not in text
    assert SECRET.encode() not in received  # never part of a script or of the arguments


def test_a_prompted_password_is_asked_once_and_again_after_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def prompter(text: str) -> str:
        asked.append(text)
        return SECRET

    with WSManServer(MemoryBackend(), username="CORP\\svc", password=SECRET) as server:
        host = make_winrm_host(
            server.port, "hv-prompt", username="CORP\\svc", password=SecretSource(prompt=True), secret_prompter=prompter
        )
        host.inventory(5.0)
        host.inventory(5.0)
        assert asked == ["password for CORP\\svc on hv-prompt: "]
        server.password = "changed"
        with pytest.raises(HostError) as info:
            host.inventory(5.0)
        assert info.value.kind == "auth"
        server.password = SECRET
        host.inventory(5.0)  # the refused shell was dropped: this call connects and asks again
        assert len(asked) == 2
        host.close()


def test_a_prompt_without_a_prompter_is_a_clear_error() -> None:
    with WSManServer(MemoryBackend()) as server:
        host = make_winrm_host(server.port, "hv-headless", password=SecretSource(prompt=True))
        with pytest.raises(HostError) as info:
            host.inventory(5.0)
    assert info.value.kind == "auth"
    assert str(info.value).startswith(
        "hv-headless: inventory: password for hvtui on hv-headless: password_prompt needs"
    )
