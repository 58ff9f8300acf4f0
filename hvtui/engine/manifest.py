"""Restore point manifests: one JSON document per point, written last, the commit point.

Every manifest is complete by itself: each file lists all its chunks (zero chunks as runs),
so restoring never replays a chain.  A ``digest`` over the canonical JSON of everything
else detects damage anywhere in the document.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import reprlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hvtui.engine.chunking import MAX_POINT_CHUNKS, chunk_count, valid_chunk_size
from hvtui.engine.errors import RepositoryDamaged
from hvtui.errors import RepositoryError

FORMAT = "hvtui-point"
VERSION = 1
MODES = ("full", "incremental", "differential")
POINT_ID_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
# A chunk id is exactly 64 lowercase hex digits; bytes.fromhex alone would accept spaces
# (64 spaces decode to an empty id, whose path is chunks/ itself).
CHUNK_ID_RE = re.compile(r"[0-9a-f]{64}")


class ManifestError(RepositoryDamaged):
    """A manifest cannot be read or does not pass its checks; ``point`` names it.

    ``reason`` is the problem alone (without the point's name), for messages that name
    the point themselves.
    """

    def __init__(self, message: str, point: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.point = point
        self.reason = reason or message


class UnsafePathError(RepositoryError):
    """A file path would escape the restore target."""


def check_rel_path(path: str) -> str:
    """Refuse anything but a plain relative path with forward slashes inside the target.

    Refused: empty, absolute (``/x``), drive letters (``C:x``), backslashes (a Windows
    separator that would hide ``..\\``), ``.``/``..``/empty components, NUL and control
    characters.  Returns the path unchanged when it is safe.
    """
    problem = None
    if not isinstance(path, str) or not path:
        problem = "empty path"
    elif path.startswith("/"):
        problem = "absolute path"
    elif _DRIVE_RE.match(path):
        problem = "drive letter"
    elif "\\" in path:
        problem = "backslash in path"
    elif any(ord(ch) < 32 for ch in path):
        problem = "control character in path"
    else:
        for part in path.split("/"):
            if part in ("", ".", ".."):
                problem = f"path component {part!r}"
                break
    if problem:
        raise UnsafePathError(f"refused unsafe file path {path!r} ({problem}): it could escape the restore target")
    return path


def check_point_id(point_id: str) -> str:
    if not isinstance(point_id, str) or not POINT_ID_RE.match(point_id):
        raise RepositoryError(f"{point_id!r} is not a restore point id (expected e.g. 20261124T120000Z-1a2b3c4d)")
    return point_id


def new_point_id(when: datetime, token: str) -> str:
    return f"{when.astimezone(UTC):%Y%m%dT%H%M%SZ}-{token[:8]}"


@dataclass(slots=True)
class FileEntry:
    path: str
    size: int
    mtime_ns: int
    identity: str
    change_id: str | None
    chunks: list[bytes | None]  # one per chunk_size slice; None = all zero (a hole on restore)

    @property
    def data_chunks(self) -> int:
        return sum(1 for c in self.chunks if c is not None)


@dataclass(slots=True)
class Manifest:
    id: str
    time: datetime
    host: str
    vm_id: str
    vm_name: str
    mode: str
    chunk_size: int
    files: list[FileEntry]
    parent: str | None = None  # the point this one was taken against (None for a full)
    vm: dict[str, Any] = field(default_factory=dict)  # identity facts: generation, version, state...
    vm_config: dict[str, Any] = field(default_factory=dict)  # enough to re-create the VM
    stats: dict[str, Any] = field(default_factory=dict)
    requested_mode: str | None = None

    @property
    def logical_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def chunk_ids(self) -> set[bytes]:
        return {c for f in self.files for c in f.chunks if c is not None}

    # -- encoding ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "id": self.id,
            "time": self.time.astimezone(UTC).isoformat(),
            "host": self.host,
            "vm_id": self.vm_id,
            "vm_name": self.vm_name,
            "mode": self.mode,
            "requested_mode": self.requested_mode or self.mode,
            "parent": self.parent,
            "chunk_size": self.chunk_size,
            "hash": "sha256",
            "vm": self.vm,
            "vm_config": self.vm_config,
            "stats": self.stats,
            "files": [
                {
                    "path": f.path,
                    "size": f.size,
                    "mtime_ns": f.mtime_ns,
                    "identity": f.identity,
                    "change_id": f.change_id,
                    "chunks": encode_chunk_list(f.chunks),
                }
                for f in self.files
            ],
        }
        body["digest"] = body_digest(body)
        return body

    def to_bytes(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=None, separators=(",", ":"), sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, name: str) -> Manifest:
        """Parse and check a manifest; ``ManifestError`` naming ``name`` and the problem."""

        def bad(problem: str) -> ManifestError:
            return ManifestError(f"restore point {name}: manifest is damaged ({problem})", name, problem)

        try:
            body = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise bad(f"not valid JSON: {err}") from None
        if not isinstance(body, dict):
            raise bad("not a JSON object")
        if body.get("format") != FORMAT:
            raise bad(f"format is {body.get('format')!r}, expected {FORMAT!r}")
        version = body.get("version")
        if not isinstance(version, int) or version > VERSION:
            problem = f"manifest version {version!r} is newer than this hvtui reads ({VERSION}): upgrade hvtui"
            raise ManifestError(f"restore point {name}: {problem}", name, problem)
        if body.get("digest") != body_digest(body):
            raise bad("checksum mismatch: the file was altered or truncated")
        try:
            chunk_size = body["chunk_size"]
            if not valid_chunk_size(chunk_size):
                raise ValueError(f"chunk_size {chunk_size!r} is not a power of two between 64 KiB and 16 MiB")
            mode = body["mode"]
            if mode not in MODES:
                raise ValueError(f"unknown mode {mode!r}")
            point_id = check_point_id(body["id"])
            if not isinstance(body["files"], list):
                raise ValueError("files is not a list")
            files = []
            positions = 0
            for raw in body["files"]:
                path = check_rel_path(raw["path"])
                size = _int(raw["size"])
                expected = chunk_count(size, chunk_size)
                positions += expected
                if positions > MAX_POINT_CHUNKS:  # checked before anything is expanded
                    raise ValueError(
                        f"{path}: {size} bytes take the point past {MAX_POINT_CHUNKS} chunks, "
                        "more than a restore point may hold"
                    )
                listed = count_chunk_list(raw["chunks"])
                if listed != expected:
                    raise ValueError(f"{path}: {listed} chunks listed for {size} bytes, expected {expected}")
                files.append(
                    FileEntry(
                        path=path,
                        size=size,
                        mtime_ns=_int(raw["mtime_ns"]),
                        identity=str(raw["identity"]),
                        change_id=None if raw["change_id"] is None else str(raw["change_id"]),
                        chunks=decode_chunk_list(raw["chunks"]),
                    )
                )
            return cls(
                id=point_id,
                time=datetime.fromisoformat(body["time"]),
                host=str(body["host"]),
                vm_id=str(body["vm_id"]),
                vm_name=str(body["vm_name"]),
                mode=mode,
                requested_mode=body.get("requested_mode"),
                chunk_size=chunk_size,
                files=files,
                parent=body.get("parent"),
                vm=dict(body.get("vm") or {}),
                vm_config=dict(body.get("vm_config") or {}),
                stats=dict(body.get("stats") or {}),
            )
        except RepositoryError as err:
            raise bad(str(err)) from None
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise bad(f"{type(err).__name__}: {err}") from None


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a non-negative integer, found {value!r}")
    return value


def body_digest(body: dict[str, Any]) -> str:
    rest = {k: v for k, v in body.items() if k != "digest"}
    canonical = json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()


def encode_chunk_list(chunks: list[bytes | None]) -> list[str | int]:
    """Hex ids, with each run of zero chunks written as one integer (the run's length)."""
    out: list[str | int] = []
    for chunk in chunks:
        if chunk is None:
            if out and isinstance(out[-1], int):
                out[-1] += 1
            else:
                out.append(1)
        else:
            out.append(chunk.hex())
    return out


def count_chunk_list(encoded: object) -> int:
    """The positions an encoded chunk list stands for, checking every entry, without expanding it."""
    if not isinstance(encoded, list):
        raise ValueError("chunk list is not a list")
    count = 0
    for item in encoded:
        if isinstance(item, int) and not isinstance(item, bool) and item > 0:
            count += item
        elif isinstance(item, str) and CHUNK_ID_RE.fullmatch(item):
            count += 1
        else:
            raise ValueError(f"bad chunk list entry {reprlib.repr(item)}")
    return count


def decode_chunk_list(encoded: list[str | int]) -> list[bytes | None]:
    """Expand an encoded chunk list; callers bound its length with ``count_chunk_list`` first."""
    count_chunk_list(encoded)
    chunks: list[bytes | None] = []
    for item in encoded:
        if isinstance(item, int):
            chunks.extend(itertools.repeat(None, item))
        else:
            chunks.append(bytes.fromhex(item))
    return chunks
