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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hvtui.engine import keys
from hvtui.engine.backends.base import Backend, ObjectExists
from hvtui.engine.compression import LZ4, Compressor
from hvtui.engine.crypto import NotAuthentic, RepositoryCipher
from hvtui.engine.fsutil import atomic_write_json
from hvtui.engine.layout import (
    PACK_SUBDIRS,
    SUBDIRS,
    RepositoryNeedsRepair,
    inspect_folder,
    make_private_dir,
    publish_config,
    require_real_dir,
)
from hvtui.engine.lock_records import BackendRecords, LocalRecords
from hvtui.engine.locks import RepositoryLock, creation_lock
from hvtui.engine.manifest import Manifest, ManifestError, check_point_id
from hvtui.engine.packobjects import BackendPacks
from hvtui.engine.packstore import PackStore
from hvtui.engine.pointindex import PointIndexFile, PointSummary, summary_order
from hvtui.engine.pointobjects import BackendManifests, LocalManifests, ManifestObjects
from hvtui.engine.repo_config import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_VERSION,
    MAX_CHUNK_SIZE,
    MIN_CHUNK_SIZE,
    VERSIONS,
    check_pack_size,
    new_config,
    read_config,
)
from hvtui.engine.store import ChunkStore, disk_error
from hvtui.errors import RepositoryError
from hvtui.files import atomic_write


class PointNotFound(RepositoryError):
    pass


Passphrase = Callable[[], str]


