"""Per-host state of a lab host: the VM registry and checkpoint metadata, locks, change logs.

Layout of a lab host directory::

    <host>/host.json                 VM registry + checkpoint tree + file graph (atomic rewrite)
    <host>/.host.lock                flock: held for every short read-modify-write of host.json
    <host>/.locks/<vm id>.lock       flock: held for the whole of a long VM operation (merge,
                                     backup, in-place restore); a dead process releases it
    <host>/.rct/<identity>.rct       change-tracking log of one physical disk file
    <host>/.staging/                 restores being written
    <host>/Virtual Machines/<vm>/    the VM's files, named as Hyper-V names them

The CLI and the console may work on one lab from two processes at once: the host lock
serialises state changes, the per-VM operation lock keeps two long operations (a backup
and a checkpoint delete) off the same VM.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hvtui.errors import HostError
from hvtui.files import atomic_write

STATE_FILE = "host.json"
# 2: the VM disks are genuine VHDX. 1 was the lab's own disk format, which nothing else reads.
STATE_FORMAT = 2
OLD_DISK_FORMAT_STATE = 1
HOST_LOCK = ".host.lock"
LOCK_DIR = ".locks"
RCT_DIR = ".rct"
STAGING_DIR = ".staging"
VM_ROOT = "Virtual Machines"

_state_cache: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}


def load_state(root: Path, host_name: str, cached: bool = False) -> dict[str, Any]:
    """Parse ``host.json``. With ``cached`` the result may be shared: do not modify it."""
    path = root / STATE_FILE
    try:
        st = path.stat()
    except FileNotFoundError:
        raise HostError(
            host_name,
            "inventory",
            f"lab host directory {root} has no {STATE_FILE}: run `hvtui lab init`",
            kind="unreachable",
        ) from None
    key = (st.st_ino, st.st_mtime_ns, st.st_size)
    hit = _state_cache.get(str(path))
    if cached and hit is not None and hit[0] == key:
        return hit[1]
    try:
        state = json.loads(path.read_bytes())
    except (OSError, ValueError) as err:
        raise HostError(host_name, "inventory", f"lab state {path} is unreadable: {err}", kind="protocol") from None
    if isinstance(state, dict) and state.get("format") == OLD_DISK_FORMAT_STATE:
        raise HostError(host_name, "inventory", old_format_message(root), kind="protocol")
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or not isinstance(state.get("vms"), dict):
        raise HostError(host_name, "inventory", f"lab state {path} is not a format-{STATE_FORMAT} lab host state", kind="protocol")
    if cached:
        _state_cache[str(path)] = (key, state)
    return state


def old_format_message(root: Path) -> str:
    return (
        f"lab host {root} was built by an older hvtui whose disk files were its own format, not VHDX: "
        "rebuild the lab with `hvtui lab reset` (or `hvtui lab init --force`); its VMs, checkpoints "
        "and disk files are deleted and the profile's estate is built again as genuine VHDX"
    )


def is_old_format_host(root: Path) -> bool:
    """True for a lab host whose state says its disks are in the pre-VHDX format."""
    try:
        state = json.loads((root / STATE_FILE).read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and state.get("format") == OLD_DISK_FORMAT_STATE


def lab_host_names(lab_dir: Path) -> list[str]:
    """Names of the lab hosts under ``lab_dir`` (sorted; empty when there is no lab)."""
    lab_dir = Path(lab_dir)
    try:
        entries = list(os.scandir(lab_dir))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith(".") and (Path(e.path) / STATE_FILE).exists())


def save_state(root: Path, state: dict[str, Any], fsync: bool = True) -> None:
    atomic_write(root / STATE_FILE, json.dumps(state, indent=1, sort_keys=True).encode("utf-8"), fsync=fsync)


class FileLock:
    """An exclusive flock on ``path``, taken without waiting (``try_acquire``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1

    @property
    def held(self) -> bool:
        return self.fd >= 0


@contextlib.contextmanager
def host_lock(root: Path, host_name: str, operation: str, timeout: float = 30.0) -> Iterator[None]:
    """Hold the host's state lock, waiting up to ``timeout`` seconds."""
    lock = FileLock(root / HOST_LOCK)
    deadline = time.monotonic() + max(0.0, timeout)
    delay = 0.005
    while not lock.try_acquire():
        if time.monotonic() >= deadline:
            raise HostError(
                host_name, operation, f"lab host is busy: its state lock was held for over {timeout:g}s", kind="timeout"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    try:
        yield
    finally:
        lock.release()


class OpLock(FileLock):
    """Held by the process running a long operation on one VM."""

    def __init__(self, root: Path, vm_id: str) -> None:
        super().__init__(root / LOCK_DIR / f"{vm_id}.lock")


class StagingLock(FileLock):
    """Held by the process writing a restore into ``.staging/<token>``."""

    def __init__(self, root: Path, token: str) -> None:
        super().__init__(root / STAGING_DIR / f"{token}.lock")


# -- change tracking -------------------------------------------------------------------

# 2: virtual-disk ranges, reference points, a generation. A log of format 1 (file ranges) reads
# as damaged: its ids fail with rct-invalid and the next reference point starts a new log.
_RCT_MAGIC = b"HVLABRC2"
# magic, base sequence (older ids are unknown), generation: a random id of this log, in every
# RCT id, so a log lost and started again never answers for the old one's ids.
_RCT_HEAD = struct.Struct("<8sQ16s")
_RCT_REC = struct.Struct("<QQQ")  # sequence, offset, length
_OPEN = (1 << 64) - 1  # "writes about to happen": unknown until the matching close
_CLOSE = (1 << 64) - 2
_REFERENCE = (1 << 64) - 3  # a reference point (a backup read the file here)
_MAX_RECORDS = 200_000


class RctInvalid(Exception):
    """A change id the log cannot answer for: unknown, from another disk, or too old."""


class ChangeLog:
    """The lab's Resilient Change Tracking: which *virtual-disk* byte ranges of one disk file changed.

    An append-only log of ``(sequence, offset, length)`` records, offsets in the virtual disk as
    Hyper-V's ``GetVirtualDiskChanges`` reports them.  Every modification is bracketed: an
    "open" record is appended before the file is touched and the ranges plus a "close" record
    after, so a crash in between makes older change ids unknown (the backup reads everything)
    rather than silently missing a write.  A reference point (``reference_point``: each backup
    takes one) appends a marker; its sequence is the RCT id, and only marked ids are valid.
    """

    def __init__(self, root: Path, identity: str) -> None:
        self.identity = identity
        self.path = root / RCT_DIR / f"{identity}.rct"

    def _read_all(self) -> tuple[int, bytes, list[tuple[int, int, int]]]:
        """(base, generation, records); base -1 for a damaged or old-format log, 0 for none."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return 0, b"", []
        if len(raw) < _RCT_HEAD.size or raw[:8] != _RCT_MAGIC:
            return -1, b"", []
        (_magic, base, generation) = _RCT_HEAD.unpack_from(raw)
        body = raw[_RCT_HEAD.size :]
        body = body[: len(body) - len(body) % _RCT_REC.size]
        return base, generation, list(_RCT_REC.iter_unpack(body))

    def _read(self) -> tuple[int, list[tuple[int, int, int]]]:
        base, _generation, records = self._read_all()
        return base, records

    def _append(self, records: list[tuple[int, int, int]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._read_all()[0] < 0:  # damaged or format 1: start a new log (its old ids stay invalid)
            self.path.unlink()
        new = not self.path.exists()
        with open(self.path, "ab") as fh:
            if new:
                fh.write(_RCT_HEAD.pack(_RCT_MAGIC, 0, uuid.uuid4().bytes))
            fh.write(b"".join(_RCT_REC.pack(*rec) for rec in records))

    def sequence(self) -> int:
        base, records = self._read()
        return max(base, records[-1][0] if records else 0)

    def reference_point(self) -> str:
        """Mark the file's state now as a reference point; returns its RCT id."""
        seq = self.sequence() + 1
        self._append([(seq, _REFERENCE, 0)])
        return f"rct:{self.identity}:{self._read_all()[1].hex()}-{seq}"

    def begin(self) -> int:
        seq = self.sequence() + 1
        self._append([(seq, _OPEN, 0)])
        return seq

    def commit(self, seq: int, ranges: list[tuple[int, int]]) -> None:
        """Close the bracket ``begin`` opened; ``ranges`` are virtual-disk ``(offset, length)``."""
        self._append([(seq, off, length) for off, length in ranges if length > 0] + [(seq, _CLOSE, 0)])
        self._compact_if_large()

    def record(self, ranges: list[tuple[int, int]]) -> None:
        """Record changes already known (the data was written under the same lock)."""
        self.commit(self.begin(), ranges)

    def changes(self, since_change_id: str) -> list[tuple[int, int]]:
        """The virtual ranges changed since the reference point ``since_change_id`` (sorted, merged).

        Raises RctInvalid (with the reason) for an id that is malformed, another disk's, not a
        reference point of this log, older than the log remembers, or followed by a write that
        never finished (a crash mid-write).
        """
        from hvtui.hosts.lab.disk import coalesce

        try:
            prefix, identity, tail = since_change_id.split(":")
            generation, seq_text = tail.split("-")
            since = int(seq_text)
        except (AttributeError, ValueError):
            raise RctInvalid(f"{since_change_id!r} is not an RCT id") from None
        if prefix != "rct" or identity != self.identity:
            raise RctInvalid(f"{since_change_id} belongs to another disk")
        base, current_generation, records = self._read_all()
        if base < 0:
            raise RctInvalid("the disk's change log is damaged or of an older lab")
        if generation != current_generation.hex():
            raise RctInvalid(f"{since_change_id} is from a change log the disk no longer has")
        if since < base:
            raise RctInvalid(f"{since_change_id} is older than the disk's change log remembers")
        if not any(seq == since and offset == _REFERENCE for seq, offset, _len in records):
            raise RctInvalid(f"{since_change_id} is not a reference point of this disk")
        ranges: list[tuple[int, int]] = []
        open_seq: int | None = None
        for seq, offset, length in records:
            if offset == _REFERENCE:
                continue
            if offset == _OPEN:
                if open_seq is not None and open_seq > since:
                    raise RctInvalid("a write to the disk never finished (a crash): its changes are unknown")
                open_seq = seq
            elif offset == _CLOSE:
                open_seq = None
            elif seq > since:
                ranges.append((offset, length))
        if open_seq is not None and open_seq > since:
            raise RctInvalid("a write to the disk is unfinished: its changes are unknown")
        return coalesce(ranges)

    def _compact_if_large(self) -> None:
        size = self.path.stat().st_size
        if size < _RCT_HEAD.size + _MAX_RECORDS * _RCT_REC.size:
            return
        _base, records = self._read()
        keep = records[len(records) // 2 :]
        # Ids older than the first kept sequence become unknown (a full read next time).
        new_base = keep[0][0] - 1 if keep else 0
        data = _RCT_HEAD.pack(_RCT_MAGIC, new_base, self._read_all()[1]) + b"".join(_RCT_REC.pack(*rec) for rec in keep)
        atomic_write(self.path, data, fsync=False)

    def delete(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
