"""Lock records: ``locks/<lock id>.json``, who holds a repository lock (see ``locks``).

A record names its owner (operation, pid, host, boot, process start), carries a heartbeat
(``refreshed``, rewritten every few minutes while the lock is held) and an expiry
(``expires``: the heartbeat plus a time to live).  Where ``flock`` cannot reach (another
machine, object storage) the expiry is what makes a dead holder's record stale.

A record is read without trusting it: one that cannot be read, or whose fields have the
wrong types (another program, a hand edit, a damaged disk), is a damaged record, which is
stale (nobody holds it), never a reason for a locker to crash.

``LocalRecords`` is where records live: files under ``locks/``.  It is the seam an
object-storage backend replaces (create = a conditional PUT with ``If-None-Match: *``,
replace = PUT, names = LIST, delete = DELETE); nothing else of the locking touches files.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hvtui.engine.backends.base import Backend, ObjectExists, ObjectMissing
from hvtui.engine.fsutil import atomic_write_json, boot_id, hostname, pid_alive, process_start_ticks
from hvtui.engine.layout import is_lock_record_name, regular_file
from hvtui.files import write_all

STALE_SECONDS = 1800.0


@dataclass(frozen=True, slots=True)
class LockRecord:
    id: str
    kind: str  # shared or exclusive
    operation: str
    detail: str
    pid: int
    hostname: str
    boot_id: str | None
    process_start: int | None
    created: float
    refreshed: float
    expires: float | None = None  # refreshed + time to live (older records: refreshed + STALE_SECONDS)
    problem: str | None = None  # why the record is damaged (then it is stale: nobody holds it)

    def describe(self) -> str:
        if self.problem is not None:
            return f"a damaged lock record {self.id}.json ({self.problem})"
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.created))
        return f"{self.operation} {self.detail} (pid {self.pid} on {self.hostname}, since {since})".replace("  ", " ")

    def stale_reason(self, now: float) -> str | None:
        """Why nobody holds this record any more (None: its holder may be alive)."""
        if self.problem is not None:
            return "the record is damaged"
        if self.hostname == hostname():
            mine = boot_id()
            if self.boot_id and mine and self.boot_id != mine:
                return "the machine has restarted since"
            if not pid_alive(self.pid):
                return "its process is gone"
            if self.process_start is not None:
                current = process_start_ticks(self.pid)
                if current is not None and current != self.process_start:
                    return "its process is gone (the pid now belongs to another process)"
            return None
        expires = self.expires if self.expires is not None else self.refreshed + STALE_SECONDS
        if now > expires:
            return f"expired: its heartbeat stopped {_age(now - self.refreshed)} ago"
        return None

    def is_stale(self, now: float) -> bool:
        return self.stale_reason(now) is not None

    def describe_cleared(self, now: float) -> str:
        """The line saying this stale record was removed: owner, pid, age and why."""
        if self.problem is not None:
            return f"cleared {self.describe()}"
        return (
            f"cleared the stale lock of {self.operation} {self.detail} (pid {self.pid} on {self.hostname}, "
            f"taken {_age(now - self.created)} ago; {self.stale_reason(now)})"
        ).replace("  ", " ")


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


# What each field of a record must be: a record written by another program, edited by
# hand, or from a damaged disk must read as damaged, never crash a locker.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "kind": (str,),
    "operation": (str,),
    "detail": (str,),
    "pid": (int,),
    "hostname": (str,),
    "boot_id": (str, type(None)),
    "process_start": (int, type(None)),
    "created": (int, float),
    "refreshed": (int, float),
    "expires": (int, float, type(None)),  # absent in records of older hvtui versions
}


def _damaged(record_id: str, problem: str) -> LockRecord:
    return LockRecord(record_id, "unknown", "unreadable lock record", "", -1, "", None, None, 0.0, 0.0, problem=problem)


def read_record(path: Path) -> LockRecord | None:
    """The record at ``path``; a damaged one (``problem`` set) when it is unreadable or ill-typed."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        # Records are written atomically; an unreadable one is damage, not a live holder.
        return _damaged(path.stem, f"unreadable: {err.strerror or err}")
    return parse_record(path.stem, data)


