"""Verify: every manifest readable, every chunk present (quick) or re-read and re-hashed (full).

The report names each damaged or missing chunk and every restore point it breaks, and each
damaged manifest.  A full verification records its outcome per point under ``verified/``
(shown as "verified" in point lists) and, unless told not to (read-only), *quarantines*
each chunk object it finds damaged, as Proxmox Backup Server does: the object is renamed
``<name>.bad`` (never deleted), so the next backup that reads the same data no longer
finds it "present" and stores it again, which heals every point that references it.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from hvtui.clock import Clock, SystemClock
from hvtui.engine.fsutil import tune_allocator
from hvtui.engine.manifest import Manifest, ManifestError
from hvtui.engine.packstore import PackStore
from hvtui.engine.progress import DEFAULT_INTERVAL, Meter
from hvtui.engine.repository import Repository
from hvtui.engine.store import HEADER, MAGIC, ChunkDamaged, ChunkMissing, decode_chunk
from hvtui.errors import Cancelled
from hvtui.events import CancelToken, Progress, ProgressCallback

QUARANTINED_EARLIER = "quarantined by an earlier verify (its data was damaged)"


@dataclass(slots=True)
class ChunkProblem:
    chunk: str  # hex id
    problem: str  # "missing", QUARANTINED_EARLIER, or why it is damaged
    points: list[str]  # restore points that reference it
    quarantined_as: str | None = None  # the .bad file this verify renamed it to (repository-relative)

    def describe(self) -> str:
        moved = f"; quarantined as {self.quarantined_as}" if self.quarantined_as else ""
        return f"chunk {self.chunk[:16]} {self.problem}{moved}; breaks {', '.join(self.points)}"


@dataclass(slots=True)
class VerifyReport:
    repository: str
    quick: bool
    points_checked: int = 0
    chunks_checked: int = 0
    bytes_checked: int = 0  # stored bytes read (full mode)
    damaged_manifests: list[dict[str, str]] = field(default_factory=list)  # {"point", "problem"}
    chunk_problems: list[ChunkProblem] = field(default_factory=list)
    broken_points: dict[str, list[str]] = field(default_factory=dict)  # point -> reasons
    quarantined: list[str] = field(default_factory=list)  # hex ids of chunks this verify quarantined
    repair_skipped: str | None = None  # why damaged chunks were left under their names
    affected_vms: list[dict[str, Any]] = field(default_factory=list)  # {"host", "vm_id", "vm_name", "points"}
    pack_problems: list[dict[str, str]] = field(default_factory=list)  # format 2: {"pack", "problem"}
    chunks_read: int = 0  # full mode: chunks re-read and re-hashed (all, or a random share)
    version: int = 1  # the repository's format (what a quarantine did differs)
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.damaged_manifests and not self.chunk_problems and not self.pack_problems

    def next_steps(self) -> list[str]:
        """What the operator should do about the damage found, one sentence each."""
        steps: list[str] = []
        if self.repair_skipped:
            steps.append(
                f"{self.repair_skipped}: until they are, new backups keep referencing the damaged chunks; "
                "run a full `hvtui verify` (without --quick, not read-only) to quarantine them first"
            )
        if self.chunk_problems:
            for vm in self.affected_vms:
                steps.append(
                    f"run a full backup of VM {vm['host']}/{vm['vm_name']} "
                    f"(hvtui backup {vm['vm_name']} --host {vm['host']} --mode full) to store the data again: "
                    f"its points {', '.join(vm['points'])} are healed if the VM still holds that data, "
                    "and the new point is complete either way"
                )
            steps.append("then run `hvtui verify` again to confirm")
        if self.pack_problems:
            steps.append(
                "a pack's trailer is damaged or disagrees with the index: while the index names its chunks they "
                "are still read (each is hash-checked), but the index can no longer be rebuilt from that pack; "
                "keep index/ and the pack as they are, and run a full backup of the affected VMs"
            )
        if self.damaged_manifests:
            steps.append(
                "a damaged manifest cannot be repaired: its restore point is lost (the other points are unaffected); "
                "prune removes no chunk while one exists, so move the file out of points/ once it has been examined"
            )
        return steps

    def lines(self) -> list[str]:
        out = [f"manifest of {m['point']}: {m['problem']}" for m in self.damaged_manifests]
        out += [p.describe() for p in self.chunk_problems]
        out += [f"pack {p['pack'][:16]}: {p['problem']}" for p in self.pack_problems]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "quick": self.quick,
            "ok": self.ok,
            "points_checked": self.points_checked,
            "chunks_checked": self.chunks_checked,
            "bytes_checked": self.bytes_checked,
            "damaged_manifests": self.damaged_manifests,
            "chunk_problems": [
                {"chunk": p.chunk, "problem": p.problem, "points": p.points, "quarantined_as": p.quarantined_as}
                for p in self.chunk_problems
            ],
            "broken_points": self.broken_points,
            "quarantined": self.quarantined,
            "repair_skipped": self.repair_skipped,
            "affected_vms": self.affected_vms,
            "pack_problems": self.pack_problems,
            "chunks_read": self.chunks_read,
            "next_steps": self.next_steps(),
            "duration": round(self.duration, 3),
        }


def check_chunk_quick(repo: Repository, digest: bytes) -> str | None:
    """Presence and a header/length check, without reading the payload."""
    if isinstance(repo.store, PackStore):
        return repo.store.check_quick(digest)
    path = repo.store.path(digest)
    try:
        size = os.stat(path).st_size
        with open(path, "rb", buffering=0) as fh:
            header = fh.read(HEADER.size)
    except FileNotFoundError:
        return _missing(repo, digest)
    except OSError as err:
        return f"unreadable ({err.strerror})"
    if len(header) < HEADER.size:
        return f"truncated ({size} bytes, shorter than its header)"
    magic, _codec, _raw, pay_len = HEADER.unpack(header)
    if magic != MAGIC:
        return "bad header (not a chunk object)"
    if size != HEADER.size + pay_len:
        return f"truncated ({size - HEADER.size} of {pay_len} payload bytes)"
    return None


def _missing(repo: Repository, digest: bytes) -> str:
    return QUARANTINED_EARLIER if repo.store.quarantined(digest) is not None else "missing"


@dataclass(frozen=True, slots=True)
class ChunkCheck:
    problem: str | None  # None: the chunk is good
    size: int  # stored bytes read
    inode: int | str | None = None  # the damaged object's inode, v2: its pack (None: nothing to quarantine)


def check_chunk_full(repo: Repository, digest: bytes) -> ChunkCheck:
    """Read, decompress and re-hash one chunk object."""
    if isinstance(repo.store, PackStore):
        return ChunkCheck(*repo.store.check_full(digest))
    try:
        blob, inode = repo.store.read_blob_inode(digest)
    except ChunkMissing:
        return ChunkCheck(_missing(repo, digest), 0)
    except ChunkDamaged as err:  # unreadable: still a file that can be moved aside
        with contextlib.suppress(OSError):
            return ChunkCheck(err.reason, 0, os.stat(repo.store.path(digest)).st_ino)
        return ChunkCheck(err.reason, 0)
    try:
        decode_chunk(digest, blob)
    except ChunkDamaged as err:
        return ChunkCheck(err.reason, len(blob), inode)
    return ChunkCheck(None, len(blob))


def _check_unread(repo: Repository, digest: bytes) -> ChunkCheck:
    """A chunk outside a ``read_share`` sample: checked like ``--quick``, never quarantined."""
    return ChunkCheck(check_chunk_quick(repo, digest), 0)


def run_verify(
    repo: Repository,
    point_id: str | None = None,
    quick: bool = False,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    clock: Clock | None = None,
    record: bool = True,
    repair: bool = True,
    progress_interval: float = DEFAULT_INTERVAL,
    lock_timeout: float | None = 3600.0,
    workers: int = 2,
    read_share: float = 1.0,
) -> VerifyReport:
    """Check the chosen point (or every point); a full check quarantines damaged chunks.

    ``read_share`` (full checks; 0 < share <= 1): re-read and re-hash only that random share
    of the chunks and check the others like ``quick`` (restic's ``--read-data-subset``).
    Outcomes are recorded under ``verified/`` only when every chunk was read.

    ``record`` keeps each point's outcome under ``verified/``; ``repair`` (full checks only)
    renames each damaged chunk object to ``<name>.bad``.  Read-only callers pass both False.
    """
    tune_allocator()
    cancel = cancel or CancelToken()
    clock = clock or SystemClock()
    meter = Meter(progress, progress_interval)
    started = time.monotonic()
    report = VerifyReport(repository=repo.name, quick=quick, version=repo.version)

    def on_wait(message: str) -> None:
        if progress is not None:
            progress(Progress(phase="lock", message=message))

    lock = repo.lock("shared", "verify", point_id or "all points")
    lock.acquire(lock_timeout, cancel, on_wait)
    try:
        manifests: list[Manifest] = []
        if point_id is not None:
            try:
                manifests.append(repo.load_point(point_id))
            except ManifestError as err:
                report.damaged_manifests.append({"point": point_id, "problem": str(err)})
                report.broken_points[point_id] = ["manifest damaged"]
        else:
            manifests, bad = repo.load_points()
            for err in bad:
                name = err.point or "?"
                report.damaged_manifests.append({"point": name, "problem": str(err)})
                report.broken_points[name] = ["manifest damaged"]
        report.points_checked = len(manifests) + len(report.damaged_manifests)

        users: dict[bytes, list[str]] = {}
        for manifest in manifests:
            for digest in manifest.chunk_ids():
                users.setdefault(digest, []).append(manifest.id)
        digests = sorted(users)
        if not 0 < read_share <= 1:
            raise ValueError(f"read_share must be in (0, 1], not {read_share}")
        to_read = set(digests)
        if not quick and read_share < 1:
            to_read = set(random.sample(digests, math.ceil(len(digests) * read_share)))
        report.chunks_read = 0 if quick else len(to_read)
        meter.start_phase("verify", total=len(digests), message="checking chunks" + (" (quick)" if quick else ""))

        problems: dict[bytes, str] = {}
        damaged_inodes: dict[bytes, int | str] = {}  # full mode: the objects to quarantine
        if quick:
            for digest in digests:
                cancel.check()
                problem = check_chunk_quick(repo, digest)
                if problem:
                    problems[digest] = problem
                meter.add(done=1)
                meter.emit()
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix="hvtui-verify") as pool:
                window: deque[tuple[bytes, Future[ChunkCheck]]] = deque()

                def drain() -> None:
                    digest, future = window.popleft()
                    check = future.result()
                    report.bytes_checked += check.size
                    if check.problem:
                        problems[digest] = check.problem
                        if check.inode is not None:
                            damaged_inodes[digest] = check.inode
                    meter.add(done=1, data=check.size)
                    meter.emit()

                try:
                    for digest in digests:
                        if cancel.cancelled:
                            raise Cancelled("verify cancelled")
                        check = check_chunk_full if digest in to_read else _check_unread
                        window.append((digest, pool.submit(check, repo, digest)))
                        if len(window) >= workers * 4:
                            drain()
                    while window:
                        drain()
                finally:
                    for _, future in window:
                        future.cancel()
        report.chunks_checked = len(digests)
        if isinstance(repo.store, PackStore) and point_id is None:
            # Every pack's trailer against the index: a pack whose trailer is damaged can no
            # longer rebuild the index, even while the index still finds its chunks.
            report.pack_problems = [
                {"pack": pack_id, "problem": problem} for pack_id, problem in sorted(repo.store.check_packs().items())
            ]
        if damaged_inodes and not repair:
            report.repair_skipped = f"{len(damaged_inodes)} damaged chunk(s) were not quarantined (read-only)"
        elif quick and any(p not in ("missing", QUARANTINED_EARLIER) for p in problems.values()):
            report.repair_skipped = "damaged chunks were not quarantined (a quick check only reports; a full one does)"
        for digest, problem in sorted(problems.items()):
            points = sorted(users[digest])
            moved = None
            if repair and digest in damaged_inodes:
                bad_path = repo.store.quarantine(digest, damaged_inodes[digest])  # type: ignore[arg-type]
                if bad_path is not None:
                    moved = bad_path.relative_to(repo.root).as_posix()
                    report.quarantined.append(digest.hex())
            report.chunk_problems.append(ChunkProblem(digest.hex(), problem, points, moved))
            for point in points:
                report.broken_points.setdefault(point, []).append(f"chunk {digest.hex()[:16]} {problem}")
        vms: dict[tuple[str, str], dict[str, Any]] = {}
        broken_by_chunks = {point for problem in report.chunk_problems for point in problem.points}
        for manifest in sorted(manifests, key=lambda m: m.id):
            if manifest.id in broken_by_chunks:
                vm = vms.setdefault(
                    (manifest.host, manifest.vm_id),
                    {"host": manifest.host, "vm_id": manifest.vm_id, "vm_name": manifest.vm_name, "points": []},
                )
                vm["points"].append(manifest.id)
        report.affected_vms = [vms[key] for key in sorted(vms)]
        if record and not quick and report.chunks_read == len(digests):
            now = clock.now()
            for manifest in manifests:
                reasons = report.broken_points.get(manifest.id, [])
                repo.record_verification(manifest.id, not reasons, now, reasons)
    finally:
        lock.release()
    report.duration = time.monotonic() - started
    meter.start_phase("done", message="repository verified" if report.ok else "damage found")
    return report
