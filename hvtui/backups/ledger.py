"""The checkpoint journal: every Recovery checkpoint hvtui's backups took, by which job and
process, and whether that backup is over.

A Recovery checkpoint's name ("<vm> - Backup - (...)") is the same whichever backup
product took it, so the name alone proves nothing; this journal is what lets hvtui tell its
own leftover (the process that took it died, or the backup ended without removing it) from
another product's, whose running backup removing it would break.

One JSON line per event (``taken``, then ``ended`` once the backup is over), appended with
fsync under an exclusive ``flock`` (a console and a cron run may back up at once).  The
process is identified like the job journal's owner (pid and start time, so a reused pid is
not mistaken for it).  A damaged line is skipped.  Past ``COMPACT_BYTES`` the file is
rewritten keeping the newest ``KEEP`` checkpoints and every one whose backup is not over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hvtui.files import flocked, fsync_dir, write_all
from hvtui.journal import process_alive, process_identity

log = logging.getLogger(__name__)

COMPACT_BYTES = 1024 * 1024
KEEP = 2000


@dataclass(frozen=True, slots=True)
class TakenCheckpoint:
    """A Recovery checkpoint one of hvtui's backups took."""

    host: str
    vm_id: str
    checkpoint_id: str
    checkpoint_name: str
    job_id: str | None  # the backup job, when it ran as one
    pid: int | None
    proc_start: str | None
    at: str
    ended: bool  # the backup is over (its checkpoint should be gone)

    @property
    def backup_is_over(self) -> bool:
        """Its backup ended, or the process running it is gone (killed)."""
        return self.ended or not process_alive(self.pid, self.proc_start)

    @property
    def made_by(self) -> str:
        """Who took it, in words: "hvtui backup job 1a2b3c" or "an hvtui backup (pid 42)"."""
        return f"hvtui backup job {self.job_id}" if self.job_id else f"an hvtui backup (pid {self.pid})"


class CheckpointJournal:
    """Append-only JSON-lines record of the Recovery checkpoints hvtui took (module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._thread_lock = threading.Lock()
        self._cache: tuple[tuple[int, int], dict[str, TakenCheckpoint]] | None = None

    @contextlib.contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        with self._thread_lock, flocked(self.lock_path, exclusive):
            yield

    # -- writing -----------------------------------------------------------------------------
    def taken(self, host: str, vm_id: str, checkpoint_id: str, checkpoint_name: str, job_id: str | None, at: str) -> None:
        """Record a checkpoint just taken by this process."""
        self._append(
            {
                "event": "taken",
                "host": host,
                "vm_id": vm_id,
                "checkpoint": checkpoint_id,
                "name": checkpoint_name,
                "job": job_id,
                "pid": os.getpid(),
                "proc_start": process_identity(),
                "at": at,
            }
        )

    def ended(self, checkpoint_id: str) -> None:
        """The backup that took ``checkpoint_id`` is over (it removed the checkpoint, or failed to)."""
        self._append({"event": "ended", "checkpoint": checkpoint_id})

    def _append(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with self._locked(exclusive=True):
            created = not self.path.exists()
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data  # a killed writer's partial line stays confined to itself
                write_all(fd, data)
                os.fsync(fd)
                size += len(data)
            finally:
                os.close(fd)
            if created:
                fsync_dir(self.path.parent)
            if size > COMPACT_BYTES:
                self._compact_unlocked()

    def _compact_unlocked(self) -> None:
        records = self._read_unlocked()
        kept = list(records.values())
        keep_ids = {c.checkpoint_id for c in kept[-KEEP:]} | {c.checkpoint_id for c in kept if not c.ended}
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as out:
            for c in kept:
                if c.checkpoint_id not in keep_ids:
                    continue
                taken = {
                    "event": "taken",
                    "host": c.host,
                    "vm_id": c.vm_id,
                    "checkpoint": c.checkpoint_id,
                    "name": c.checkpoint_name,
                    "job": c.job_id,
                    "pid": c.pid,
                    "proc_start": c.proc_start,
                    "at": c.at,
                }
                out.write((json.dumps(taken, separators=(",", ":")) + "\n").encode())
                if c.ended:
                    out.write((json.dumps({"event": "ended", "checkpoint": c.checkpoint_id}) + "\n").encode())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
        fsync_dir(self.path.parent)

    # -- reading -------------------------------------------------------------------------------
    def checkpoints(self) -> dict[str, TakenCheckpoint]:
        """Every recorded checkpoint by id (re-read only when the file changed)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        stamp = (st.st_mtime_ns, st.st_size)
        if self._cache is not None and self._cache[0] == stamp:
            return self._cache[1]
        with self._locked(exclusive=False):
            records = self._read_unlocked()
        self._cache = (stamp, records)
        return records

    def find(self, host: str, vm_id: str, checkpoint_id: str) -> TakenCheckpoint | None:
        """The record of this checkpoint of this VM, if hvtui took it."""
        taken = self.checkpoints().get(checkpoint_id)
        if taken is None or taken.host != host or taken.vm_id != vm_id:
            return None
        return taken

    def _read_unlocked(self) -> dict[str, TakenCheckpoint]:
        out: dict[str, TakenCheckpoint] = {}
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return out
        for number, line in enumerate(raw.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if record["event"] == "taken":
                    out[str(record["checkpoint"])] = TakenCheckpoint(
                        host=str(record["host"]),
                        vm_id=str(record["vm_id"]),
                        checkpoint_id=str(record["checkpoint"]),
                        checkpoint_name=str(record["name"]),
                        job_id=record.get("job"),
                        pid=record.get("pid"),
                        proc_start=record.get("proc_start"),
                        at=str(record.get("at") or ""),
                        ended=False,
                    )
                elif record["event"] == "ended" and record["checkpoint"] in out:
                    c = out[record["checkpoint"]]
                    out[c.checkpoint_id] = replace(c, ended=True)
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                log.warning("checkpoint journal %s line %d is damaged (skipped)", self.path, number)
        return out
