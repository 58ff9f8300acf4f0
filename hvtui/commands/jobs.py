"""`hvtui jobs`: the job journal from a shell — list recent and interrupted jobs, resume or
dismiss an interrupted one.

``hvtui jobs`` lists the newest jobs and every interrupted one (a console or cron run that
was killed before its job finished); ``--all`` lists the whole journal.  ``hvtui jobs
resume ID`` runs an interrupted job again here, with a progress line, through the same job
manager the console uses (same journal, same audit entries); ``hvtui jobs dismiss ID``
stops offering it.  IDs may be abbreviated to any unique prefix.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING

import humanize

from hvtui.commands import show, show_json
from hvtui.commands.progress import ProgressLine
from hvtui.jobs.headless import run_job_blocking
from hvtui.jobs.model import Job, JobState
from hvtui.jobs.outcome import job_to_dict
from hvtui.text import display_text

if TYPE_CHECKING:
    from hvtui.core import Core

RECENT = 20  # jobs listed without --all


def register(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "jobs",
        parents=parents,
        help="list recent and interrupted jobs; resume or dismiss an interrupted one",
        description="List recent backup and restore jobs from the job journal, and every interrupted one "
        "(its process was killed before it finished). Resume or dismiss interrupted jobs.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--all", action="store_true", help=f"list every job in the journal, not only the newest {RECENT}")
    parser.set_defaults(handler=handle_list)
    actions = parser.add_subparsers(dest="jobs_action", metavar="ACTION")
    resume = actions.add_parser(
        "resume",
        parents=parents,
        help="run an interrupted job again here (a backup reuses the chunks already stored)",
        description="Run an interrupted job again in this process, with a progress line. Before a backup "
        "is resumed, any Recovery checkpoint the killed run left on the VM is removed.",
    )
    resume.add_argument("job_id", metavar="ID", help="the interrupted job's id (a unique prefix is enough)")
    resume.add_argument("--json", action="store_true", help="print the finished job as JSON instead of a progress line")
    resume.set_defaults(handler=handle_resume)
    dismiss = actions.add_parser(
        "dismiss",
        parents=parents,
        help="stop offering an interrupted job for resuming",
        description="Mark an interrupted job as dismissed: it stays in the journal but is no longer offered.",
    )
    dismiss.add_argument("job_id", metavar="ID", help="the interrupted job's id (a unique prefix is enough)")
    dismiss.set_defaults(handler=handle_dismiss)


# -- handlers -------------------------------------------------------------------------------------
def handle_list(args: argparse.Namespace, core: Core) -> int:
    manager = core.jobs
    jobs = manager.history()
    shown = jobs if args.all else select_recent(jobs, RECENT)
    for problem in manager.journal_problems:
        show(f"hvtui: warning: {problem} (skipped)", stream=sys.stderr)
    if args.json:
        show_json(json.dumps([job_to_dict(job) for job in shown], indent=2))
        return 0
    if not shown:
        show(f"No jobs in the journal ({manager.journal_path}).")
        return 0
    show(format_table(shown, core.clock.now()))
    waiting = [job for job in jobs if is_awaiting_decision(job)]
    if waiting:
        noun = "job was" if len(waiting) == 1 else "jobs were"
        show(f"\n{len(waiting)} {noun} interrupted: `hvtui jobs resume ID` runs one again, `hvtui jobs dismiss ID` stops offering it.")
    hidden = len(jobs) - len(shown)
    if hidden:
        show(f"({hidden} older finished jobs not shown; --all lists them)")
    return 0


def handle_resume(args: argparse.Namespace, core: Core) -> int:
    manager = core.jobs
    job = manager.resume(args.job_id)
    stream = sys.stderr
    printer = ProgressLine(stream, title=f"{job.title} (resuming {job.resumed_from})", enabled=not args.json)
    try:
        code = run_job_blocking(manager, job, printer, error_stream=None if args.json else stream)
    finally:
        printer.close()
    final = manager.job(job.id)
    if args.json:
        show_json(json.dumps(job_to_dict(final), indent=2))
    elif final.state is JobState.SUCCEEDED:
        show(f"{final.title}: done{summary_words(final)}")
    return code


def handle_dismiss(args: argparse.Namespace, core: Core) -> int:
    job = core.jobs.dismiss_interrupted(args.job_id)
    show(f"Dismissed interrupted job {job.id}: {job.title}.")
    return 0


# -- formatting -----------------------------------------------------------------------------------
def is_awaiting_decision(job: Job) -> bool:
    return job.state is JobState.INTERRUPTED and not job.resumed_by and not job.dismissed


def select_recent(jobs: list[Job], count: int) -> list[Job]:
    """The newest ``count`` jobs, plus every older one still awaiting a decision or still running."""
    recent = {job.id for job in jobs[-count:]}
    return [job for job in jobs if job.id in recent or is_awaiting_decision(job) or not job.state.final]


def state_words(job: Job) -> str:
    if job.state is JobState.INTERRUPTED:
        if job.resumed_by:
            return f"interrupted, resumed as {job.resumed_by}"
        if job.dismissed:
            return "interrupted, dismissed"
        return "INTERRUPTED"
    if job.cancel_requested and not job.state.final:
        return "cancelling"
    return job.state_word


def summary_words(job: Job) -> str:
    summary = job.summary or {}
    parts = []
    for key in ("point_id", "point", "message"):
        if summary.get(key):
            parts.append(str(summary[key]))
            break
    for key, label in (("bytes_new", "new"), ("bytes_stored", "stored")):
        if isinstance(summary.get(key), int):
            parts.append(f"{humanize.naturalsize(summary[key], binary=True)} {label}")
    return f" ({', '.join(parts)})" if parts else ""


def format_table(jobs: list[Job], now: datetime) -> str:
    header = ("ID", "STATE", "KIND", "MODE", "HOST", "VM", "SUBMITTED", "TOOK", "RESULT")
    rows = [header]
    for job in jobs:
        took = humanize.naturaldelta(job.duration) if job.duration is not None else "-"
        if job.state is JobState.FAILED:
            result = job.error or ""
        elif job.state is JobState.SUCCEEDED:
            result = summary_words(job).strip(" ()")
        elif job.resumed_from:
            result = f"resumes {job.resumed_from}"
        elif job.state is JobState.INTERRUPTED and job.summary and job.summary.get("message"):
            result = str(job.summary["message"])  # killed after its result was committed
        else:
            result = ""
        if job.restore_route is not None:
            result = f"{job.restore_route}; {result}" if result else job.restore_route
        rows.append(
            (
                job.id,
                state_words(job),
                job.kind,
                job.mode or "-",
                job.shown_host,
                job.vm or "-",
                humanize.naturaltime(now - job.created),
                took,
                result,
            )
        )
    rows = [tuple(display_text(cell) for cell in row) for row in rows]  # one line per job, whatever its names hold
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "  " + row[-1] for row in rows]
    return "\n".join(line.rstrip() for line in lines)

