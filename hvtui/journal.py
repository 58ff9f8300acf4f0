"""The job journal: one JSON line per job event, appended with flush and fsync.

A console killed by an SSH drop (or a cron run killed by anything) must be able to tell,
on its next start, which jobs never finished and how to run them again.  So every job
writes, in order:

- ``submitted``: everything needed to re-run it (kind, host, VM, params), and which
  process owns it (pid and that process's start time, so a reused pid is not mistaken
  for the owner);
- ``started`` when a worker picks it up;
- ``committed`` when its result is durable before it ends (a backup's restore point, written
  before the clean-up), so a job killed after it still shows what it had done;
- ``finished`` with the final state and the summary or the error;

and later, for a job that never finished, ``resumed`` (re-submitted as another job) or
``dismissed`` (the user does not want it offered again).

Several processes may append at once (a console and a cron run): every append and the
compaction hold an exclusive ``flock`` on a sibling lock file, so the lock survives the
journal being replaced by ``compact``.  A damaged line (a process killed mid-write, a
disk error) is reported and skipped; the rest of the journal stays usable, and the next
append starts on a fresh line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hvtui.files import flocked, fsync_dir, write_all

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
EVENTS = ("submitted", "started", "committed", "finished", "resumed", "dismissed")
UNFINISHED_EVENTS = ("submitted", "started", "committed")  # what a job that never finished ends with
FINAL_STATES = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class JournalProblem:
    """A line of the journal that could not be used (it is skipped, never rewritten)."""

    line: int  # 1-based line number
    reason: str
    excerpt: str

    def __str__(self) -> str:
        return f"job journal line {self.line}: {self.reason} ({self.excerpt!r})"


@dataclass(slots=True)
class JournalEntry:
    """Everything the journal says about one job, folded from its records in order."""

    job_id: str
    submitted: dict[str, Any]
    started: dict[str, Any] | None = None
    committed: dict[str, Any] | None = None  # the latest, e.g. {"result": point id}
    finished: dict[str, Any] | None = None
    resumed: dict[str, Any] | None = None
    dismissed: dict[str, Any] | None = None
    last_event: str = "submitted"

    @property
    def is_finished(self) -> bool:
        return self.finished is not None

    @property
    def owner(self) -> tuple[int | None, str | None]:
        """(pid, process start) of the process that last ran or queued this job."""
        record = self.started or self.submitted
        return record.get("pid"), record.get("proc_start")


@dataclass(slots=True)
class JournalContents:
    entries: dict[str, JournalEntry] = field(default_factory=dict)  # in submission order
    problems: list[JournalProblem] = field(default_factory=list)


def process_identity(pid: int | None = None) -> str | None:
    """The start time of a process (clock ticks since boot), or None where unknown.

    Together with the pid it identifies a process: pids are reused, start times are not.
    """
    pid = os.getpid() if pid is None else pid
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return fields[19]  # field 22 overall: starttime
    except IndexError:
        return None


def process_alive(pid: int | None, proc_start: str | None) -> bool:
    """True if the process that wrote a record is still running."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if proc_start is None:
        return True  # cannot tell a reused pid apart: assume it is the owner
    current = process_identity(pid)
    return current is None or current == proc_start


