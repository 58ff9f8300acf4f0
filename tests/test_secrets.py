"""Secrets from an environment variable, a command or a prompt; never in errors or logs."""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

import pytest

from hvtui.config import SecretSource
from hvtui.errors import HvtuiError
from hvtui.logsetup import setup_logging
from hvtui.paths import Paths
from hvtui.secrets import resolve_secret

WHAT = "password for CORP\\svc on hv01"


# setup_logging changes process-wide state: every test here puts it back.
pytestmark = pytest.mark.usefixtures("restore_logging")


def python_command(code: str, *args: str) -> str:
    """A password_command line running ``code`` with this interpreter (no shell involved)."""
    return shlex.join([sys.executable, "-c", code, *args])


def read_log(paths: Paths) -> str:
    for handler in logging.getLogger().handlers:
        handler.flush()
    return paths.log_file.read_text(encoding="utf-8")


# -- environment variable ----------------------------------------------------------------------


def test_env_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HV01_PASSWORD", "env-Secret-1")
    assert resolve_secret(SecretSource(env="HV01_PASSWORD"), WHAT, None) == "env-Secret-1"


def test_env_variable_missing_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HV01_PASSWORD", raising=False)
    with pytest.raises(HvtuiError) as caught:
        resolve_secret(SecretSource(env="HV01_PASSWORD"), WHAT, None)
    assert str(caught.value) == f"{WHAT}: environment variable HV01_PASSWORD is not set"


def test_env_variable_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HV01_PASSWORD", "")
    with pytest.raises(HvtuiError, match="environment variable HV01_PASSWORD is empty"):
        resolve_secret(SecretSource(env="HV01_PASSWORD"), WHAT, None)


# -- command ----------------------------------------------------------------------------------


def test_command_first_line_of_stdout_is_the_secret() -> None:
    command = python_command("print('cmd-Secret-2'); print('url: https://example')")
    assert resolve_secret(SecretSource(command=command), WHAT, None) == "cmd-Secret-2"


def test_command_runs_without_a_shell() -> None:
    # A shell would expand $HOME and run the second command; without one they are plain arguments.
    command = python_command("import sys; print(sys.argv[1] + sys.argv[2])", "$HOME", ";echo")
    assert resolve_secret(SecretSource(command=command), WHAT, None) == "$HOME;echo"


def test_command_failure_shows_exit_code_and_stderr_but_never_stdout() -> None:
    code = "import sys; print('partial-Secret-3'); sys.stderr.write('gpg: decryption failed\\nmore\\n'); sys.exit(3)"
    with pytest.raises(HvtuiError) as caught:
        resolve_secret(SecretSource(command=python_command(code)), WHAT, None)
    message = str(caught.value)
    assert "exit code 3" in message
    assert "gpg: decryption failed" in message
    assert "more" not in message  # only the first stderr line
    assert "partial-Secret-3" not in message
    assert caught.value.__cause__ is None and caught.value.__context__ is None


def test_command_not_found() -> None:
    with pytest.raises(HvtuiError, match="password_command 'no-such-password-tool' was not found"):
        resolve_secret(SecretSource(command="no-such-password-tool show hv01"), WHAT, None)


def test_command_printing_nothing() -> None:
    with pytest.raises(HvtuiError, match="printed nothing"):
        resolve_secret(SecretSource(command=python_command("pass")), WHAT, None)


def test_command_time_limit_does_not_leak_output() -> None:
    code = "import sys, time; print('early-Secret-4', flush=True); time.sleep(60)"
    with pytest.raises(HvtuiError) as caught:
        resolve_secret(SecretSource(command=python_command(code)), WHAT, None, timeout=0.5)
    assert "did not finish within 0.5s" in str(caught.value)
    assert "early-Secret-4" not in str(caught.value)
    assert caught.value.__suppress_context__


# -- prompt -----------------------------------------------------------------------------------


def test_prompt_asks_with_what_it_is_for() -> None:
    asked: list[str] = []

    def prompter(text: str) -> str:
        asked.append(text)
        return "typed-Secret-5"

    assert resolve_secret(SecretSource(prompt=True), WHAT, prompter) == "typed-Secret-5"
    assert asked == [f"{WHAT}: "]


def test_prompt_without_a_prompter_is_a_clear_error() -> None:
    with pytest.raises(HvtuiError, match="password_prompt needs an interactive prompt.*password_env or password_command"):
        resolve_secret(SecretSource(prompt=True), WHAT, None)


def test_prompt_answered_with_nothing() -> None:
    with pytest.raises(HvtuiError, match="no password was entered"):
        resolve_secret(SecretSource(prompt=True), WHAT, lambda _text: "")


def test_no_source_configured() -> None:
    with pytest.raises(HvtuiError, match="no source configured"):
        resolve_secret(SecretSource(), WHAT, None)


# -- redaction --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["env", "command", "prompt"])
def test_resolved_secrets_are_redacted_from_the_log(
    kind: str, paths: Paths, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = f"Redact-me-{kind}-7f3a"
    setup_logging(paths, "debug")
    if kind == "env":
        monkeypatch.setenv("HV_SECRET", secret)
        source = SecretSource(env="HV_SECRET")
    elif kind == "command":
        source = SecretSource(command=python_command(f"print({secret!r})"))
    else:
        source = SecretSource(prompt=True)
    assert resolve_secret(source, WHAT, lambda _text: secret) == secret

    log = logging.getLogger("hvtui.hosts.winrm")
    log.info("connecting with %s", secret)  # a careless record
    log.debug("header Authorization: %s", f"Basic user:{secret}")
    try:
        raise ValueError(f"auth failed for {secret}")
    except ValueError:
        log.exception("connect failed")  # the traceback carries it too
    logging.getLogger("urllib3").warning("library says %s", secret)

    text = read_log(paths)
    assert secret not in text
    assert "connecting with ***" in text
    assert "Basic user:***" in text
    assert "ValueError: auth failed for ***" in text
    assert "library says ***" in text
    assert f"{WHAT} obtained from" in text  # resolving itself is logged, without the value
