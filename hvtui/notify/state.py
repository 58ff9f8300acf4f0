"""The last delivery outcome of each notification, kept in the state directory.

The console reads it to show a notification that could not be sent (a schedule run happens in
another process, started by the host's scheduler); a later successful message to the same
target clears the notice.  Written atomically under a file lock: the console, ``notify test``
and ``schedule run-due`` may write at once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from hvtui.clock import Clock, SystemClock
from hvtui.files import atomic_write, flocked
from hvtui.notify.report import RunReport

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeliveryFailure:
    notification: str
    time: str  # ISO 8601, UTC
    schedule: str
    run_id: str
    error: str


class DeliveryState:
    def __init__(self, path: Path, clock: Clock | None = None) -> None:
        self.path = Path(path)
        self._clock = clock or SystemClock()
        self._lock_path = self.path.with_name(self.path.name + ".lock")

    def record(self, notification: str, report: RunReport, error: str | None) -> None:
        """``notification``'s latest outcome: ``error`` None when the message went through."""
        with flocked(self._lock_path):
            entries = self._read()
            entries[notification] = {
                "time": self._clock.now().isoformat(timespec="seconds"),
                "schedule": report.schedule,
                "run": report.run_id,
                "ok": error is None,
                "error": error,
            }
            data = json.dumps(entries, indent=1, ensure_ascii=False).encode("utf-8")
            atomic_write(self.path, data)

    def failures(self) -> list[DeliveryFailure]:
        """The notifications whose latest message could not be sent, oldest first."""
        out = [
            DeliveryFailure(
                notification=name,
                time=str(entry.get("time", "")),
                schedule=str(entry.get("schedule", "")),
                run_id=str(entry.get("run", "")),
                error=str(entry.get("error") or "unknown error"),
            )
            for name, entry in self._read().items()
            if isinstance(entry, dict) and entry.get("ok") is False
        ]
        return sorted(out, key=lambda failure: failure.time)

    def _read(self) -> dict[str, object]:
        try:
            data = json.loads(self.path.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            # Only a notice is lost: start again rather than fail a backup run over it.
            log.warning("notification state %s is unreadable and was reset: %s", self.path, err)
            return {}
        return data if isinstance(data, dict) else {}
