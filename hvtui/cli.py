"""Command-line entry point: ``hvtui`` opens the console, ``hvtui <command>`` runs headless.

Each subcommand lives in ``hvtui/commands/<name>.py`` as ``register(subparsers, parents)``
and a handler ``(args, core) -> int``; this module only parses, sets up logging and turns
errors into one clear line (never a traceback).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path
from typing import TextIO

from hvtui import __version__
from hvtui.commands.pipes import guarded_stdout
from hvtui.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    ConfigError,
    HvtuiError,
    ReadOnlyError,
    RefusedError,
    UsageError,
)
from hvtui.logsetup import LEVELS as LOG_LEVELS
from hvtui.text import display_text

log = logging.getLogger("hvtui")

COMMAND_MODULES = (
    "info", "lab", "inventory", "check", "checkpoint", "change", "audit", "backup", "restore", "repair", "repo", "jobs",
    "config", "notify", "schedule", "doctor", "copy",
)

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_REFUSED", "EXIT_USAGE", "main"]


def common_options() -> argparse.ArgumentParser:
    """Options accepted both before and after the subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    sup = argparse.SUPPRESS
    common.add_argument("--config", type=Path, default=sup, metavar="PATH", help="config file (default: $HVTUI_CONFIG, then the user config dir)")
    common.add_argument("--lab-dir", type=Path, default=sup, metavar="DIR", help="where the embedded lab keeps its VM files")
    common.add_argument("--read-only", action="store_true", default=sup, help="refuse every change to hosts and repositories")
    common.add_argument("--theme", default=sup, help="console theme name")
    common.add_argument("--log-level", default=sup, choices=LOG_LEVELS, help="log file verbosity (the log goes to a file, never to the screen)")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = argparse.ArgumentParser(
        prog="hvtui",
        description="Terminal console for Hyper-V checkpoints, sprawl and backups. Without a command, opens the console.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"hvtui {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"hvtui.commands.{name}")
        module.register(subparsers, [common])
    return parser


def options_from_args(args: argparse.Namespace):  # -> Options
    from hvtui.core import Options

    return Options(
        config_path=getattr(args, "config", None),
        lab_dir=getattr(args, "lab_dir", None),
        read_only=getattr(args, "read_only", False),
        theme=getattr(args, "theme", None),
        log_level=getattr(args, "log_level", None),
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, or a usage error argparse already printed
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    options = options_from_args(args)
    from hvtui.core import Core
    from hvtui.logsetup import redact, setup_logging
    from hvtui.paths import Paths

    paths = Paths.default()
    setup_logging(paths, options.log_level)
    handler = getattr(args, "handler", None)
    # A command may fix the exit code of every error: `hvtui check` reports them as
    # UNKNOWN (3), because monitoring reads 1 and 2 as WARNING and CRITICAL.
    error_exit: int | None = getattr(args, "error_exit_code", None)
    core: Core | None = None
    try:
        if not getattr(args, "needs_core", True):  # `config check` and `config schema` start nothing
            with guarded_stdout():
                return int(handler(args, paths, options))
        core = Core.from_options(options, paths)
        setup_logging(paths, options.log_level or core.config.log_level)
        if handler is not None:  # the console marks such hosts in its header instead
            for warning in core.config.warnings():
                _error_line(f"hvtui: warning: {warning}", stream=sys.stderr)
        if handler is None:
            from hvtui.tui.app import run_console

            return run_console(core)
        if sys.stdin.isatty() and sys.stderr.isatty():  # a secret (a repository passphrase) may be asked here
            from hvtui.commands.secrets import terminal_prompter

            core.secret_prompter = terminal_prompter
        # A reader that stops early (`| head`) must not change the exit code a script sees.
        with guarded_stdout():
            return int(handler(args, core))
    # Messages are redacted once more before they reach the terminal: a secret must never
    # be shown, even if some layer put one in an error by mistake.
    except ConfigError as err:
        log.warning("config error: %s", err)
        # A command may still say what it can without a config (`hvtui info`: the paths).
        without_config = getattr(args, "on_config_error", None)
        if core is None and without_config is not None:
            with guarded_stdout():  # flushed at the end: its output first, the error last
                without_config(args, paths, options, err)
        _error_line(f"hvtui: {redact(_one_line(err))}", stream=sys.stderr)
        return error_exit or EXIT_USAGE
    except UsageError as err:
        log.warning("usage error: %s", err)
        _error_line(f"hvtui: {redact(_one_line(err))}", stream=sys.stderr)
        return error_exit or EXIT_USAGE
    except (ReadOnlyError, RefusedError) as err:
        log.warning("refused: %s", err)
        _error_line(f"hvtui: refused: {redact(_one_line(err))}", stream=sys.stderr)
        return error_exit or EXIT_REFUSED
    except HvtuiError as err:
        log.warning("error: %s", err)
        _error_line(f"hvtui: error: {redact(_one_line(err))}", stream=sys.stderr)
        return error_exit or EXIT_FAILED
    except KeyboardInterrupt:
        _error_line("hvtui: interrupted", stream=sys.stderr)
        return error_exit or EXIT_INTERRUPTED
    except BrokenPipeError:  # a closed pipe outside the guarded output (stdout is guarded)
        _silence_stdout()
        return error_exit or EXIT_FAILED
    except Exception as err:  # the last line of defence: log the traceback, print one line
        log.exception("unexpected error")
        message = redact(_one_line(err))
        _error_line(f"hvtui: unexpected error: {type(err).__name__}: {message} (details in {paths.log_file})", stream=sys.stderr)
        return error_exit or EXIT_FAILED
    finally:
        if core is not None:
            core.close()


def _one_line(err: BaseException) -> str:
    return " / ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__


def _error_line(text: str, stream: TextIO) -> None:
    """An error line: the message may quote a host's text, shown with its control characters escaped."""
    print(display_text(text), file=stream)


def _silence_stdout() -> None:
    # Python flushes stdout at exit and would report the broken pipe a second time.
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
