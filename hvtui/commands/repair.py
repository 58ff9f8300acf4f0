"""`hvtui repair-repository`: rebuild a repository's lost or damaged config.json.

A folder holding restore points or chunks without a usable config.json is a damaged
repository (``points``, ``verify`` and ``backup`` exit 3 and name this command).  The
repair is a change to the repository: it states what it will write, asks, is refused
read-only, and is audit-logged.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from hvtui.commands import confirm, show
from hvtui.commands.output import EXIT_OK, EXIT_REFUSED, emit_json, fail, reported
from hvtui.errors import RefusedError

if TYPE_CHECKING:
    from hvtui.core import Core


def register(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    repair = subparsers.add_parser(
        "repair-repository",
        parents=parents,
        help="rebuild a damaged repository's config.json",
        description="Rebuild the config.json of a repository that lost it (or whose copy is damaged) from its "
        "restore points and chunks. Restore points and chunks are not changed; a damaged config.json is kept "
        "as config.json.damaged-<time>.",
    )
    repair.add_argument("--repo", metavar="R", help="repository name from the config (default: the default one)")
    repair.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    repair.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    repair.set_defaults(handler=run_repair_command)


@reported
def run_repair_command(args: argparse.Namespace, core: Core) -> int:
    rc = core.backups.repository_config(args.repo)
    audit_args = {"repository": rc.name, "path": str(rc.path)}
    host = f"repository:{rc.name}"
    reason = core.backups.read_only_reason()
    if reason is not None:
        core.audit.record("repair-repository", host, None, audit_args, "refused", 0.0, f"read-only: {reason}")
        return fail(args, f"repair-repository refused: {reason}", EXIT_REFUSED)
    plan = core.backups.plan_repository_repair(rc.name)
    question = f"Repository {rc.name!r}: config.json {plan.problem}. Repair: {plan.describe()}. Go ahead?"
    try:
        agreed = confirm(question, args.yes)
    except RefusedError as err:
        core.audit.record("repair-repository", host, None, audit_args, "refused", 0.0, str(err))
        return fail(args, str(err), EXIT_REFUSED)
    if not agreed:
        core.audit.record("repair-repository", host, None, audit_args, "declined", 0.0, "not confirmed")
        return fail(args, "not confirmed: nothing changed", EXIT_REFUSED)
    done, kept = core.backups.repair_repository(rc.name)
    if args.json:
        emit_json({"ok": True, "repository": rc.name, **done.to_dict(), "kept_as": kept})
        return EXIT_OK
    show(f"Rebuilt config.json of repository {rc.name!r} at {rc.path}: chunk size {done.chunk_size // 1024} KiB "
          f"({done.chunk_size_source}).")
    if kept:
        show(f"  the damaged config.json is kept as {kept}")
    show("  run `hvtui verify` to check the restore points and chunks")
    return EXIT_OK
