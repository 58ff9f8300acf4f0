"""The change windows on disk: one JSON document in the state directory, replaced atomically
(``hvtui.files.atomic_write``) under an advisory lock, so that the console and a CLI run can
both change it.  A damaged file is reported and left as it is, never overwritten."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hvtui.changes.guard import window_step
from hvtui.changes.record import ChangeWindow
from hvtui.errors import HvtuiError
from hvtui.files import atomic_write

try:  # advisory locking between processes; absent on Windows, where the thread lock remains
    import fcntl
except ImportError:  # pragma: no cover - not on Linux
    fcntl = None  # type: ignore[assignment]

FORMAT_VERSION = 1


class WindowStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the flock

    def _read(self) -> list[ChangeWindow]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as err:
            raise HvtuiError(f"cannot read the change windows {self.path}: {err.strerror or err}") from err
        try:
            doc = json.loads(raw.decode("utf-8"))
            if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
                raise ValueError(f"expected a version {FORMAT_VERSION} document")
            return [ChangeWindow.from_dict(item) for item in doc["windows"]]
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, HvtuiError) as err:
            raise HvtuiError(
                f"the change-window file {self.path} is damaged ({err}); it was left as it is: "
                "move it aside to start afresh"
            ) from err

    def _write(self, windows: list[ChangeWindow]) -> None:
        doc: dict[str, Any] = {"version": FORMAT_VERSION, "windows": [w.to_dict() for w in windows]}
        atomic_write(self.path, (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))

    def step(self, name: str, step: str) -> contextlib.AbstractContextManager[None]:
        """Hold window ``name`` for ``step``: one step per window at a time, across processes."""
        return window_step(self.path.with_name(self.path.name + ".locks"), name, step)

    def windows(self) -> list[ChangeWindow]:
        """Every stored window, oldest first."""
        with self._locked():
            return self._read()

    def update(self, change: Callable[[list[ChangeWindow]], list[ChangeWindow]]) -> list[ChangeWindow]:
        """Read, change and write back the windows as one step (under the lock)."""
        with self._locked():
            windows = change(self._read())
            self._write(windows)
            return windows
