"""Repository locks: backups, restores and verify share; prune is exclusive.

Two layers (docs/repository-format.md, "Locking"):

* ``locks/repo.lock`` is held with ``fcntl.flock`` (shared or exclusive).  The kernel drops
  it when a process dies, so on one machine a crashed holder never blocks anyone.
* ``locks/<id>.json`` records who holds what (pid, hostname, boot id, process start time,
  a heartbeat refreshed every 5 minutes by a thread while the lock is held, and an expiry
  30 minutes past the last heartbeat).  They say who is waited for, guard repositories shared
  by several machines (where flock may not reach), and tag the holder's temporary files.
  A record is stale when its process is gone on this machine (dead pid, another process
  reusing the pid, another boot) or, for another machine, once it expired.  Stale records,
  and the temporary files they tagged, are removed by the next locker, with one line each
  naming who held it.

Without ``flock`` (``use_flock=False``: storage the kernel cannot lock, such as object
storage; the records' storage is the ``records`` seam, lock_records.LocalRecords) the records
alone lock, as restic's do: a locker creates its record (create-only), then lists the others;
a conflicting live record makes it withdraw its own and retry after a random pause.  Two
lockers that race both see each other and both withdraw; neither can miss the other.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from hvtui.engine.errors import RepositoryBusy
from hvtui.engine.fsutil import boot_id, hostname, process_start_ticks
from hvtui.engine.layout import (
    LOCK_FILE,
    is_own_tmp_name,
    make_private_dir,
    regular_file,
    require_real_dir,
)
from hvtui.engine.lock_records import STALE_SECONDS, BackendRecords, LocalRecords, LockRecord
from hvtui.errors import RepositoryError
from hvtui.events import CancelToken

try:
    import fcntl
except ImportError:  # not on POSIX: only the records protect the repository
    fcntl = None  # type: ignore[assignment]

REFRESH_SECONDS = 300.0
POLL_SECONDS = 0.1
# A repository that cannot be written (a snapshot, a WORM share): a reader goes on without a record.
READ_ONLY_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)

log = logging.getLogger(__name__)

# Ids of the locks this process holds now (any repository): a record of this process that is
# not among them is a leftover (see ``stale_line``).
_HELD: set[str] = set()
_HELD_LOCK = threading.Lock()


class RepositoryLock:
    """One holder's lock on a repository; use as a context manager after ``acquire``."""

    def __init__(
        self,
        root: Path,
        kind: str,
        operation: str,
        detail: str = "",
        reading: bool = False,
        *,
        use_flock: bool = True,
        records: LocalRecords | BackendRecords | None = None,
        heartbeat: float = REFRESH_SECONDS,
        ttl: float = STALE_SECONDS,
    ) -> None:
        """``reading``: the holder only reads (a restore).  In a repository that cannot be
        written (a snapshot, a WORM share) it then reads without a record rather than fail.
        ``use_flock=False``: the records alone lock (see the module); ``records``: where they
        live (default ``locks/``); ``heartbeat``: seconds between refreshes of the record while
        held; ``ttl``: how long past its last heartbeat a record stays valid."""
        if kind not in ("shared", "exclusive"):
            raise ValueError(kind)
        self.reading = reading and kind == "shared"
        self.cleared: list[str] = []  # stale records this holder removed, one line each
        self._unsaid: list[str] = []
        self._has_record = False
        self.root = root
        self.locks_dir = root / "locks"
        self.tmp_dir = root / "tmp"
        self.kind = kind
        self.operation = operation
        self.detail = detail
        self.id = uuid.uuid4().hex[:16]
        self.waited_for: list[str] = []  # who we waited for, for reports
        self._fd: int | None = None
        self.records = records or LocalRecords(self.locks_dir, self.tmp_dir)
        self.use_flock = use_flock
        self.heartbeat = heartbeat
        self.ttl = ttl
        self._created = 0.0
        self._stop_refresh = threading.Event()
        self._refresher: threading.Thread | None = None

    # -- acquire / release -------------------------------------------------------------
    def acquire(
        self,
        timeout: float | None = 3600.0,
        cancel: CancelToken | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> RepositoryLock:
        for folder in (self.locks_dir, self.tmp_dir):
            with contextlib.suppress(OSError):  # a read-only repository has them already, or not
                make_private_dir(folder)
            require_real_dir(folder)  # its clean-up must not follow a link out of the repository
        deadline = None if timeout is None else time.monotonic() + timeout
        announced: str | None = None
        while True:
            if cancel is not None:
                cancel.check()
            blockers = self._try_once()
            for line in self._unsaid:  # each stale lock is named once, where the user looks
                if on_wait is not None:
                    on_wait(line)
            self._unsaid.clear()
            if not blockers:
                if self._has_record:
                    self._start_refresher()
                return self
            text = "; ".join(sorted(set(blockers))) or "another process"
            if text not in self.waited_for:
                self.waited_for.append(text)
            if on_wait is not None and text != announced:
                on_wait(f"waiting for the repository lock: {text}")
                announced = text
            if deadline is not None and time.monotonic() >= deadline:
                raise RepositoryBusy(f"repository {self.root} is busy: {text}; gave up after {timeout:.0f} s")
            # A random pause: two record-only lockers that withdrew together must not retry together.
            pause = POLL_SECONDS * (1 + random.random())
            if cancel is not None:
                if cancel.wait(pause):
                    cancel.check()
            else:
                time.sleep(pause)

    def _try_once(self) -> list[str]:
        """Take the flock and write our record; on conflict undo both and say who blocks."""
        fd = self._open_lock_file() if self.use_flock else None
        if fd is not None and fcntl is not None:
            mode = fcntl.LOCK_SH if self.kind == "shared" else fcntl.LOCK_EX
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return [r.describe() for r in self._live_records() if self._conflicts(r)] or [
                    "a process on this machine"
                ]
            except OSError as err:
                os.close(fd)
                raise RepositoryError(f"cannot lock {self.locks_dir / LOCK_FILE}: {err.strerror}") from None
        self._fd = fd
        now = time.time()
        self._created = now
        try:
            self._write_own_record(now)
            blockers = [r.describe() for r in self._live_records(clean=True) if r.id != self.id and self._conflicts(r)]
        except BaseException:
            # Whatever went wrong, a failed locker leaves no record of itself behind.
            self._remove_record()
            self._unlock()
            raise
        if blockers:
            self._remove_record()
            self._unlock()
        return blockers

    def _open_lock_file(self) -> int | None:
        path = self.locks_dir / LOCK_FILE
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as err:
            if self.reading and err.errno in READ_ONLY_ERRNOS:
                try:
                    return os.open(path, os.O_RDONLY)  # flock works on a file opened for reading
                except OSError:
                    return None  # none there and none can be made: nothing can change the repository
            raise RepositoryError(f"cannot open the repository lock file {path}: {err.strerror}") from None

    def _write_own_record(self, now: float) -> None:
        with _HELD_LOCK:
            _HELD.add(self.id)
        try:
            self._write_record(now, create=True)
            self._has_record = True
        except BaseException as err:
            with _HELD_LOCK:
                _HELD.discard(self.id)  # whether or not it was written: this process holds nothing
            if not isinstance(err, OSError):
                raise
            if not (self.reading and err.errno in READ_ONLY_ERRNOS):
                raise RepositoryError(f"cannot write a lock record in {self.locks_dir}: {err.strerror}") from err
            self._has_record = False
            log.info("repository %s cannot be written (%s): %s reads without a lock record", self.root, err.strerror, self.operation)

    def _conflicts(self, other: LockRecord) -> bool:
        return self.kind == "exclusive" or other.kind == "exclusive"

    def release(self) -> None:
        """Drop the lock and remove its record.  Called while an operation's error propagates
        (from a ``finally`` or ``__exit__``: often the same dead server), a failure to remove
        the record is logged, not raised: the operation's error is the one to tell, and the
        record left behind is cleared by the next locker as this process's leftover."""
        failing = sys.exc_info()[1] is not None
        self._stop_refresh.set()
        if self._refresher is not None:
            self._refresher.join(timeout=5)
            self._refresher = None
        with _HELD_LOCK:
            _HELD.discard(self.id)  # a record left behind (the storage failed) is now this process's leftover
        try:
            self._remove_record()
        except (OSError, RepositoryError) as err:
            if not failing:
                raise
            log.warning("repository %s: lock record %s not removed after a failure: %s", self.root, self.id, err)
        finally:
            self._unlock()

    def __enter__(self) -> RepositoryLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _unlock(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing drops the flock
            self._fd = None

    # -- records -----------------------------------------------------------------------
    def _write_record(self, now: float, create: bool = False) -> None:
        record = {
            "id": self.id,
            "kind": self.kind,
            "operation": self.operation,
            "detail": self.detail,
            "pid": os.getpid(),
            "hostname": hostname(),
            "boot_id": boot_id(),
            "process_start": process_start_ticks(os.getpid()),
            "created": self._created,
            "refreshed": now,
            "expires": now + self.ttl,
        }
        if create:
            self.records.create(self.id, record)
        else:
            self.records.replace(self.id, record)

    def _remove_record(self) -> None:
        if self._has_record:
            self.records.delete(self.id)
            self._has_record = False

    def _live_records(self, clean: bool = False) -> list[LockRecord]:
        """Records of live holders; with ``clean``, stale ones and their temp files go.

        The temporary directory is listed *before* the records: a live writer writes its
        record before any temporary file, so every temp file seen here whose owner has no
        live record is a leftover.
        """
        tmp_names = _listdir(self.tmp_dir) if clean else []
        now = time.time()
        live: list[LockRecord] = []
        for record_id in self.records.ids():
            record = self.records.read(record_id)
            if record is None:
                continue
            line = stale_line(record, now)
            if line is not None:
                if clean:
                    if not self.records.delete(record_id):
                        continue
                    log.warning("repository %s: %s", self.root, line)
                    self.cleared.append(line)
                    self._unsaid.append(line)
                continue
            live.append(record)
        if clean:
            owners = {r.id for r in live} | {self.id}
            for name in tmp_names:
                if not is_own_tmp_name(name) or not regular_file(self.tmp_dir / name):
                    continue  # only files named by hvtui's own rules are ever deleted
                owner = tmp_owner(name)
                if owner is not None:
                    leftover = owner not in owners
                else:  # untagged (a record or manifest being written): only when clearly old
                    try:
                        leftover = now - os.stat(self.tmp_dir / name).st_mtime > STALE_SECONDS
                    except OSError:
                        leftover = False
                if leftover:
                    with contextlib.suppress(OSError):
                        os.unlink(self.tmp_dir / name)
        return live

    def _start_refresher(self) -> None:
        def refresh() -> None:
            while not self._stop_refresh.wait(self.heartbeat):
                with contextlib.suppress(OSError, RepositoryError):  # missed beats: the next one retries
                    self._write_record(time.time())

        self._refresher = threading.Thread(target=refresh, name=f"hvtui-lock-{self.id}", daemon=True)
        self._refresher.start()


def stale_line(record: LockRecord, now: float) -> str | None:
    """The line saying ``record`` is cleared, when nobody holds it (None: its holder may be alive).

    Besides the record's own rules, a record of this very process that none of its locks holds
    is a leftover: its release could not remove it (the storage failed).  The process is alive,
    so without this a long-running console would block every exclusive locker until it exits.
    """
    if record.problem is None and record.pid == os.getpid() and record.hostname == hostname():
        with _HELD_LOCK:
            held = record.id in _HELD
        if not held and record.process_start == process_start_ticks(os.getpid()):
            return (
                f"cleared the lock of {record.operation} {record.detail} (pid {record.pid} on {record.hostname}) that "
                "this process could not remove when the operation ended"
            ).replace("  ", " ")
    return record.describe_cleared(now) if record.is_stale(now) else None


def tmp_owner(name: str) -> str | None:
    """The lock id a temporary file was tagged with (``<name>.<lock id>.<rand>.tmp``)."""
    parts = name.split(".")
    if len(parts) >= 4 and parts[-1] == "tmp" and _is_lock_id(parts[-3]):
        return parts[-3]
    return None


def _is_lock_id(text: str) -> bool:
    return len(text) == 16 and all(ch in "0123456789abcdef" for ch in text)


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def lock_records(root: Path, records: LocalRecords | BackendRecords | None = None) -> list[LockRecord]:
    """Every lock record of a repository (status displays, tests): ``records`` is where they
    live (``Repository.lock_store()``: objects for a repository in a bucket), else ``root/locks``."""
    store = records or LocalRecords(root / "locks", root / "tmp")
    out = []
    for record_id in store.ids():
        record = store.read(record_id)
        if record is not None:
            out.append(record)
    return out


def clear_stale_locks(records: LocalRecords | BackendRecords) -> list[str]:
    """Remove every record nobody holds any more (a dead process here, an expired heartbeat
    elsewhere, a damaged record); one line per record cleared, naming who held it.  A live
    holder's record is never touched."""
    now = time.time()
    lines = []
    for record_id in records.ids():
        record = records.read(record_id)
        line = None if record is None else stale_line(record, now)
        if line is None or not records.delete(record_id):
            continue  # gone meanwhile, alive, or another process cleared it first
        log.warning("%s", line)
        lines.append(line)
    return lines


@contextlib.contextmanager
def creation_lock(root: Path, timeout: float = 120.0) -> Iterator[None]:
    """Exclusive ``flock`` on the repository folder itself, for creating or repairing its
    ``config.json`` (the ``locks/`` folder may not exist yet, or be damaged).

    Where the filesystem cannot lock a directory, creators still cannot overwrite each
    other's config (it is linked into place, never replaced).
    """
    try:
        fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as err:
        raise RepositoryError(f"cannot open the repository folder {root}: {err.strerror}") from None
    try:
        if fcntl is not None:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise RepositoryBusy(
                            f"another process is creating or repairing the repository at {root}; gave up after "
                            f"{timeout:.0f} s"
                        ) from None
                    time.sleep(POLL_SECONDS)
                except OSError:
                    break  # this filesystem cannot lock a directory
        yield
    finally:
        os.close(fd)  # drops the flock


def vm_label(host: str, vm_id: str, vm_name: str | None) -> str:
    """A VM as a person reads it: "web01 on hv01" (its id only when the name is unknown)."""
    return f"{vm_name} on {host}" if vm_name else f"{host}/{vm_id}"


class VMLock:
    """At most one backup of a VM into a repository at a time (flock on a per-VM file).

    Two backups of one VM would fight over its Recovery checkpoint and over which point is
    the other's parent; a second one is refused at once with a clear message.
    """

    def __init__(self, root: Path, host: str, vm_id: str, vm_name: str | None = None) -> None:
        """``vm_name``: how a person knows the VM (the refusal names it; the id otherwise)."""
        import hashlib

        key = hashlib.sha256(f"{host}/{vm_id}".encode()).hexdigest()[:24]
        self.path = root / "locks" / f"vm-{key}.lock"
        self.label = vm_label(host, vm_id, vm_name)
        self._fd: int | None = None

    def acquire(self) -> VMLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RepositoryBusy(f"a backup of VM {self.label} into this repository is already running") from None
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def __enter__(self) -> VMLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
