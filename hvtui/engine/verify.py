"""Verify: every manifest readable, every chunk present (quick) or re-read and re-hashed (full).

The report names each damaged or missing chunk and every restore point it breaks, and each
damaged manifest.  Verification never changes data; a full verification records its
outcome per point under ``verified/`` (shown as "verified" in point lists).
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from hvtui.clock import Clock, SystemClock
from hvtui.engine.fsutil import tune_allocator
from hvtui.engine.manifest import Manifest, ManifestError
from hvtui.engine.progress import DEFAULT_INTERVAL, Meter
from hvtui.engine.repository import Repository
from hvtui.engine.store import HEADER, MAGIC, ChunkDamaged, ChunkMissing
from hvtui.errors import Cancelled
from hvtui.events import CancelToken, Progress, ProgressCallback


@dataclass(slots=True)
class ChunkProblem:
    chunk: str  # hex id
    problem: str  # "missing" or why it is damaged
    points: list[str]  # restore points that reference it

    def describe(self) -> str:
        return f"chunk {self.chunk[:16]} {self.problem}; breaks {', '.join(self.points)}"


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
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.damaged_manifests and not self.chunk_problems

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
                {"chunk": p.chunk, "problem": p.problem, "points": p.points} for p in self.chunk_problems
            ],
            "broken_points": self.broken_points,
            "duration": round(self.duration, 3),
        }

    def lines(self) -> list[str]:
        out = [f"manifest of {m['point']}: {m['problem']}" for m in self.damaged_manifests]
        out += [p.describe() for p in self.chunk_problems]
        return out


def check_chunk_quick(repo: Repository, digest: bytes) -> str | None:
    """Presence and a header/length check, without reading the payload."""
    path = repo.store.path(digest)
    try:
        size = os.stat(path).st_size
        with open(path, "rb", buffering=0) as fh:
            header = fh.read(HEADER.size)
    except FileNotFoundError:
        return "missing"
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


def check_chunk_full(repo: Repository, digest: bytes) -> tuple[str | None, int]:
    try:
        blob = repo.store.read_blob(digest)
    except ChunkMissing:
        return "missing", 0
    except ChunkDamaged as err:
        return err.reason, 0
    try:
        from hvtui.engine.store import decode_chunk

        decode_chunk(digest, blob)
    except ChunkDamaged as err:
        return err.reason, len(blob)
    return None, len(blob)


def run_verify(
    repo: Repository,
    point_id: str | None = None,
    quick: bool = False,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    clock: Clock | None = None,
    record: bool = True,
    progress_interval: float = DEFAULT_INTERVAL,
    lock_timeout: float | None = 3600.0,
    workers: int = 2,
) -> VerifyReport:
    tune_allocator()
    cancel = cancel or CancelToken()
    clock = clock or SystemClock()
    meter = Meter(progress, progress_interval)
    started = time.monotonic()
    report = VerifyReport(repository=repo.name, quick=quick)

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
        meter.start_phase("verify", total=len(digests), message="checking chunks" + (" (quick)" if quick else ""))

        problems: dict[bytes, str] = {}
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
                window: deque[tuple[bytes, Future[tuple[str | None, int]]]] = deque()

                def drain() -> None:
                    digest, future = window.popleft()
                    problem, size = future.result()
                    report.bytes_checked += size
                    if problem:
                        problems[digest] = problem
                    meter.add(done=1, data=size)
                    meter.emit()

                try:
                    for digest in digests:
                        if cancel.cancelled:
                            raise Cancelled("verify cancelled")
                        window.append((digest, pool.submit(check_chunk_full, repo, digest)))
                        if len(window) >= workers * 4:
                            drain()
                    while window:
                        drain()
                finally:
                    for _, future in window:
                        future.cancel()
        report.chunks_checked = len(digests)
        for digest, problem in sorted(problems.items()):
            points = sorted(users[digest])
            report.chunk_problems.append(ChunkProblem(digest.hex(), problem, points))
            for point in points:
                report.broken_points.setdefault(point, []).append(f"chunk {digest.hex()[:16]} {problem}")
        if record and not quick:
            now = clock.now()
            for manifest in manifests:
                reasons = report.broken_points.get(manifest.id, [])
                repo.record_verification(manifest.id, not reasons, now, reasons)
    finally:
        lock.release()
    report.duration = time.monotonic() - started
    meter.start_phase("done", message="repository verified" if report.ok else "damage found")
    return report
