"""Bulk file access to a host's own filesystem, by host path (``D:\\VMs\\sql01\\sql01.vhdx``).

A WinRM host's VM files are read and written through this interface (SMB3, ``hosts/smb/``),
never over WinRM: the wire contract's backup and restore operations only drive Hyper-V.
The interface is small so that the backup/restore code of a host kind does not depend on how
the bytes travel.

Errors are ``HostError``s naming the host and the path, with ``kind`` one of:
``smb-path`` (the path is outside every mapped share), ``smb-auth`` (credentials refused),
``smb-share`` (a mapped share does not exist or cannot be reached), ``smb-encryption`` (the
server cannot encrypt and the config demands it), ``smb-lost`` (the session or share went away
and could not be re-established), ``not-found`` (no such file), ``not-empty`` (a folder to remove
still holds something), ``failed`` (anything else).
"""

from __future__ import annotations

from typing import BinaryIO, Protocol


class RemoteFiles(Protocol):
    """Files on one host, addressed by the host's own paths."""

    def open_read(self, host_path: str) -> BinaryIO:
        """A seekable binary reader (``read``, ``seek``, ``tell``, ``close``; context manager).

        Implementations may read ahead with several outstanding requests; ``read(n)`` returns
        fewer than ``n`` bytes only at the end of the file."""
        ...

    def open_write(self, host_path: str) -> BinaryIO:
        """A binary writer that creates or truncates the file (``write``, ``seek``, ``close``)."""
        ...

    def size(self, host_path: str) -> int:
        """The file's size in bytes."""
        ...

    def makedirs(self, host_path: str) -> None:
        """Create a folder and its parents (no error when it exists)."""
        ...

    def remove(self, host_path: str) -> None:
        """Delete a file (no error when it is already gone)."""
        ...

    def remove_folder(self, host_path: str) -> None:
        """Delete an empty folder (no error when it is already gone).  A folder that still holds
        something stays: ``HostError(kind="not-empty")`` whose detail names what it holds."""
        ...

    def close(self) -> None:
        """Release every connection this object holds."""
        ...
