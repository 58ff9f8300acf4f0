"""`hvtui audit [--json] [--limit N]`: the audit log, newest last.

Damaged lines (a crash mid-write) are skipped and reported on stderr; the rest prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from hvtui.commands import show, show_json
from hvtui.commands.inventory import format_table
from hvtui.core import Core

DEFAULT_LIMIT = 50


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("expected 0 (everything) or more")
    return value


def register(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "audit",
        parents=parents,
        help="print the audit log of changes made through hvtui",
        description="Print the audit log: every change attempted through hvtui (console or CLI), "
        "with time, local user, host, VM, action, arguments, result and duration.",
    )
    parser.add_argument("--json", action="store_true", help="the entries as a JSON list")
    parser.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"the newest N entries (default {DEFAULT_LIMIT}; 0: all)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, core: Core) -> int:
    log = core.audit
    entries = log.read()
    for problem in log.problems:
        show(f"hvtui: warning: {problem}", stream=sys.stderr)
    if args.limit:
        entries = entries[-args.limit :]
    if args.json:
        show_json(json.dumps(entries, indent=2, ensure_ascii=False))
        return 0
    if not entries:
        show(f"The audit log is empty ({log.path}).")
        return 0
    show(
        format_table(
            ("TIME", "USER", "ACTION", "HOST", "VM", "RESULT", "SECS", "DETAILS"),
            [_row(e) for e in entries],
            right=(6,),
        )
    )
    return 0


def _row(entry: dict[str, Any]) -> list[str]:
    args = entry.get("args") if isinstance(entry.get("args"), dict) else {}
    details = " ".join(f"{k}={_short(v)}" for k, v in args.items() if k not in ("vm_id",))
    if entry.get("error"):
        details = (details + " " if details else "") + f"error: {entry['error']}"
    duration = entry.get("duration")
    return [
        str(entry.get("time", "?")),
        str(entry.get("user", "?")),
        str(entry.get("action", "?")),
        str(entry.get("host", "?")),
        str(entry.get("vm") or "-"),
        str(entry.get("result", "?")),
        f"{duration:.1f}" if isinstance(duration, int | float) else "?",
        " ".join(details.split()),
    ]


def _short(value: Any) -> str:
    if isinstance(value, list):
        return f"[{len(value)}]" if len(value) > 3 else ",".join(str(v) for v in value)
    text = str(value)
    return repr(text) if " " in text else text
