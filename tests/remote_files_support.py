"""Test-only ``RemoteFiles``: a host's paths (``D:\\x\\y``) mapped to local folders.

It stands in for the SMB data path (``hvtui/hosts/smb``) where a test is about the restore
and not the transport.  ``share_gone_after`` drills a share that disappears mid-write: once
that many bytes were written, every call fails with ``HostError(kind="smb-lost")``, as a
session that cannot be re-established does; removes too when ``gone_for_good`` (else the clean-up
finds the share back, as after a reconnect).
"""

from __future__ import annotations

import io
from pathlib import Path, PureWindowsPath
from typing import BinaryIO

from hvtui.errors import HostError, NotFoundError


class FolderRemoteFiles:
    def __init__(self, host_name: str, drives: dict[str, Path]) -> None:
        self.host_name = host_name
        self.drives = {drive.upper().rstrip("\\"): Path(root) for drive, root in drives.items()}
        self.share_gone_after: int | None = None
        self.gone_for_good = False
        self.written = 0
        self.opened: list[str] = []
        self.removed: list[str] = []
        self.removed_folders: list[str] = []

    def local(self, host_path: str) -> Path:
        win = PureWindowsPath(host_path)
        root = self.drives.get(win.drive.upper())
        if root is None or not win.root:
            raise HostError(self.host_name, "smb", f"{host_path} is outside every mapped share", kind="smb-path")
        parts = win.parts[1:]
        if any(part in ("..", ".") for part in parts):
            raise HostError(self.host_name, "smb", f"refused path {host_path}", kind="smb-path")
        return root.joinpath(*parts)

    def _check(self, host_path: str) -> None:
        if self.share_gone_after is not None and self.written >= self.share_gone_after:
            raise HostError(self.host_name, "smb", f"the share holding {host_path} went away", kind="smb-lost")

    def open_read(self, host_path: str) -> BinaryIO:
        self._check(host_path)
        try:
            return open(self.local(host_path), "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            raise NotFoundError(self.host_name, "smb", f"no file {host_path}") from None

    def open_write(self, host_path: str) -> BinaryIO:
        self._check(host_path)
        self.opened.append(host_path)
        return _Writer(self, host_path, open(self.local(host_path), "wb"))  # noqa: SIM115

    def size(self, host_path: str) -> int:
        self._check(host_path)
        return self.local(host_path).stat().st_size

    def makedirs(self, host_path: str) -> None:
        self._check(host_path)
        self.local(host_path).mkdir(parents=True, exist_ok=True)

    def remove(self, host_path: str) -> None:
        if self.gone_for_good:
            self._check(host_path)
        self.local(host_path).unlink(missing_ok=True)
        self.removed.append(host_path)

    def remove_folder(self, host_path: str) -> None:
        if self.gone_for_good:
            self._check(host_path)
        try:
            self.local(host_path).rmdir()
        except FileNotFoundError:
            return
        except OSError as err:
            names = ", ".join(sorted(p.name for p in self.local(host_path).iterdir()))
            raise HostError(self.host_name, "smb", f"the folder {host_path} is not empty: it holds {names}", kind="not-empty") from err
        self.removed_folders.append(host_path)

    def close(self) -> None:
        return None


class _Writer(io.RawIOBase):
    """write, seek, close: what RemoteFiles promises (no truncate)."""

    def __init__(self, files: FolderRemoteFiles, host_path: str, fh: BinaryIO) -> None:
        self._files = files
        self._path = host_path
        self._fh = fh

    def writable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._files._check(self._path)
        n = self._fh.write(data)
        self._files.written += n
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()
