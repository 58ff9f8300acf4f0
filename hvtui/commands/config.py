"""`hvtui config schema` prints the config file's JSON Schema; `hvtui config check [PATH]`
validates a config file without starting anything (no host contacted, no lab built).

Both run after the CLI has loaded the config (``PATH`` is taken as ``--config``): a valid
file reaches ``handle_check``; an invalid one reaches ``on_config_error``, which lists
every mistake on its own line before the CLI's one-line error and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hvtui.config import config_file_candidates, config_json_schema
from hvtui.errors import EXIT_OK
from hvtui.logsetup import redact
from hvtui.paths import Paths

if TYPE_CHECKING:
    from hvtui.core import Core, Options
    from hvtui.errors import ConfigError


def register(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "config",
        parents=parents,
        help="check a config file, or print its JSON Schema",
        description="Check a config file without starting anything, or print the JSON Schema of config.yaml.",
    )
    actions = parser.add_subparsers(dest="config_action", metavar="ACTION", required=True)
    schema = actions.add_parser(
        "schema",
        parents=parents,
        help="print the JSON Schema of config.yaml (for editors and the YAML language server)",
        description="Print the JSON Schema of config.yaml, e.g. for the YAML language server: "
        "# yaml-language-server: $schema=<file>",
    )
    schema.set_defaults(handler=handle_schema, on_config_error=schema_without_config)
    check = actions.add_parser(
        "check",
        parents=parents,
        help="validate a config file (every mistake, with its line) without contacting any host",
        description="Validate a config file and list every mistake, without contacting any host or building "
        "the lab. Without PATH, checks the file hvtui would use. Exit 0 when valid, 2 when not.",
    )
    # PATH is --config by another name: the CLI loads it, and an invalid file comes back as a ConfigError.
    check.add_argument("config", nargs="?", type=_path_or_absent, default=argparse.SUPPRESS, metavar="PATH", help="the file to check (same as --config)")
    check.set_defaults(handler=handle_check, on_config_error=check_failed)


def _path_or_absent(text: str) -> Path | str:
    # argparse passes an absent optional positional's default through ``type`` too.
    return text if text == argparse.SUPPRESS else Path(text)


def handle_schema(args: argparse.Namespace, core: Core) -> int:
    print_schema()
    return EXIT_OK


def print_schema() -> None:
    print(json.dumps(config_json_schema(), indent=2))


def schema_without_config(args: argparse.Namespace, paths: Paths, options: Options, error: ConfigError) -> None:
    """The schema does not depend on the config: print it even when the config is broken."""
    print_schema()


def handle_check(args: argparse.Namespace, core: Core) -> int:
    config = core.config
    if config.source is None:
        print(
            "no config file found ($HVTUI_CONFIG is not set and there is no config.yaml or config.yml in "
            f"{core.paths.config_dir}); hvtui uses the built-in demo lab"
        )
        return EXIT_OK
    _found, origin = config_file_candidates(getattr(args, "config", None), core.paths)
    kinds: dict[str, int] = {}
    for host in config.hosts:
        kinds[host.kind] = kinds.get(host.kind, 0) + 1
    hosts = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
    summary = f"{len(config.hosts)} host{'s' if len(config.hosts) != 1 else ''}" + (f" ({hosts})" if hosts else " (the lab's)")
    repositories = len(config.repositories)
    print(f"ok: {config.source} ({origin}): {summary}, {repositories} repositor{'ies' if repositories != 1 else 'y'}")
    return EXIT_OK


def check_failed(args: argparse.Namespace, paths: Paths, options: Options, error: ConfigError) -> None:
    """Which file was checked and, when there are several mistakes, each on its own line;
    the CLI then prints its one-line error (all of them, joined by " / ") and exits 2."""
    found, origin = config_file_candidates(options.config_path, paths)
    checked = " and ".join(str(path) for path in found) or "(none)"
    print(f"checked: {checked} ({origin})", file=sys.stderr)
    lines = str(error).splitlines()
    if len(lines) > 1:
        for line in lines:
            print(redact(line), file=sys.stderr)
