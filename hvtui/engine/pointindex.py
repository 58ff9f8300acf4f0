"""The point index of a format-2 repository: one small object that lists every point.

``index/points.json``::

    {"format": "hvtui-point-index", "version": 1,
     "points": {"<point id>": {"host", "vm_id", "vm_name", "time", "mode", "parent",
                               "logical_bytes", "stored_bytes", "committed_ns", "files"}},
     "stamps": {"<point id>": [manifest size, manifest mtime in ns]},
     "digest": "<SHA-256 of the canonical JSON of the other fields>"}

Listing points reads it and the listing of ``points/`` with each manifest's size and
modification time (what an object store's LIST returns anyway; the manifests stay the
commit point and the truth): a manifest the index lacks, or whose size or time differ from
the index's stamp, is read (a point another process committed, a manifest rewritten or
damaged since, reported as such), an entry whose manifest is gone is dropped, and when
anything differed the index is rewritten.  A missing or damaged index
is rebuilt from the manifests.  So listing 60 points costs what listing 5 does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hvtui.engine.backends.base import Backend, BackendError, ObjectMissing
from hvtui.engine.crypto import RepositoryCipher
from hvtui.engine.manifest import POINT_ID_RE, Manifest, ManifestError
from hvtui.files import atomic_write

log = logging.getLogger(__name__)

FORMAT = "hvtui-point-index"
VERSION = 1
NAME = "points.json"


@dataclass(frozen=True, slots=True)
class PointSummary:
    """What a listing shows of a point, without its chunk lists."""

    id: str
    host: str
    vm_id: str
    vm_name: str
    time: datetime
    mode: str
    parent: str | None
    logical_bytes: int
    stored_bytes: int
    committed_ns: int
    files: int

    @classmethod
    def of(cls, m: Manifest) -> PointSummary:
        return cls(
            id=m.id,
            host=m.host,
            vm_id=m.vm_id,
            vm_name=m.vm_name,
            time=m.time,
            mode=m.mode,
            parent=m.parent,
            logical_bytes=m.logical_bytes,
            stored_bytes=int(m.stats.get("stored_bytes", 0)),
            committed_ns=int(m.stats.get("committed_ns", 0)),
            files=len(m.files),
        )

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("id")
        doc["time"] = self.time.isoformat()
        return doc

    @classmethod
    def from_json(cls, point_id: str, doc: dict[str, Any]) -> PointSummary:
        summary = cls(id=point_id, **{**doc, "time": datetime.fromisoformat(doc["time"])})
        if not isinstance(summary.host, str) or not isinstance(summary.vm_id, str) or not isinstance(summary.files, int):
            raise ValueError("wrong field types")
        return summary


def summary_order(s: PointSummary) -> tuple:
    return (s.time, s.committed_ns, s.id)


def _digest(doc: dict[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class PointIndexFile:
    """Reads and keeps ``index/points.json`` up to date for one repository object."""

    def __init__(
        self, index_dir: Path, tmp_dir: Path, cipher: RepositoryCipher | None = None, backend: Backend | None = None
    ) -> None:
        """``cipher``: an encrypted repository's, which seals the index as ``index/points.json``;
        ``backend``: the object store holding it (``index/points.json``) instead of the folder."""
        self.backend = backend
        self.path = index_dir / NAME
        self.tmp_dir = tmp_dir
        self.cipher = cipher
        self._lock = threading.Lock()

    def read(self) -> tuple[dict[str, PointSummary], dict[str, tuple[int, int]]] | None:
        """The index's points, or None when it is missing or damaged (then rebuilt)."""
        try:
            raw = self.backend.get(f"index/{NAME}") if self.backend is not None else self.path.read_bytes()
            doc = json.loads(self.cipher.open_object(raw, f"index/{NAME}") if self.cipher is not None else raw)
            if doc.get("format") != FORMAT or doc.get("version") != VERSION or doc.get("digest") != _digest(doc):
                raise ValueError("not a valid point index")
            points = {pid: PointSummary.from_json(pid, entry) for pid, entry in doc["points"].items()}
            stamps = {pid: (int(size), int(mtime)) for pid, (size, mtime) in doc["stamps"].items()}
            if not all(POINT_ID_RE.match(pid) for pid in points) or set(stamps) != set(points):
                raise ValueError("a bad point id")
        except (FileNotFoundError, ObjectMissing):
            return None
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
            log.warning("point index %s is damaged (%s): rebuilt from the manifests", self.path, err)
            return None
        return points, stamps

    def write(self, points: dict[str, PointSummary], stamps: dict[str, tuple[int, int]]) -> None:
        doc: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "points": {pid: s.to_json() for pid, s in sorted(points.items())},
            "stamps": {pid: list(stamps[pid]) for pid in sorted(points)},
        }
        doc["digest"] = _digest(doc)
        with contextlib.suppress(OSError, BackendError):  # a repository that cannot be written still lists (slower)
            data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
            if self.cipher is not None:
                data = self.cipher.seal_object(data, f"index/{NAME}")
            if self.backend is not None:
                self.backend.put(f"index/{NAME}", bytes(data))  # replaced whole: a cache checked against stamps
            else:
                atomic_write(self.path, data, tmp_dir=self.tmp_dir)

    def listing(
        self, present: dict[str, tuple[int, int]], load: Any
    ) -> tuple[list[PointSummary], list[ManifestError]]:
        """Every readable point (oldest first) and the damaged manifests; ``present`` maps the
        point ids under ``points/`` to their manifests' (size, mtime ns), ``load(point_id)``
        reads one manifest."""
        with self._lock:
            stored = self.read()
            changed = stored is None
            known, stamps = (dict(stored[0]), dict(stored[1])) if stored is not None else ({}, {})
            bad: list[ManifestError] = []
            for point_id in sorted(set(known) | set(present)):
                stamp = present.get(point_id)
                if stamp is not None and stamps.get(point_id) == stamp:
                    continue
                known.pop(point_id, None)
                stamps.pop(point_id, None)
                changed = True
                if stamp is None:
                    continue  # its manifest is gone
                try:
                    known[point_id] = PointSummary.of(load(point_id))
                    stamps[point_id] = stamp
                except FileNotFoundError:
                    continue
                except ManifestError as err:
                    bad.append(err)
            if changed:
                self.write(known, stamps)
        return sorted(known.values(), key=summary_order), bad

    def add(self, manifest: Manifest, stamp: tuple[int, int]) -> bool:
        """A point this process committed (after its manifest): listed without a re-read.
        False when there is no usable index to add it to (the caller rebuilds it)."""
        with self._lock:
            stored = self.read()
            if stored is None:
                return False
            stored[0][manifest.id] = PointSummary.of(manifest)
            stored[1][manifest.id] = stamp
            self.write(*stored)
            return True

    def remove(self, point_id: str) -> None:
        with self._lock:
            stored = self.read()
            if stored is not None and stored[0].pop(point_id, None) is not None:
                stored[1].pop(point_id, None)
                self.write(*stored)

    def exists(self) -> bool:
        if self.backend is not None:
            return self.backend.stat(f"index/{NAME}") is not None
        return os.path.exists(self.path)
