"""What each repository is (``hvtui repo list|info``): backend, format, encryption, size,
points and last backup, read through the same listing the console uses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hvtui.backups.guard import SafetyGuard
from hvtui.backups.locations import Location
from hvtui.backups.points import DamagedManifest, PointInfo
from hvtui.config import RepositoryConfig
from hvtui.engine import keys
from hvtui.engine.backends.base import BackendError
from hvtui.engine.repository import Repository
from hvtui.errors import ReadOnlyError, RepositoryError


@dataclass(frozen=True, slots=True)
class RepositoryInfo:
    name: str
    path: Path
    default: bool
    # "ok", "absent" (nothing backed up there yet), "locked" (encrypted, not opened), "damaged" or
    # "unreachable" (its storage did not answer, or refused the credentials or the bucket)
    state: str
    version: int | None = None  # the format its config.json records
    chunk_size: int | None = None
    pack_size: int | None = None  # format 2
    encrypted: bool = False
    key_slots: tuple[dict[str, Any], ...] = ()  # an encrypted repository's (keys.KeySlot.to_dict)
    backend: str = "local"
    compression: str | None = None  # what new chunks are written with ("lz4", "zstd level 3")
    size_bytes: int = 0
    points: int = 0
    damaged_points: int = 0
    last_backup: datetime | None = None
    problem: str | None = None  # why it is damaged
    where: str = ""  # the folder, or s3://bucket/prefix (then ``path`` is this machine's working folder)
    endpoint: str | None = None  # s3: the service's URL
    # absent: what a first backup or `repo init` makes of it (the config's format; encrypted when
    # the entry names a passphrase source)
    creates_format: int | None = None
    creates_encrypted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "default": self.default,
            "state": self.state,
            "backend": self.backend,
            "where": self.where or str(self.path),
            "endpoint": self.endpoint,
            "format": self.version,
            "chunk_size": self.chunk_size,
            "pack_size": self.pack_size,
            "encrypted": self.encrypted,
            "compression": self.compression,
            "key_slots": list(self.key_slots),
            "size_bytes": self.size_bytes,
            "points": self.points,
            "damaged_points": self.damaged_points,
            "last_backup": self.last_backup.isoformat() if self.last_backup else None,
            "problem": self.problem,
            "creates_format": self.creates_format,
            "creates_encrypted": self.creates_encrypted,
        }


def _place(location: Location) -> dict[str, Any]:
    return {"backend": location.backend_name, "where": location.where, "endpoint": location.endpoint}


def describe(
    location: Location, repo: Repository, points: list[PointInfo], damaged: list[DamagedManifest]
) -> RepositoryInfo:
    rc = location.rc
    return RepositoryInfo(
        name=rc.name,
        path=rc.path,
        default=rc.default,
        state="ok",
        **_place(location),
        version=repo.version,
        chunk_size=repo.chunk_size,
        pack_size=repo.config.get("pack_size"),
        compression=repo.compressor.describe(),
        encrypted=repo.encrypted,
        key_slots=slots_of(repo.root, repo.config) if repo.encrypted else (),
        size_bytes=location.size(),
        points=len(points),
        damaged_points=len(damaged),
        last_backup=max((p.summary.time for p in points), default=None),
    )


def slots_of(root: Path, config: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    return tuple(slot.to_dict() for slot in keys.list_slots(root, config["id"]))


def locked(location: Location, problem: str) -> RepositoryInfo | None:
    """An encrypted repository that could not be opened (no passphrase, a wrong one): what its
    config.json and key files say, without its points; None when it is not encrypted."""
    rc = location.rc
    try:
        config = location.read_config()  # a bucket's own, not this machine's copy (which may outlive it)
    except RepositoryError:
        return None
    if not config.get("encryption"):
        return None
    return RepositoryInfo(
        name=rc.name, path=rc.path, default=rc.default, state="locked", version=config["version"],
        chunk_size=config["chunk_size"], pack_size=config.get("pack_size"), encrypted=True,
        key_slots=slots_of(rc.path, config), size_bytes=_size_or_zero(location), problem=problem, **_place(location),
    )  # fmt: skip


def _size_or_zero(location: Location) -> int:
    try:
        return location.size()
    except RepositoryError:  # the storage said why it could not be opened already
        return 0


def absent(location: Location) -> RepositoryInfo:
    rc = location.rc
    return RepositoryInfo(
        name=rc.name, path=rc.path, default=rc.default, state="absent", creates_format=rc.format,
        creates_encrypted=rc.passphrase.configured, **_place(location),
    )  # fmt: skip


def damaged(location: Location, problem: str, state: str = "damaged") -> RepositoryInfo:
    rc = location.rc
    return RepositoryInfo(name=rc.name, path=rc.path, default=rc.default, state=state, problem=problem, **_place(location))


def list_infos(
    configs: list[RepositoryConfig],
    open_repository: Callable[[str], Repository | None],
    points_of: Callable[[Repository], tuple[list[PointInfo], list[DamagedManifest]]],
    locate: Callable[[str], Location],
) -> list[RepositoryInfo]:
    out: list[RepositoryInfo] = []
    for rc in configs:
        location = locate(rc.name)
        try:
            repo = open_repository(rc.name)
            if repo is None:
                out.append(absent(location))
                continue
            points, bad = points_of(repo)
            out.append(describe(location, repo, points, bad))
        except BackendError as err:  # the storage did not answer or refused: said, so the others are listed
            out.append(damaged(location, str(err), state="unreachable"))
        except RepositoryError as err:  # damaged or locked: said, not raised, so the others are listed
            out.append(locked(location, str(err)) or damaged(location, str(err)))
    return out


def init(
    location: Location, guard: SafetyGuard, version: int, pack_size_mib: int, passphrase: str | None = None
) -> Repository:
    """Create the repository ``rc`` names, in format ``version`` (``passphrase``: encrypted,
    format 2); refused read-only, audit-logged (never the passphrase)."""
    rc = location.rc
    encrypted = passphrase is not None
    version = 2 if encrypted else version
    args = {"repository": rc.name, "path": location.where, "format": version, "pack_size_mib": pack_size_mib, "encrypted": encrypted}
    target = f"repository:{rc.name}"
    reason = guard.read_only_reason()
    if reason is not None:
        guard.audit_record("repo.init", target, None, args, "refused", f"read-only: {reason}")
        raise ReadOnlyError(f"repo init refused: {reason}")
    try:
        if location.exists():
            existing = location.read_config()
            raise RepositoryError(
                f"repository {rc.name!r} at {location.where} already exists (format {existing.get('version')}); nothing changed"
            )
        location.check_missing()  # points or chunks without a config: repair it, do not re-create it
        repo = location.open(True, version, pack_size_mib, (lambda: passphrase) if passphrase is not None else None, encrypted)
    except RepositoryError as err:
        guard.audit_record("repo.init", target, None, args, "failed", str(err))
        raise
    guard.audit_record("repo.init", target, None, args, "ok", None)
    return repo
