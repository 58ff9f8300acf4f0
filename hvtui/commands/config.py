"""`hvtui config schema` prints the config file's JSON Schema; `hvtui config check [PATH]`
validates a config file without starting anything (no host contacted, no lab built).

Both run without a core (``needs_core=False``): the schema does not depend on any config,
and the check loads the file itself so that it can list every mistake, one per line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hvtui.commands import show, show_json
from hvtui.config import Config, config_file_candidates, config_json_schema, find_config_file, load_config
from hvtui.errors import EXIT_OK, EXIT_USAGE, ConfigError
from hvtui.logsetup import redact
from hvtui.paths import Paths

if TYPE_CHECKING:
    from hvtui.core import Options

GIVEN_AS_PATH = "given as PATH"


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
    schema.set_defaults(handler=handle_schema, needs_core=False)
    check = actions.add_parser(
        "check",
        parents=parents,
        help="validate a config file (every mistake, with its line) without contacting any host",
        description="Validate a config file and list every mistake, without contacting any host or building "
        "the lab. Without PATH, checks the file hvtui would use (--config, $HVTUI_CONFIG, the user config "
        "directory). Exit 0 when valid, 2 when not.",
    )
    check.add_argument("path", nargs="?", type=Path, default=None, metavar="PATH", help="the file to check")
    check.set_defaults(handler=handle_check, needs_core=False)


def handle_schema(args: argparse.Namespace, paths: Paths, options: Options) -> int:
    show_json(json.dumps(config_json_schema(), indent=2))
    return EXIT_OK


def handle_check(args: argparse.Namespace, paths: Paths, options: Options) -> int:
    if args.path is not None:
        found, origin = [args.path.expanduser()], GIVEN_AS_PATH
    else:
        found, origin = config_file_candidates(options.config_path, paths)
    checked = " and ".join(str(path) for path in found) or "(none)"
    try:
        path = found[0] if args.path is not None else find_config_file(options.config_path, paths)
        if path is not None and not path.exists():
            raise ConfigError(f"config file not found: {path} ({origin})")
        config = load_config(path, paths) if path is not None else None
    except ConfigError as err:
        # Every mistake on its own line (the first line says how many), after the file's name.
        show(f"checked: {checked} ({origin})", stream=sys.stderr)
        for line in str(err).splitlines():
            show(redact(line), stream=sys.stderr)
        return EXIT_USAGE
    if config is None:
        show(
            "no config file found ($HVTUI_CONFIG is not set and there is no config.yaml or config.yml in "
            f"{paths.config_dir}); hvtui uses the built-in demo lab"
        )
        return EXIT_OK
    show(f"ok: {config.source} ({origin}): {_summary(config)}")
    for warning in config.warnings():
        show(f"warning: {warning}", stream=sys.stderr)
    return EXIT_OK


def _summary(config: Config) -> str:
    kinds: dict[str, int] = {}
    for host in config.hosts:
        kinds[host.kind] = kinds.get(host.kind, 0) + 1
    hosts = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
    count = len(config.hosts)
    summary = f"{count} host{'s' if count != 1 else ''}" + (f" ({hosts})" if hosts else " (the lab's)")
    repositories = len(config.repositories)
    return f"{summary}, {repositories} repositor{'ies' if repositories != 1 else 'y'}"
