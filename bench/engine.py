"""Benchmark: hvtui's transfer engine against restic and borg on a VM-disk-like data set.

Usage::

    python bench/engine.py                      # 8 GiB virtual / 1.5 GiB data, 3 runs
    python bench/engine.py --size 2 --data 0.4  # a smaller, quicker run (GiB)
    python bench/engine.py --sweep 1,2,4        # hvtui alone, chunk sizes in MiB
    python bench/engine.py --tools hvtui-v1,hvtui  # repository format 1 (chunk files) vs 2 (packs, the default)
    python bench/engine.py --tools hvtui-v1,hvtui --points 5,20,60 --ceiling
    python bench/engine.py --tools hvtui-v2,hvtui-v2-enc  # format 2 plain vs encrypted (AES-256-GCM, HMAC ids)
                                                # also: listing points at 5/20/60 points per format,
                                                # and this machine's 2-thread read+SHA-256+lz4 ceiling
    python bench/engine.py --tools hvtui-v2-enc,hvtui-s3  # backup, restore and copy to a loopback SeaweedFS
                                                # (bench/s3_target.py) beside v2 encrypted local;
                                                # --s3-before DIR: the same with DIR's code, in the same run;
                                                # also copy with and without --read-back, the store's own
                                                # ceiling (plain boto3 PUTs of 16 MiB, 1 and 3 threads) and
                                                # restic backing up to the same SeaweedFS (its s3 backend)
    python bench/engine.py --tools hvtui,hvtui-smb --workdir /tmp/hb
                                                # the same backups read over SMB3 from a loopback
                                                # Samba share (bench/smb_source.py), beside the local ones

The data set is generated here, deterministically: one genuine dynamic VHDX (MS-VHDX, written by
``hvtui.hosts.vhdx``; 32 MiB blocks, Hyper-V's default, allocated at scattered virtual offsets),
the allocated data a mix of compressible text-like runs, random (already compressed) runs,
zeroed runs and a few repeated 4 MiB units.  The "1 % change" rewrites 1 % of the allocated
data in scattered guest writes into the virtual disk (``--change-write``, default 1 MiB), is
reported to hvtui as RCT does (virtual-disk ranges, which the engine maps to the file ranges to
read), and is reverted after each run.  hvtui's incremental prints the bytes it read beside
the bytes changed.

Every tool runs as a subprocess; its wall time and peak RSS (``ru_maxrss`` from
``os.wait4``) are recorded.  Figures are medians over ``--runs``; each is also printed as
a ratio to the best peer.  Nothing is installed: a missing peer is named with the command
that installs it, and the rest is measured.  The data is page-cached for every tool.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import multiprocessing
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

GiB = 1024**3
MiB = 1024**2
BLOCK = 32 * MiB  # Hyper-V's dynamic VHDX block size
DISK_NAME = "disk0.vhdx"
REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import s3_target  # noqa: E402 - bench/s3_target.py, beside this file
import smb_source as smb_bench  # noqa: E402 - bench/smb_source.py, beside this file


# -- data set ------------------------------------------------------------------------------
class TextSource:
    """Fast, unique, lz4-compressible bytes: random slices of a Zipf-worded text pool."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        vocab = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(2000)]
        weights = [1 / (i + 1) for i in range(len(vocab))]
        self.pool = " ".join(rng.choices(vocab, weights, k=200_000)).encode()

    def block(self, rng: random.Random, n: int) -> bytes:
        parts, got, size = [], 0, len(self.pool)
        while got < n:
            length = rng.randrange(32, 2048)
            offset = rng.randrange(0, size - length)
            parts.append(self.pool[offset : offset + length])
            got += length
        return b"".join(parts)[:n]


def random_bytes(seed: str, n: int) -> bytes:
    return hashlib.shake_128(seed.encode()).digest(n)


