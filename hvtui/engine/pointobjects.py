"""Where a repository's manifests (``points/<point id>.json``) live: the storage seam of ``Repository``.

``LocalManifests`` keeps today's files (atomic write, stamp = size and mtime).  ``BackendManifests``
keeps them as objects of a ``Backend``, each created with ``put_if_absent`` so two writers never
overwrite each other's point: the second gets ``ObjectExists``.  A manifest object never changes
once written, so its size is its stamp (what the point index compares).
"""

from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from pathlib import Path

from hvtui.engine.backends.base import Backend, ObjectMissing
from hvtui.files import atomic_write, fsync_dir

Stamp = tuple[int, int]


class ManifestObjects(ABC):
    """The manifests of one repository, by point id (already checked by the caller)."""

    @abstractmethod
    def stamps(self) -> dict[str, Stamp]:
        """Every manifest's (size, mtime ns or 0) by point id: what changes when a manifest does."""

    @abstractmethod
    def stamp(self, point_id: str) -> Stamp | None:
        """One manifest's stamp, or None when it does not exist."""

    @abstractmethod
    def read(self, point_id: str) -> bytes:
        """A manifest's bytes; ``FileNotFoundError`` when it does not exist."""

    @abstractmethod
    def create(self, point_id: str, data: bytes) -> Stamp:
        """Write a new manifest, durably; its stamp."""

    @abstractmethod
    def delete(self, point_id: str) -> None:
        """Remove a manifest (no error when it is gone)."""

    @abstractmethod
    def sync(self) -> None:
        """Make deletions durable."""


class LocalManifests(ManifestObjects):
    def __init__(self, root: Path) -> None:
        self.points_dir = root / "points"
        self.tmp_dir = root / "tmp"

    def path(self, point_id: str) -> Path:
        return self.points_dir / f"{point_id}.json"

    def stamps(self) -> dict[str, Stamp]:
        stamps: dict[str, Stamp] = {}
        try:
            entries = list(os.scandir(self.points_dir))
        except FileNotFoundError:
            return stamps
        for entry in entries:
            if entry.name.endswith(".json") and not entry.name.startswith("."):
                with contextlib.suppress(OSError):
                    st = entry.stat()
                    stamps[entry.name[:-5]] = (st.st_size, st.st_mtime_ns)
        return stamps

    def stamp(self, point_id: str) -> Stamp | None:
        try:
            st = os.stat(self.path(point_id))
        except FileNotFoundError:
            return None
        return (st.st_size, st.st_mtime_ns)

    def read(self, point_id: str) -> bytes:
        return self.path(point_id).read_bytes()

    def create(self, point_id: str, data: bytes) -> Stamp:
        path = self.path(point_id)
        atomic_write(path, data, tmp_dir=self.tmp_dir)
        st = os.stat(path)
        return (st.st_size, st.st_mtime_ns)

    def delete(self, point_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(point_id))

    def sync(self) -> None:
        fsync_dir(self.points_dir)


class BackendManifests(ManifestObjects):
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def stamps(self) -> dict[str, Stamp]:
        stamps: dict[str, Stamp] = {}
        for info in self.backend.list("points/"):
            name = info.key[len("points/") :]
            if "/" not in name and name.endswith(".json") and not name.startswith("."):
                stamps[name[:-5]] = (info.size, 0)
        return stamps

    def stamp(self, point_id: str) -> Stamp | None:
        info = self.backend.stat(f"points/{point_id}.json")
        return None if info is None else (info.size, 0)

    def read(self, point_id: str) -> bytes:
        try:
            return self.backend.get(f"points/{point_id}.json")
        except ObjectMissing:
            raise FileNotFoundError(f"points/{point_id}.json") from None

    def create(self, point_id: str, data: bytes) -> Stamp:
        self.backend.put_if_absent(f"points/{point_id}.json", data)
        return (len(data), 0)

    def delete(self, point_id: str) -> None:
        self.backend.delete(f"points/{point_id}.json")

    def sync(self) -> None:
        """Nothing to do: an object store acknowledges a delete once it is durable."""