class JobJournal:
    """Append-only JSON-lines journal of jobs (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._thread_lock = threading.Lock()

    # -- locking -----------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, exclusive: bool = True) -> Iterator[None]:
        with self._thread_lock, flocked(self.lock_path, exclusive):
            yield

    # -- writing -----------------------------------------------------------------------
    def append(self, event: str, job_id: str, **fields: Any) -> dict[str, Any]:
        """Append one record durably (write, fsync) and return it."""
        if event not in EVENTS:
            raise ValueError(f"unknown journal event {event!r}")
        record = {"v": FORMAT_VERSION, "event": event, "job": job_id, **fields}
        data = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
        with self._locked():
            self._append_bytes(data)
        return record

    def append_if(self, job_id: str, allowed_last_events: tuple[str, ...], event: str, **fields: Any) -> JournalEntry:
        """Append ``event`` for ``job_id`` only if its last event is one of ``allowed_last_events``.

        Check and write happen under the journal lock, so two consoles cannot both
        resume (or resume and dismiss) the same interrupted job.  Returns the entry as it
        was before the append; raises ``KeyError`` for an unknown job and ``ValueError``
        when the job is not in an allowed state.
        """
        record = {"v": FORMAT_VERSION, "event": event, "job": job_id, **fields}
        data = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
        with self._locked():
            contents = self._read_unlocked()
            entry = contents.entries.get(job_id)
            if entry is None:
                raise KeyError(job_id)
            if entry.last_event not in allowed_last_events:
                raise ValueError(entry.last_event)
            self._append_bytes(data)
        return entry

    def _append_bytes(self, data: bytes) -> None:
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            # A process killed mid-write leaves a line without its newline: start afresh
            # so the damage stays confined to that one line.
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(self.path.parent)

    # -- reading -----------------------------------------------------------------------
    def read(self) -> JournalContents:
        """Every job in the journal; damaged lines are listed in ``problems``."""
        if not self.path.exists():
            return JournalContents()
        with self._locked(exclusive=False):
            return self._read_unlocked()

    def _read_unlocked(self) -> JournalContents:
        contents = JournalContents()
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return contents
        lines = raw.split(b"\n")
        ends_with_newline = raw.endswith(b"\n")
        if ends_with_newline:
            lines.pop()  # the empty string after the last newline
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            truncated = number == len(lines) and not ends_with_newline
            problem = _fold_line(contents, number, line)
            if problem is not None:
                if truncated:
                    problem = JournalProblem(number, "truncated last line (a process was killed while writing it)", problem.excerpt)
                contents.problems.append(problem)
        return contents

    # -- housekeeping --------------------------------------------------------------------
    def compact(self, keep_finished: int) -> int:
        """Rewrite the journal keeping every unfinished job and the newest ``keep_finished``
        finished (or resumed/dismissed) ones; damaged lines are dropped.  Atomic: temp
        file, fsync, rename, directory fsync.  Returns the number of jobs dropped.
        """
        with self._locked():
            contents = self._read_unlocked()
            closed = [e for e in contents.entries.values() if e.is_finished or e.resumed or e.dismissed]
            drop = {e.job_id for e in closed[: max(0, len(closed) - keep_finished)]}
            if not drop and not contents.problems:
                return 0
            tmp = self.path.with_name(self.path.name + ".tmp")
            with open(tmp, "wb") as out:
                for entry in contents.entries.values():
                    if entry.job_id in drop:
                        continue
                    records = (entry.submitted, entry.started, entry.committed, entry.finished, entry.resumed, entry.dismissed)
                    for record in records:
                        if record is not None:
                            out.write((json.dumps(record, separators=(",", ":"), default=str) + "\n").encode())
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
            fsync_dir(self.path.parent)
            return len(drop)

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0


def _fold_line(contents: JournalContents, number: int, line: bytes) -> JournalProblem | None:
    excerpt = line[:80].decode("utf-8", "replace")
    try:
        record = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return JournalProblem(number, "not valid JSON", excerpt)
    if not isinstance(record, dict):
        return JournalProblem(number, "not a JSON object", excerpt)
    if record.get("v") != FORMAT_VERSION:
        return JournalProblem(number, f"unknown format version {record.get('v')!r}", excerpt)
    event, job_id = record.get("event"), record.get("job")
    if event not in EVENTS or not isinstance(job_id, str) or not job_id:
        return JournalProblem(number, "no known event or job id", excerpt)
    if event == "submitted":
        if not isinstance(record.get("kind"), str) or not isinstance(record.get("params"), dict):
            return JournalProblem(number, "submission without kind or params", excerpt)
        contents.entries[job_id] = JournalEntry(job_id=job_id, submitted=record)
        return None
    entry = contents.entries.get(job_id)
    if entry is None:
        return JournalProblem(number, f"{event} record for job {job_id} whose submission is missing", excerpt)
    if event == "finished" and record.get("state") not in FINAL_STATES:
        return JournalProblem(number, f"finished record with unknown state {record.get('state')!r}", excerpt)
    setattr(entry, event, record)
    entry.last_event = event
    return None