def parse_record(record_id: str, data: bytes) -> LockRecord:
    """A record from its stored bytes; a damaged one (``problem`` set) when ill-formed or ill-typed."""

    def damaged(problem: str) -> LockRecord:
        return _damaged(record_id, problem)

    try:
        raw = json.loads(data)
    except ValueError:
        return damaged("unreadable: not valid JSON")
    if not isinstance(raw, dict):
        return damaged("not a JSON object")
    wrong = [
        name
        for name, types in _FIELD_TYPES.items()
        if not isinstance(raw.get(name), types) or isinstance(raw.get(name), bool)
    ]
    if not wrong:
        if raw["kind"] not in ("shared", "exclusive"):
            wrong.append("kind")
        if not 0 < raw["pid"] < 1 << 31:
            wrong.append("pid")
        wrong += [
            n for n in ("created", "refreshed", "expires")
            if raw.get(n) is not None and (not math.isfinite(raw[n]) or not 0 <= raw[n] < 1e11)
        ]
    if wrong:
        return damaged(f"bad or missing {', '.join(wrong)}")
    return LockRecord(**{name: raw.get(name) for name in _FIELD_TYPES})


class LocalRecords:
    """Lock records as files ``locks/<id>.json``: the storage seam of ``locks.RepositoryLock``."""

    def __init__(self, locks_dir: Path, tmp_dir: Path) -> None:
        self.locks_dir = locks_dir
        self.tmp_dir = tmp_dir

    def path(self, record_id: str) -> Path:
        return self.locks_dir / f"{record_id}.json"

    def ids(self) -> list[str]:
        """Every record hvtui wrote (never another file: those are neither read nor deleted)."""
        try:
            names = os.listdir(self.locks_dir)
        except OSError:
            return []
        return [n[:-5] for n in names if is_lock_record_name(n) and regular_file(self.locks_dir / n)]

    def read(self, record_id: str) -> LockRecord | None:
        return read_record(self.path(record_id))

    def create(self, record_id: str, doc: dict[str, Any]) -> None:
        """Write a record that must not exist yet (``FileExistsError`` when it does): written
        aside, then linked into place, as a conditional PUT would be."""
        # Named as files.atomic_write names its temporaries, so a leftover is cleared by that rule.
        tmp = self.tmp_dir / f".{record_id}.json.{os.getpid()}.{secrets.randbelow(10**9)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                write_all(fd, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.link(tmp, self.path(record_id))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def replace(self, record_id: str, doc: dict[str, Any]) -> None:
        atomic_write_json(self.path(record_id), doc, tmp_dir=self.tmp_dir)

    def delete(self, record_id: str) -> bool:
        try:
            os.unlink(self.path(record_id))
        except OSError:
            return False
        return True


class BackendRecords:
    """Lock records as objects ``locks/<id>.json`` of an object store: created with a conditional
    PUT (``put_if_absent``), replaced with a PUT, listed, deleted; the same seam as ``LocalRecords``."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def ids(self) -> list[str]:
        names = (info.key[len("locks/") :] for info in self.backend.list("locks/"))
        return [n[:-5] for n in names if "/" not in n and is_lock_record_name(n)]

    def read(self, record_id: str) -> LockRecord | None:
        try:
            return parse_record(record_id, self.backend.get(f"locks/{record_id}.json"))
        except ObjectMissing:
            return None

    @staticmethod
    def _encode(doc: dict[str, Any]) -> bytes:
        return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()

    def create(self, record_id: str, doc: dict[str, Any]) -> None:
        """``FileExistsError`` when the record exists, as ``LocalRecords.create``."""
        try:
            self.backend.put_if_absent(f"locks/{record_id}.json", self._encode(doc))
        except ObjectExists:
            raise FileExistsError(f"locks/{record_id}.json") from None

    def replace(self, record_id: str, doc: dict[str, Any]) -> None:
        self.backend.put(f"locks/{record_id}.json", self._encode(doc))

    def delete(self, record_id: str) -> bool:
        """False when the record was already gone (another locker cleared it first)."""
        if self.backend.stat(f"locks/{record_id}.json") is None:
            return False
        self.backend.delete(f"locks/{record_id}.json")
        return True
