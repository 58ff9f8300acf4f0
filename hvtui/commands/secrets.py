"""Asking for secrets on the terminal: a passphrase when a repository is opened, a new one
(typed twice) when a repository or a key slot is created.  Never echoed, never logged."""

from __future__ import annotations

import getpass
import os
import sys

from hvtui.errors import RefusedError
from hvtui.logsetup import register_secret


def terminal_prompter(prompt: str) -> str:
    """Ask on the terminal, without echo (getpass writes the prompt to the terminal)."""
    secret = getpass.getpass(prompt)
    if secret:
        register_secret(secret)
    return secret


def new_passphrase(what: str, env: str | None = None) -> str:
    """A new passphrase: from the environment variable ``env`` if given, else typed twice on
    the terminal; refused without a terminal (a passphrase is never taken from an argument)."""
    if env:
        value = os.environ.get(env)
        if not value:
            raise RefusedError(f"{what}: environment variable {env} is not set or empty")
        register_secret(value)
        return value
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise RefusedError(
            f"{what} is needed and there is no terminal to ask on: set the repository's passphrase_env or "
            "passphrase_command (repo init), or give --new-passphrase-env VAR (repo key add)"
        )
    first = getpass.getpass(f"{what}: ")
    if len(first) < 8:
        raise RefusedError("a passphrase needs at least 8 characters; nothing changed")
    if getpass.getpass(f"{what} (again): ") != first:
        raise RefusedError("the two passphrases differ; nothing changed")
    register_secret(first)
    return first
