"""A repository's objects as files under a folder (the local-disk backend)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from hvtui.engine.backends.base import (
    Backend,
    BackendError,
    ObjectExists,
    ObjectInfo,
    ObjectMissing,
    Payload,
    check_key,
)

_COPY_BUFFER = 4 * 1024 * 1024


class LocalBackend(Backend):
    """Objects are files: ``<root>/<key>``. Writes go to a temporary file in ``<root>/tmp``,
    are fsynced, then renamed (``put``) or hard-linked (``put_if_absent``: ``link`` fails when
    the name exists, atomically, even between processes and over NFS)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.where = str(self.root)
        if not self.root.is_dir():
            raise BackendError(self.where, "the repository folder does not exist", kind="bucket")
        self._tmp = self.root / "tmp"

    def _path(self, key: str) -> Path:
        return self.root / check_key(self.where, key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # Walk only the folder the prefix names, not the whole tree.
        folder, _, _ = prefix.rpartition("/")
        start = self.root / folder if folder else self.root
        if not start.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(start):
            if Path(dirpath) == self.root:
                dirnames[:] = [d for d in dirnames if d != "tmp"]
            for name in filenames:
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    with contextlib.suppress(FileNotFoundError):  # deleted while listing
                        yield ObjectInfo(key, full.stat().st_size)

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                f.seek(offset)
                return f.read() if length is None else f.read(length)
        except FileNotFoundError:
            raise ObjectMissing(self.where, key) from None
        except OSError as err:
            raise BackendError(self.where, f"cannot read {key}: {err.strerror or err}") from None

    def _stage(self, data: Payload) -> Path:
        self._tmp.mkdir(exist_ok=True)
        tmp = self._tmp / f"{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp, "xb") as out:
                if isinstance(data, bytes | bytearray | memoryview):
                    out.write(data)
                else:
                    shutil.copyfileobj(data, out, _COPY_BUFFER)
                out.flush()
                os.fsync(out.fileno())
        except OSError as err:
            tmp.unlink(missing_ok=True)
            kind = "quota" if err.errno in (errno.ENOSPC, errno.EDQUOT) else "failed"
            raise BackendError(self.where, f"cannot write: {err.strerror or err}", kind=kind) from None
        return tmp

    def put(self, key: str, data: Payload) -> None:
        path = self._path(key)
        tmp = self._stage(data)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)

    def put_if_absent(self, key: str, data: Payload) -> None:
        path = self._path(key)
        tmp = self._stage(data)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.link(tmp, path)
        except FileExistsError:
            raise ObjectExists(self.where, key) from None
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            return ObjectInfo(key, self._path(key).stat().st_size)
        except FileNotFoundError:
            return None


def _fsync_dir(folder: Path) -> None:
    """Make a rename or link durable (the directory entry, not just the data)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
