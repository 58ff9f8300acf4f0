"""What a notification carries: one report per schedule run (or per ``hvtui notify test``).

Built by the schedule runner (``hvtui/schedules/``), rendered and sent by ``hvtui/notify/``.
Plain data, JSON-serialisable through ``dataclasses.asdict``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# A VM's outcome in one run, and the run's event kinds a notification target subscribes to
# (``on:`` in the config): success, warning, failure, missed.
VM_OUTCOMES = ("succeeded", "warning", "failed", "missed")
EVENTS = ("success", "warning", "failure", "missed")


@dataclass(frozen=True, slots=True)
class VMResult:
    host: str
    vm: str
    outcome: str  # one of VM_OUTCOMES
    mode: str | None = None  # full / incremental / differential; None when nothing ran
    size_bytes: int | None = None  # bytes stored by the new point
    duration_seconds: float | None = None
    reason: str | None = None  # why it failed, warned or was missed (never a secret)
    point_id: str | None = None
    failures_in_a_row: int = 0  # consecutive failed runs of this VM, this one included


@dataclass(frozen=True, slots=True)
class RunReport:
    schedule: str
    run_id: str
    started: str  # ISO 8601 with offset, the jump box's local time
    finished: str | None
    event: str  # one of EVENTS: the run's overall severity (failure > missed > warning > success)
    results: tuple[VMResult, ...] = field(default_factory=tuple)
    notes: tuple[str, ...] = ()  # run-level remarks (retention applied, copy skipped, ...)
