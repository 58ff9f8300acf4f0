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
               "password": server.password, "pid": server.process.pid if server.process else 0}  # fmt: skip
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

    def read_view(self, size: int) -> memoryview:
        view = self._inner.read_view(size)  # lent, as the backup pipeline takes it from the SMB reader
        with self._lock:
            self._counter[0] += len(view)
        return view

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
QUIET = 0.05  # a run is disturbed when other processes (or the hypervisor) took more than this share of the cores


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, stolen): CPU seconds this machine's cores have run anything so far, and those the
    hypervisor gave to other machines (/proc/stat; guest time is already in user time)."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in stat.readline().split()[1:9])
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds process ``root`` and its descendants have used so far (the children that ended
    and were waited for are in their parent's own count)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended meanwhile
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = sum(int(f) for f in fields[11:15])
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(times.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


def _measured(tool: Any, server_pid: int) -> Any:
    """``tool.full()``, with what smbd and everything else on the machine used meanwhile."""
    busy, stolen = machine_cpu_seconds()
    served = tree_cpu_seconds(server_pid) if server_pid else 0.0
    run = tool.full()
    busy_after, stolen_after = machine_cpu_seconds()
    run.server_cpu_s = (tree_cpu_seconds(server_pid) - served) if server_pid else 0.0
    others = max(0.0, busy_after - busy - run.cpu_s - run.server_cpu_s) + (stolen_after - stolen)
    run.disturbed = others / (run.seconds * (os.cpu_count() or 1))  # the share of the cores taken by others
    return run


def paired_fulls(
    local: Any, smb: Any, pairs: int, say: Callable[[str], None] = print, server_pid: int = 0
) -> list[tuple[Any, Any]]:
    """``pairs`` full backups of each tool (bench/engine.py's ``Tool``: ``fresh``, ``full``, ``name``)
    into a fresh repository, back to back, the order alternating (local first, then SMB first, ...).

    The load of a shared machine drifts over minutes (local fulls measured 3.6-7.4 s in one run):
    two runs back to back share it, so the ratio within each pair is what can be compared.  Each
    run also records smbd's CPU (``server_pid``'s process tree) and the share of the cores other
    processes and the hypervisor took meanwhile (``disturbed``)."""
    out = []
    for pair in range(pairs):
        order = (local, smb) if pair % 2 == 0 else (smb, local)
        runs = {}
        for tool in order:
            say(f"  pair {pair + 1}/{pairs}: {tool.name} full ...")
            tool.fresh()
            runs[tool.name] = _measured(tool, server_pid)
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
        *_cpu_lines(pairs),
    ]


def _cpu_lines(pairs: list[tuple[Any, Any]]) -> list[str]:
    """What each side cost the machine's cores, the share that cost allows, and how quiet the machine was."""
    local_cpu = statistics.median(run.cpu_s for run, _ in pairs)
    client_cpu = statistics.median(run.cpu_s for _, run in pairs)
    server_cpu = statistics.median(run.server_cpu_s for _, run in pairs)
    local_use = statistics.median(run.cpu_s / run.seconds for run, _ in pairs)
    smb_use = statistics.median((run.cpu_s + run.server_cpu_s) / run.seconds for _, run in pairs)
    cores = os.cpu_count() or 1
    disturbed = [max(a.disturbed, b.disturbed) for a, b in pairs]
    quiet = sorted(a.seconds / b.seconds for (a, b), d in zip(pairs, disturbed, strict=True) if d <= QUIET)
    lines = [
        f"  CPU per full backup (user + system, all threads; medians): local {local_cpu:.2f} s, SMB3 client "
        f"{client_cpu:.2f} s + smbd {server_cpu:.2f} s = {client_cpu + server_cpu:.2f} s on the same {cores} cores",
        f"  cores busy: local {local_use / cores * 100:.0f} %, SMB3 {smb_use / cores * 100:.0f} %; with the SMB3 side "
        f"keeping them as busy as the local one, its share would be {local_cpu / (client_cpu + server_cpu) * 100:.0f} %",
        f"  other processes and the hypervisor took {statistics.median(disturbed) * 100:.1f} % of the cores in the median "
        f"pair (most {max(disturbed) * 100:.1f} %); {len(quiet)} of {len(pairs)} pairs ran with <= {QUIET * 100:.0f} %",
    ]
    if quiet and len(quiet) < len(pairs):
        lines.append(f"  the quiet pairs alone: SMB throughput = {statistics.median(quiet) * 100:.1f} % of the local file's "
                     f"(pairs {quiet[0] * 100:.0f}-{quiet[-1] * 100:.0f} %)")  # fmt: skip
    return lines
