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
import statistics
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
    lanes = {"connections": settings["connections"]} if settings.get("connections") else {}
    files = open_remote_files("bench", settings["host"], smb, settings["username"], lambda: settings["password"], **lanes)
    counter, lock = [0], threading.Lock()
    path = HOST_PATH.format(name=disk_name)

    def opener() -> BinaryIO:
        return Counted(files.open_read(path), counter, lock)  # type: ignore[return-value] - as a WinRM host's backup reads

    return opener, counter, files.close


# -- the throughput target: SMB full backup >= 60 % of the local file's ------------------------
TARGET = 0.6


def paired_fulls(local: Any, smb: Any, pairs: int, say: Callable[[str], None] = print) -> list[tuple[Any, Any]]:
    """``pairs`` full backups of each tool (bench/engine.py's ``Tool``: ``fresh``, ``full``, ``name``)
    into a fresh repository, back to back, the order alternating (local first, then SMB first, ...).

    The load of a shared machine drifts over minutes (local fulls measured 3.6-7.4 s in one run):
    two runs back to back share it, so the ratio within each pair is what can be compared."""
    out = []
    for pair in range(pairs):
        order = (local, smb) if pair % 2 == 0 else (smb, local)
        runs = {}
        for tool in order:
            say(f"  pair {pair + 1}/{pairs}: {tool.name} full ...")
            tool.fresh()
            runs[tool.name] = tool.full()
        out.append((runs[local.name], runs[smb.name]))
    return out


def pair_report(pairs: list[tuple[Any, Any]], data_bytes: int) -> list[str]:
    """The lines saying both medians, the per-pair ratios and whether the target is met."""
    if not pairs:
        return []
    local = [run.seconds for run, _ in pairs]
    smb = [run.seconds for _, run in pairs]
    ratios = sorted(mine / theirs for mine, theirs in zip(local, smb, strict=True))
    share = statistics.median(ratios)
    mb = data_bytes / 1e6
    return [
        f"SMB3 vs local full backup, {len(pairs)} interleaved pairs (order alternating; medians):",
        f"  local file  {statistics.median(local):6.2f} s  {mb / statistics.median(local):5.0f} MB/s of data "
        f"(runs {min(local):.2f}-{max(local):.2f} s)",
        f"  SMB3        {statistics.median(smb):6.2f} s  {mb / statistics.median(smb):5.0f} MB/s of data "
        f"(runs {min(smb):.2f}-{max(smb):.2f} s); peak RSS {max(run.rss_mb for _, run in pairs):.0f} MB (target < 300 MB)",
        f"  SMB throughput = {share * 100:.1f} % of the local file's (median of the pairs' ratios; pairs "
        f"{ratios[0] * 100:.0f}-{ratios[-1] * 100:.0f} %; ratio of the medians "
        f"{statistics.median(local) / statistics.median(smb) * 100:.0f} %); target >= {TARGET * 100:.0f} %: "
        f"{'met' if share >= TARGET else 'NOT met'}",
        f"  CPU per full backup (user + system, all threads; medians): local {statistics.median(run.cpu_s for run, _ in pairs):.2f} s, "
        f"SMB3 client {statistics.median(run.cpu_s for _, run in pairs):.2f} s (smbd not counted)",
    ]
