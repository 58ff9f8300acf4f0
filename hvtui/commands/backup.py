"""`hvtui backup`, `points`, `verify`, `prune`: the backup engine from the shell (`restore`: restore.py).

Backups and restores run as jobs (``core.jobs``), exactly like the console's, so a cron
run shows up in the console's job list and Ctrl-C / SIGTERM / SIGHUP cancel cleanly (the
backup's checkpoint is removed).  A progress bar is drawn on stderr when it is a
terminal; ``--json`` prints one JSON document on stdout for scripts.

Exit codes (also in docs/repository-format.md):
  0 success; 1 failed (host or repository error, disk full, repository busy);
  2 usage (bad arguments, unknown or ambiguous VM, host, repository or point);
  3 verify found damage, or the repository itself is damaged (`hvtui repair-repository`);
  4 refused (read-only, or a confirmation that could not be had
  or was declined); 130 cancelled or interrupted.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

import humanize

from hvtui.commands import confirm, show
from hvtui.commands.output import (
    EXIT_DAMAGED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    emit_json,
    fail,
    reported,
)
from hvtui.commands.progress import ProgressLine
from hvtui.engine.layout import RepositoryNeedsRepair
from hvtui.errors import HvtuiError, RefusedError
from hvtui.text import display_text

if TYPE_CHECKING:
    from hvtui.backups.points import DamagedManifest, PointListing, VMPoints
    from hvtui.core import Core


def _percent(text: str) -> float:
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage, got {text!r}") from None
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"expected a percentage above 0 and at most 100, got {text}")
    return value


def _rate(text: str) -> int:
    from hvtui.config.units import parse_rate

    value = parse_rate(text)
    if value is None or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a rate such as 50MB/s or 1GiB/s, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    repo = argparse.ArgumentParser(add_help=False)
    repo.add_argument("--repo", metavar="R", help="repository name from the config (default: the default one)")

    backup = subparsers.add_parser(
        "backup",
        parents=[*parents, common, repo],
        help="back up a VM into a repository",
        description="Back up a VM: a Recovery checkpoint freezes it, changed data is stored, the checkpoint is removed.",
    )
    backup.add_argument("vm", metavar="VM", help="VM name or id")
    backup.add_argument("--host", metavar="H", help="the VM's host (needed only when the name is on several hosts)")
    backup.add_argument(
        "--mode",
        choices=("full", "incremental", "differential"),
        help="full reads everything; incremental (default when a point exists) reads what changed since the "
        "previous point; differential what changed since the last full",
    )
    backup.add_argument(
        "--consistency",
        choices=("prefer-application", "application", "crash"),
        help="a WinRM host's checkpoint: prefer-application (VSS in the guest, else crash-consistent with a "
        "warning), application (fail instead) or crash; default: the host's consistency setting",
    )
    backup.add_argument(
        "--limit-rate",
        metavar="RATE",
        type=_rate,
        help="read the VM's files from its host at most this fast, e.g. 50MB/s (a WinRM host's, over SMB3); "
        "default: the host's smb: rate_limit",
    )
    backup.set_defaults(handler=run_backup_command)

    points = subparsers.add_parser(
        "points", parents=[*parents, common, repo], help="list restore points", description="List restore points."
    )
    points.add_argument("vm", metavar="VM", nargs="?", help="only this VM (name or id)")
    points.add_argument("--host", metavar="H", help="only this host")
    points.set_defaults(handler=run_points_command)

    verify = subparsers.add_parser(
        "verify",
        parents=[*parents, common, repo],
        help="check a repository's data",
        description="Re-read and re-hash every chunk (or, with --quick, check they exist); name damage and "
        "the restore points it breaks. Exit code 3 when damage is found.",
    )
    verify.add_argument("--point", metavar="ID", help="only this restore point")
    verify.add_argument("--quick", action="store_true", help="check presence and headers only, without reading data")
    verify.add_argument(
        "--read-data",
        metavar="PERCENT",
        type=_percent,
        default=100.0,
        help="re-read and re-hash only this random share of the chunks (the rest checked as --quick); default 100",
    )
    verify.set_defaults(handler=run_verify_command)

    prune = subparsers.add_parser(
        "prune",
        parents=[*parents, common, repo],
        help="apply retention and free space",
        description="Remove restore points beyond the repository's retention (keep-last/hourly/daily/weekly/"
        "monthly/yearly, per VM), then chunks no point uses. Waits for running backups.",
    )
    prune.add_argument("--dry-run", "-n", action="store_true", help="show what would be removed; change nothing")
    prune.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    prune.set_defaults(handler=run_prune_command)


# -- output helpers ---------------------------------------------------------------------------
def size(num: int | float | None) -> str:
    return "-" if num is None else humanize.naturalsize(num, binary=True)


def run_job(core: Core, args: argparse.Namespace, job: Any) -> tuple[int, Any]:
    from hvtui.jobs.headless import run_job_blocking

    bar = ProgressLine(enabled=not args.json)
    try:
        code = run_job_blocking(core.jobs, job, bar, error_stream=None)
    finally:
        bar.close()
    return code, core.jobs.job(job.id)


def job_failed(args: argparse.Namespace, final: Any, code: int) -> int:
    if code == EXIT_INTERRUPTED:
        show(f"hvtui: {final.title} cancelled", stream=sys.stderr)
        if args.json:
            emit_json({"ok": False, "cancelled": True, "job": final.id, "exit_code": code})
        return code
    return fail(args, str(final.error), code, job=final.id, error_kind=final.error_kind)


# -- handlers -----------------------------------------------------------------------------------
@reported
def run_backup_command(args: argparse.Namespace, core: Core) -> int:
    vm = core.backups.resolve_vm(args.vm, args.host)  # unknown or ambiguous: UsageError, exit 2
    job = core.jobs.submit_backup(
        vm.host, vm.id, mode=args.mode, repository=args.repo, vm_name=vm.name, consistency=args.consistency,
        limit_rate=args.limit_rate,
    )
    code, final = run_job(core, args, job)
    if code != EXIT_OK:
        return job_failed(args, final, code)
    result = dict(final.summary or {})
    copy_code, copy_line = _follow_copy(core, args, result)
    if args.json:
        emit_json({"ok": copy_code == EXIT_OK, "job": final.id, **result})
        return copy_code
    show(
        f"Backed up {vm.host}/{vm.name}: {result.get('mode')} restore point {result.get('point_id')} "
        f"in repository {result.get('repository')}."
    )
    show(
        f"  {size(result.get('logical_bytes'))} in {result.get('files')} files; read {size(result.get('read_bytes'))}, "
        f"new {size(result.get('new_bytes'))}, stored {size(result.get('stored_bytes'))}, "
        f"{float(result.get('duration') or 0):.1f} s."
    )
    for name in result.get("pruned") or []:
        show(f"  retention removed point {name}")
    for warning in result.get("warnings") or []:
        show(f"  warning: {warning}")
    if copy_line:
        show(copy_line, stream=sys.stderr if copy_code != EXIT_OK else None)
    return copy_code


def _follow_copy(core: Core, args: argparse.Namespace, result: dict[str, Any]) -> tuple[int, str | None]:
    """Wait for the copy job a ``copy_to:`` repository queued after the backup; (exit code, a line
    to show).  ``result`` gets ``copy``: that job's state, error and summary."""
    job_id = result.get("copy_job")
    if not job_id:
        return EXIT_OK, None
    code, final = run_job(core, args, core.jobs.job(job_id))
    result["copy"] = {"job": final.id, "state": final.state_word, "error": final.error, "summary": final.summary}
    target = result.get("copy_to")
    if code == EXIT_OK:
        return EXIT_OK, f"  copied to {target}: {(final.summary or {}).get('message', '')}"
    return EXIT_FAILED, f"hvtui: the backup succeeded, but its copy to {target} failed (job {final.id}): {final.error}"


