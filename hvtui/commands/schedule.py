"""`hvtui schedule`: backup schedules from the shell.

  run-due            what the host's timer or cron starts: records missed runs, continues a
                     run a stopped process left, runs what is due (one at a time)
  list [--json]      each schedule: selection, last run and its result, next run
  show NAME          the VMs it selects now and why each is in or out
  run NAME [--now]   run it if due (--now: whatever its timing)
  install --systemd|--cron [--write]   a timer/service pair or a crontab line for run-due

Exit codes: 0 every backup succeeded (or nothing was due); 1 a VM failed, a run was missed or
the VMs could not be listed; 2 usage; 4 refused (read-only); 5 another run-due is running.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hvtui.commands import show
from hvtui.commands.output import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, emit_json, fail, reported
from hvtui.errors import EXIT_BUSY

if TYPE_CHECKING:
    from hvtui.core import Core
    from hvtui.notify.report import RunReport

UNIT_NAME = "hvtui-schedule"
CRON_MARK = "# hvtui schedule run-due"


def register(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    schedule = subparsers.add_parser(
        "schedule",
        parents=parents,
        help="backup schedules: run what is due, list, show, install the timer",
        description="Backup schedules (schedules: in the config). The host's scheduler starts `hvtui schedule run-due`.",
    )
    sub = schedule.add_subparsers(dest="schedule_command", metavar="ACTION", required=True)
    run_due = sub.add_parser(
        "run-due", parents=[*parents, common], help="run the schedules that are due (for a systemd timer or cron)"
    )
    run_due.set_defaults(handler=run_due_command)
    listing = sub.add_parser("list", parents=[*parents, common], help="each schedule with its last and next run")
    listing.set_defaults(handler=list_command)
    detail = sub.add_parser("show", parents=[*parents, common], help="the VMs a schedule selects now, and why")
    detail.add_argument("name", metavar="NAME")
    detail.set_defaults(handler=show_command)
    run = sub.add_parser("run", parents=[*parents, common], help="run one schedule if it is due (--now: at once)")
    run.add_argument("name", metavar="NAME")
    run.add_argument("--now", action="store_true", help="run it now whatever its timing")
    run.set_defaults(handler=run_command)
    install = sub.add_parser(
        "install",
        parents=parents,
        help="print (or --write) a systemd timer or a crontab line starting run-due",
        description="A systemd user timer/service pair, or a crontab line, that starts `hvtui schedule run-due` "
        "every minute (it runs nothing unless a schedule is due). Printed; --write installs it for the current user.",
    )
    kind = install.add_mutually_exclusive_group(required=True)
    kind.add_argument("--systemd", action="store_true", help="a systemd user timer and service")
    kind.add_argument("--cron", action="store_true", help="a crontab line")
    install.add_argument("--write", action="store_true", help="install it for the current user instead of printing it")
    install.set_defaults(handler=install_command)


# -- output ------------------------------------------------------------------------------------
def _when(value: Any) -> str:
    from hvtui.config.timing import local_zone
    from hvtui.schedules.runner import local_text

    return "-" if value is None else local_text(value, local_zone())


def _report_lines(report: RunReport) -> list[str]:
    from hvtui.schedules.text import vm_result_line

    lines = [f"schedule {report.schedule}: {report.event} (run {report.run_id})"]
    lines.extend(vm_result_line(r) for r in report.results)
    lines.extend(f"  note: {note}" for note in report.notes)
    return lines


def _refuse_if_read_only(args: argparse.Namespace, core: Core, what: str) -> int | None:
    if not core.read_only:
        return None
    reason = "read-only mode: schedules run no backups"
    core.audit.record("schedule.run", f"schedule:{what}", None, {"schedule": what}, "refused", 0.0, reason)
    return fail(args, reason, EXIT_REFUSED)


# -- handlers ------------------------------------------------------------------------------------
@reported
def run_due_command(args: argparse.Namespace, core: Core) -> int:
    from hvtui.schedules.runner import ScheduleBusy

    refused = _refuse_if_read_only(args, core, "*")
    if refused is not None:
        return refused
    try:
        result = core.schedules.run_due()
    except ScheduleBusy as err:
        return fail(args, str(err), EXIT_BUSY)
    code = EXIT_OK if result.ok else EXIT_FAILED
    if args.json:
        emit_json({"ok": result.ok, "runs": [dataclasses.asdict(r) for r in result.reports], "exit_code": code})
        return code
    if not result.reports:
        show("Nothing due.")
    for report in result.reports:
        show("\n".join(_report_lines(report)))
    return code


@reported
def run_command(args: argparse.Namespace, core: Core) -> int:
    from hvtui.schedules.runner import ScheduleBusy

    schedule = core.schedules.schedule(args.name)  # unknown: exit 2 with a did-you-mean
    refused = _refuse_if_read_only(args, core, schedule.name)
    if refused is not None:
        return refused
    try:
        if args.now:
            with core.audit.action("schedule.run", f"schedule:{schedule.name}", None, {"schedule": schedule.name, "now": True}) as entry:
                reports = [core.schedules.run_now(schedule.name)]
                entry.args["event"] = reports[0].event
        else:
            reports = core.schedules.run_due(only=schedule.name).reports
    except ScheduleBusy as err:
        return fail(args, str(err), EXIT_BUSY)
    ok = all(r.event in ("success", "warning") for r in reports)
    code = EXIT_OK if ok else EXIT_FAILED
    if args.json:
        emit_json({"ok": ok, "runs": [dataclasses.asdict(r) for r in reports], "exit_code": code})
        return code
    if not reports:
        state = core.schedules.due_state(schedule.name)
        show(f"Schedule {schedule.name} is not due; next run {_when(state.next_run)} (--now runs it at once).")
    for report in reports:
        show("\n".join(_report_lines(report)))
    return code


@reported
def list_command(args: argparse.Namespace, core: Core) -> int:
    from hvtui.schedules.text import result_text

    statuses = core.schedules.statuses()
    if args.json:
        emit_json(
            {
                "ok": True,
                "schedules": [
                    {
                        "name": s.schedule.name,
                        "vms": list(s.schedule.vms),
                        "exclude": list(s.schedule.exclude),
                        "timing": s.schedule.timing.describe(),
                        "repository": s.schedule.repository,
                        "mode": s.schedule.mode,
                        "next_run": s.next_run.isoformat(),
                        "last_run": None
                        if s.last_run is None
                        else {
                            "run_id": s.last_run.run_id,
                            "started": s.last_run.started.isoformat(),
                            "finished": s.last_run.finished.isoformat() if s.last_run.finished else None,
                            "event": s.last_run.event,
                            "results": [dataclasses.asdict(r) for r in s.last_run.results.values()],
                        },
                        "missed": [slot.isoformat() for slot in s.missed],
                        "running": s.running,
                    }
                    for s in statuses
                ],
            }
        )
        return EXIT_OK
    if not statuses:
        show("No schedules configured (schedules: in the config; see config.example.yaml).")
        return EXIT_OK
    rows = [("SCHEDULE", "WHEN", "SELECTS", "LAST RUN", "RESULT", "NEXT RUN", "MISSED")]
    for s in statuses:
        last = s.last_run
        rows.append(
            (
                s.schedule.name,
                s.schedule.timing.describe(),
                ", ".join(s.schedule.vms),
                _when(last.started if last else None),
                result_text(s),
                _when(s.next_run),
                str(len(s.missed)),
            )
        )
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    for row in rows:
        show("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return EXIT_OK


@reported
def show_command(args: argparse.Namespace, core: Core) -> int:
    runner = core.schedules
    schedule = runner.schedule(args.name)
    selection = runner.selection(schedule)
    state = runner.due_state(schedule.name)
    if args.json:
        emit_json(
            {
                "ok": True,
                "name": schedule.name,
                "timing": schedule.timing.describe(),
                "next_run": state.next_run.isoformat(),
                "selected": [{"host": s.vm.host, "vm": s.vm.name, "reason": s.reason} for s in selection.selected],
                "not_selected": [{"host": s.vm.host, "vm": s.vm.name, "reason": s.reason} for s in selection.left_out],
                "unmatched_selectors": list(selection.unmatched),
                "unreachable_hosts": list(selection.unreachable),
            }
        )
        return EXIT_OK
    repository = schedule.repository or core.config.default_repository().name
    show(
        f"Schedule {schedule.name}: {schedule.timing.describe()}, window {_duration(schedule.window)}, "
        f"{schedule.mode} into {repository}"
        + (f", a full at least every {_duration(schedule.full_every)}" if schedule.full_every else "")
        + f"; next run {_when(state.next_run)}."
    )
    show(f"Selects {len(selection.selected)} VM(s):")
    for s in selection.selected:
        show(f"  + {s.vm.host}/{s.vm.name}: {s.reason}")
    if selection.left_out:
        show(f"Not selected ({len(selection.left_out)}):")
        for s in selection.left_out:
            show(f"  - {s.vm.host}/{s.vm.name}: {s.reason}")
    for selector in selection.unmatched:
        show(f"warning: selector {selector!r} selects no VM", stream=sys.stderr)
    for host in selection.unreachable:
        show(f"warning: host {host} could not be read: its VMs are not listed", stream=sys.stderr)
    return EXIT_OK


def _duration(seconds: float | None) -> str:
    from hvtui.config import format_duration

    return format_duration(seconds or 0)


# -- install -------------------------------------------------------------------------------------
def _command_line(args: argparse.Namespace) -> list[str]:
    """How the timer starts this hvtui: this interpreter, and the config this command was given."""
    command = [sys.executable, "-m", "hvtui", "schedule", "run-due"]
    config = getattr(args, "config", None)
    if config is not None:
        command += ["--config", str(Path(config).expanduser().absolute())]
    return command


def systemd_units(command: list[str]) -> dict[str, str]:
    exec_start = " ".join(shlex.quote(part) for part in command)
    return {
        f"{UNIT_NAME}.service": (
            "[Unit]\nDescription=hvtui backup schedules: run what is due\n\n"
            f"[Service]\nType=oneshot\nExecStart={exec_start}\n"
        ),
        f"{UNIT_NAME}.timer": (
            "[Unit]\nDescription=Start hvtui schedule run-due every minute\n\n"
            "[Timer]\nOnCalendar=*-*-* *:*:00\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n"
        ),
    }


def cron_line(command: list[str]) -> str:
    return f"* * * * * {' '.join(shlex.quote(part) for part in command)} >/dev/null 2>&1 {CRON_MARK}"


def _systemd_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


@reported
def install_command(args: argparse.Namespace, core: Core) -> int:
    command = _command_line(args)
    if args.systemd:
        units = systemd_units(command)
        if not args.write:
            for name, text in units.items():
                show(f"# {_systemd_dir() / name}\n{text}")
            show(f"# then: systemctl --user daemon-reload && systemctl --user enable --now {UNIT_NAME}.timer")
            return EXIT_OK
        folder = _systemd_dir()
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in units.items():
            (folder / name).write_text(text, encoding="utf-8")
            show(f"wrote {folder / name}")
        show(
            f"Enable it: systemctl --user daemon-reload && systemctl --user enable --now {UNIT_NAME}.timer\n"
            "(and `loginctl enable-linger` so it runs while you are logged out)."
        )
        return EXIT_OK
    line = cron_line(command)
    if not args.write:
        show(line)
        return EXIT_OK
    crontab = shutil.which("crontab")
    if crontab is None:
        return fail(args, f"no crontab command on this machine; add this line to your crontab by hand:\n{line}", EXIT_FAILED)
    current = subprocess.run([crontab, "-l"], capture_output=True, text=True, check=False)
    existing = current.stdout if current.returncode == 0 else ""
    kept = [row for row in existing.splitlines() if not row.rstrip().endswith(CRON_MARK)]
    wanted = "\n".join([*kept, line]) + "\n"
    done = subprocess.run([crontab, "-"], input=wanted, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return fail(args, f"crontab refused the new table: {done.stderr.strip() or done.returncode}", EXIT_FAILED)
    show(f"installed in your crontab: {line}")
    return EXIT_OK
