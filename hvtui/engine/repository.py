"""A backup repository on a local directory: config, chunk store, restore points, locks.

Layout (format version 1, docs/repository-format.md)::

    config.json              format, version, id, chunk size, hash, compression
    chunks/<2 hex>/<64 hex>  chunk objects (store.py)
    points/<point id>.json   manifests: a point exists iff its manifest does
    verified/<point id>.json last full verification of a point (advisory)
    locks/repo.lock          flock target; locks/<lock id>.json lock records
    tmp/                     temporary files, tagged with their writer's lock id
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hvtui.engine.fsutil import atomic_write_json
from hvtui.engine.locks import RepositoryLock
from hvtui.engine.manifest import Manifest, ManifestError, check_point_id
from hvtui.engine.store import ChunkStore, disk_error
from hvtui.errors import RepositoryError
from hvtui.files import atomic_write, fsync_dir

FORMAT = "hvtui-repository"
VERSION = 1
DEFAULT_CHUNK_SIZE = 1024 * 1024
MIN_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 16 * 1024 * 1024


class PointNotFound(RepositoryError):
    pass


class Repository:
    def __init__(self, root: Path, name: str, config: dict[str, Any]) -> None:
        self.root = root
        self.name = name
        self.config = config
        self.id: str = config["id"]
        self.chunk_size: int = config["chunk_size"]
        self.store = ChunkStore(root)
        self.points_dir = root / "points"
        self.verified_dir = root / "verified"
        self.tmp_dir = root / "tmp"
        self._cache: dict[str, tuple[tuple[int, int], Manifest]] = {}
        self._cache_lock = threading.Lock()

    # -- open / create -------------------------------------------------------------------
    @classmethod
    def exists(cls, root: Path) -> bool:
        return (root / "config.json").is_file()

    @classmethod
    def open(cls, root: Path, name: str = "default", create: bool = False, chunk_size: int | None = None) -> Repository:
        root = Path(root).expanduser()
        config_path = root / "config.json"
        if not config_path.exists():
            if not create:
                raise RepositoryError(f"no backup repository at {root} (nothing has been backed up there yet)")
            cls._create(root, chunk_size or DEFAULT_CHUNK_SIZE)
        try:
            config = json.loads(config_path.read_text())
        except (OSError, ValueError) as err:
            raise RepositoryError(f"repository {root}: cannot read config.json: {err}") from None
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise RepositoryError(f"{root} is not an hvtui repository (config.json has no hvtui format marker)")
        version = config.get("version")
        if not isinstance(version, int) or version > VERSION:
            raise RepositoryError(
                f"repository {root} has format version {version!r}; this hvtui reads version {VERSION} (upgrade hvtui)"
            )
        size = config.get("chunk_size")
        if not isinstance(size, int) or not MIN_CHUNK_SIZE <= size <= MAX_CHUNK_SIZE or config.get("hash") != "sha256":
            raise RepositoryError(f"repository {root}: config.json has an unsupported chunk size or hash")
        for sub in ("chunks", "points", "verified", "locks", "tmp"):
            with contextlib.suppress(OSError):
                (root / sub).mkdir(exist_ok=True)
        return cls(root, name, config)

    @classmethod
    def _create(cls, root: Path, chunk_size: int) -> None:
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE or chunk_size & (chunk_size - 1):
            raise RepositoryError(f"chunk size must be a power of two between 64 KiB and 16 MiB, not {chunk_size}")
        try:
            root.mkdir(parents=True, exist_ok=True)
            if any(name != "lost+found" for name in os.listdir(root)):
                raise RepositoryError(
                    f"{root} is not empty and is not an hvtui repository; refusing to create one there"
                )
            for sub in ("chunks", "points", "verified", "locks", "tmp"):
                (root / sub).mkdir(exist_ok=True)
            config = {
                "format": FORMAT,
                "version": VERSION,
                "id": uuid.uuid4().hex,
                "created": datetime.now(UTC).isoformat(),
                "chunk_size": chunk_size,
                "hash": "sha256",
                "compression": "lz4-block",
            }
            tmp = root / "tmp" / f"config.{uuid.uuid4().hex}.json"
            atomic_write_json(tmp, config)
            try:
                os.link(tmp, root / "config.json")  # fails if another process created it first
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
            fsync_dir(root)
        except OSError as err:
            raise disk_error(err, f"cannot create a repository at {root}") from err

    # -- locks ---------------------------------------------------------------------------
    def lock(self, kind: str, operation: str, detail: str = "") -> RepositoryLock:
        return RepositoryLock(self.root, kind, operation, detail)

    # -- points --------------------------------------------------------------------------
    def point_path(self, point_id: str) -> Path:
        return self.points_dir / f"{check_point_id(point_id)}.json"

    def point_ids(self) -> list[str]:
        try:
            names = os.listdir(self.points_dir)
        except FileNotFoundError:
            return []
        return sorted(n[:-5] for n in names if n.endswith(".json") and not n.startswith("."))

    def load_point(self, point_id: str) -> Manifest:
        path = self.point_path(point_id)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise PointNotFound(f"no restore point {point_id} in repository {self.name}") from None
        key = (st.st_mtime_ns, st.st_size)
        with self._cache_lock:
            hit = self._cache.get(point_id)
        if hit is not None and hit[0] == key:
            return hit[1]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise PointNotFound(f"no restore point {point_id} in repository {self.name}") from None
        except OSError as err:
            problem = f"cannot read its manifest: {err.strerror}"
            raise ManifestError(f"restore point {point_id}: {problem}", point_id, problem) from None
        manifest = Manifest.from_bytes(data, point_id)
        if manifest.id != point_id:
            problem = f"it names itself {manifest.id}"
            raise ManifestError(f"restore point {point_id}: manifest is damaged ({problem})", point_id, problem)
        with self._cache_lock:
            self._cache[point_id] = (key, manifest)
        return manifest

    def load_points(self) -> tuple[list[Manifest], list[ManifestError]]:
        """Every readable point (oldest first) and an error for each damaged one."""
        good: list[Manifest] = []
        bad: list[ManifestError] = []
        for point_id in self.point_ids():
            try:
                good.append(self.load_point(point_id))
            except PointNotFound:
                continue  # pruned meanwhile
            except ManifestError as err:
                bad.append(err)
            except RepositoryError as err:  # a stray file whose name is not a point id
                bad.append(ManifestError(f"{point_id}: {err}", point_id, str(err)))
        good.sort(key=lambda m: (m.time, m.id))
        return good, bad

    def commit_point(self, manifest: Manifest) -> Path:
        """Make a point exist: chunk directories durable first, then the manifest, atomically."""
        for directory in self.store.touched_dirs():
            fsync_dir(directory)
        fsync_dir(self.store.chunks_dir)
        path = self.point_path(manifest.id)
        try:
            atomic_write(path, manifest.to_bytes(), tmp_dir=self.tmp_dir)
        except OSError as err:
            raise disk_error(err, f"writing the manifest of {manifest.id}") from err
        return path

    def delete_point(self, point_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.point_path(point_id))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.verified_dir / f"{point_id}.json")
        with self._cache_lock:
            self._cache.pop(point_id, None)

    def sync_points_dir(self) -> None:
        fsync_dir(self.points_dir)

    # -- verification records -----------------------------------------------------------------
    def verification(self, point_id: str) -> dict[str, Any] | None:
        try:
            data = json.loads((self.verified_dir / f"{point_id}.json").read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def record_verification(self, point_id: str, ok: bool, when: datetime, problems: list[str]) -> None:
        with contextlib.suppress(OSError):
            self.verified_dir.mkdir(exist_ok=True)
            atomic_write_json(
                self.verified_dir / f"{point_id}.json",
                {"point": point_id, "ok": ok, "time": when.astimezone(UTC).isoformat(), "problems": problems[:20]},
                tmp_dir=self.tmp_dir,
            )
