"""`hvtui info`: which config, theme, state and log paths are in use (like `k9s info`).

Reads only the config and the paths: it never contacts a host or creates the lab, so it
answers instantly even when every host is down.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from hvtui import __version__
from hvtui.commands import show, show_json
from hvtui.logsetup import redact
from hvtui.paths import Paths, bundled_theme_dirs

if TYPE_CHECKING:
    from hvtui.core import Core, Options
    from hvtui.errors import ConfigError


def register(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "info",
        parents=parents,
        help="show the version, config file, theme, and the state and log paths in use",
        description="Show the version, the config file in use, the theme, and the data, state and log paths.",
    )
    parser.add_argument("--json", action="store_true", help="print the same as a JSON object")
    # With a broken config, info still shows where everything is: that is when it is needed.
    parser.set_defaults(handler=handle_info, on_config_error=handle_info_without_config)



def collect_info(core: Core, log_level: str | None = None) -> dict[str, Any]:
    """Everything `hvtui info` shows; ``log_level`` is the --log-level option, if given."""
    config, paths = core.config, core.paths
    default_repository = config.default_repository()
    if config.read_only:
        read_only_source = "config"
    elif core.read_only:
        read_only_source = "--read-only"
    else:
        read_only_source = None
    return {
        "version": __version__,
        "config_file": str(config.source) if config.source is not None else None,
        "builtin_lab": config.is_builtin_lab,
        "hosts": [{"name": host.name, "kind": host.kind, "group": host.group} for host in config.hosts],
        "lab_dir": str(core.lab_dir),
        "lab_profile": config.lab.profile,
        "config_dir": str(paths.config_dir),
        "data_dir": str(paths.data_dir),
        "state_dir": str(paths.state_dir),
        "log_file": str(paths.log_file),
        "log_level": log_level or core.config.log_level,
        "audit_log": str(paths.audit_log),
        "job_journal": str(paths.job_journal),
        "schedule_journal": str(paths.schedule_journal),
        "default_repository": {"name": default_repository.name, "path": str(default_repository.path)},
        "repositories": [
            {"name": repo.name, "path": str(repo.path), "where": repo.where, "default": repo.default} for repo in config.repositories
        ],
        "themes_dirs": {"builtin": ", ".join(str(d) for d in bundled_theme_dirs()) or "(not found)", "user": str(paths.user_themes_dir)},
        "theme": core.theme,
        "read_only": core.read_only,
        "read_only_source": read_only_source,
        "tls_unverified_hosts": list(config.tls_unverified_hosts()),
    }


def format_info(info: dict[str, Any]) -> str:
    config_line = info["config_file"] or "none — built-in demo lab"
    if info["hosts"]:
        kinds: dict[str, int] = {}
        for host in info["hosts"]:
            kinds[host["kind"]] = kinds.get(host["kind"], 0) + 1
        hosts_line = f"{len(info['hosts'])} configured (" + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) + ")"
    else:
        hosts_line = "lab hosts found under the lab directory"
    default_repository = info["default_repository"]
    read_only = "yes" + (f" ({info['read_only_source']})" if info["read_only_source"] else "") if info["read_only"] else "no"
    rows = [
        ("Version", info["version"]),
        ("Config", config_line),
        ("Hosts", hosts_line),
        ("Lab dir", f"{info['lab_dir']} (profile {info['lab_profile']})"),
        ("Config dir", info["config_dir"]),
        ("Data dir", info["data_dir"]),
        ("State dir", info["state_dir"]),
        ("Log file", f"{info['log_file']} (level {info['log_level']})"),
        ("Audit log", info["audit_log"]),
        ("Job journal", info["job_journal"]),
        ("Schedules", info["schedule_journal"]),
        ("Repository", f"{default_repository['name']}: {default_repository['path']} (default)"),
    ]
    rows += [("", f"{repo['name']}: {repo['path']}") for repo in info["repositories"] if not repo["default"]]
    rows += [
        ("Themes", f"{info['themes_dirs']['builtin']} (built in)"),
        ("", f"{info['themes_dirs']['user']} (yours)"),
        ("Theme", info["theme"]),
        ("Read-only", read_only),
    ]
    if info["tls_unverified_hosts"]:
        names = ", ".join(info["tls_unverified_hosts"])
        rows.append(("TLS", f"NOT VERIFIED for {names} (verify_tls: false: anyone on the path can pose as the host)"))
    return _format_rows(rows)


def _format_rows(rows: list[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in rows) + 2
    return "\n".join(f"{(label + ':') if label else '':<{width}}{value}" for label, value in rows)


def handle_info(args: argparse.Namespace, core: Core) -> int:
    info = collect_info(core, getattr(args, "log_level", None))
    if args.json:
        show_json(json.dumps(info, indent=2))
    else:
        show(format_info(info))
    return 0


def config_file_in_question(options: Options, paths: Paths) -> str | None:
    """The config file hvtui tried to use, without the checks (which are what failed)."""
    from hvtui.config import config_file_candidates

    found, _origin = config_file_candidates(options.config_path, paths)
    return " and ".join(str(candidate) for candidate in found) or None


def handle_info_without_config(args: argparse.Namespace, paths: Paths, options: Options, error: ConfigError) -> None:
    """``hvtui info`` when the config cannot be loaded: everything that does not depend on
    it (the caller prints the error itself and exits 2)."""
    info: dict[str, Any] = {
        "version": __version__,
        "config_file": config_file_in_question(options, paths),
        "config_error": redact(str(error)),
        "config_dir": str(paths.config_dir),
        "data_dir": str(paths.data_dir),
        "state_dir": str(paths.state_dir),
        "log_file": str(paths.log_file),
        "audit_log": str(paths.audit_log),
        "job_journal": str(paths.job_journal),
        "schedule_journal": str(paths.schedule_journal),
        "themes_dirs": {"builtin": ", ".join(str(d) for d in bundled_theme_dirs()) or "(not found)", "user": str(paths.user_themes_dir)},
    }
    if args.json:
        show_json(json.dumps(info, indent=2))
        return
    rows = [
        ("Version", info["version"]),
        ("Config", f"{info['config_file'] or '(none)'} — NOT LOADED (the error is below)"),
        ("Config dir", info["config_dir"]),
        ("Data dir", info["data_dir"]),
        ("State dir", info["state_dir"]),
        ("Log file", info["log_file"]),
        ("Audit log", info["audit_log"]),
        ("Job journal", info["job_journal"]),
        ("Schedules", info["schedule_journal"]),
        ("Themes", f"{info['themes_dirs']['builtin']} (built in)"),
        ("", f"{info['themes_dirs']['user']} (yours)"),
    ]
    show(_format_rows(rows))
