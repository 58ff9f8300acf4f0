"""Small filesystem helpers the repository relies on for crash safety.

The rules (see docs/repository-format.md): a file becomes visible under its final name only
after its bytes are on disk (write to a temporary name, fsync, rename); the directory is
fsynced before anything that depends on the new name (a manifest) is committed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import socket
import threading
from pathlib import Path

from hvtui.files import atomic_write

_allocator_tuned = False
_tune_lock = threading.Lock()


def tune_allocator() -> None:
    """Keep glibc from mmap/munmap-ing every 4 MiB buffer once worker threads have run.

    Without this, lz4 decompression of fresh 4 MiB outputs drops from ~3.6 to ~0.9 GB/s
    (engine notes, section 5).  Harmless elsewhere; a no-op off glibc.
    """
    global _allocator_tuned
    with _tune_lock:
        if _allocator_tuned:
            return
        _allocator_tuned = True
        name = ctypes.util.find_library("c")
        if not name:
            return
        try:
            libc = ctypes.CDLL(name)
            mallopt = libc.mallopt
        except (OSError, AttributeError):
            return
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        m_trim_threshold, m_mmap_threshold = -1, -3
        mallopt(m_mmap_threshold, 64 * 1024 * 1024)
        mallopt(m_trim_threshold, 256 * 1024 * 1024)


def atomic_write_json(path: Path, obj: object, tmp_dir: Path | None = None) -> None:
    atomic_write(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode(), tmp_dir)


def hostname() -> str:
    return socket.gethostname()


def boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def process_start_ticks(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (Linux), None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 overall
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def punch_hole_supported() -> bool:
    return hasattr(os, "SEEK_DATA") and hasattr(os, "SEEK_HOLE")


def data_extents(fd: int, size: int) -> list[tuple[int, int]] | None:
    """The file's allocated regions as ``(start, end)``, or None when the filesystem can't say.

    Regions not listed are holes (read back as zeros) and need not be read at all.
    """
    if not punch_hole_supported() or size == 0:
        return None
    extents: list[tuple[int, int]] = []
    offset = 0
    try:
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError as err:
                if err.errno == 6:  # ENXIO: no data after offset
                    break
                raise
            if start >= size:
                break
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            extents.append((start, end))
            offset = end
    except OSError:
        return None
    finally:
        with contextlib.suppress(OSError):
            os.lseek(fd, 0, os.SEEK_SET)
    return extents


def fadvise(fd: int, offset: int, length: int, advice: str) -> None:
    value = getattr(os, f"POSIX_FADV_{advice}", None)
    if value is None:
        return
    with contextlib.suppress(OSError):
        os.posix_fadvise(fd, offset, length, value)
