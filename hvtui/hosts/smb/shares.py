"""Host paths (``D:\\VMs\\sql01\\disk.vhdx``) -> UNC paths (``\\\\hv01\\D$\\VMs\\sql01\\disk.vhdx``).

A host's ``smb: shares:`` maps host path prefixes to UNC folders; without it the admin shares
``C$`` and ``D$`` of the host's own address are used.  The longest matching prefix wins, drive
letters and folder names compare case-insensitively (as on Windows), and a path that climbs out
of its share (``..``) or is not drive-absolute maps to nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DRIVE_PATH_RE = re.compile(r"^[A-Za-z]:\\")


def default_shares(address: str) -> tuple[tuple[str, str], ...]:
    """``C:\\`` and ``D:\\`` -> the host's admin shares."""
    return (("C:\\", f"\\\\{address}\\C$"), ("D:\\", f"\\\\{address}\\D$"))


def _normalize(path: str) -> str:
    value = path.replace("/", "\\")
    if len(value) >= 2 and value[1] == ":":
        value = value[0].upper() + value[1:]
    while value.endswith("\\") and len(value) > 3:
        value = value[:-1]
    return value


@dataclass(frozen=True, slots=True)
class Mapped:
    """Where a host path lives: ``server`` and ``share`` (``\\\\server\\share``), and the full ``unc``."""

    host_path: str
    server: str
    share: str
    unc: str

    @property
    def share_unc(self) -> str:
        return f"\\\\{self.server}\\{self.share}"


class ShareMap:
    """The host's share map; ``map(path)`` is None for a path outside every share."""

    def __init__(self, shares: tuple[tuple[str, str], ...]) -> None:
        # Longest prefix first, so D:\VMs wins over D:\ for D:\VMs\x.
        self._entries = sorted(((_normalize(prefix), unc.rstrip("\\")) for prefix, unc in shares), key=lambda e: -len(e[0]))

    @property
    def prefixes(self) -> tuple[str, ...]:
        return tuple(prefix for prefix, _unc in self._entries)

    @property
    def entries(self) -> tuple[tuple[str, str], ...]:
        """(host path prefix, UNC path) pairs, longest prefix first."""
        return tuple(self._entries)

    def map(self, host_path: str) -> Mapped | None:
        path = _normalize(host_path)
        if not _DRIVE_PATH_RE.match(path):
            return None
        parts = path[3:].split("\\") if len(path) > 3 else []
        if any(part in ("", ".", "..") for part in parts):
            return None
        folded = path.casefold()
        for prefix, unc in self._entries:
            root = prefix.casefold().rstrip("\\")
            if folded == prefix.casefold() or folded == root or folded.startswith(root + "\\"):
                rest = path[len(root) :].lstrip("\\")
                full = f"{unc}\\{rest}" if rest else unc
                server, share = unc[2:].split("\\")[:2]
                return Mapped(host_path=host_path, server=server, share=share, unc=full)
        return None