class _RefreshingLock(RepositoryLock):
    """A repository lock that re-reads the store's index once it is held, so an operation
    never works from an index another process changed (a prune) before the lock, nor from a
    format a migration changed (``repo migrate`` switched it to format 2)."""

    def __init__(self, repo: Repository, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._repo = repo

    def acquire(self, *args: Any, **kwargs: Any) -> RepositoryLock:
        super().acquire(*args, **kwargs)
        try:
            if self._repo.format_changed():
                raise RepositoryError(
                    f"repository {self._repo.root} was converted to format 2 (`hvtui repo migrate`) while this "
                    "process had it open; run the operation again"
                )
            self._repo.store.refresh()
        except BaseException:
            self.release()
            raise
        return self


class Repository:
    def __init__(
        self,
        root: Path,
        name: str,
        config: dict[str, Any],
        cipher: RepositoryCipher | None = None,
        compressor: Compressor = LZ4,
        backend: Backend | None = None,
    ) -> None:
        """``cipher``: the unwrapped master key of an encrypted repository (``open`` gets it);
        ``backend``: an object store holding a format-2 repository's packs, index files and
        manifests (default: all under ``root``)."""
        self.root = root
        # What new chunks are written with; every codec is read whatever this says (compression.py).
        self.compressor = compressor
        self.cipher = cipher
        self.encrypted = bool(config.get("encryption"))
        if self.encrypted and cipher is None:
            raise RepositoryError(f"repository {name} at {root} is encrypted and was opened without its key")
        self.name = name
        self.config = config
        self.id: str = config["id"]
        self.chunk_size: int = config["chunk_size"]
        self.version: int = config["version"]
        self.store: ChunkStore | PackStore
        if self.version >= 2:
            packs = BackendPacks(backend) if backend is not None else None
            self.store = PackStore(root, self.id, config["pack_size"], cipher=cipher, packs=packs)
        else:
            self.store = ChunkStore(root)
        self.points_dir = root / "points"
        self.verified_dir = root / "verified"
        self.tmp_dir = root / "tmp"
        self.backend = backend
        self.manifests: ManifestObjects = BackendManifests(backend) if backend is not None else LocalManifests(root)
        self.point_index = PointIndexFile(root / "index", root / "tmp", cipher, backend) if self.version >= 2 else None
        self._cache: dict[str, tuple[tuple[int, int], Manifest]] = {}
        self._cache_lock = threading.Lock()

    # -- open / create -------------------------------------------------------------------
    @classmethod
    def exists(cls, root: Path) -> bool:
        return (root / "config.json").is_file()

    @classmethod
    def check_missing(cls, root: Path) -> None:
        """For a folder without ``config.json``: raise ``RepositoryNeedsRepair`` when it holds
        restore points or chunks (a damaged repository must not look empty); else return."""
        state = inspect_folder(Path(root).expanduser())
        if state.kind == "damaged":
            raise RepositoryNeedsRepair(
                f"repository {root} is damaged: its config.json is missing, but it holds {state.describe_data()}; "
                "run `hvtui repair-repository` to rebuild config.json from them"
            )

    @classmethod
    def open(
        cls,
        root: Path,
        name: str = "default",
        create: bool = False,
        chunk_size: int | None = None,
        version: int = DEFAULT_VERSION,
        pack_size: int | None = None,
        compressor: Compressor = LZ4,
        passphrase: Passphrase | None = None,
        encrypt: bool = False,
        backend: Backend | None = None,
    ) -> Repository:
        """Open the repository at ``root`` (its ``config.json`` says which format it is);
        ``create`` makes one when there is none, of format ``version`` (``encrypt``: format 2,
        encrypted, its first key slot wrapped by ``passphrase()``).  ``passphrase()`` is
        called only for an encrypted repository; a wrong one is ``keys.WrongPassphrase``."""
        root = Path(root).expanduser()
        cipher: RepositoryCipher | None = None
        config_path = root / "config.json"
        if not config_path.exists():
            cls.check_missing(root)
            if not create:
                interrupted = inspect_folder(root).kind == "half-made"
                why = "its creation was interrupted; the next backup completes it" if interrupted else (
                    "nothing has been backed up there yet"
                )
                raise RepositoryError(f"no backup repository at {root} ({why})")
            if encrypt and passphrase is None:
                raise RepositoryError(f"creating the encrypted repository {name} needs a passphrase")
            cipher = cls._create(
                root, chunk_size or DEFAULT_CHUNK_SIZE, 2 if encrypt else version, pack_size, passphrase if encrypt else None
            )
        config = cls.read_config(root)
        if config.get("encryption") and cipher is None:
            if passphrase is None:
                raise RepositoryError(
                    f"repository {name} at {root} is encrypted: its passphrase is needed "
                    "(set passphrase_env, passphrase_command or passphrase_prompt in its config entry)"
                )
            cipher, _slot = keys.unlock(root, config["id"], passphrase(), f"repository {name} at {root}")
        for sub in SUBDIRS + (PACK_SUBDIRS if config["version"] >= 2 else ()):
            with contextlib.suppress(OSError):  # a read-only repository (a snapshot) is still readable
                make_private_dir(root / sub)
            require_real_dir(root / sub)
        return cls(root, name, config, cipher, compressor, backend)

    @classmethod
    def read_config(cls, root: Path) -> dict[str, Any]:
        """The checked ``config.json`` (repo_config.read_config)."""
        return read_config(root)

    @classmethod
    def _create(
        cls,
        root: Path,
        chunk_size: int,
        version: int = DEFAULT_VERSION,
        pack_size: int | None = None,
        passphrase: Passphrase | None = None,
    ) -> RepositoryCipher | None:
        """Create a repository, or finish one whose creation was interrupted.

        ``config.json`` is what makes a folder a repository and appears last, in one step
        (written aside, then linked into place).  Creators take an exclusive ``flock`` on the
        folder itself, so two first backups started at once (two cron lines) create it once;
        a creator killed halfway leaves only the empty skeleton, which the next one finishes.
        With ``passphrase`` the repository is encrypted: a random master key, its first key
        slot written before ``config.json``; returns its cipher (None when another process
        created the repository meanwhile: then it is opened with the passphrase as usual).
        """
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE or chunk_size & (chunk_size - 1):
            raise RepositoryError(f"chunk size must be a power of two between 64 KiB and 16 MiB, not {chunk_size}")
        if version not in VERSIONS:
            raise RepositoryError(f"unknown repository format {version!r} (this hvtui writes {', '.join(map(str, VERSIONS))})")
        if pack_size is not None:
            check_pack_size(pack_size)
        secret = passphrase() if passphrase is not None else None  # asked before any lock is taken
        try:
            root.parent.mkdir(parents=True, exist_ok=True)
            make_private_dir(root)  # a folder given to hvtui keeps its mode; one hvtui makes is owner-only
        except OSError as err:
            raise disk_error(err, f"cannot create a repository at {root}") from err
        with creation_lock(root):
            if cls.exists(root):
                return None  # another process created it while this one waited
            state = inspect_folder(root)
            if state.kind == "damaged":
                cls.check_missing(root)
            if state.kind not in ("empty", "half-made"):
                raise RepositoryError(
                    f"{root} is not empty and is not an hvtui repository; refusing to create one there"
                )
            config = new_config(chunk_size, version=version, pack_size=pack_size, encrypted=secret is not None)
            cipher = RepositoryCipher.generate() if secret is not None else None
            try:
                for sub in SUBDIRS + (PACK_SUBDIRS if version >= 2 else ()):
                    make_private_dir(root / sub)
                    require_real_dir(root / sub)
                if cipher is not None and secret is not None:
                    keys.clear_unpublished(root)  # slots of a creation killed before its config.json
                    keys.add_slot(root, config["id"], cipher, secret)
                publish_config(root, config)
            except OSError as err:
                raise disk_error(err, f"cannot create a repository at {root}") from err
            return cipher

    # -- locks ---------------------------------------------------------------------------
    def lock(self, kind: str, operation: str, detail: str = "", reading: bool = False) -> RepositoryLock:
        """``reading``: only reads (a restore), so it works in a repository that cannot be written."""
        if self.backend is not None:  # records alone, as objects: flock cannot reach an object store
            return _RefreshingLock(self, self.root, kind, operation, detail, reading, use_flock=False, records=self.lock_store())
        return _RefreshingLock(self, self.root, kind, operation, detail, reading)

    def lock_store(self) -> LocalRecords | BackendRecords:
        """Where this repository's lock records live: ``locks/`` here, or objects in its bucket."""
        return BackendRecords(self.backend) if self.backend is not None else LocalRecords(self.root / "locks", self.tmp_dir)

    def format_changed(self) -> bool:
        """``config.json`` now records another format than this object was opened with."""
        try:
            version = json.loads((self.root / "config.json").read_text()).get("version")
        except (OSError, ValueError, AttributeError):
            return False  # unreadable: the operation's own reads say what is wrong
        return version != self.version

    # -- points --------------------------------------------------------------------------
    def point_path(self, point_id: str) -> Path:
        return self.points_dir / f"{check_point_id(point_id)}.json"

    def point_ids(self) -> list[str]:
        return sorted(self.manifests.stamps())

    def load_point(self, point_id: str) -> Manifest:
        key = self.manifests.stamp(check_point_id(point_id))
        if key is None:
            raise PointNotFound(f"no restore point {point_id} in repository {self.name}")
        with self._cache_lock:
            hit = self._cache.get(point_id)
        if hit is not None and hit[0] == key:
            return hit[1]
        try:
            data = self.manifests.read(point_id)
        except FileNotFoundError:
            raise PointNotFound(f"no restore point {point_id} in repository {self.name}") from None
        except OSError as err:
            problem = f"cannot read its manifest: {err.strerror}"
            raise ManifestError(f"restore point {point_id}: {problem}", point_id, problem) from None
        if self.cipher is not None:
            try:
                data = self.cipher.open_object(data, f"points/{point_id}.json")
            except NotAuthentic as err:
                problem = f"points/{point_id}.json {err}"
                raise ManifestError(f"restore point {point_id}: manifest is damaged ({problem})", point_id, problem) from None
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

    def point_summaries(self) -> tuple[list[PointSummary], list[ManifestError]]:
        """What a listing needs of every point (oldest first) and the damaged manifests.

        Format 2 reads the point index (one object) and only the manifests it lacks;
        format 1 reads every manifest.
        """
        if self.point_index is None:
            good, bad = self.load_points()
            return sorted((PointSummary.of(m) for m in good), key=summary_order), bad
        return self.point_index.listing(self.point_stamps(), self._load_for_listing)

    def listing_key(self) -> tuple[Any, ...]:
        """A cheap value that changes whenever the point listing may have: every manifest's name
        and stamp (one LIST of ``points/`` on an object store, so another machine's new point
        shows) and this machine's verification records' times."""
        verified: list[tuple[str, int]] = []
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.verified_dir):
                with contextlib.suppress(OSError):
                    verified.append((entry.name, entry.stat().st_mtime_ns))
        return tuple(sorted(self.manifests.stamps().items())), tuple(sorted(verified))

    def point_stamps(self) -> dict[str, tuple[int, int]]:
        """Each manifest's (size, mtime ns) by point id: what changes when a manifest does."""
        return self.manifests.stamps()

    def _load_for_listing(self, point_id: str) -> Manifest:
        try:
            return self.load_point(point_id)
        except PointNotFound:
            raise FileNotFoundError(point_id) from None
        except ManifestError:
            raise
        except RepositoryError as err:  # a stray file whose name is not a point id
            raise ManifestError(f"{point_id}: {err}", point_id, str(err)) from None

    def commit_point(self, manifest: Manifest) -> Path:
        """Make a point exist: chunk directories durable first, then the manifest, atomically
        (on an object store only if no manifest of that id exists: another writer's is kept)."""
        self.store.make_durable()
        path = self.point_path(manifest.id)
        try:
            stamp = self.manifests.create(manifest.id, self._seal(manifest.to_bytes(), f"points/{manifest.id}.json"))
        except ObjectExists:
            raise RepositoryError(
                f"restore point {manifest.id} already exists in repository {self.name} (another backup wrote it "
                "first); this backup's point was not written, its data stays for the next backup to reuse"
            ) from None
        except OSError as err:
            raise disk_error(err, f"writing the manifest of {manifest.id}") from err
        if self.point_index is not None:
            # The point exists now; the index is a cache, so a failure here only costs the
            # next listing a read of this manifest.
            with contextlib.suppress(OSError):
                if not self.point_index.add(manifest, stamp):
                    self.point_summaries()  # no usable point index: build it from the manifests, once
        return path

    def delete_point(self, point_id: str) -> None:
        self.manifests.delete(check_point_id(point_id))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.verified_dir / f"{point_id}.json")
        if self.point_index is not None:
            self.point_index.remove(point_id)
        with self._cache_lock:
            self._cache.pop(point_id, None)

    def sync_points_dir(self) -> None:
        self.manifests.sync()

    # -- verification records -----------------------------------------------------------------
    def _seal(self, data: bytes, name: str) -> bytes:
        """``data`` as stored under ``name`` (its path in the repository): sealed when encrypted."""
        return self.cipher.seal_object(data, name) if self.cipher is not None else data

    def verification(self, point_id: str) -> dict[str, Any] | None:
        name = f"verified/{point_id}.json"
        try:
            raw = (self.root / name).read_bytes()
            data = json.loads(self.cipher.open_object(raw, name) if self.cipher is not None else raw)
        except (OSError, ValueError):  # NotAuthentic is a ValueError: advisory, so only absent
            return None
        return data if isinstance(data, dict) else None

    def record_verification(self, point_id: str, ok: bool, when: datetime, problems: list[str]) -> None:
        with contextlib.suppress(OSError):
            make_private_dir(self.verified_dir)
            record = {"point": point_id, "ok": ok, "time": when.astimezone(UTC).isoformat(), "problems": problems[:20]}
            if self.cipher is None:
                atomic_write_json(self.verified_dir / f"{point_id}.json", record, tmp_dir=self.tmp_dir)
            else:
                data = self._seal(json.dumps(record).encode(), f"verified/{point_id}.json")
                atomic_write(self.verified_dir / f"{point_id}.json", data, tmp_dir=self.tmp_dir)