def warn_damaged(damaged: list[DamagedManifest]) -> None:
    """One warning line per repository naming its damaged manifests (they list nowhere else)."""
    by_repo: dict[str, list[DamagedManifest]] = {}
    for d in damaged:
        by_repo.setdefault(d.repository, []).append(d)
    for repo_name, items in sorted(by_repo.items()):
        what = "manifest is" if len(items) == 1 else "manifests are"
        named = "; ".join(f"{d.id} ({d.error})" for d in items)
        show(
            f"hvtui: warning: {len(items)} restore point {what} damaged in repository {repo_name} and cannot be "
            f"listed or restored: {named}. Run `hvtui verify` for details.",
            stream=sys.stderr,
        )


def local_time(when: datetime) -> str:
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def vm_point_listing(
    core: Core, vm: str, host: str | None, repository: str | None
) -> tuple[PointListing, VMPoints | None]:
    """The points matching ``vm`` (a name or id), and, when it names a VM a host has now, that
    VM's points by the one rule (``VMPoints``: its id's first, else the same name's under an
    earlier id), as the console's detail shows them.

    Only the one host the matching points are on (or ``--host``) is asked which VM that is:
    a listing must not wait on every host.  No such VM (deleted, or the name is an old id):
    None, and the points are the ones matching by name or id.
    """
    listing = core.backups.point_listing(host=host, vm=vm, repository=repository)
    hosts = {i.summary.host for i in listing.points} if host is None else {host}
    if len(hosts) != 1:
        return listing, None
    (only,) = hosts
    try:
        current = core.backups.resolve_vm(vm, only)
    except HvtuiError:
        return listing, None
    return listing, core.backups.vm_points(only, current.id, current.name, repository)


