"""Turns a ``SecretSource`` from the config into the secret, at connect time.

The secret never appears in an exception, a log record or on screen: errors name the
environment variable or the command, never a value; a failing command's stdout (which
may hold part of a secret) is never shown; and every resolved secret is registered with
the log redactor as a second line of defence.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from collections.abc import Callable

from hvtui.config import SecretSource
from hvtui.errors import HvtuiError
from hvtui.logsetup import register_secret

log = logging.getLogger(__name__)

COMMAND_TIMEOUT = 30.0  # seconds a password_command may take (a password manager may ask to unlock)

Prompter = Callable[[str], str]


class SecretError(HvtuiError):
    """A secret could not be obtained; the message names its source, never a value."""


def resolve_secret(
    source: SecretSource,
    what: str,
    prompter: Prompter | None = None,
    timeout: float = COMMAND_TIMEOUT,
) -> str:
    """The secret ``source`` points at.

    ``what`` says whose secret it is, for prompts and errors (e.g. ``"password for
    CORP\\svc on hv01"``). ``prompter(text) -> secret`` asks the user; without one a
    ``password_prompt`` source is an error (headless runs cannot prompt).
    """
    if source.env:
        secret = _from_env(source.env, what)
        origin = f"environment variable {source.env}"
    elif source.command:
        secret = _from_command(source.command, what, timeout)
        origin = "password_command"
    elif source.prompt:
        secret = _from_prompt(what, prompter)
        origin = "prompt"
    else:
        raise SecretError(f"{what}: no source configured (set password_env, password_command or password_prompt)")
    register_secret(secret)
    log.debug("%s obtained from %s", what, origin)
    return secret


def _from_env(name: str, what: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise SecretError(f"{what}: environment variable {name} is not set")
    if not value:
        raise SecretError(f"{what}: environment variable {name} is empty")
    return value


def _from_command(command: str, what: str, timeout: float) -> str:
    try:
        argv = shlex.split(command)
    except ValueError as err:
        raise SecretError(f"{what}: cannot split password_command: {err}") from None
    if not argv:
        raise SecretError(f"{what}: password_command is empty")
    program = argv[0]
    try:
        # No shell: the command line is split like a shell would, but nothing is interpreted.
        result = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise SecretError(f"{what}: password_command {program!r} was not found") from None
    except PermissionError:
        raise SecretError(f"{what}: password_command {program!r} is not executable") from None
    except subprocess.TimeoutExpired:
        # ``from None``: the TimeoutExpired carries whatever the command printed so far.
        raise SecretError(f"{what}: password_command {program!r} did not finish within {timeout:g}s") from None
    except OSError as err:
        raise SecretError(f"{what}: password_command {program!r} could not run: {err.strerror or err}") from None
    if result.returncode != 0:
        stderr_lines = result.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = f": {stderr_lines[0].strip()}" if stderr_lines else ""
        raise SecretError(f"{what}: password_command {program!r} failed with exit code {result.returncode}{detail}")
    # The first line, as `pass show` and most password managers print the password there.
    lines = result.stdout.decode("utf-8", "replace").splitlines()
    secret = lines[0].strip() if lines else ""
    if not secret:
        raise SecretError(f"{what}: password_command {program!r} printed nothing")
    return secret


def _from_prompt(what: str, prompter: Prompter | None) -> str:
    if prompter is None:
        raise SecretError(
            f"{what}: password_prompt needs an interactive prompt, and none is available here; "
            "use password_env or password_command for headless runs"
        )
    secret = prompter(f"{what}: ")
    if not secret:
        raise SecretError(f"{what}: no password was entered")
    return secret
