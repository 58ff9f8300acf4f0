"""The audit log: one JSON line per change attempted on a host, whatever its outcome.

Each line: ``time`` (UTC, ISO 8601), ``user`` (the local account), ``host``, ``vm``,
``action``, ``args``, ``result`` (ok, failed, refused, declined, cancelled),
``duration`` (seconds) and ``error`` (when there was one).  Lines are appended under a
thread lock and an advisory file lock (the console and a CLI may write at the same
time), then flushed and fsynced: an audit line that a crash can lose is not worth much.

Only names, ids and options are recorded, never secrets; each line also goes through the
log redactor, so a secret that slipped into an error message is masked here too.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hvtui.errors import Cancelled, HvtuiError, ReadOnlyError, RefusedError
from hvtui.logsetup import redact

try:  # advisory locking between processes; absent on Windows, where the thread lock remains
    import fcntl
except ImportError:  # pragma: no cover - not on Linux
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

RESULT_OK = "ok"
RESULT_FAILED = "failed"
RESULT_REFUSED = "refused"
RESULT_DECLINED = "declined"
RESULT_CANCELLED = "cancelled"


def local_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name and no passwd entry (containers): fall back to the uid
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


@dataclass(slots=True)
class AuditEntry:
    """What ``AuditLog.action`` records; the body may add arguments or set the result."""

    action: str
    host: str
    vm: str | None
    args: dict[str, Any] = field(default_factory=dict)
    result: str = RESULT_OK
    error: str | None = None


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        # Problems found by the latest ``read`` (damaged lines), one readable line each.
        self.problems: list[str] = []

    # -- writing ---------------------------------------------------------------------------
    def record(
        self,
        action: str,
        host: str,
        vm: str | None,
        args: dict[str, Any],
        result: str,
        duration: float,
        error: str | None = None,
    ) -> dict[str, Any]:
        """Append one entry and return it as written."""
        entry: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "user": local_user(),
            "host": host,
            "vm": vm,
            "action": action,
            "args": args,
            "result": result,
            "duration": round(duration, 3),
        }
        if error is not None:
            entry["error"] = error
        # Redacted as a whole: a secret that reached an error message by mistake stays out.
        line = redact(json.dumps(entry, ensure_ascii=False, default=str, separators=(",", ":"))) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                # A torn last line (a crash mid-write) must not swallow this entry.
                if not _ends_with_newline(fd):
                    line = "\n" + line
                os.write(fd, line.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)  # closing releases the flock
        return entry

    @contextmanager
    def action(
        self, action: str, host: str, vm: str | None, args: dict[str, Any] | None = None
    ) -> Iterator[AuditEntry]:
        """Time the body and record its outcome: ok, refused, cancelled or failed (re-raised).

        The body may update ``entry.args`` (a created checkpoint's id) or ``entry.vm``.
        """
        entry = AuditEntry(action=action, host=host, vm=vm, args=dict(args or {}))
        started = time.monotonic()
        try:
            yield entry
        except (ReadOnlyError, RefusedError) as err:
            entry.result, entry.error = RESULT_REFUSED, str(err)
            raise
        except (Cancelled, KeyboardInterrupt) as err:
            entry.result, entry.error = RESULT_CANCELLED, str(err) or "interrupted"
            raise
        except HvtuiError as err:
            entry.result, entry.error = RESULT_FAILED, str(err)
            raise
        except Exception as err:
            entry.result, entry.error = RESULT_FAILED, f"{type(err).__name__}: {err}"
            raise
        finally:
            try:
                self.record(
                    entry.action,
                    entry.host,
                    entry.vm,
                    entry.args,
                    entry.result,
                    time.monotonic() - started,
                    entry.error,
                )
            except OSError as err:
                # The action already happened (or failed); losing its record is logged loudly
                # rather than masking the action's own outcome.
                log.error("could not write the audit log %s: %s", self.path, err)

    # -- reading ---------------------------------------------------------------------------
    def read(self) -> list[dict[str, Any]]:
        """Every readable entry, oldest first.  Damaged lines are skipped and described in
        ``self.problems`` (a crash can leave a torn last line); a missing file is empty."""
        problems: list[str] = []
        entries: list[dict[str, Any]] = []
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            self.problems = []
            return []
        except OSError as err:
            raise HvtuiError(f"cannot read the audit log {self.path}: {err.strerror or err}") from err
        lines = raw.split(b"\n")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                entry = None
            if not isinstance(entry, dict):
                where = "last line" if number >= len(lines) - 1 else f"line {number}"
                problems.append(f"{self.path}: {where} is damaged and was skipped ({len(line)} bytes)")
                continue
            entries.append(entry)
        for problem in problems:
            log.warning("%s", problem)
        self.problems = problems
        return entries


def _ends_with_newline(fd: int) -> bool:
    size = os.fstat(fd).st_size
    if size == 0:
        return True
    return os.pread(fd, 1, size - 1) == b"\n"
