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

from hvtui import __version__
from hvtui.errors import ConfigError, HvtuiError, ReadOnlyError, RefusedError

log = logging.getLogger("hvtui")

COMMAND_MODULES = ("info", "lab", "inventory", "check", "checkpoint", "audit", "backup", "jobs")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # bad arguments or a bad config file
EXIT_REFUSED = 4  # read-only or a safety rule said no
EXIT_INTERRUPTED = 130


def common_options() -> argparse.ArgumentParser:
    """Options accepted both before and after the subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    sup = argparse.SUPPRESS
    common.add_argument("--config", type=Path, default=sup, metavar="PATH", help="config file (default: $HVTUI_CONFIG, then the user config dir)")
    common.add_argument("--lab-dir", type=Path, default=sup, metavar="DIR", help="where the embedded lab keeps its VM files")
    common.add_argument("--read-only", action="store_true", default=sup, help="refuse every change to hosts and repositories")
    common.add_argument("--theme", default=sup, help="console theme name")
    common.add_argument("--log-level", default=sup, choices=["debug", "info", "warning", "error"], help="log file verbosity")
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
    args = parser.parse_args(argv)
    options = options_from_args(args)
    from hvtui.core import Core
    from hvtui.logsetup import setup_logging
    from hvtui.paths import Paths

    paths = Paths.default()
    setup_logging(paths, options.log_level)
    handler = getattr(args, "handler", None)
    core: Core | None = None
    try:
        core = Core.from_options(options, paths)
        setup_logging(paths, options.log_level or core.config.log_level)
        if handler is None:
            from hvtui.tui.app import run_console

            return run_console(core)
        return int(handler(args, core))
    except ConfigError as err:
        print(f"hvtui: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (ReadOnlyError, RefusedError) as err:
        print(f"hvtui: refused: {err}", file=sys.stderr)
        return EXIT_REFUSED
    except HvtuiError as err:
        print(f"hvtui: error: {err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("hvtui: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # the last line of defence: log the traceback, print one line
        log.exception("unexpected error")
        print(f"hvtui: unexpected error: {type(err).__name__}: {err} (details in {paths.log_file})", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if core is not None:
            core.close()
