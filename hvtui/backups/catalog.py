"""What each repository is (``hvtui repo list|info``): backend, format, encryption, size,
points and last backup, read through the same listing the console uses."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hvtui.backups.guard import SafetyGuard
from hvtui.backups.points import DamagedManifest, PointInfo
from hvtui.config import RepositoryConfig
from hvtui.engine import keys
from hvtui.engine.compression import Compressor
from hvtui.engine.repository import Repository
from hvtui.errors import ReadOnlyError, RepositoryError


@dataclass(frozen=True, slots=True)
class RepositoryInfo:
    name: str
    path: Path
    default: bool
    state: str  # "ok", "absent" (nothing backed up there yet), "locked" (encrypted, not opened) or "damaged"
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "default": self.default,
            "state": self.state,
            "backend": self.backend,
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
        }


def folder_size(path: Path) -> int:
    """Bytes allocated under ``path`` (links not followed)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def describe(rc: RepositoryConfig, repo: Repository, points: list[PointInfo], damaged: list[DamagedManifest]) -> RepositoryInfo:
    return RepositoryInfo(
        name=rc.name,
        path=rc.path,
        default=rc.default,
        state="ok",
        version=repo.version,
        chunk_size=repo.chunk_size,
        pack_size=repo.config.get("pack_size"),
        compression=repo.compressor.describe(),
        encrypted=repo.encrypted,
        key_slots=slots_of(repo.root, repo.config) if repo.encrypted else (),
        size_bytes=folder_size(repo.root),
        points=len(points),
        damaged_points=len(damaged),
        last_backup=max((p.summary.time for p in points), default=None),
    )


def slots_of(root: Path, config: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    return tuple(slot.to_dict() for slot in keys.list_slots(root, config["id"]))


def locked(rc: RepositoryConfig, problem: str) -> RepositoryInfo | None:
    """An encrypted repository that could not be opened (no passphrase, a wrong one): what its
    config.json and key files say, without its points; None when it is not encrypted."""
    try:
        config = Repository.read_config(rc.path)
    except RepositoryError:
        return None
    if not config.get("encryption"):
        return None
    return RepositoryInfo(
        name=rc.name, path=rc.path, default=rc.default, state="locked", version=config["version"],
        chunk_size=config["chunk_size"], pack_size=config.get("pack_size"), encrypted=True,
        key_slots=slots_of(rc.path, config), size_bytes=folder_size(rc.path), problem=problem,
    )  # fmt: skip


def absent(rc: RepositoryConfig) -> RepositoryInfo:
    return RepositoryInfo(name=rc.name, path=rc.path, default=rc.default, state="absent")


def damaged(rc: RepositoryConfig, problem: str) -> RepositoryInfo:
    return RepositoryInfo(name=rc.name, path=rc.path, default=rc.default, state="damaged", problem=problem)


def list_infos(
    configs: list[RepositoryConfig],
    open_repository: Callable[[str], Repository | None],
    points_of: Callable[[Repository], tuple[list[PointInfo], list[DamagedManifest]]],
) -> list[RepositoryInfo]:
    out: list[RepositoryInfo] = []
    for rc in configs:
        try:
            repo = open_repository(rc.name)
            if repo is None:
                out.append(absent(rc))
                continue
            points, bad = points_of(repo)
        except RepositoryError as err:  # damaged or locked: said, not raised, so the others are listed
            out.append(locked(rc, str(err)) or damaged(rc, str(err)))
            continue
        out.append(describe(rc, repo, points, bad))
    return out


def init(
    rc: RepositoryConfig, guard: SafetyGuard, version: int, pack_size_mib: int, passphrase: str | None = None
) -> Repository:
    """Create the repository ``rc`` names, in format ``version`` (``passphrase``: encrypted,
    format 2); refused read-only, audit-logged (never the passphrase)."""
    encrypted = passphrase is not None
    version = 2 if encrypted else version
    args = {"repository": rc.name, "path": str(rc.path), "format": version, "pack_size_mib": pack_size_mib, "encrypted": encrypted}
    target = f"repository:{rc.name}"
    reason = guard.read_only_reason()
    if reason is not None:
        guard.audit_record("repo.init", target, None, args, "refused", f"read-only: {reason}")
        raise ReadOnlyError(f"repo init refused: {reason}")
    try:
        if Repository.exists(rc.path):
            existing = Repository.read_config(rc.path)
            raise RepositoryError(
                f"repository {rc.name!r} at {rc.path} already exists (format {existing.get('version')}); nothing changed"
            )
        Repository.check_missing(rc.path)  # points or chunks without a config: repair it, do not re-create it
        repo = Repository.open(
            rc.path, name=rc.name, create=True, version=version, pack_size=pack_size_mib * 1024 * 1024,
            passphrase=(lambda: passphrase) if passphrase is not None else None, encrypt=encrypted,
            compressor=Compressor(rc.compression, rc.zstd_level),
        )  # fmt: skip
    except RepositoryError as err:
        guard.audit_record("repo.init", target, None, args, "failed", str(err))
        raise
    guard.audit_record("repo.init", target, None, args, "ok", None)
    return repo
