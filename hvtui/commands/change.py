"""`hvtui change open|list|show|rollback|promote|discard`: change windows from the shell.

A window takes one checkpoint (same name) of many VMs before a change; it is closed per VM by
rolling back (apply the checkpoint), promoting (a backup job, then the checkpoint deleted only
once that backup succeeded) or discarding (delete the checkpoint, no backup).  Roll back,
promote and discard print what happens to every VM and ask ``[y/N]`` (``--yes`` skips it;
without a terminal and without ``--yes`` they are refused).  Every step is audited with the
window's name; read-only mode refuses each one.

Exit codes: 0 every VM went through; 1 a VM failed (the others went on) or the question was
declined; 2 usage (unknown window or VM); 4 refused (read-only, merge headroom, no terminal
to ask on); 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from hvtui.audit import RESULT_DECLINED, RESULT_REFUSED
from hvtui.commands import confirm, show
from hvtui.commands.output import EXIT_FAILED, EXIT_OK, emit_json, reported
from hvtui.commands.progress import ProgressLine
from hvtui.errors import HvtuiError, ReadOnlyError, RefusedError, UsageError
from hvtui.policy import age_seconds, age_text

if TYPE_CHECKING:
    from hvtui.changes import ChangeWindow, StepReport
    from hvtui.core import Core
    from hvtui.model import VM

QUESTIONS = {
    "rollback": "Roll back these VMs?",
    "promote": "Back up these VMs and then delete their checkpoints?",
    "discard": "Delete these checkpoints without a backup?",
}


def register(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "change",
        parents=parents,
        help="change windows: checkpoint many VMs before a change, then roll back, promote or discard",
        description="Change windows: one checkpoint of many VMs before a change; afterwards roll back, "
        "promote (back up, then delete the checkpoint) or discard, VM by VM.",
    )
    steps = parser.add_subparsers(dest="change_action", metavar="ACTION", required=True)
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    name = argparse.ArgumentParser(add_help=False)
    name.add_argument("name", metavar="NAME", help="the window's name")
    closing = argparse.ArgumentParser(add_help=False)
    closing.add_argument("--vm", metavar="V", action="append", help="only this VM of the window (repeatable; name, id or host/name)")
    closing.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")

    open_ = steps.add_parser(
        "open", parents=[*parents, output, name], help="checkpoint the VMs and record the window",
        description="Take one checkpoint called NAME of each VM; a VM that fails is reported and the others go on.",
    )  # fmt: skip
    open_.add_argument("--vm", metavar="V", action="append", help="a VM name or id (repeatable)")
    open_.add_argument("--host", metavar="H", help="every VM of this host (or, with --vm, where to find them)")
    open_.add_argument("--group", metavar="G", help="every VM of the hosts in this group")
    open_.add_argument("--type", type=str.lower, choices=("standard", "production"), default="standard", help="checkpoint type")
    open_.add_argument("--ticket", metavar="T", help="a change ticket reference, shown with the window")
    open_.set_defaults(handler=run_open)

    list_ = steps.add_parser("list", parents=[*parents, output], help="list the change windows")
    list_.set_defaults(handler=run_list)
    show_ = steps.add_parser("show", parents=[*parents, output, name], help="show a window, VM by VM")
    show_.set_defaults(handler=run_show)

    rollback = steps.add_parser(
        "rollback", parents=[*parents, output, name, closing], help="apply the window's checkpoint (the change is lost)"
    )
    rollback.add_argument(
        "--start", action="store_true", help="then start each VM (a host that cannot says so for that VM)"
    )
    rollback.set_defaults(handler=run_step, step="rollback")
    promote = steps.add_parser(
        "promote", parents=[*parents, output, name, closing], help="back up each VM, then delete its checkpoint"
    )
    promote.add_argument("--mode", choices=("full", "incremental", "differential"), help="backup mode (default: the usual choice)")
    promote.set_defaults(handler=run_step, step="promote")
    discard = steps.add_parser(
        "discard", parents=[*parents, output, name, closing], help="delete the window's checkpoints without a backup"
    )
    discard.add_argument("--force", action="store_true", help="delete even when the merge may not fit (merge-headroom)")
    discard.set_defaults(handler=run_step, step="discard")


# -- choosing VMs ----------------------------------------------------------------------------
def chosen_vms(args: argparse.Namespace, core: Core) -> list[VM]:
    if args.vm:
        return [core.inventory.find_vm(vm, args.host) for vm in args.vm]
    if args.host:
        core.host(args.host)  # unknown host: a config error naming the known ones
        host_inv = core.inventory.refresh([args.host]).host(args.host)
        assert host_inv is not None
        if host_inv.facts is None and host_inv.error is not None:
            raise HvtuiError(f"host {args.host!r} cannot be read: {host_inv.error}")
        if not host_inv.vms:
            raise UsageError(f"host {args.host!r} has no VMs")
        return list(host_inv.vms)
    if args.group:
        inventory = core.inventory.refresh()
        hosts = [h for h in inventory.hosts if h.group == args.group]
        if not hosts:
            groups = sorted({h.group for h in inventory.hosts if h.group}) or ["none"]
            raise UsageError(f"no host is in group {args.group!r} (groups: {', '.join(groups)})")
        return [vm for h in hosts for vm in h.vms]
    raise UsageError("name the VMs: --vm V (repeatable), --host H or --group G")


# -- output ----------------------------------------------------------------------------------------
def _report_doc(report: StepReport) -> dict[str, Any]:
    return {
        "ok": not report.failed,
        "exit_code": report.exit_code,
        "window": report.window.to_dict(),
        "outcomes": [
            {"host": o.host, "vm": o.vm_name, "ok": o.ok, "refused": o.refused, "message": o.message} for o in report.outcomes
        ],
    }


def _show_report(args: argparse.Namespace, report: StepReport, done: str) -> int:
    if args.json:
        emit_json(_report_doc(report))
        return report.exit_code
    for o in report.outcomes:
        word = "ok" if o.ok else "REFUSED" if o.refused else "FAILED"
        show(f"  {word:<8} {o.host}/{o.vm_name}: {o.message}")
    ok = len(report.outcomes) - len(report.failed)
    show(f"{report.window.label}: {done} {ok} of {len(report.outcomes)} VMs.")
    if report.failed:
        show(f"hvtui: error: {len(report.failed)} VM(s) did not go through; see above", stream=sys.stderr)
    return report.exit_code


def _window_doc(window: ChangeWindow, now: Any) -> dict[str, Any]:
    return {**window.to_dict(), "open": window.is_open, "age_seconds": age_seconds(now, window.created)}


# -- handlers ------------------------------------------------------------------------------------
@reported
def run_open(args: argparse.Namespace, core: Core) -> int:
    vms = chosen_vms(args, core)
    progress = ProgressLine(enabled=not args.json)
    try:
        report = core.changes.open(args.name, vms, args.type.capitalize(), args.ticket, progress=progress)
    finally:
        progress.close()
    return _show_report(args, report, "checkpointed")


@reported
def run_list(args: argparse.Namespace, core: Core) -> int:
    windows = core.changes.windows()
    now = core.clock.now()
    if args.json:
        emit_json({"ok": True, "windows": [_window_doc(w, now) for w in windows]})
        return EXIT_OK
    if not windows:
        show("No change windows.")
        return EXIT_OK
    for w in windows:
        state = f"open, {len(w.holding)} of {len(w.vms)} VMs hold a checkpoint" if w.is_open else "closed"
        ticket = f"  ticket {w.ticket}" if w.ticket else ""
        show(f"{w.name}{ticket}  {len(w.vms)} VMs  {w.checkpoint_type}  opened {age_text(age_seconds(now, w.created))} ago by {w.user}  ({state})")
    return EXIT_OK


@reported
def run_show(args: argparse.Namespace, core: Core) -> int:
    window = core.changes.window(args.name)
    now = core.clock.now()
    if args.json:
        emit_json({"ok": True, "window": _window_doc(window, now)})
        return EXIT_OK
    show(f"{window.label}: {window.checkpoint_type} checkpoints, opened {window.created.astimezone():%Y-%m-%d %H:%M} by {window.user}")
    show(f"  {'open' if window.is_open else 'closed'}; age {age_text(age_seconds(now, window.created))}")
    for vm in window.vms:
        checkpoint = f"checkpoint {vm.checkpoint_id}" if vm.checkpoint_id else "no checkpoint"
        point = f", point {vm.point_id}" if vm.point_id else ""
        show(f"  {vm.host}/{vm.vm_name}: {vm.state} ({checkpoint}{point}); remaining: {vm.remaining}")
        if vm.error and not vm.state.holds_checkpoint:
            show(f"      {vm.error}")
    return EXIT_OK


@reported
def run_step(args: argparse.Namespace, core: Core) -> int:
    step: str = args.step
    start = step == "rollback" and bool(getattr(args, "start", False))
    plan = core.changes.plan(args.name, step, args.vm, start=start)
    show(plan.text, stream=sys.stderr if args.json else None)
    if not plan.vms:
        reason = "; ".join(sorted({r for _, r in plan.refused}))
        core.changes.refuse(plan, RESULT_REFUSED, f"read-only: {reason}")
        raise ReadOnlyError(f"{step} of {plan.window.label} refused: {reason}")
    try:
        agreed = confirm("Roll back these VMs, then start them?" if start else QUESTIONS[step], args.yes)
    except RefusedError as err:
        core.changes.refuse(plan, RESULT_REFUSED, str(err))
        raise
    if not agreed:
        core.changes.refuse(plan, RESULT_DECLINED, "not confirmed")
        show("Not confirmed: nothing changed.", stream=sys.stderr if args.json else None)
        return EXIT_FAILED
    progress = ProgressLine(enabled=not args.json)
    try:
        if step == "rollback":
            report = core.changes.rollback(args.name, args.vm, progress=progress, start=start)
        elif step == "promote":
            report = core.changes.promote(args.name, args.vm, mode=args.mode, progress=progress)
        else:
            report = core.changes.discard(args.name, args.vm, force=args.force, progress=progress)
    finally:
        progress.close()
    done = {"rollback": "rolled back", "promote": "promoted", "discard": "discarded"}[step]
    return _show_report(args, report, done)
