"""Headless subcommands, one module each, and the terminal question they share."""

from __future__ import annotations

import sys

from hvtui.errors import RefusedError


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
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()  # "" at end of input: No
    return answer.strip().casefold() in ("y", "yes")
