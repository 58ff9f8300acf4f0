"""What the jobs view shows of a job: table cells and the detail pane, without Textual.

Plain functions over ``hvtui.jobs.Job`` snapshots, so the formatting is testable alone
and cheap enough to run on every (throttled) progress event.  Every state is spelled
out in words (colour only repeats it), sizes go through humanize.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text

from hvtui.jobs import Job, JobState
from hvtui.text import display_text
from hvtui.tui.viewmodel.cells import ColumnSpec, Palette
from hvtui.tui.viewmodel.format import aware, size_text

BAR_WIDTH = 10
LOG_LINES_SHOWN = 60  # the manager keeps 200; the pane shows the newest

JOB_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("state", "STATE", 0, 11),
    ColumnSpec("kind", "JOB", 0, 7),
    ColumnSpec("vm", "VM", 0, 24),
    ColumnSpec("host", "HOST", 2, 16),
    ColumnSpec("mode", "MODE", 1, 12),
    ColumnSpec("progress", "PROGRESS", 0, 15),
    ColumnSpec("bytes", "DONE / TOTAL", 1, 21, right=True),
    ColumnSpec("rate", "RATE", 3, 11, right=True),
    ColumnSpec("eta", "ETA", 3, 7, right=True),
    ColumnSpec("dedup", "DEDUP", 4, 6, right=True),
    ColumnSpec("comp", "COMP", 4, 6, right=True),
    ColumnSpec("id", "ID", 5, 8),
)
JOB_COLUMN_IDS = tuple(spec.id for spec in JOB_COLUMNS)
# Columns whose width follows their content; the others keep a fixed width, so a running
# job's numbers never make the table re-layout (and re-send itself) as they grow.
_CONTENT_WIDTH = {"vm", "host"}

# Phases whose done/total is the job's real progress (others are short steps).
DATA_PHASES = ("backup", "restore", "verify")


def state_text(job: Job) -> str:
    if job.state is JobState.RUNNING and job.cancel_requested:
        return "cancelling"
    if job.state is JobState.INTERRUPTED:
        if job.resumed_by:
            return "resumed"
        if job.dismissed:
            return "dismissed"
    return job.state_word


def awaits_decision(job: Job) -> bool:
    """An interrupted job from the journal nobody has resumed or dismissed yet."""
    return job.state is JobState.INTERRUPTED and not job.resumed_by and not job.dismissed


def is_active(job: Job) -> bool:
    return job.state in (JobState.QUEUED, JobState.RUNNING)


def duration_text(seconds: float | None) -> str:
    """Compact: ``<1s``, ``42s``, ``3m05s``, ``1h02m``."""
    if seconds is None:
        return ""
    seconds = max(0.0, float(seconds))
    if seconds < 1:
        return "<1s"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def ratio_text(value: float | None) -> str:
    return f"{value:.1f}×" if value else ""


def bar_text(fraction: float, width: int = BAR_WIDTH) -> str:
    filled = int(round(max(0.0, min(1.0, fraction)) * width))
    return f"{'█' * filled}{'░' * (width - filled)} {fraction * 100:3.0f}%"


def _progress_text(job: Job) -> str:
    event = job.progress
    if job.state is JobState.QUEUED:
        return "waiting"
    if job.state is JobState.RUNNING:
        if event is None:
            return "starting"
        fraction = event.fraction
        if fraction is not None and event.phase in DATA_PHASES:
            return bar_text(fraction)
        return event.phase or "running"
    if job.state is JobState.SUCCEEDED:
        return f"done in {duration_text(job.duration)}" if job.duration is not None else "done"
    if awaits_decision(job):
        return "r resumes"
    if job.state is JobState.INTERRUPTED:
        return f"→ {job.resumed_by}" if job.resumed_by else ""
    took = duration_text(job.duration)
    return f"after {took}" if took else ""


def _bytes_text(job: Job) -> str:
    summary = job.summary or {}
    if job.state is JobState.SUCCEEDED and isinstance(summary.get("logical_bytes"), int):
        return size_text(summary["logical_bytes"])
    event = job.progress
    if event is None or event.phase not in DATA_PHASES:
        return ""
    if event.total:
        return f"{size_text(event.done)} / {size_text(event.total)}"
    return size_text(event.done) if event.done else ""


def job_plain(job: Job) -> tuple[str, ...]:
    """Display text per column of ``JOB_COLUMNS`` (VM and host names escaped: they come from hosts)."""
    event = job.progress
    running = job.state is JobState.RUNNING
    return tuple(map(display_text, (
        state_text(job),
        job.kind,
        job.vm or "",
        job.shown_host,
        job.mode or "",
        _progress_text(job),
        _bytes_text(job),
        f"{size_text(event.rate)}/s" if running and event is not None and event.rate else "",
        duration_text(event.eta) if running and event is not None and event.eta is not None else "",
        ratio_text(event.dedup_ratio) if event is not None else "",
        ratio_text(event.compression_ratio) if event is not None else "",
        job.id,
    )))


def _state_style(job: Job, palette: Palette) -> Style:
    if job.state is JobState.FAILED:
        return palette.crit
    if job.state is JobState.CANCELLED or awaits_decision(job):
        return palette.warn
    if job.state is JobState.SUCCEEDED:
        return palette.ok
    if job.state is JobState.QUEUED or job.state is JobState.INTERRUPTED:
        return palette.muted
    return Style()


def job_texts(job: Job, palette: Palette) -> tuple[Text, ...]:
    plain = job_plain(job)
    state_style = _state_style(job, palette)
    row_style = palette.muted if job.state is JobState.INTERRUPTED and not awaits_decision(job) else Style()
    out = []
    for spec, value in zip(JOB_COLUMNS, plain, strict=True):
        style = state_style if spec.id == "state" else row_style
        out.append(Text(value, style=style, no_wrap=True, overflow="ellipsis", justify="right" if spec.right else "left"))
    return tuple(out)


def job_haystack(job: Job) -> str:
    """What the jobs view's / filter matches."""
    return "\t".join((job.kind, job.vm or "", job.shown_host, job.mode or "", state_text(job), job.id)).casefold()


