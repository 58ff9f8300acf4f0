"""One step at a time on a change window: a per-window lock file held with ``flock``.

Say the console promotes a window while a CLI run discards it: each step would read the
window, then work VM by VM, and the two would back up, merge and delete the same checkpoints
at once.  Every step (open, rollback, promote, discard) holds its window's lock file while it
runs; a second step on the same window, from any process or thread, is refused at once with
the holder's step, user, process id and start time (written into the lock file by the holder).
The kernel drops a ``flock`` when its process dies, so a console killed with -9 leaves no
stale lock behind; the file itself stays (emptied) and is reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

from hvtui.audit import local_user
from hvtui.errors import RefusedError
from hvtui.files import write_all

try:  # advisory locking between processes; absent on Windows
    import fcntl
except ImportError:  # pragma: no cover - not on Linux
    fcntl = None  # type: ignore[assignment]


class WindowBusyError(RefusedError):
    """Another step holds the change window (exit 4, audited as refused)."""


def lock_path(lock_dir: Path, name: str) -> Path:
    """The lock file of window ``name``: readable slug plus a digest (names may hold any character)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:40]
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]
    return lock_dir / f"{slug}-{digest}.lock"


def _holder_text(raw: bytes) -> str:
    try:
        doc = json.loads(raw.decode("utf-8"))
        return f"{doc['step']} by {doc['user']} (hvtui process {doc['pid']}) since {doc['since']}"
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        return "another hvtui step (it is just starting)"  # the holder has not written itself yet


@contextmanager
def window_step(lock_dir: Path, name: str, step: str) -> Iterator[None]:
    """Hold window ``name``'s lock while ``step`` runs; raise ``WindowBusyError`` if another step has it."""
    if fcntl is None:  # pragma: no cover - not on Linux
        yield
        return
    path = lock_path(lock_dir, name)
    lock_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder_text(os.pread(fd, 4096, 0))
            raise WindowBusyError(
                f"change window {name!r} is busy: {holder}; {step} refused, nothing changed. "
                "Try again once that step is over (hvtui change show, or :changes)"
            ) from None
        since = datetime.now(UTC).astimezone().isoformat(timespec="seconds")
        doc = {"step": step, "user": local_user(), "pid": os.getpid(), "since": since}
        os.ftruncate(fd, 0)
        write_all(fd, json.dumps(doc).encode("utf-8"))
        try:
            yield
        finally:
            with suppress(OSError):
                os.ftruncate(fd, 0)  # the next holder writes its own
    finally:
        os.close(fd)  # closing releases the flock