@reported
def run_points_command(args: argparse.Namespace, core: Core) -> int:
    if args.vm:
        listing, mine = vm_point_listing(core, args.vm, args.host, args.repo)
    else:
        listing, mine = core.backups.point_listing(host=args.host, repository=args.repo), None
    infos = mine.points if mine is not None else listing.points
    warn_damaged(listing.damaged)
    # A repository that cannot be read is not an empty one: say so and exit non-zero.
    code = EXIT_OK
    for name, err in listing.unreadable:
        show(f"hvtui: error: repository {name}: {err}", stream=sys.stderr)
        code = max(code, EXIT_DAMAGED if isinstance(err, RepositoryNeedsRepair) else EXIT_FAILED)
    if args.json:
        emit_json(
            {
                "ok": code == EXIT_OK,
                "points": [
                    {
                        "id": i.summary.id,
                        "repository": i.repository,
                        "host": i.summary.host,
                        "vm_id": i.summary.vm_id,
                        "vm_name": i.summary.vm_name,
                        "time": i.summary.time.isoformat(),
                        "mode": i.summary.mode,
                        "parent": i.parent,
                        "files": i.files,
                        "logical_bytes": i.summary.logical_bytes,
                        "stored_bytes": i.summary.stored_bytes,
                        "verified": i.summary.verified,
                        "note": mine.note(i) if mine is not None else None,
                    }
                    for i in infos
                ],
                **({"same_name_earlier_ids": mine.earlier_ids} if mine is not None and mine.same_name else {}),
                "damaged": [d.to_dict() for d in listing.damaged],
                "unreadable": [{"repository": name, "error": str(err)} for name, err in listing.unreadable],
                **({"exit_code": code} if code else {}),
            }
        )
        return code
    if not infos:
        if not listing.unreadable:
            show("No restore points" + (f" of VM {args.vm!r}" if args.vm else "") + ".")
        return code
    noted = mine is not None and mine.offers_earlier
    rows = [("POINT", "TIME", "HOST", "VM", "MODE", "SIZE", "STORED", "VERIFIED", "REPO", *(("NOTE",) if noted else ()))]
    for i in infos:
        s = i.summary
        verified = {None: "-", True: "ok", False: "DAMAGED"}[s.verified]
        rows.append(
            (
                s.id,
                s.time.astimezone().strftime("%Y-%m-%d %H:%M"),
                s.host,
                s.vm_name,
                s.mode,
                size(s.logical_bytes),
                size(s.stored_bytes),
                verified,
                i.repository,
                *((mine.note(i) or "",) if noted and mine is not None else ()),
            )
        )
    rows = [tuple(display_text(cell) for cell in row) for row in rows]  # a name's newline must not split a row
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for row in rows:
        show("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if mine is not None and mine.offers_earlier:
        show(
            display_text(
                f"VM {args.vm} (id {mine.vm_id}) has no restore point under its id; these are of the same name under "
                "an earlier VM id: the same VM? They restore (as a new VM or to a folder), a backup never builds on them."
            )
        )
    elif mine is not None and mine.same_name:
        show(display_text(f"Not listed: {mine.earlier_text()} (`hvtui points {mine.earlier_ids[0]}`)."))
    return code


@reported
def run_verify_command(args: argparse.Namespace, core: Core) -> int:
    bar = ProgressLine(enabled=not args.json)
    try:
        if args.quick and args.read_data != 100.0:
            return fail(args, "--quick reads no data: it cannot be combined with --read-data", EXIT_USAGE)
        report = core.backups.verify(args.point, args.quick, args.repo, progress=bar, read_share=args.read_data / 100)
    finally:
        bar.close()
    if args.json:
        emit_json({"ok": report.ok, **report.to_dict(), "exit_code": EXIT_OK if report.ok else EXIT_DAMAGED})
    else:
        kind = "quick check" if args.quick else "full verification"
        show(
            f"{kind} of repository {report.repository}: {report.points_checked} points, {report.chunks_checked} chunks"
            + ("" if args.quick else f", {size(report.bytes_checked)} read")
            + ("" if args.quick or report.chunks_read == report.chunks_checked else
               f" ({report.chunks_read} chunks re-read, a random {args.read_data:g} %; the rest checked quickly)")
            + f" in {report.duration:.1f} s."
        )
        if report.ok:
            show("No damage found.")
        else:
            for line in report.lines():
                show(f"  DAMAGED: {line}")
            show(f"Restore points affected: {', '.join(sorted(report.broken_points))}")
            if report.quarantined and report.version >= 2:
                show(
                    f"Quarantined {len(report.quarantined)} damaged chunk(s): taken out of the index (the pack keeps "
                    "them for inspection, nothing deleted), so the next backup stores that data again."
                )
            elif report.quarantined:
                show(
                    f"Quarantined {len(report.quarantined)} damaged chunk(s): renamed to <chunk>.bad under chunks/ "
                    "(kept for inspection, nothing deleted), so the next backup stores that data again."
                )
            if report.repair_skipped:
                show(f"Not repaired: {report.repair_skipped}.")
            show("What to do:")
            for step in report.next_steps():
                show(f"  - {step}")
    return EXIT_OK if report.ok else EXIT_DAMAGED


@reported
def run_prune_command(args: argparse.Namespace, core: Core) -> int:
    rc = core.backups.repository_config(args.repo)
    if not args.dry_run:
        reason = core.backups.read_only_reason()
        if reason is not None:
            core.audit.record("prune", f"repository:{rc.name}", None, {"repository": rc.name}, "refused", 0.0, reason)
            return fail(args, f"prune refused: {reason}", EXIT_REFUSED)
        plan = core.backups.prune(dry_run=True, repository=rc.name)
        if not plan.removed and not plan.chunks_unreferenced:
            return _print_prune(args, plan)
        question = (
            f"Prune repository {rc.name!r}: remove {len(plan.removed)} restore point(s) "
            f"and about {plan.chunks_unreferenced} unreferenced chunk(s)?"
        )
        if not args.yes and not args.json:
            _print_decisions(plan.decisions)
        try:
            agreed = confirm(question, args.yes)
        except RefusedError as err:
            core.audit.record("prune", f"repository:{rc.name}", None, {"repository": rc.name}, "refused", 0.0, str(err))
            return fail(args, str(err), EXIT_REFUSED)
        if not agreed:
            core.audit.record(
                "prune", f"repository:{rc.name}", None, {"repository": rc.name}, "declined", 0.0, "not confirmed"
            )
            return fail(args, "not confirmed: nothing changed", EXIT_REFUSED)
    bar = ProgressLine(enabled=not args.json)
    try:
        result = core.backups.prune(dry_run=args.dry_run, repository=rc.name, progress=bar)
    finally:
        bar.close()
    return _print_prune(args, result)


def _print_decisions(decisions: list[Any]) -> None:
    for d in decisions:
        when = datetime.fromisoformat(d.time).astimezone().strftime("%Y-%m-%d %H:%M")
        verdict = "keep  " if d.keep else "remove"
        show(f"  {verdict} {d.point}  {d.host}/{d.vm_name}  {when}  {d.mode:<12} {d.reason}")


def _print_prune(args: argparse.Namespace, result: Any) -> int:
    code = EXIT_OK if result.gc_skipped is None else EXIT_FAILED
    if args.json:
        emit_json(
            {
                "ok": code == EXIT_OK,
                **result.to_dict(),
                "decisions": [
                    {
                        "point": d.point,
                        "host": d.host,
                        "vm": d.vm_name,
                        "time": d.time,
                        "keep": d.keep,
                        "reason": d.reason,
                    }
                    for d in result.decisions
                ],
                "exit_code": code,
            }
        )
        return code
    _print_decisions(result.decisions)
    if result.dry_run:
        show(
            f"Dry run: would remove {len(result.removed)} of {len(result.decisions)} restore points and "
            f"{result.chunks_unreferenced} unreferenced chunks; nothing changed."
        )
    else:
        show(
            f"Removed {result.points_removed} restore points and {result.chunks_removed} chunks "
            f"({size(result.bytes_freed)} freed) in {result.duration:.1f} s."
        )
    if result.waited_for:
        show(f"  waited for: {'; '.join(result.waited_for)}")
    if result.quarantined_packs:
        show(
            f"  {result.quarantined_packs} pack(s) holding a chunk verify found damaged ({size(result.quarantined_bytes)}) "
            "are kept whole under packs/ for inspection; prune never removes or rewrites them."
        )
    elif result.quarantined_files:
        show(
            f"  {result.quarantined_files} quarantined chunk file(s) (*.bad, {size(result.quarantined_bytes)}) are kept "
            "under chunks/ for inspection; prune never removes them: delete them by hand once examined."
        )
    if result.gc_skipped:
        show(f"hvtui: error: {result.gc_skipped}", stream=sys.stderr)
    return code
