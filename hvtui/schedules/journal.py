"""The journal of schedule runs: one JSON line per event, appended with flush and fsync under a
``flock``, in the state directory (``schedules.jsonl``).

It is what makes ``run-due`` stateless between starts: which slots ran, which were missed
(recorded once), which VMs of a run are done (a run killed half-way is continued by the
next start without backing those up again), and each VM's failures in a row.  Events:

- ``seen``: the first time a schedule was looked at (slots before it are not missed);
- ``run``: a run started (its slot, or none for a run started by hand);
- ``vm``: one VM's result in a run (the fields of ``notify.report.VMResult``);
- ``end``: the run finished, with its overall event and notes;
- ``missed``: a slot whose window passed without a run.

A damaged line (a process killed mid-write) is logged and skipped.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from hvtui.errors import HvtuiError
from hvtui.files import flocked, fsync_dir, write_all
from hvtui.notify.report import VMResult

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RunRecord:
    """One run of a schedule as the journal knows it."""

    run_id: str
    schedule: str
    slot: datetime | None  # the due time it ran for; None: started by hand
    started: datetime
    results: dict[tuple[str, str], VMResult] = field(default_factory=dict)  # (host, vm id) -> result
    vm_ids: dict[tuple[str, str], str] = field(default_factory=dict)  # (host, vm name) -> vm id, as run
    finished: datetime | None = None
    event: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def is_finished(self) -> bool:
        return self.finished is not None


@dataclass(slots=True)
class ScheduleHistory:
    """A schedule's past, oldest first."""

    seen: datetime | None = None
    runs: list[RunRecord] = field(default_factory=list)
    missed: list[datetime] = field(default_factory=list)

    @property
    def last_run(self) -> RunRecord | None:
        return self.runs[-1] if self.runs else None

    def handled_slots(self) -> set[datetime]:
        return {run.slot for run in self.runs if run.slot is not None} | set(self.missed)

    def failures_in_a_row(self, host: str, vm_id: str) -> int:
        """How many of the VM's latest results, newest back, were failures (runs without a
        result for it do not break the streak)."""
        count = 0
        for run in reversed(self.runs):
            result = run.results.get((host, vm_id))
            if result is None:
                continue
            if result.outcome != "failed":
                break
            count += 1
        return count


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


class ScheduleJournal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")

    # -- writing -----------------------------------------------------------------------
    def _append(self, record: dict[str, Any]) -> None:
        try:
            self._append_locked(record)
        except OSError as err:
            raise HvtuiError(f"cannot write the schedule journal {self.path}: {err.strerror or err}") from None

    def _append_locked(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with flocked(self._lock_path):
            created = not self.path.exists()
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":  # a line cut by a kill: start afresh
                    data = b"\n" + data
                write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                fsync_dir(self.path.parent)

    def seen(self, schedule: str, when: datetime) -> None:
        self._append({"type": "seen", "schedule": schedule, "at": when.isoformat()})

    def missed(self, schedule: str, slot: datetime, when: datetime) -> None:
        self._append({"type": "missed", "schedule": schedule, "slot": slot.isoformat(), "recorded": when.isoformat()})

    def start(self, schedule: str, run_id: str, slot: datetime | None, when: datetime) -> RunRecord:
        self._append(
            {
                "type": "run",
                "schedule": schedule,
                "run_id": run_id,
                "slot": slot.isoformat() if slot is not None else None,
                "started": when.isoformat(),
            }
        )
        return RunRecord(run_id, schedule, slot, when)

    def vm_result(self, run: RunRecord, vm_id: str, result: VMResult) -> None:
        self._append({"type": "vm", "schedule": run.schedule, "run_id": run.run_id, "vm_id": vm_id, **asdict(result)})
        run.results[(result.host, vm_id)] = result
        run.vm_ids[(result.host, result.vm)] = vm_id

    def end(self, run: RunRecord, event: str, notes: tuple[str, ...], when: datetime) -> None:
        self._append(
            {"type": "end", "schedule": run.schedule, "run_id": run.run_id, "event": event, "notes": list(notes), "finished": when.isoformat()}
        )
        run.finished, run.event, run.notes = when, event, notes

    # -- reading -----------------------------------------------------------------------
    def read(self) -> dict[str, ScheduleHistory]:
        """Every schedule's history by name; damaged lines are logged and skipped."""
        try:
            with flocked(self._lock_path, exclusive=False):
                raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as err:
            raise HvtuiError(f"cannot read the schedule journal {self.path}: {err.strerror or err}") from None
        histories: dict[str, ScheduleHistory] = {}
        runs: dict[str, RunRecord] = {}
        for number, line in enumerate(raw.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                self._fold(record, histories, runs)
            except (ValueError, TypeError, KeyError, AttributeError) as err:
                log.warning("schedule journal %s line %d skipped: %s", self.path, number, err)
        return histories

    @staticmethod
    def _fold(record: dict[str, Any], histories: dict[str, ScheduleHistory], runs: dict[str, RunRecord]) -> None:
        kind = record["type"]
        history = histories.setdefault(str(record["schedule"]), ScheduleHistory())
        if kind == "seen":
            history.seen = history.seen or _time(record["at"])
        elif kind == "missed":
            slot = _time(record["slot"])
            if slot is not None and slot not in history.missed:
                history.missed.append(slot)
        elif kind == "run":
            started = _time(record["started"])
            if started is None:
                raise ValueError("a run without its start time")
            run = RunRecord(str(record["run_id"]), str(record["schedule"]), _time(record.get("slot")), started)
            runs[run.run_id] = run
            history.runs.append(run)
        elif kind == "vm":
            run = runs[str(record["run_id"])]
            fields = {name: record.get(name) for name in VMResult.__dataclass_fields__}
            result = VMResult(**fields)
            run.results[(result.host, str(record["vm_id"]))] = result
            run.vm_ids[(result.host, result.vm)] = str(record["vm_id"])
        elif kind == "end":
            run = runs[str(record["run_id"])]
            run.finished, run.event, run.notes = _time(record["finished"]), record.get("event"), tuple(record.get("notes") or ())
        else:
            raise ValueError(f"unknown event {kind!r}")
