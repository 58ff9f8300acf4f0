"""Durable file writes, shared by every layer that keeps state on disk: the lab's hosts,
the backup repository and the journals (jobs, checkpoints).

Readers see the old file or the new one, never half of it: a temporary file next to the
target (same filesystem), fsync, rename, fsync of the directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (new names, renames, deletions) durable."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some filesystems refuse fsync on directories
            os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """``os.write`` until every byte is written (one call may write less)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def atomic_write(path: Path, data: bytes, tmp_dir: Path | None = None, fsync: bool = True, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically.

    The temporary file goes in ``tmp_dir`` (same filesystem) or next to the target and is
    removed on any failure.  ``fsync=False`` skips both fsyncs, for state that is rebuilt
    anyway after a crash (the lab's change log, tests that build many labs).  The file is
    owner-only (``mode``, 0600) by default: repositories, journals and state hold VM data
    and names other local users have no business reading.
    """
    directory = path.parent
    # Unique per process and thread: two writers of one file never share a temporary file.
    tmp = (tmp_dir or directory) / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            write_all(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync:
        fsync_dir(directory)


@contextlib.contextmanager
def flocked(lock_path: Path, exclusive: bool = True) -> Iterator[None]:
    """Hold ``flock`` on ``lock_path`` (created owner-only, with its folder) across processes.

    The journals append under an exclusive lock and read under a shared one; threads of one
    process need a lock of their own besides (flock is per open file, not per thread).
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the flock
