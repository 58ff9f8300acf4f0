"""A run report as a message: a subject with the run's severity, a plain-text body with one
line per VM, and the webhook bodies (Slack blocks, a Teams Adaptive Card, the report as JSON).

Every text that came from a host (VM names, reasons) is flattened to one line of printable
characters: a message must not be reshaped by what a host reports.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from typing import Any

import humanize

from hvtui.notify.report import RunReport, VMResult

# The run's event as the word a reader sees first.
SEVERITY = {"failure": "FAILED", "missed": "MISSED", "warning": "WARNING", "success": "OK"}
# Worst first: the lines a reader must act on come first.
OUTCOME_ORDER = {"failed": 0, "missed": 1, "warning": 2, "succeeded": 3}
TEAMS_COLOR = {"failure": "attention", "missed": "attention", "warning": "warning", "success": "good"}
SLACK_TEXT_LIMIT = 2900  # a section block's text is cut by Slack at 3000 characters
SLACK_MAX_BLOCKS = 45  # Slack refuses a message of more than 50 blocks
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def one_line(text: str | None, limit: int = 200) -> str:
    """``text`` as one printable line of at most ``limit`` characters."""
    flat = _CONTROL.sub(" ", text or "").strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def severity(report: RunReport) -> str:
    return SEVERITY.get(report.event, report.event.upper())


def counts(report: RunReport) -> str:
    """``3 succeeded, 1 failed`` in the order of OUTCOME_ORDER, or ``no VMs``."""
    tally: dict[str, int] = {}
    for result in report.results:
        tally[result.outcome] = tally.get(result.outcome, 0) + 1
    parts = [f"{tally[outcome]} {outcome}" for outcome in sorted(tally, key=lambda o: OUTCOME_ORDER.get(o, 9))]
    return ", ".join(parts) or "no VMs"


def subject(report: RunReport) -> str:
    return f"[hvtui] {severity(report)}: schedule {one_line(report.schedule, 80)} - {counts(report)}"


def ordered(report: RunReport) -> list[VMResult]:
    return sorted(report.results, key=lambda r: (OUTCOME_ORDER.get(r.outcome, 9), r.host, r.vm))


def size_text(size: int | None) -> str:
    return humanize.naturalsize(size, binary=True) if size is not None else "-"


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def vm_label(result: VMResult) -> str:
    return one_line(f"{result.host}/{result.vm}", 80)


def reason_text(result: VMResult) -> str:
    reason = one_line(result.reason)
    if result.failures_in_a_row > 1:
        reason = f"{reason} ({result.failures_in_a_row} runs in a row)".strip()
    return reason or "-"


def _run_line(report: RunReport) -> str:
    finished = f" to {report.finished}" if report.finished else " (not finished)"
    return f"Run {one_line(report.run_id, 80)}: {report.started}{finished}"


def text_body(report: RunReport) -> str:
    """The e-mail body: a summary, then a compact table of every VM, worst first."""
    lines = [f"hvtui schedule {one_line(report.schedule, 80)}: {severity(report)}", _run_line(report), counts(report), ""]
    rows = [("RESULT", "VM", "MODE", "SIZE", "DURATION", "REASON")]
    for result in ordered(report):
        rows.append(
            (
                result.outcome,
                vm_label(result),
                result.mode or "-",
                size_text(result.size_bytes),
                duration_text(result.duration_seconds),
                reason_text(result),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(5)]
    for row in rows:
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5])
    if report.notes:
        lines += ["", "Notes:"] + [f"- {one_line(note)}" for note in report.notes]
    lines += ["", "Sent by hvtui."]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(report: RunReport) -> dict[str, Any]:
    """Slack's incoming-webhook payload: ``text`` (notifications, fallback) and blocks."""
    title = subject(report)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": one_line(title, 150)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(f"{_run_line(report)}\n{counts(report)}")}},
    ]
    chunk: list[str] = []
    for result in ordered(report):
        line = _slack_escape(
            f"*{result.outcome}* `{vm_label(result)}` {result.mode or '-'}, {size_text(result.size_bytes)}, "
            f"{duration_text(result.duration_seconds)}, {reason_text(result)}"
        )
        if sum(len(x) + 1 for x in chunk) + len(line) > SLACK_TEXT_LIMIT:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(chunk)}})
            chunk = []
        chunk.append(line)
    if chunk:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(chunk)}})
    if report.notes:
        notes = _slack_escape("\n".join(one_line(note) for note in report.notes))[:SLACK_TEXT_LIMIT]
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": notes}]})
    if len(blocks) > SLACK_MAX_BLOCKS:
        blocks = blocks[: SLACK_MAX_BLOCKS - 1] + [
            {"type": "section", "text": {"type": "mrkdwn", "text": "(more VMs: see `hvtui schedule list`)"}}
        ]
    return {"text": title, "blocks": blocks}


def teams_body(report: RunReport) -> dict[str, Any]:
    """A Teams message with one Adaptive Card (what Teams' Workflows webhooks accept)."""
    facts = [
        {
            "title": vm_label(result),
            "value": f"{result.outcome}, {result.mode or '-'}, {size_text(result.size_bytes)}, "
            f"{duration_text(result.duration_seconds)}, {reason_text(result)}",
        }
        for result in ordered(report)
    ]
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": subject(report), "weight": "Bolder", "size": "Medium", "wrap": True,
         "color": TEAMS_COLOR.get(report.event, "default")},
        {"type": "TextBlock", "text": f"{_run_line(report)}\n\n{counts(report)}", "wrap": True},
        {"type": "FactSet", "facts": facts},
    ]
    if report.notes:
        body.append({"type": "TextBlock", "text": "\n\n".join(one_line(note) for note in report.notes), "wrap": True, "isSubtle": True})
    card = {"type": "AdaptiveCard", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "version": "1.4", "body": body}
    return {
        "type": "message",
        "summary": subject(report),
        "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}],
    }


def json_body(report: RunReport) -> dict[str, Any]:
    """The run report itself (``dataclasses.asdict``), for monitoring systems."""
    return asdict(report)


WEBHOOK_BODIES = {"slack": slack_body, "teams": teams_body, "json": json_body}


def webhook_payload(report: RunReport, format_name: str) -> bytes:
    return json.dumps(WEBHOOK_BODIES[format_name](report), ensure_ascii=False).encode("utf-8")
