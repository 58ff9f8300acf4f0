"""`hvtui restore`: a restore point to a folder, as a new VM, or over the VM.

The plan (what is written, and in place what is overwritten, deleted and which
checkpoints are lost) is printed before anything happens, with or without ``--yes``;
``--json`` puts it in the document.  Exit codes as for ``hvtui backup``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hvtui.commands import confirm, show
from hvtui.commands.backup import job_failed, local_time, run_job, size, vm_point_listing, warn_damaged
from hvtui.commands.output import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, emit_json, fail, reported
from hvtui.errors import RefusedError
from hvtui.text import display_text

if TYPE_CHECKING:
    from hvtui.backups.points import PointInfo
    from hvtui.backups.restore_plan import RestorePlan
    from hvtui.core import Core
    from hvtui.model import RestorePointSummary


def register(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    restore = subparsers.add_parser(
        "restore",
        parents=parents,
        help="restore a VM from a restore point",
        description="Restore a point (the VM's latest by default) to a directory, as a new VM, or over the VM. "
        "What it replaces and loses is printed first.",
    )
    restore.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    restore.add_argument("--repo", metavar="R", help="repository name from the config (default: the default one)")
    restore.add_argument("vm", metavar="VM", help="the backed-up VM's name or id")
    restore.add_argument("--host", metavar="H", help="the VM's host (needed only when the name is on several hosts)")
    restore.add_argument("--point", metavar="ID", help="restore point id (default: the latest of the VM)")
    restore.add_argument(
        "--target-host",
        metavar="H",
        help="--as: create the new VM on host H (lab or WinRM; default: the point's own host)",
    )
    target = restore.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--to", type=Path, metavar="DIR", help="write the VM's files into DIR (nothing on the host changes)"
    )
    target.add_argument("--as", dest="as_name", metavar="NAME", help="register the restored VM as a new VM called NAME")
    target.add_argument(
        "--in-place",
        action="store_true",
        help="replace the VM's disks, config and checkpoints with the point's (the VM must be off)",
    )
    restore.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="--as/--to: keep the point's checkpoint tree (default: one flattened disk per drive, no checkpoints)",
    )
    restore.add_argument(
        "--backup-first",
        action="store_true",
        help="--in-place: back up the VM's current state (its checkpoints and data) first; no restore if that fails",
    )
    restore.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    restore.set_defaults(handler=run_restore_command)


def _restore_candidates(
    infos: list[PointInfo], args: argparse.Namespace, damaged: int, one_vm: bool = False
) -> list[PointInfo]:
    """``infos``, unless there are none or they are of several VMs (``one_vm``: already the
    points of one VM by the one rule, its own or the same name's under an earlier id)."""
    vms = sorted({(i.summary.host, i.summary.vm_id, i.summary.vm_name) for i in infos})
    if not infos:
        where = f" on host {args.host!r}" if args.host else ""
        also = f" ({damaged} damaged manifest(s) cannot be read, see above)" if damaged else ""
        raise LookupError(f"no restore points of VM {args.vm!r}{where}{also}")
    if len(vms) > 1 and not one_vm:
        found = ", ".join(f"{h}/{n} (id {i})" for h, i, n in vms)
        hint = "name the host with --host" if not args.host else "use the VM id"
        raise LookupError(f"VM {args.vm!r} is ambiguous: restore points exist for {found}; {hint}")
    return infos


def _question(point: RestorePointSummary, plan: RestorePlan, args: argparse.Namespace, target_host: str) -> str:
    when = local_time(point.time)
    if not args.in_place:
        return f"Restore point {point.id} of {point.vm_name!r} ({when}) as a new VM {args.as_name!r} on {target_host!r}?"
    lost = ", ".join(repr(cp.name) for cp in plan.lost_checkpoints)
    checkpoints = f" and {len(plan.lost_checkpoints)} checkpoint(s) ({lost})" if lost else ""
    first = " (it is backed up first)" if args.backup_first else " (--backup-first keeps it restorable)"
    return (
        f"Restore VM {point.vm_name!r} on {point.host!r} in place from point {point.id} ({when})? "
        f"Its current files ({size(plan.lost_bytes)}){checkpoints} are replaced; "
        f"everything since the point is lost{first}."
    )


@reported
def run_restore_command(args: argparse.Namespace, core: Core) -> int:
    listing, mine = vm_point_listing(core, args.vm, args.host, args.repo)
    if mine is not None:
        # Id first, else the same name's under an earlier id; --point may name either.
        listing.points = mine.own + mine.same_name if args.point else mine.points
    damaged = listing.damaged
    damaged_doc = [d.to_dict() for d in damaged]
    warn_damaged(damaged)
    if args.point:
        for d in damaged:
            if d.id == args.point:
                message = (
                    f"the manifest of restore point {d.id} in repository {d.repository} is damaged: {d.error}; "
                    "run `hvtui verify`"
                )
                return fail(args, message, EXIT_FAILED, damaged=damaged_doc)
    try:
        infos = _restore_candidates(listing.points, args, len(damaged), one_vm=mine is not None)
    except LookupError as err:
        return fail(args, str(err), EXIT_USAGE, damaged=damaged_doc)
    if args.point:
        chosen = [i for i in infos if i.summary.id == args.point]
        if not chosen:
            return fail(args, f"restore point {args.point} is not a point of VM {args.vm!r}", EXIT_USAGE)
        point = chosen[0].summary
    else:
        newer = listing.damaged_newer_than(infos[-1])
        point = infos[-1].summary
        if newer:
            # The newest point may be the damaged one: restoring the older state without a
            # word, in the middle of an incident, is the harm to avoid.
            names = ", ".join(f"{d.id} in repository {d.repository} ({d.error})" for d in newer)
            message = (
                f"the latest readable restore point of VM {args.vm!r} is {point.id} ({local_time(point.time)}), but "
                f"a newer manifest is damaged and may be this VM's latest point: {names}. Run `hvtui verify`; "
                f"to restore the older point on purpose, re-run with --point {point.id}"
            )
            if args.to is None:
                action = "restore-in-place" if args.in_place else "restore-as-new"
                core.audit.record(
                    action, point.host, point.vm_name, {"point": "latest"}, "refused", 0.0, "newer manifest damaged"
                )
            return fail(args, message, EXIT_REFUSED, damaged=damaged_doc, latest_readable=point.id)
    note = mine.note(point) if mine is not None else None
    if note is not None and not args.json:
        show(
            display_text(
                f"Point {point.id} is of {point.vm_name} under an earlier VM id ({note}; the VM now has id "
                f"{mine.vm_id if mine is not None else '?'}): the same VM? It is restored as the point has it."
            )
        )
    if args.backup_first and not args.in_place:
        return fail(args, "--backup-first goes with --in-place (the other targets overwrite nothing)", EXIT_USAGE)
    target_host = args.target_host or point.host
    # A folder restore has no host; an in-place one goes back to the VM it replaces.
    if args.target_host is not None and args.as_name is None and not (args.in_place and args.target_host == point.host):
        return fail(args, "--target-host goes with --as (a new VM on another host)", EXIT_USAGE)
    plan = core.backups.plan_restore(
        point.id,
        to_dir=args.to,
        as_name=args.as_name,
        in_place=args.in_place,
        host=target_host,
        repository=point.repository,
        keep_checkpoints=args.keep_checkpoints,
    )
    if not args.json:
        show("\n".join(plan.lines()))
        sys.stdout.flush()
    extra_doc = {"plan": plan.to_dict(), "damaged": damaged_doc, **({"note": note} if note else {})}
    if args.to is not None:
        job = core.jobs.submit_restore(
            point.id, "directory", directory=args.to, repository=point.repository, keep_checkpoints=args.keep_checkpoints
        )
    else:
        action = "restore-in-place" if args.in_place else "restore-as-new"
        audit_args = {"point": point.id, **plan.audit_args()}
        # Read-only is refused before asking anything (and audit-logged by the service).
        reason = core.backups.read_only_reason(target_host)
        if reason is not None:
            core.audit.record(action, target_host, point.vm_name, audit_args, "refused", 0.0, f"read-only: {reason}")
            return fail(args, f"{action} refused: {reason}", EXIT_REFUSED, **extra_doc)
        try:
            agreed = confirm(_question(point, plan, args, target_host), args.yes)
        except RefusedError as err:
            core.audit.record(action, target_host, point.vm_name, audit_args, "refused", 0.0, str(err))
            return fail(args, str(err), EXIT_REFUSED, **extra_doc)
        if not agreed:
            core.audit.record(action, target_host, point.vm_name, audit_args, "declined", 0.0, "not confirmed")
            return fail(args, "not confirmed: nothing changed", EXIT_REFUSED, **extra_doc)
        if args.backup_first:
            backup = core.jobs.submit_backup(point.host, point.vm_id, repository=point.repository, vm_name=point.vm_name)
            code, done = run_job(core, args, backup)
            if code != EXIT_OK:
                show("hvtui: the backup before the restore did not finish: nothing restored", stream=sys.stderr)
                return job_failed(args, done, code)
            if not args.json:
                show(f"Backed up the current state first: restore point {(done.summary or {}).get('point_id')}.")
        if args.in_place:
            job = core.jobs.submit_restore(point.id, "in_place", repository=point.repository)
        else:
            job = core.jobs.submit_restore(
                point.id,
                "new",
                new_name=args.as_name,
                host=target_host,
                repository=point.repository,
                keep_checkpoints=args.keep_checkpoints,
            )
    code, final = run_job(core, args, job)
    if code != EXIT_OK:
        return job_failed(args, final, code)
    result = dict(final.summary or {})
    if args.json:
        emit_json({"ok": True, "job": final.id, **result, **extra_doc})
        return EXIT_OK
    show(f"Restored point {point.id} of {point.vm_name!r} ({local_time(point.time)}) to {result.get('target')}.")
    show(
        f"  {result.get('files')} files, {size(result.get('logical_bytes'))}; written {size(result.get('written_bytes'))}, "
        f"holes {size(result.get('hole_bytes'))}, {float(result.get('duration') or 0):.1f} s."
    )
    for warning in result.get("warnings") or []:
        show(f"  host: {warning}")  # a safe fix the host made to register the VM (a switch it lacks)
    return EXIT_OK