def job_widths(plains: Iterable[tuple[str, ...]]) -> dict[str, int]:
    widths = {spec.id: (spec.max_width if spec.id not in _CONTENT_WIDTH else cell_len(spec.label)) for spec in JOB_COLUMNS}
    for plain in plains:
        for spec, value in zip(JOB_COLUMNS, plain, strict=True):
            if spec.id in _CONTENT_WIDTH:
                widths[spec.id] = min(spec.max_width, max(widths[spec.id], cell_len(value)))
    return {key: max(width, cell_len(spec.label)) for (key, width), spec in zip(widths.items(), JOB_COLUMNS, strict=True)}


def job_order(job: Job) -> tuple[int, float]:
    """Interrupted jobs awaiting a decision first, then running, queued (in run order),
    then finished ones, newest first."""
    created = aware(job.created).timestamp()
    if awaits_decision(job):
        return (0, -created)
    if job.state is JobState.RUNNING:
        return (1, created)
    if job.state is JobState.QUEUED:
        return (2, created)
    finished = aware(job.finished).timestamp() if job.finished is not None else created
    return (3, -finished)


# -- the detail pane ----------------------------------------------------------------------


def _clock(value: datetime | None) -> str:
    return aware(value).astimezone().strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def _value_text(key: str, value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, int) and key.endswith("_bytes"):
        return f"{size_text(value)} ({value:,} bytes)"
    if isinstance(value, float) and key in ("duration", "seconds"):
        return duration_text(value)
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value) if value else "none"
    if isinstance(value, Mapping):
        return json.dumps(value, default=str)
    return str(value)


def progress_sentence(job: Job) -> str:
    event = job.progress
    if event is None:
        return ""
    parts = [f"{event.phase}" + (f": {event.message}" if event.message else "")]
    numbers = []
    if event.total:
        numbers.append(f"{size_text(event.done)} of {size_text(event.total)} ({event.done / event.total * 100:.0f}%)")
    elif event.done and event.phase in DATA_PHASES:
        numbers.append(size_text(event.done))
    limit = job.params.get("rate_limit")
    if event.rate and job.state is JobState.RUNNING:
        numbers.append(f"{size_text(event.rate)}/s" + (f" (limit {size_text(limit)}/s)" if limit else ""))
    elif limit and job.state is JobState.RUNNING:
        numbers.append(f"limit {size_text(limit)}/s")
    if event.eta is not None and job.state is JobState.RUNNING:
        numbers.append(f"ETA {duration_text(event.eta)}")
    if event.bytes_new:
        numbers.append(f"{size_text(event.bytes_new)} new")
    if event.bytes_stored:
        numbers.append(f"{size_text(event.bytes_stored)} stored")
    if event.dedup_ratio:
        numbers.append(f"dedup {ratio_text(event.dedup_ratio)}")
    if event.compression_ratio:
        numbers.append(f"compression {ratio_text(event.compression_ratio)}")
    if numbers:
        parts.append(", ".join(numbers))
    return " — ".join(parts)


def job_detail(job: Job) -> str:
    """The detail pane: what, where, when, progress, the reason it failed, the summary, the log."""
    lines = [f"{job.title} — {state_text(job)}"]
    facts = [f"job {job.id}"]
    for key in ("repository", "point_id", "new_name", "directory"):
        value = job.params.get(key)
        if value:
            facts.append(f"{key.replace('_', ' ')} {value}")
    lines.append(" · ".join(facts))
    times = [f"created {_clock(job.created)}"]
    if job.started is not None:
        times.append(f"started {_clock(job.started)}")
    if job.finished is not None:
        times.append(f"finished {_clock(job.finished)}")
    if job.duration is not None:
        times.append(f"took {duration_text(job.duration)}")
    lines.append(" · ".join(times))
    if job.retry_of:
        lines.append(f"retry of job {job.retry_of}")
    if job.resumed_from:
        lines.append(f"resumes interrupted job {job.resumed_from}")
    if job.resumed_by:
        lines.append(f"resumed as job {job.resumed_by}")
    if job.cancel_requested and job.state is JobState.RUNNING:
        lines.append("cancel requested: stopping at the next safe point (a backup removes its checkpoint)")
    if awaits_decision(job):
        # The journal does not say whether a console or a CLI command ran it: name the process.
        process = f"the hvtui process that ran it (pid {job.owner_pid})" if job.owner_pid else "the hvtui process that ran it"
        lines.append(
            f"interrupted: {process} ended without finishing it (killed, stopped, or its SSH session dropped). "
            "r resumes it (stored data is reused; a leftover backup checkpoint is removed first), x dismisses it."
        )
    sentence = progress_sentence(job)
    if sentence:
        lines.append(f"progress: {sentence}")
    if job.error:
        lines.append(f"failed: {job.error}")
    summary = dict(job.summary or {})
    if summary:
        lines.append("")
        lines.append("Summary")
        message = summary.pop("message", None)
        if message:
            lines.append(f"  {message}")
        for key, value in summary.items():
            lines.append(f"  {key.replace('_', ' ')}: {_value_text(key, value)}")
    lines.append("")
    log = job.log[-LOG_LINES_SHOWN:]
    lines.append(f"Log ({len(job.log)} lines" + (f", newest {len(log)}" if len(log) < len(job.log) else "") + ")")
    lines.extend(f"  {line}" for line in log)
    return "\n".join(lines)
