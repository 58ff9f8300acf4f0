"""Headless subcommands, one module each, and the terminal output and question they share.

Every line a command prints goes through ``show`` (or ``show_json``): text from a host, a
repository, a lock record or the audit log reaches the terminal with its control characters
as visible escapes, never as commands to the terminal (tests/test_cli_hostile_text.py checks
that no command module prints any other way).
"""

from __future__ import annotations

import sys
from typing import TextIO

from hvtui.errors import RefusedError
from hvtui.text import display_json, display_lines


def show(text: str = "", stream: TextIO | None = None) -> None:
    """Print ``text`` (one or more lines) on stdout, or on ``stream``, made safe for a terminal."""
    print(display_lines(text), file=stream or sys.stdout)


def show_json(json_text: str) -> None:
    """Print a JSON document on stdout, made safe for a terminal and still the same JSON."""
    print(display_json(json_text))


def confirm(question: str, assume_yes: bool) -> bool:
    """Ask ``question [y/N]`` on the terminal; only "y" or "yes" mean yes.

    Without a terminal to ask on (cron, a pipe) and without ``--yes``: refused.
    """
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        raise RefusedError("this change needs a confirmation and there is no terminal to ask on; re-run with --yes")
    # The question goes to stderr so that it shows even when stdout is piped to a file.
    sys.stdout.flush()
    sys.stderr.write(f"{display_lines(question)} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()  # "" at end of input: No
    return answer.strip().casefold() in ("y", "yes")
