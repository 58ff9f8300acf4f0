"""What a repository directory holds, judged without trusting it: its folders, the names
hvtui gives its own files, and whether a folder without a usable ``config.json`` is empty,
a repository whose creation was interrupted, a damaged repository, or someone else's data.

Every deletion hvtui makes inside a repository goes through a naming rule here, and every
folder it deletes in must be a real directory (``require_real_dir``): a ``tmp`` or ``locks``
that is a symbolic link would otherwise lead the clean-up to files elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path

from hvtui.engine.errors import RepositoryDamaged
from hvtui.engine.fsutil import atomic_write_json
from hvtui.errors import RepositoryError
from hvtui.files import fsync_dir

SUBDIRS = ("chunks", "points", "verified", "locks", "tmp")
PACK_SUBDIRS = ("packs", "index")  # format 2 only (packfile.py, packindex.py)
KEYS_SUBDIR = "keys"  # an encrypted repository's key slots (keys.py)
_KEY_FILE = re.compile(r"[0-9a-f]{16}\.json")
IGNORED = frozenset({"lost+found"})  # a filesystem's own folder at the top of a mounted disk
LOCK_FILE = "repo.lock"

_HEX64 = re.compile(r"[0-9a-f]{64}")
_LOCK_RECORD = re.compile(r"[0-9a-f]{16}\.json")
# tmp/<64 hex>.<lock id>.<8 hex>.tmp: a chunk object being written (store.write_tmp)
_CHUNK_TMP = re.compile(r"[0-9a-f]{64}\.[0-9a-f]{16}\.[0-9a-f]{8}\.tmp")
# tmp/.<name>.<pid>.<thread id>.tmp: a manifest, lock record or verification record being
# written (files.atomic_write with tmp_dir=tmp/)
_ATOMIC_TMP = re.compile(r"\.(?:[0-9A-Za-z_-]+\.)+json\.\d+\.\d+\.tmp")
# tmp/config.<32 hex>.json (and its own atomic temporary file): a config.json being created
_CONFIG_TMP = re.compile(r"\.?config\.[0-9a-f]{32}\.json(?:\.\d+\.\d+\.tmp)?")


class RepositoryNeedsRepair(RepositoryDamaged):
    """The folder holds restore points or chunks but no usable ``config.json``.

    Nothing is lost: ``hvtui repair-repository`` rebuilds the config from what is there.
    ``problem`` says what is wrong with the config ("is missing", "cannot be read", ...).
    """

    def __init__(self, message: str, problem: str = "is missing") -> None:
        super().__init__(message)
        self.problem = problem


def is_own_tmp_name(name: str) -> bool:
    """A name hvtui gives its temporary files in ``tmp/``: the only ones it ever deletes there."""
    return bool(_CHUNK_TMP.fullmatch(name) or _ATOMIC_TMP.fullmatch(name) or _CONFIG_TMP.fullmatch(name))


def is_config_tmp_name(name: str) -> bool:
    return bool(_CONFIG_TMP.fullmatch(name))


def is_lock_record_name(name: str) -> bool:
    """``<16 hex>.json``: a lock record (locks.RepositoryLock), the only ``*.json`` deleted in ``locks/``."""
    return bool(_LOCK_RECORD.fullmatch(name))


def require_real_dir(path: Path) -> None:
    """Refuse a repository folder that is a symbolic link or not a directory.

    hvtui deletes its own leftovers in ``tmp/``, ``locks/`` and ``chunks/``; followed through
    a link, that clean-up would reach files that are not the repository's.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise RepositoryError(f"repository folder {path} is missing") from None
    except OSError as err:
        raise RepositoryError(f"cannot examine repository folder {path}: {err.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        raise RepositoryError(
            f"{path} is a symbolic link (to {target}), not a directory: hvtui cleans up its own files in this "
            "folder and will not follow a link out of the repository; replace the link with a real directory"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise RepositoryError(f"{path} is not a directory; the repository's layout is damaged")


def make_private_dir(path: Path) -> None:
    """Create ``path`` owner-only (0700, whatever the umask), as chunk folders are: the
    repository holds VM disks.  A folder that exists already is left as it is."""
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        return
    os.chmod(path, 0o700)  # the umask may have taken owner bits away too


def regular_file(path: Path) -> bool:
    """True for a regular file (not a link, folder or device): the only kind hvtui deletes."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


@dataclass(frozen=True, slots=True)
class FolderState:
    """What a repository folder without a usable ``config.json`` holds.

    ``kind``: ``absent`` (no folder), ``empty``, ``half-made`` (only the empty skeleton a
    creation that was interrupted leaves), ``damaged`` (restore points or chunks: data),
    ``foreign`` (anything else: not ours to touch).
    """

    kind: str
    manifests: int = 0
    chunks: int = 0
    detail: str = ""

    def describe_data(self) -> str:
        return f"{self.manifests} restore point manifest(s) and {self.chunks} chunk object(s)"


def _names(path: Path) -> list[str] | None:
    try:
        return os.listdir(path)
    except OSError:
        return None


def count_data(root: Path) -> tuple[int, int]:
    """(manifests under points/, chunk objects under chunks/<2 hex>/), counted by their names."""
    manifests = sum(1 for n in _names(root / "points") or [] if n.endswith(".json") and not n.startswith("."))
    chunks = 0
    for top in ("chunks", "packs"):  # format 1 chunk objects, format 2 packs
        chunks_dir = root / top
        for sub in _names(chunks_dir) or []:
            subdir = chunks_dir / sub
            if len(sub) != 2 or os.path.islink(subdir) or not os.path.isdir(subdir):
                continue
            chunks += sum(1 for n in _names(subdir) or [] if _HEX64.fullmatch(n) or n.endswith(".bad"))
    return manifests, chunks


def inspect_folder(root: Path) -> FolderState:
    """Judge a folder that has no usable ``config.json`` (see ``FolderState``)."""
    names = _names(root)
    if names is None:
        return FolderState("absent") if not os.path.lexists(root) else FolderState("foreign", detail="unreadable")
    names = [n for n in names if n not in IGNORED and n != "config.json"]
    if not names:
        return FolderState("empty")
    manifests, chunks = count_data(root)
    if manifests or chunks:
        return FolderState("damaged", manifests, chunks)
    known = {*SUBDIRS, *PACK_SUBDIRS, KEYS_SUBDIR}
    if not set(names) <= known:
        return FolderState("foreign", detail=", ".join(sorted(set(names) - known)))
    for sub in names:
        path = root / sub
        if os.path.islink(path) or not os.path.isdir(path):
            return FolderState("foreign", detail=f"{sub} is not a directory")
        inside = _names(path) or []
        if sub == "tmp":
            allowed = all(is_config_tmp_name(n) for n in inside)
        elif sub == "locks":
            allowed = all(n == LOCK_FILE for n in inside)
        elif sub == KEYS_SUBDIR:  # the first key slot is written before config.json
            allowed = all(_KEY_FILE.fullmatch(n) for n in inside)
        else:
            allowed = not inside
        if not allowed:
            return FolderState("foreign", detail=f"{sub}/ holds files hvtui did not put there")
    return FolderState("half-made")


def publish_config(root: Path, config: dict, replace: bool = False) -> None:
    """Make ``config.json`` appear in one step: written and fsynced under ``tmp/``, then linked
    into place (never over an existing one unless ``replace``).  Leftover config temporaries
    of an interrupted creation are removed first (by their names only)."""
    tmp_dir = root / "tmp"
    for name in _names(tmp_dir) or []:
        if is_config_tmp_name(name) and regular_file(tmp_dir / name):
            with contextlib.suppress(OSError):
                os.unlink(tmp_dir / name)
    tmp = tmp_dir / f"config.{uuid.uuid4().hex}.json"
    atomic_write_json(tmp, config, tmp_dir=tmp_dir)
    final = root / "config.json"
    try:
        if replace:
            os.replace(tmp, final)
        else:
            try:
                os.link(tmp, final)  # fails if another process created it first: theirs stands
            except FileExistsError:
                pass
            except OSError as err:
                if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                if not os.path.lexists(final):  # a filesystem without hard links (some shares)
                    os.rename(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(root)
