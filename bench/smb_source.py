"""The SMB3 side of bench/engine.py (``--tools hvtui,hvtui-smb``): a real Samba smbd on 127.0.0.1
(tests/samba_support.py: SMB3 only, signing and AES encryption required) serves the data set, and
hvtui's full and 1 % incremental backups read the VHDX through ``hvtui.hosts.smb`` (read-ahead,
the RemoteFiles a WinRM host's backup uses) instead of the local file, parsing its BAT through the
same reader.  The bytes that crossed SMB are counted and reported beside the engine's own figures.

Samba needs Debian's ``samba`` package (``.ci/run`` installs it); without ``smbd`` the tool is
named as not measured, like a missing peer.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV = "HVTUI_BENCH_SMB"  # JSON: the server the _hvtui subprocess reads from
HOST_PATH = "D:\\{name}"  # the disk as a Hyper-V host would name it; D:\ is the share


def available() -> str | None:
    """None when smbd can run here, else the line saying why the SMB figures are missing."""
    if shutil.which("smbd") or shutil.which("smbd", path="/usr/sbin:/usr/bin:/sbin"):
        return None
    return "hvtui-smb: smbd not installed, not measured (install: apt-get install samba)"


@contextlib.contextmanager
def serving(data_dir: Path, disk_name: str) -> Iterator[dict[str, Any]]:
    """A running smbd whose share holds the data set's disk (a hard link: the bench's changes
    show through); yields the settings the _hvtui subprocess gets in ``ENV``."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from samba_support import start_samba

    server = start_samba(encrypt=True)
    try:
        target = server.folder / disk_name
        try:
            os.link(data_dir / disk_name, target)
        except OSError:  # another file system: a copy would not see the bench's changes
            raise SystemExit(f"hvtui-smb: {server.folder} must be on the file system of {data_dir} (use --workdir /tmp/...)") from None
        yield {"host": server.host, "port": server.port, "unc": server.unc(), "username": server.username,
               "password": server.password}  # fmt: skip
    finally:
        server.close()


class Counted(io.RawIOBase):
    """A reader that counts what it returns (the bytes that crossed SMB)."""

    def __init__(self, inner: BinaryIO, counter: list[int], lock: threading.Lock) -> None:
        self._inner, self._counter, self._lock = inner, counter, lock

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()

    def readinto(self, buffer: Any) -> int:
        n = self._inner.readinto(buffer)  # straight into the engine's buffer: no copy of our own
        with self._lock:
            self._counter[0] += n
        return n

    def close(self) -> None:
        self._inner.close()
        super().close()


def remote_opener(disk_name: str) -> tuple[Callable[[], BinaryIO], list[int], Callable[[], None]] | None:
    """In the _hvtui subprocess: (open the disk over SMB, bytes read so far, close) when ``ENV``
    is set, else None (read the local file)."""
    raw = os.environ.get(ENV)
    if not raw:
        return None
    sys.path.insert(0, str(REPO_ROOT))
    from hvtui.config import SmbSettings
    from hvtui.hosts.smb import open_remote_files

    settings = json.loads(raw)
    tuning = {"read_ahead": settings["read_ahead"]} if settings.get("read_ahead") else {}
    smb = SmbSettings(shares=(("D:\\", settings["unc"]),), port=settings["port"], encrypt=True, timeout=30.0, **tuning)
    files = open_remote_files("bench", settings["host"], smb, settings["username"], lambda: settings["password"])
    counter, lock = [0], threading.Lock()
    path = HOST_PATH.format(name=disk_name)

    def opener() -> BinaryIO:
        return io.BufferedReader(Counted(files.open_read(path), counter, lock), buffer_size=64 * 1024)  # type: ignore[return-value]

    return opener, counter, files.close
