"""Rebuild a lost or damaged ``config.json`` from what the repository holds.

The config carries little that the data does not: the chunk size (every manifest records
its own), the hash and the codec (fixed in format version 1).  The repository id is new;
nothing else refers to it.  The damaged file, if any, is kept beside as
``config.json.damaged-<UTC time>`` for inspection, never deleted.
"""

from __future__ import annotations

import collections
import os
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hvtui.engine.backends.base import Backend
from hvtui.engine.layout import (
    KEYS_SUBDIR,
    PACK_SUBDIRS,
    SUBDIRS,
    RepositoryNeedsRepair,
    count_data,
    inspect_folder,
    make_private_dir,
    publish_config,
)
from hvtui.engine.locks import creation_lock
from hvtui.engine.manifest import Manifest, ManifestError
from hvtui.engine.repo_config import DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, new_config
from hvtui.engine.repository import Repository
from hvtui.engine.store import HEADER, MAGIC, disk_error
from hvtui.errors import RepositoryError


@dataclass(frozen=True, slots=True)
class ConfigRepairPlan:
    """What ``repair_config`` will write, worked out without changing anything."""

    root: Path
    problem: str  # what is wrong with config.json now
    manifests: int  # readable manifests found
    damaged_manifests: int
    chunks: int
    chunk_size: int
    chunk_size_source: str
    created: datetime | None  # the oldest point's time, kept as the repository's creation time
    version: int = 1  # 2 when the folder holds packs or index files (format 2)

    def describe(self) -> str:
        """One sentence saying exactly what the repair does."""
        keep = " (the damaged file is kept as config.json.damaged-<time>)" if self.problem != "is missing" else ""
        return (
            f"write a new config.json for the repository at {self.root}{keep}: chunk size "
            f"{self.chunk_size // 1024} KiB ({self.chunk_size_source}), SHA-256, lz4"
            f"{', format 2 (it holds packs), pack size 32 MiB' if self.version >= 2 else ''}; it holds {self.manifests} "
            f"readable restore point(s), {self.damaged_manifests} damaged manifest(s) and {self.chunks} chunk "
            "object(s), none of which is changed"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "path": str(self.root),
            "problem": f"config.json {self.problem}",
            "manifests": self.manifests,
            "damaged_manifests": self.damaged_manifests,
            "chunks": self.chunks,
            "chunk_size": self.chunk_size,
            "chunk_size_source": self.chunk_size_source,
            "version": self.version,
        }


def _names(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def config_problem(root: Path) -> str | None:
    """What is wrong with ``config.json`` (None: it is fine)."""
    if not os.path.lexists(root / "config.json"):
        return "is missing"
    try:
        Repository.read_config(root)
    except RepositoryNeedsRepair as err:
        return err.problem
    except RepositoryError as err:
        return f"is unusable ({err})"
    return None


def plan_config_repair(root: Path, backend: Backend | None = None) -> ConfigRepairPlan:
    """Work out the repair; ``RepositoryError`` when there is nothing hvtui may repair (and for
    a repository in a bucket, ``backend``: its key slots are bound to the lost config's id)."""
    if backend is not None:
        raise RepositoryError(
            f"hvtui cannot rebuild config.json of a repository on object storage ({backend.where}): its key slots "
            "are bound to the lost repository id; put back the copy of config.json from the working folder of a "
            "machine that used it"
        )
    root = Path(root).expanduser()
    problem = config_problem(root)
    if problem is None:
        raise RepositoryError(f"the repository at {root} is not damaged: its config.json is fine, nothing to repair")
    state = inspect_folder(root)
    if state.kind != "damaged":
        raise RepositoryError(
            f"nothing to repair at {root}: it holds no restore points or chunks "
            "(the next backup creates the repository there)"
        )
    if any(n.endswith(".json") for n in _names(root / KEYS_SUBDIR) or []):
        # The repository id, the keyed chunk ids and the encryption live only in config.json
        # and the sealed objects: a rebuilt plain config would make every point unreadable.
        raise RepositoryError(
            f"the repository at {root} is encrypted (it holds key files under keys/): its config.json cannot be "
            "rebuilt by repair-repository; put back a copy of config.json (it holds no secret)"
        )
    sizes: collections.Counter[int] = collections.Counter()
    oldest: datetime | None = None
    damaged = 0
    for name in sorted(os.listdir(root / "points")):
        if not name.endswith(".json") or name.startswith("."):
            continue
        try:
            manifest = Manifest.from_bytes((root / "points" / name).read_bytes(), name[:-5])
        except (OSError, ManifestError):
            damaged += 1
            continue
        sizes[manifest.chunk_size] += 1
        oldest = manifest.time if oldest is None else min(oldest, manifest.time)
    valid = [(count, size) for size, count in sizes.items() if MIN_CHUNK_SIZE <= size <= MAX_CHUNK_SIZE]
    if valid:
        chunk_size, source = max(valid)[1], "as the restore points' manifests record it"
    else:
        largest = _largest_chunk(root)
        if largest:
            chunk_size = max(MIN_CHUNK_SIZE, min(MAX_CHUNK_SIZE, 1 << (largest - 1).bit_length()))
            source = "estimated from the largest chunk object"
        else:
            chunk_size, source = DEFAULT_CHUNK_SIZE, "the default"
    manifests, chunks = count_data(root)
    version = 2 if any(_names(root / sub) for sub in PACK_SUBDIRS) else 1
    return ConfigRepairPlan(root, problem, manifests - damaged, damaged, chunks, chunk_size, source, oldest, version)


def repair_config(plan: ConfigRepairPlan) -> str | None:
    """Carry out ``plan``; return the name the damaged config.json was kept under (None if it was missing)."""
    root = plan.root
    with creation_lock(root):
        if config_problem(root) is None:
            raise RepositoryError(f"the repository at {root} was repaired meanwhile; nothing changed")
        kept: str | None = None
        try:
            if os.path.lexists(root / "config.json"):
                kept = f"config.json.damaged-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
                os.rename(root / "config.json", root / kept)
            for sub in SUBDIRS + (PACK_SUBDIRS if plan.version >= 2 else ()):
                make_private_dir(root / sub)
            publish_config(root, new_config(plan.chunk_size, plan.created, version=plan.version))
        except OSError as err:
            raise disk_error(err, f"rebuilding config.json at {root}") from err
    Repository.read_config(root)  # what was written reads back
    return kept


def _largest_chunk(root: Path) -> int:
    """The largest data length any chunk object's header records (0: none readable)."""
    largest = 0
    chunks_dir = root / "chunks"
    for sub in sorted(os.listdir(chunks_dir)) if chunks_dir.is_dir() else []:
        subdir = chunks_dir / sub
        if len(sub) != 2 or subdir.is_symlink() or not subdir.is_dir():
            continue
        for name in os.listdir(subdir):
            if len(name) != 64:
                continue
            try:
                with open(subdir / name, "rb") as fh:
                    magic, _codec, raw_len, _pay_len = HEADER.unpack(fh.read(HEADER.size))
            except (OSError, struct.error):  # a short or unreadable object says nothing
                continue
            if magic == MAGIC:
                largest = max(largest, raw_len)
    return largest