def generate(path: Path, virtual: int, data: int, seed: int = 2026) -> dict:
    """Write the sparse disk file; returns its description (also stored next to it)."""
    stamp = path.with_suffix(".json")
    want = {"virtual": virtual, "data": data, "seed": seed, "version": 3}  # 3: a genuine VHDX
    if path.exists() and stamp.exists():
        try:
            have = json.loads(stamp.read_text())
            if {k: have.get(k) for k in want} == want:
                return have
        except ValueError:
            pass
    rng = random.Random(seed)
    text = TextSource(seed)
    n_blocks = virtual // BLOCK
    n_alloc = max(1, min(n_blocks, data // BLOCK))
    allocated = sorted({0, 1} | set(rng.sample(range(2, n_blocks), max(0, n_alloc - 2))))[:n_alloc]
    path.parent.mkdir(parents=True, exist_ok=True)
    kinds = {"text": 0, "random": 0, "zero": 0, "repeat": 0}
    units: list[bytes] = []  # earlier 4 MiB units, some repeated later (dedup)
    sys.path.insert(0, str(REPO_ROOT))
    from hvtui.hosts.vhdx import VhdxFile, create_vhdx

    path.unlink(missing_ok=True)
    create_vhdx(path, virtual, None, block_size=BLOCK)
    with VhdxFile(path, writable=True) as disk:
        for block in allocated:
            payloads = []
            for unit in range(BLOCK // (4 * MiB)):
                offset = block * BLOCK + unit * 4 * MiB
                if units and rng.random() < 0.06:
                    payload = rng.choice(units)
                    kinds["repeat"] += len(payload)
                else:
                    parts = []
                    for sub in range(4):
                        roll = rng.random()
                        if roll < 0.48:
                            parts.append(text.block(rng, MiB))
                            kinds["text"] += MiB
                        elif roll < 0.85:
                            parts.append(random_bytes(f"{seed}-{offset}-{sub}", MiB))
                            kinds["random"] += MiB
                        else:
                            parts.append(bytes(MiB))
                            kinds["zero"] += MiB
                    payload = b"".join(parts)
                    if len(units) < 64 and rng.random() < 0.1:
                        units.append(payload)
                payloads.append(payload)
            disk.write_block(block, b"".join(payloads))
        disk.fsync()
    info = dict(want, blocks=allocated, allocated_bytes=len(allocated) * BLOCK, kinds=kinds)
    stamp.write_text(json.dumps(info, indent=1))
    return info


def apply_change(path: Path, blocks: list[int], fraction: float, write_size: int, run: int) -> list[tuple[int, bytes]]:
    """Rewrite ``fraction`` of the allocated data in scattered guest writes (virtual-disk offsets);
    returns what to revert."""
    sys.path.insert(0, str(REPO_ROOT))
    from hvtui.hosts.lab.disk import DiskChain

    rng = random.Random(1000 + run)
    total = len(blocks) * BLOCK
    n_writes = max(1, int(total * fraction) // write_size)
    undo = []
    with DiskChain.open(path, writable_top=True) as chain:
        for i in range(n_writes):
            block = rng.choice(blocks)
            offset = block * BLOCK + rng.randrange(0, BLOCK // write_size) * write_size
            undo.append((offset, chain.read(offset, write_size)))
            chain.write(offset, random_bytes(f"change-{run}-{i}", write_size))
        chain.top.fsync()
    return undo


def revert_change(path: Path, undo: list[tuple[int, bytes]]) -> None:
    sys.path.insert(0, str(REPO_ROOT))
    from hvtui.hosts.lab.disk import DiskChain

    with DiskChain.open(path, writable_top=True) as chain:
        for offset, old in reversed(undo):
            chain.write(offset, old)
        chain.top.fsync()


# -- running tools ---------------------------------------------------------------------------
@dataclass
class Run:
    seconds: float
    rss_mb: float
    output: str = ""
    cpu_s: float = 0.0  # the tool's own CPU time (user + system, all its threads)
    server_cpu_s: float = 0.0  # hvtui s3 and smb: what the loopback SeaweedFS or smbd spent meanwhile
    disturbed: float = 0.0  # smb pairs: the share of the cores other processes and the hypervisor took meanwhile


def run_tool(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> Run:
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env={**os.environ, **(env or {})}, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out.decode(errors='replace')[-2000:]}")
    return Run(seconds, usage.ru_maxrss / 1024, out.decode(errors="replace"), usage.ru_utime + usage.ru_stime)


def du(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def allocated(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_blocks * 512, st.st_size


def same_content(a: Path, b: Path) -> bool:
    """Compare two (sparse) files by their data extents, so holes cost nothing."""
    if a.stat().st_size != b.stat().st_size:
        return False
    size = a.stat().st_size
    with open(a, "rb") as fa, open(b, "rb") as fb:
        offset = 0
        while offset < size:
            try:
                start = min(os.lseek(fa.fileno(), offset, os.SEEK_DATA), os.lseek(fb.fileno(), offset, os.SEEK_DATA))
            except OSError:
                return True
            n = min(16 * MiB, size - start)
            if os.pread(fa.fileno(), n, start) != os.pread(fb.fileno(), n, start):
                return False
            offset = start + n
    return True


@dataclass
class Result:
    name: str
    full: list[Run] = field(default_factory=list)
    incr: list[Run] = field(default_factory=list)
    restore: list[Run] = field(default_factory=list)
    repo_bytes: list[int] = field(default_factory=list)
    sparse: list[bool] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)
    # hvtui only: (bytes its incremental read, bytes the guest changed, files read whole with why)
    incr_read: list[tuple[int, int, list[str]]] = field(default_factory=list)
    # hvtui only: seconds each run spent opening the repository (an encrypted one: the scrypt unwrap)
    opened: list[tuple[float, float, float]] = field(default_factory=list)
    # hvtui smb only: (bytes its full read over SMB, bytes its incremental read over SMB)
    smb_read: list[tuple[int, int]] = field(default_factory=list)
    # hvtui s3 only: copying the local encrypted repository's points into the bucket, and
    # (stored bytes sent, data bytes of the points) of each copy
    copy: list[Run] = field(default_factory=list)
    copy_bytes: list[tuple[int, int]] = field(default_factory=list)
    # hvtui s3 only: the same copy with --read-back (every pack sent read back and checked)
    copy_read_back: list[Run] = field(default_factory=list)
    copy_read_back_bytes: list[tuple[int, int]] = field(default_factory=list)
    # hvtui s3 only: the store's ceiling, plain boto3 PUTs of 16 MiB: threads -> [(MB/s, server CPU s)]
    put_ceiling: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    note: str = ""

    def med(self, runs: list[Run]) -> float:
        return statistics.median(r.seconds for r in runs) if runs else float("nan")

    @property
    def peak_rss(self) -> float:
        runs = self.full + self.incr + self.restore + self.copy + self.copy_read_back
        return max((r.rss_mb for r in runs), default=float("nan"))


class Tool:
    name = ""

    def __init__(self, work: Path, data_dir: Path) -> None:
        self.work = work
        self.data_dir = data_dir
        self.repo = work / f"repo-{self.slug}"

    @property
    def slug(self) -> str:
        return self.name.replace(" ", "-").replace(",", "").replace("(", "").replace(")", "")

    def fresh(self) -> None:
        shutil.rmtree(self.repo, ignore_errors=True)

    def full(self) -> Run:
        raise NotImplementedError

    def incremental(self) -> Run:
        raise NotImplementedError

    def restore(self, out: Path) -> Run:
        raise NotImplementedError


HVTUI_ROW = "hvtui v2 packs"  # --tools hvtui (or hvtui-v2): the format a new repository gets
HVTUI_V1_ROW = "hvtui v1 files"  # --tools hvtui-v1: format 1, one file per chunk


class Hvtui(Tool):
    def __init__(
        self,
        work: Path,
        data_dir: Path,
        chunk_mib: int = 1,
        tracking: bool = True,
        name: str = "",
        version: int = 2,  # hvtui's default repository format (engine/repo_config.DEFAULT_VERSION)
        compression: str = "lz4",
    ) -> None:
        self.chunk_mib = chunk_mib
        self.compression = compression  # "lz4" or "zstd:<level>"
        self.tracking = tracking
        self.version = version  # repository format: 1 chunk files, 2 packs with an index, "2e" encrypted packs
        self.name = name or HVTUI_ROW
        self.env: dict[str, str] | None = None  # hvtui smb: where the _hvtui subprocess reads from
        super().__init__(work, data_dir)

    def _cmd(self, *args: str) -> list[str]:
        return [sys.executable, str(Path(__file__).resolve()), "_hvtui", *args]

    def full(self) -> Run:
        return run_tool(
            self._cmd(
                "backup", str(self.repo), str(self.data_dir), "full", str(self.chunk_mib), "1", str(self.version),
                self.compression,
            ),
            self.env,
        )

    def incremental(self) -> Run:
        flag = "1" if self.tracking else "0"
        return run_tool(
            self._cmd(
                "backup", str(self.repo), str(self.data_dir), "incremental", str(self.chunk_mib), flag, str(self.version),
                self.compression,
            ),
            self.env,
        )

    def restore(self, out: Path) -> Run:
        return run_tool(self._cmd("restore", str(self.repo), str(out)), self.env)


class HvtuiS3(Hvtui):
    """Format 2 encrypted, the repository in the loopback SeaweedFS's bucket (a fresh prefix each
    run); also times copying the local encrypted repository's points into another fresh prefix."""

    def __init__(
        self, work: Path, data_dir: Path, settings: dict, copy_from: Hvtui | None, code: Path | None = None
    ) -> None:
        """``code``: another checkout of hvtui (its bench/engine.py runs the subprocesses), to
        measure a change before and after in one run on a shared, noisy machine."""
        name = "hvtui s3" if code is None else f"hvtui s3 ({code.name})"
        super().__init__(work, data_dir, 1, True, name, version="s3")  # type: ignore[arg-type]
        self.settings = settings
        self.copy_from = copy_from
        self.code = code
        self.runs = 0

    def _cmd(self, *args: str) -> list[str]:
        script = Path(__file__).resolve() if self.code is None else self.code.resolve() / "bench" / "engine.py"
        return [sys.executable, str(script), "_hvtui", *args]

    def _with_server(self, run: Callable[[], Run]) -> Run:
        return with_server_cpu(self.settings, run)

    def full(self) -> Run:
        return self._with_server(super().full)

    def restore(self, out: Path) -> Run:
        return self._with_server(lambda: super(HvtuiS3, self).restore(out))

    def fresh(self) -> None:
        super().fresh()  # this machine's state folder for the repository
        self.runs += 1
        self.prefix = f"{self.slug}-backup-{self.runs}"
        self.env = {s3_target.ENV: json.dumps({**self.settings, "prefix": self.prefix})}

    def copy(self, read_back: bool = False) -> Run:
        """Every point of ``copy_from``'s repository into a fresh prefix (a new repository);
        ``read_back``: as `hvtui copy --read-back` (every pack sent read back and checked)."""
        assert self.copy_from is not None
        how = "copy-rb" if read_back else "copy"
        self.copy_prefix = f"{self.slug}-{how}-{self.runs}"
        state = self.work / f"state-{how}-{self.slug}-{self.runs}"
        shutil.rmtree(state, ignore_errors=True)
        env = {s3_target.ENV: json.dumps({**self.settings, "prefix": self.copy_prefix})}
        args = ["copy", str(self.copy_from.repo), str(state)] + (["read-back"] if read_back else [])
        return self._with_server(lambda: run_tool(self._cmd(*args), env))


def with_server_cpu(settings: dict, run: Callable[[], Run]) -> Run:
    """``run`` with the CPU time the loopback server spent meanwhile: on a 2-core machine the
    store's work competes with the tool's, so where the time goes is part of the figure."""
    before = s3_target.server_cpu_seconds(settings["pid"])
    result = run()
    result.server_cpu_s = s3_target.server_cpu_seconds(settings["pid"]) - before
    return result


class Restic(Tool):
    name = "restic"
    env = {"RESTIC_PASSWORD": "bench", "RESTIC_CACHE_DIR": ""}

    def fresh(self) -> None:
        super().fresh()
        self.env = {"RESTIC_PASSWORD": "bench", "RESTIC_CACHE_DIR": str(self.work / "restic-cache")}
        run_tool(["restic", "init", "--repo", self.location], self.env)

    @property
    def location(self) -> str:
        return str(self.repo)

    def full(self) -> Run:
        return run_tool(["restic", "-r", self.location, "backup", DISK_NAME], self.env, cwd=self.data_dir)

    def incremental(self) -> Run:
        return run_tool(["restic", "-r", self.location, "backup", DISK_NAME], self.env, cwd=self.data_dir)

    def restore(self, out: Path) -> Run:
        cmd = ["restic", "-r", self.location, "restore", "latest", "--target", str(out)]
        if _restic_has_sparse():
            cmd.append("--sparse")
        return run_tool(cmd, self.env)


class ResticS3(Restic):
    """The peer on the same store: restic (its s3 backend) backing up into the loopback
    SeaweedFS's bucket, a fresh prefix each run; the server's CPU counted as for hvtui s3."""

    name = "restic s3"

    def __init__(self, work: Path, data_dir: Path) -> None:
        super().__init__(work, data_dir)
        self.settings: dict = {}
        self.runs = 0
        self.prefix = ""

    @property
    def location(self) -> str:
        return s3_target.restic_repository(self.settings, self.prefix)[0]

    def fresh(self) -> None:
        self.runs += 1
        self.prefix = f"{self.slug}-{self.runs}"
        cache = self.work / "restic-s3-cache"
        shutil.rmtree(cache, ignore_errors=True)
        self.env = {"RESTIC_PASSWORD": "bench", "RESTIC_CACHE_DIR": str(cache),
                    **s3_target.restic_repository(self.settings, self.prefix)[1]}  # fmt: skip
        run_tool(["restic", "init", "--repo", self.location], self.env)

    def full(self) -> Run:
        return with_server_cpu(self.settings, super().full)

    def incremental(self) -> Run:
        return with_server_cpu(self.settings, super().incremental)

    def restore(self, out: Path) -> Run:
        return with_server_cpu(self.settings, lambda: super(ResticS3, self).restore(out))


def _restic_version() -> str:
    try:
        out = subprocess.run(["restic", "version"], capture_output=True, text=True).stdout.split()
    except OSError:
        return "?"
    return out[1] if len(out) > 1 else "?"


def _restic_has_sparse() -> bool:
    try:
        out = subprocess.run(["restic", "restore", "--help"], capture_output=True, text=True).stdout
    except OSError:
        return False
    return "--sparse" in out


class Borg(Tool):
    def __init__(self, work: Path, data_dir: Path, fixed: bool) -> None:
        self.fixed = fixed
        self.name = "borg fixed 4M" if fixed else "borg buzhash"
        super().__init__(work, data_dir)
        self.env = {
            "BORG_BASE_DIR": str(work / f"borg-base-{self.slug}"),
            "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
            "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
        }
        self.archives = 0

    def fresh(self) -> None:
        super().fresh()
        shutil.rmtree(self.env["BORG_BASE_DIR"], ignore_errors=True)
        run_tool(["borg", "init", "-e", "none", str(self.repo)], self.env)
        self.archives = 0

    def _create(self) -> Run:
        self.archives += 1
        cmd = ["borg", "create", "--compression", "lz4"]
        if self.fixed:
            cmd += ["--chunker-params", "fixed,4194304", "--sparse"]
        cmd += [f"{self.repo}::a{self.archives}", DISK_NAME]
        return run_tool(cmd, self.env, cwd=self.data_dir)

    def full(self) -> Run:
        return self._create()

    def incremental(self) -> Run:
        return self._create()

    def restore(self, out: Path) -> Run:
        out.mkdir(parents=True, exist_ok=True)
        return run_tool(["borg", "extract", "--sparse", f"{self.repo}::a{self.archives}"], self.env, cwd=out)


# -- the hvtui side, run in a subprocess --------------------------------------------------------
BENCH_PASSPHRASE = "bench passphrase"


def hvtui_subcommand(argv: list[str]) -> int:
    sys.path.insert(0, str(REPO_ROOT))
    from hvtui.engine.backup import run_backup
    from hvtui.engine.compression import Compressor
    from hvtui.engine.remote_repo import open_on_backend
    from hvtui.engine.repository import Repository
    from hvtui.engine.restore import restore_to_directory

    s3_prefix = json.loads(os.environ[s3_target.ENV])["prefix"] if s3_target.ENV in os.environ else None
    if argv[0] == "backup":
        repo_path, data_dir, mode, chunk_mib, tracking, version = argv[1:7]
        codec, _, level = (argv[7] if len(argv) > 7 else "lz4").partition(":")
        encrypt = version == "2e"  # the passphrase is unwrapped (scrypt, ~0.5 s) inside the timed run
        started = time.perf_counter()
        if s3_prefix is not None:
            repo = open_on_backend(
                s3_target.backend(s3_prefix), Path(repo_path), "bench", lambda: BENCH_PASSPHRASE, create=True,
                chunk_size=int(chunk_mib) * MiB,
            )  # fmt: skip
        else:
            repo = Repository.open(
                Path(repo_path), "bench", create=True, chunk_size=int(chunk_mib) * MiB,
                version=2 if encrypt else int(version), passphrase=lambda: BENCH_PASSPHRASE, encrypt=encrypt,
                compressor=Compressor(codec, int(level or 3)),
            )  # fmt: skip
        opened = time.perf_counter() - started
        host = BenchHost(Path(data_dir), tracking=tracking == "1")
        try:
            result = run_backup(repo, host, "bench-vm", mode)
        finally:
            host.close()
        print(json.dumps({**result.to_dict(), **host.smb_figures(), "open_s": opened}))
        return 0
    if argv[0] == "restore":
        from hvtui.engine.parent import point_order

        started = time.perf_counter()
        if s3_prefix is not None:
            repo = open_on_backend(s3_target.backend(s3_prefix), Path(argv[1]), "bench", lambda: BENCH_PASSPHRASE)
        else:
            repo = Repository.open(Path(argv[1]), "bench", passphrase=lambda: BENCH_PASSPHRASE)
        opened = time.perf_counter() - started
        # The newest point, not the last id: a full and an incremental of the same second sort
        # by their random suffix (the bench then restored the full and reported a wrong restore).
        latest = max((repo.load_point(point_id) for point_id in repo.point_ids()), key=point_order).id
        result = restore_to_directory(repo, latest, Path(argv[2]))
        print(json.dumps({**result.to_dict(), "open_s": opened}))
        return 0
    if argv[0] == "copy":  # every point of a local repository into a new one in the bucket
        from hvtui.engine.copy import copy_points, plan_copy

        assert s3_prefix is not None
        started = time.perf_counter()
        source = Repository.open(Path(argv[1]), "bench", passphrase=lambda: BENCH_PASSPHRASE)
        target = open_on_backend(s3_target.backend(s3_prefix), Path(argv[2]), "offsite", lambda: BENCH_PASSPHRASE, create=True)
        opened = time.perf_counter()  # two key unlocks (scrypt, ~0.5 s each): once per copy job, whatever its size
        points, _present, _skipped = plan_copy(source, target, lambda _point: True)
        result = copy_points(source, target, points, read_back=argv[3:4] == ["read-back"])
        data = sum(f.data_chunks * p.chunk_size for p in points for f in p.files)
        print(json.dumps({"bytes_sent": result.bytes_sent, "data_bytes": data, "points": len(result.copied),
                          "arrival_check": result.arrival_check, "open_s": opened - started,
                          "copy_s": time.perf_counter() - opened}))  # fmt: skip
        return 0
    if argv[0] == "points":
        repo = Repository.open(Path(argv[1]), "bench")
        started = time.perf_counter()
        summaries, _bad = repo.point_summaries()  # what `hvtui points` lists
        print(json.dumps({"seconds": time.perf_counter() - started, "points": len(summaries)}))
        return 0
    if argv[0] == "ceiling":
        print(json.dumps(ceiling(Path(argv[1]))))
        return 0
    raise SystemExit(f"unknown internal command {argv[0]}")


def ceiling(disk: Path, threads: int = 2) -> dict:
    """What 2 threads can do at most on this data: read (page-cached), SHA-256 and lz4 every
    allocated 1 MiB chunk, with nothing else (no dedup lookup, no write)."""
    import threading

    import lz4.block

    offsets: list[int] = []
    with open(disk, "rb") as fh:
        size, offset = os.fstat(fh.fileno()).st_size, 0
        while offset < size:
            try:
                start = os.lseek(fh.fileno(), offset, os.SEEK_DATA)
                end = os.lseek(fh.fileno(), start, os.SEEK_HOLE)
            except OSError:
                break
            offsets.extend(range(start - start % MiB, end, MiB))
            offset = end
    lock = threading.Lock()
    todo = iter(offsets)

    def work() -> None:
        buf = bytearray(MiB)
        with open(disk, "rb", buffering=0) as fh:
            while True:
                with lock:
                    off = next(todo, None)
                if off is None:
                    return
                n = os.preadv(fh.fileno(), [buf], off)
                view = memoryview(buf)[:n]
                hashlib.sha256(view).digest()
                lz4.block.compress(view, store_size=False)

    started = time.perf_counter()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    seconds = time.perf_counter() - started
    return {"bytes": len(offsets) * MiB, "seconds": seconds, "mb_per_s": len(offsets) * MiB / 1e6 / seconds}


def measure_points(work: Path, data_dir: Path, counts: list[int], versions: list[int]) -> dict[int, dict[int, float]]:
    """Seconds one listing of every point takes (median of 3 processes) at each count."""
    script = [sys.executable, str(Path(__file__).resolve()), "_hvtui"]
    results: dict[int, dict[int, float]] = {}
    for version in versions:
        repo = work / f"points-v{version}"
        shutil.rmtree(repo, ignore_errors=True)
        made = 0
        for count in sorted(counts):
            print(f"  points: format {version}, {count} points ...", flush=True)
            while made < count:
                mode = "full" if made == 0 else "incremental"
                run_tool([*script, "backup", str(repo), str(data_dir), mode, "1", "1", str(version)])
                made += 1
            listings = [json.loads(run_tool([*script, "points", str(repo)]).output) for _ in range(3)]
            assert all(x["points"] == count for x in listings)
            results.setdefault(version, {})[count] = statistics.median(x["seconds"] for x in listings)
        shutil.rmtree(repo, ignore_errors=True)
    return results


def _bench_host_class():  # noqa: ANN202 - built lazily so the module imports without hvtui
    from hvtui.hosts.base import BackupSource, Host, SourceFile
    from hvtui.model import VM

    class BenchSource(BackupSource):
        def __init__(self, host: BenchHost) -> None:
            self.vm = VM(host="bench", id="bench-vm", name="bench-vm", state="Off")
            self.config = {"name": "bench-vm"}
            path = host.data_dir / DISK_NAME
            st = path.stat()
            log = host.change_log()
            remote = host.remote
            self.files = [
                SourceFile(
                    rel_path=DISK_NAME,
                    size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                    identity="bench-disk",
                    change_id=str(log["seq"]) if host.tracking else None,
                    # over SMB3 (hvtui smb) or the local file; the engine closes it
                    opener=remote[0] if remote else lambda: open(path, "rb", buffering=0),  # noqa: SIM115
                    changes=host.changed_since,
                    virtual_ranges=True,  # as RCT reports them: the engine maps them to file ranges
                    local_path=None if remote else path,
                )
            ]

        def close(self) -> None:
            return None

    class _BenchHost(Host):
        name = "bench"
        kind = "lab"

        def __init__(self, data_dir: Path, tracking: bool) -> None:
            from smb_source import remote_opener

            self.data_dir = data_dir
            self.tracking = tracking
            self.remote = remote_opener(DISK_NAME)  # (opener, bytes read, close) when reading over SMB3

        def smb_figures(self) -> dict:
            return {"smb_bytes": self.remote[1][0]} if self.remote else {}

        def close(self) -> None:
            if self.remote:
                self.remote[2]()

        def change_log(self) -> dict:
            path = self.data_dir / "rct.json"
            return json.loads(path.read_text()) if path.exists() else {"seq": 1, "changes": []}

        def changed_since(self, since: str) -> list[tuple[int, int]] | None:
            log = self.change_log()
            return [tuple(c[1:]) for c in log["changes"] if c[0] > int(since)]

        def inventory(self, timeout: float):  # noqa: ANN201
            raise NotImplementedError

        def create_checkpoint(self, *a, **k):  # noqa: ANN002, ANN003, ANN201
            raise NotImplementedError

        def apply_checkpoint(self, *a, **k):  # noqa: ANN002, ANN003, ANN201
            raise NotImplementedError

        def remove_checkpoint(self, *a, **k):  # noqa: ANN002, ANN003, ANN201
            raise NotImplementedError

        def rename_checkpoint(self, *a, **k):  # noqa: ANN002, ANN003, ANN201
            raise NotImplementedError

        def open_backup_source(self, vm_id: str, progress=None) -> BenchSource:  # noqa: ANN001
            return BenchSource(self)

    return _BenchHost


def BenchHost(data_dir: Path, tracking: bool):  # noqa: ANN201, N802
    return _bench_host_class()(data_dir, tracking)


def record_changes(data_dir: Path, undo: list[tuple[int, bytes]]) -> None:
    """What Hyper-V's RCT would report for the change just made, in virtual-disk bytes (the bench's own record)."""
    path = data_dir / "rct.json"
    log = json.loads(path.read_text()) if path.exists() else {"seq": 1, "changes": []}
    log["seq"] += 1
    log["changes"] += [[log["seq"], offset, len(old)] for offset, old in undo]
    path.write_text(json.dumps(log))


# -- driver ------------------------------------------------------------------------------
def isolated(fn, *args):  # noqa: ANN001, ANN002, ANN201
    """Run ``fn`` in a fresh process: it imports hvtui's VHDX code, which must not grow this
    process (a tool's peak RSS includes what it inherits at fork)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def measure(
    tools: list[Tool], disk: Path, blocks: list[int], args: argparse.Namespace, results: dict[str, Result]
) -> None:
    for run in range(args.runs):
        for tool in tools:
            res = results.setdefault(tool.name, Result(tool.name))
            print(f"  run {run + 1}/{args.runs}: {tool.name} ...", flush=True)
            tool.fresh()
            res.full.append(tool.full())
            undo = isolated(apply_change, disk, blocks, args.change, args.change_write * 1024, run)
            record_changes(disk.parent, undo)
            try:
                res.incr.append(tool.incremental())
                if isinstance(tool, Hvtui):
                    done = json.loads(res.incr[-1].output.strip().splitlines()[-1])
                    res.incr_read.append((done["read_bytes"], sum(len(old) for _, old in undo), done["whole_reads"]))
                    if "smb_bytes" in done:
                        full_done = json.loads(res.full[-1].output.strip().splitlines()[-1])
                        res.smb_read.append((full_done["smb_bytes"], done["smb_bytes"]))
            finally:
                isolated(revert_change, disk, undo)
                record_changes(disk.parent, undo)
            # Restore the point that includes the change: revert the file to compare.
            out = tool.work / f"out-{tool.slug}"
            shutil.rmtree(out, ignore_errors=True)
            res.restore.append(tool.restore(out))
            restored = out / DISK_NAME
            if not restored.exists():
                found = list(out.rglob(DISK_NAME))
                restored = found[0] if found else restored
            used, _size = allocated(restored)
            # The source VHDX stores only its allocated blocks: a restore should allocate no more.
            res.sparse.append(used <= allocated(disk)[0])
            res.correct.append(isolated(_matches_changed, disk, restored, undo, run))
            if isinstance(tool, HvtuiS3 | ResticS3):
                res.repo_bytes.append(s3_target.measure_bucket(tool.settings, tool.prefix))
            if isinstance(tool, HvtuiS3):
                if tool.copy_from is not None:  # its repository now holds this run's full and incremental
                    for read_back, runs, sizes in ((False, res.copy, res.copy_bytes),
                                                   (True, res.copy_read_back, res.copy_read_back_bytes)):  # fmt: skip
                        runs.append(tool.copy(read_back))
                        done = json.loads(runs[-1].output.strip().splitlines()[-1])
                        sizes.append((done["bytes_sent"], done["data_bytes"], done["copy_s"]))
                for threads in (1, 3):  # the store's own ceiling, in the same run
                    top = s3_target.measure_put_ceiling(tool.settings, threads)
                    res.put_ceiling.setdefault(threads, []).append((top["mb_per_s"], top["server_cpu_s"]))
            elif not isinstance(tool, ResticS3):
                res.repo_bytes.append(du(tool.repo))
            if isinstance(tool, Hvtui):
                res.opened.append(tuple(_open_seconds(r) for r in (res.full[-1], res.incr[-1], res.restore[-1])))  # type: ignore[arg-type]
            shutil.rmtree(out, ignore_errors=True)


def _open_seconds(run: Run) -> float:
    """What an hvtui run spent opening its repository (its last output line is JSON)."""
    try:
        return float(json.loads(run.output.strip().splitlines()[-1]).get("open_s", 0.0))
    except (ValueError, IndexError, AttributeError):
        return 0.0


def _matches_changed(disk: Path, restored: Path, undo: list[tuple[int, bytes]], run: int) -> bool:
    """The restored VHDX is the source's virtual disk with run ``run``'s change applied."""
    sys.path.insert(0, str(REPO_ROOT))
    from hvtui.hosts.lab.disk import DiskChain
    from hvtui.hosts.vhdx import VhdxFormatError

    expected = {offset: random_bytes(f"change-{run}-{i}", len(old)) for i, (offset, old) in enumerate(undo)}
    if restored.stat().st_size != disk.stat().st_size:
        return False
    try:
        with DiskChain.open(restored) as got, DiskChain.open(disk) as source:
            if any(got.read(offset, len(data)) != data for offset, data in expected.items()):
                return False
            # Outside the changed ranges the disk must read as the source (a sample of 1 MiB pieces).
            changed = sorted(expected)
            rng = random.Random(run)
            for _ in range(64):
                offset = rng.randrange(0, source.virtual_size - MiB)
                if any(c < offset + MiB and offset < c + len(expected[c]) for c in changed):
                    continue
                if got.read(offset, MiB) != source.read(offset, MiB):
                    return False
    except VhdxFormatError:
        return False
    return True


def fmt(value: float, digits: int = 2) -> str:
    return "-" if value != value else f"{value:.{digits}f}"


def report(results: dict[str, Result], info: dict, args: argparse.Namespace, missing: list[str]) -> None:
    data_mb = info["allocated_bytes"] / 1e6
    logical_mb = info["virtual"] / 1e6
    print()
    print(
        f"data set: {info['virtual'] / GiB:.1f} GiB virtual, {info['allocated_bytes'] / GiB:.2f} GiB allocated "
        f"({', '.join(f'{k} {v / GiB:.2f} GiB' for k, v in info['kinds'].items())}); "
        f"change: {args.change * 100:g}% in {args.change_write} KiB writes; medians of {args.runs} run(s)"
    )
    header = (
        f"{'tool':<22}{'full s':>8}{'MB/s data':>11}{'MB/s logical':>14}{'incr s':>8}{'restore s':>10}"
        f"{'sparse':>8}{'ok':>5}{'repo MB':>9}{'peak RSS MB':>13}"
    )
    print(header)
    print("-" * len(header))
    for res in results.values():
        full = res.med(res.full)
        print(
            f"{res.name:<22}{fmt(full):>8}{fmt(data_mb / full, 0):>11}{fmt(logical_mb / full, 0):>14}"
            f"{fmt(res.med(res.incr)):>8}{fmt(res.med(res.restore)):>10}"
            f"{('yes' if all(res.sparse) else 'no'):>8}{('yes' if all(res.correct) else 'NO'):>5}"
            f"{fmt(statistics.median(res.repo_bytes) / 1e6, 0):>9}{fmt(res.peak_rss, 0):>13}"
        )
    for res in results.values():
        for read, changed, whole in res.incr_read[:1]:
            print(
                f"  {res.name}: incremental read {read / MiB:.1f} MiB for {changed / MiB:.1f} MiB changed in the virtual "
                f"disk ({read / changed:.1f}x; target <= 2x plus the fixed headers, metadata and BAT)"
                + (f"; read whole: {'; '.join(whole)}" if whole else "")
            )
        if res.opened and statistics.median(o[0] for o in res.opened) >= 0.05:  # an encrypted repository's unlock
            opened = [statistics.median(o[i] for o in res.opened) for i in range(3)]
            print(
                f"  {res.name}: of that, opening (unlocking) the repository took {opened[0]:.2f} / {opened[1]:.2f} / "
                f"{opened[2]:.2f} s (full / incremental / restore; once per process); without it: full "
                f"{res.med(res.full) - opened[0]:.2f} s, incremental {res.med(res.incr) - opened[1]:.2f} s, "
                f"restore {res.med(res.restore) - opened[2]:.2f} s"
            )
    for res in results.values():
        for full_smb, incr_smb in res.smb_read[:1]:
            changed = res.incr_read[0][1]
            print(
                f"  {res.name}: over SMB3 the full read {full_smb / MiB:.1f} MiB, the incremental {incr_smb / MiB:.1f} MiB "
                f"for {changed / MiB:.1f} MiB changed ({incr_smb / changed:.1f}x, VHDX parsing included)"
            )
    local, smb = results.get(HVTUI_ROW), results.get("hvtui smb")
    if local and smb and smb.full:
        ratio = local.med(local.full) / smb.med(smb.full)
        # The table's fulls each follow the other tool's restore and checks; the interleaved pairs,
        # back to back, are the measure of the target when they run.
        verdict = (
            "judged by the interleaved pairs below"
            if args.smb_pairs > 0
            else f"target >= 60 %: {'met' if ratio >= 0.6 else 'NOT met'}"
        )
        print(
            f"  SMB full backup throughput in the table = {ratio * 100:.0f} % of the local file's ({verdict}); "
            f"SMB peak RSS {smb.peak_rss:.0f} MB (target < 300 MB)"
        )
    peers = {k: v for k, v in results.items() if not k.startswith("hvtui") and not k.endswith(" s3")}  # local peers
    mine = results.get(HVTUI_ROW)
    if mine and peers:
        print()
        print("ratios (best peer's time / hvtui's time; >1 = hvtui faster; size and RSS: peer / hvtui):")
        for label, get in (
            ("first full", lambda r: r.med(r.full)),
            ("incremental 1%", lambda r: r.med(r.incr)),
            ("restore", lambda r: r.med(r.restore)),
            ("repository size", lambda r: statistics.median(r.repo_bytes)),
            ("peak RSS", lambda r: r.peak_rss),
        ):
            best_name, best = min(((n, get(r)) for n, r in peers.items()), key=lambda x: x[1])
            print(f"  {label:<16} {best / get(mine):6.2f}x  (best peer: {best_name})")
        print()
        print("targets (from issue 5; printed, not asserted):")
        borg_fixed = results.get("borg fixed 4M")
        if borg_fixed:
            ratio = borg_fixed.med(borg_fixed.full) / mine.med(mine.full)
            print(
                f"  first full >= 1.5x faster than borg fixed 4M: {ratio:.2f}x -> {'met' if ratio >= 1.5 else 'NOT met'}"
            )
        ratio = mine.med(mine.full) / mine.med(mine.incr)
        print(f"  incremental 1% >= 10x faster than own full: {ratio:.1f}x -> {'met' if ratio >= 10 else 'NOT met'}")
        best_restore = min(r.med(r.restore) for r in peers.values())
        ratio = best_restore / mine.med(mine.restore)
        print(
            f"  restore >= 2x faster than best peer, sparse: {ratio:.2f}x, sparse={all(mine.sparse)} -> "
            f"{'met' if ratio >= 2 and all(mine.sparse) else 'NOT met'}"
        )
        print(f"  peak RSS < 300 MB: {mine.peak_rss:.0f} MB -> {'met' if mine.peak_rss < 300 else 'NOT met'}")
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  (every peak RSS includes this benchmark's own {own:.0f} MB, inherited by its children at fork)")
    for line in missing:
        print(line)


def report_v2_targets(
    results: dict[str, Result], info: dict, ceiling_mb_s: float | None, listing: dict[int, dict[int, float]]
) -> None:
    """Issue 20's targets for format 2, from this run's figures (printed, not asserted)."""
    v1, v2 = results.get(HVTUI_V1_ROW), results.get(HVTUI_ROW)
    if v1 is None or v2 is None:
        return
    print()
    print("targets for format 2 (issue 20; printed, not asserted):")
    ratio = v1.med(v1.full) / v2.med(v2.full)
    print(f"  v2 full at least as fast as v1: v1 {fmt(v1.med(v1.full))} s, v2 {fmt(v2.med(v2.full))} s "
          f"({ratio:.2f}x) -> {'met' if ratio >= 1 else 'NOT met'}")
    if ceiling_mb_s:
        share = info["allocated_bytes"] / 1e6 / v2.med(v2.full) / ceiling_mb_s
        print(f"  v2 full >= 75 % of the ceiling: {share * 100:.0f} % -> {'met' if share >= 0.75 else 'NOT met'}")
    if 2 in listing and len(listing[2]) > 1:
        few, many = min(listing[2]), max(listing[2])
        growth = listing[2][many] / max(listing[2][few], 1e-9)
        linear = many / few
        print(f"  points flat on v2: {few} -> {many} points costs {growth:.1f}x (v1: "
              f"{listing[1][many] / max(listing[1][few], 1e-9):.1f}x, linear would be {linear:.0f}x) -> "
              f"{'met' if growth < linear / 2 else 'NOT met'}")
    print(f"  peak RSS < 300 MB: v1 {fmt(v1.peak_rss, 0)} MB, v2 {fmt(v2.peak_rss, 0)} MB -> "
          f"{'met' if max(v1.peak_rss, v2.peak_rss) < 300 else 'NOT met'}")


def report_s3(results: dict[str, Result], info: dict) -> None:
    """Issue 21's targets for object storage, from this run's figures (printed, not asserted)."""
    local = results.get("hvtui v2 encrypted")
    for name, s3 in results.items():
        if local is not None and name.startswith("hvtui s3") and s3.full:
            _report_s3(name, local, s3, info, results.get("restic s3"))


def _report_s3(name: str, local: Result, s3: Result, info: dict, restic: Result | None) -> None:
    data_mb = info["allocated_bytes"] / 1e6
    print()
    print(f"{name}: S3 (loopback SeaweedFS) beside v2 encrypted local (issue 21; printed, not asserted):")
    print(f"  {'':<16}{'local s':>9}{'S3 s':>9}{'local/S3':>10}{'S3 MB/s data':>14}{'S3 peak RSS MB':>16}")
    for label, runs_of in (("full backup", lambda r: r.full), ("incremental 1%", lambda r: r.incr), ("restore", lambda r: r.restore)):
        here, there = local.med(runs_of(local)), s3.med(runs_of(s3))
        rss = max((r.rss_mb for r in runs_of(s3)), default=float("nan"))
        print(f"  {label:<16}{fmt(here):>9}{fmt(there):>9}{fmt(here / there):>10}{fmt(data_mb / there, 0):>14}{fmt(rss, 0):>16}")
    for label, runs in (("full backup", s3.full), ("restore", s3.restore), ("copy", s3.copy)):
        if runs:
            print(f"  CPU during {label}: hvtui {statistics.median(r.cpu_s for r in runs):.1f} s, SeaweedFS "
                  f"{statistics.median(r.server_cpu_s for r in runs):.1f} s, in {s3.med(runs):.1f} s (medians; 2 cores shared)")
    ratio = local.med(local.full) / s3.med(s3.full)
    print(f"  backup to S3 >= 70 % of v2 encrypted local: {ratio * 100:.0f} % -> {'met' if ratio >= 0.7 else 'NOT met'}")
    if s3.copy:
        seconds = s3.med(s3.copy)
        sent = statistics.median(b[0] for b in s3.copy_bytes) / 1e6
        data = statistics.median(b[1] for b in s3.copy_bytes) / 1e6
        rate = sent / seconds
        copy_rss = max(r.rss_mb for r in s3.copy)
        own = statistics.median(b[2] for b in s3.copy_bytes)
        own_rate = sent / own
        print(f"  copy local -> S3 (full + incremental, a new repository: chunks re-keyed): {seconds:.2f} s, "
              f"{sent:.0f} MB sent = {rate:.0f} MB/s ({data / seconds:.0f} MB/s of point data); peak RSS {copy_rss:.0f} MB")
        print(f"    of which the copy itself {own:.2f} s = {own_rate:.0f} MB/s sent ({data / own:.0f} MB/s of point data); "
              f"the rest is starting the process and unlocking both repositories (once per job, whatever its size)")
        print(f"  copy >= 100 MB/s (the copy itself): {own_rate:.0f} MB/s -> {'met' if own_rate >= 100 else 'NOT met'} "
              f"({rate:.0f} MB/s with the start and the unlocks)")
        if s3.copy_read_back:
            back = s3.med(s3.copy_read_back)
            back_rate = statistics.median(b[0] for b in s3.copy_read_back_bytes) / 1e6 / back
            print(f"  copy --read-back (every pack sent read back and checked): {back:.2f} s = {back_rate:.0f} MB/s sent; "
                  f"without it (the store checks each PUT's Content-MD5) {back / seconds:.2f}x faster; SeaweedFS CPU "
                  f"{statistics.median(r.server_cpu_s for r in s3.copy_read_back):.1f} s vs "
                  f"{statistics.median(r.server_cpu_s for r in s3.copy):.1f} s")
        for threads, tops in sorted(s3.put_ceiling.items()):
            top = statistics.median(t[0] for t in tops)
            print(f"  the store's ceiling, plain boto3 PUTs of 16 MiB, {threads} thread(s): {top:.0f} MB/s "
                  f"(SeaweedFS CPU {statistics.median(t[1] for t in tops):.1f} s); copy = {rate / top * 100:.0f} % of it")
    if restic is not None and restic.full:
        ours, theirs = s3.med(s3.full), restic.med(restic.full)
        print(f"  peer on the same store, restic {_restic_version()} (s3 backend): full {theirs:.2f} s vs hvtui {ours:.2f} s "
              f"({theirs / ours:.2f}x; >1 = hvtui faster), incremental {restic.med(restic.incr):.2f} s vs "
              f"{s3.med(s3.incr):.2f} s, restore {restic.med(restic.restore):.2f} s vs {s3.med(s3.restore):.2f} s; "
              f"restic's full: CPU {statistics.median(r.cpu_s for r in restic.full):.1f} s, SeaweedFS "
              f"{statistics.median(r.server_cpu_s for r in restic.full):.1f} s")
    print(f"  peak RSS < 300 MB (backup, restore, copy): {s3.peak_rss:.0f} MB -> {'met' if s3.peak_rss < 300 else 'NOT met'}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_hvtui":
        return hvtui_subcommand(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=float, default=8.0, help="virtual disk size in GiB (default 8)")
    parser.add_argument("--data", type=float, default=1.5, help="allocated data in GiB (default 1.5)")
    parser.add_argument("--runs", type=int, default=3, help="runs per tool; medians are reported (default 3)")
    parser.add_argument("--change", type=float, default=0.01, help="fraction of the data changed (default 0.01)")
    parser.add_argument(
        "--change-write", type=int, default=1024, help="size of each changing write, KiB (default 1024)"
    )
    parser.add_argument("--workdir", type=Path, help="where data and repositories go (default: a temp dir, removed)")
    parser.add_argument(
        "--tools",
        default="hvtui,restic,borg-buzhash,borg-fixed",
        help="comma-separated subset (hvtui: repository format 2, the default, also as hvtui-v2; hvtui-v1, format 1, "
        "a file per chunk; hvtui-v2-enc, format 2 encrypted; "
        "hvtui-zstd, format 2 with zstd; hvtui-smb, reading over SMB3; hvtui-s3, format 2 encrypted in a "
        "loopback SeaweedFS bucket, with a copy of the local encrypted repository into it)",
    )
    parser.add_argument(
        "--s3-before", type=Path, help="hvtui-s3: also run the S3 figures with this checkout's code (before/after, one run)"
    )
    parser.add_argument("--sweep", help="hvtui only: compare chunk sizes, e.g. 1,2,4 (MiB)")
    parser.add_argument(
        "--smb-read-ahead", type=int, default=None, help="hvtui-smb: reads in flight per file (default: the smb: default)"
    )
    parser.add_argument(
        "--smb-connections", type=int, default=None, help="hvtui-smb: connections a file's reads spread over (default 2)"
    )
    parser.add_argument(
        "--smb-pairs", type=int, default=5, help="hvtui with hvtui-smb: extra full backups of each, interleaved (default 5)"
    )
    parser.add_argument("--no-tracking", action="store_true", help="also run hvtui without change tracking")
    parser.add_argument("--zstd-level", type=int, default=3, help="hvtui-zstd: the zstd level (default 3)")
    parser.add_argument("--points", help="also time listing the points at these counts, e.g. 5,20,60 (v1 and v2)")
    parser.add_argument("--ceiling", action="store_true", help="also measure the 2-thread read+SHA-256+lz4 ceiling")
    args = parser.parse_args(argv)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="hvtui-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    data_dir = work / "data"
    disk = data_dir / DISK_NAME
    virtual = int(args.size * GiB) // BLOCK * BLOCK
    print(f"generating the data set in {data_dir} ...", flush=True)
    started = time.perf_counter()
    (data_dir / "rct.json").unlink(missing_ok=True)
    # Generated in a separate process: on Linux a child's ru_maxrss includes the memory of
    # the process it was forked from, so this process must stay small for the tools' peak
    # RSS figures to mean anything.
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        info = pool.submit(generate, disk, virtual, int(args.data * GiB)).result()
    print(f"  done in {time.perf_counter() - started:.1f} s", flush=True)
    blocks = info["blocks"]

    try:
        tools: list[Tool] = []
        missing: list[str] = []
        wanted = set(args.tools.split(","))
        if args.sweep:
            for mib in (int(x) for x in args.sweep.split(",")):
                tools.append(Hvtui(work, data_dir, mib, True, f"hvtui v2 {mib} MiB"))
        else:
            if "hvtui-v1" in wanted:
                tools.append(Hvtui(work, data_dir, 1, True, HVTUI_V1_ROW, version=1))
            if wanted & {"hvtui", "hvtui-v2"}:  # one row: format 2 is what `hvtui` creates
                tools.append(Hvtui(work, data_dir, 1, True, HVTUI_ROW, version=2))
                if args.no_tracking:
                    tools.append(Hvtui(work, data_dir, 1, False, "hvtui v2 no-RCT", version=2))
            if "hvtui-zstd" in wanted:
                level = f"zstd:{args.zstd_level}"
                tools.append(Hvtui(work, data_dir, 1, True, f"hvtui v2 zstd {args.zstd_level}", version=2, compression=level))
            if "hvtui-v2-enc" in wanted:
                tools.append(Hvtui(work, data_dir, 1, True, "hvtui v2 encrypted", version="2e"))  # type: ignore[arg-type]
            if "hvtui-s3" in wanted:
                why_not = s3_target.available()
                if why_not is None:
                    local_enc = next((t for t in tools if t.name == "hvtui v2 encrypted"), None)
                    if local_enc is None:  # the figure S3 is measured against, and the copy's source
                        local_enc = Hvtui(work, data_dir, 1, True, "hvtui v2 encrypted", version="2e")  # type: ignore[arg-type]
                        tools.append(local_enc)
                    if args.s3_before:
                        tools.append(HvtuiS3(work, data_dir, {}, local_enc, args.s3_before))  # type: ignore[arg-type]
                    tools.append(HvtuiS3(work, data_dir, {}, local_enc))  # type: ignore[arg-type]
                    if shutil.which("restic"):  # the peer on the same store
                        tools.append(ResticS3(work, data_dir))
                    else:
                        missing.append("restic s3: restic not installed, not measured (install: apt-get install restic)")
                else:
                    missing.append(why_not)
            if "hvtui-smb" in wanted:
                why_not = smb_bench.available()
                if why_not is None:
                    tools.append(Hvtui(work, data_dir, 1, True, "hvtui smb"))
                else:
                    missing.append(why_not)
            if "restic" in wanted:
                if shutil.which("restic"):
                    tools.append(Restic(work, data_dir))
                else:
                    missing.append("restic: not installed, not measured (install: apt-get install restic)")
            for key, fixed in (("borg-buzhash", False), ("borg-fixed", True)):
                if key in wanted:
                    if shutil.which("borg"):
                        tools.append(Borg(work, data_dir, fixed))
                    elif not any("borg" in m for m in missing):
                        missing.append("borg: not installed, not measured (install: apt-get install borgbackup)")
        for line in missing:
            print(line)
        results: dict[str, Result] = {}
        s3_settings: dict = {}  # one server for every S3 tool
        smb_server_pid = 0
        with contextlib.ExitStack() as stack:
            for tool in tools:
                if tool.name == "hvtui smb" and isinstance(tool, Hvtui):
                    settings = stack.enter_context(smb_bench.serving(data_dir, DISK_NAME))
                    smb_server_pid = settings["pid"]
                    tuning = {"read_ahead": args.smb_read_ahead, "connections": args.smb_connections}
                    tool.env = {smb_bench.ENV: json.dumps({**settings, **tuning})}
                if isinstance(tool, HvtuiS3 | ResticS3):
                    if not s3_settings:
                        s3_settings.update(stack.enter_context(s3_target.serving(work / "seaweed")))
                    tool.settings = s3_settings
            measure(tools, disk, blocks, args, results)
            by_name = {tool.name: tool for tool in tools}
            pairs = []
            if HVTUI_ROW in by_name and "hvtui smb" in by_name and args.smb_pairs > 0:
                pairs = smb_bench.paired_fulls(
                    by_name[HVTUI_ROW], by_name["hvtui smb"], args.smb_pairs, server_pid=smb_server_pid
                )
        report(results, info, args, missing)
        for line in smb_bench.pair_report(pairs, info["allocated_bytes"]):
            print(line)
        report_s3(results, info)
        if args.ceiling:
            top = json.loads(run_tool([sys.executable, str(Path(__file__).resolve()), "_hvtui", "ceiling", str(disk)]).output)
            print()
            print(f"2-thread ceiling (read + SHA-256 + lz4 of every allocated 1 MiB chunk): {top['mb_per_s']:.0f} MB/s")
            for res in results.values():
                if res.name.startswith("hvtui"):
                    rate = info["allocated_bytes"] / 1e6 / res.med(res.full)
                    print(f"  {res.name:<22} full backup {rate:.0f} MB/s of data = {rate / top['mb_per_s'] * 100:.0f} % of it")
        listing: dict[int, dict[int, float]] = {}
        if args.points:
            counts = [int(x) for x in args.points.split(",")]
            listing = measure_points(work, data_dir, counts, [1, 2])
            print()
            print("listing every point (one process each, what `hvtui points` reads; median of 3), ms:")
            print(f"  {'format':<10}" + "".join(f"{c:>8}" for c in counts))
            for version, by_count in listing.items():
                print(f"  {version:<10}" + "".join(f"{by_count[c] * 1000:>8.1f}" for c in counts))
        report_v2_targets(results, info, top["mb_per_s"] if args.ceiling else None, listing)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
