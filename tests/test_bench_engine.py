"""bench/engine.py runs on a genuine VHDX: a tiny run restores correctly and reports its reads.

No speed is asserted here (speed lives in the bench's own output)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from hvtui.engine.compression import CODEC_LZ4, CODEC_ZSTD
from hvtui.engine.packfile import read_trailer

BENCH = Path(__file__).resolve().parent.parent / "bench" / "engine.py"


def test_the_engine_bench_backs_up_a_genuine_vhdx_and_reads_about_what_changed(tmp_path: Path) -> None:
    args = ["--size", "0.25", "--data", "0.07", "--runs", "1", "--tools", "hvtui", "--workdir", str(tmp_path)]
    out = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=600, check=True).stdout
    row = next(line for line in out.splitlines() if line.startswith("hvtui "))
    assert row.split()[-4] == "yes", out  # the "ok" column: the restored disk reads as changed
    read, changed = map(float, re.search(r"incremental read ([\d.]+) MiB for ([\d.]+) MiB changed", out).groups())
    assert read <= 2 * changed + 4, out  # + VHDX's fixed headers, log, metadata and BAT
    disk = tmp_path / "data" / "disk0.vhdx"
    assert disk.read_bytes()[:8] == b"vhdxfile"
    if shutil.which("qemu-img"):
        subprocess.run(["qemu-img", "check", str(disk)], check=True, capture_output=True)


def test_the_engine_bench_row_hvtui_is_the_default_format_2_and_hvtui_v1_measures_format_1(tmp_path: Path) -> None:
    args = ["--size", "0.25", "--data", "0.07", "--runs", "1", "--tools", "hvtui-v1,hvtui", "--workdir", str(tmp_path)]
    out = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=600, check=True).stdout
    rows = {name: next(line for line in out.splitlines() if line.startswith(f"{name} ")) for name in ("hvtui v1 files", "hvtui v2 packs")}
    assert all(row.split()[-4] == "yes" for row in rows.values()), out  # each restored what it backed up
    versions = {d.name: json.loads((d / "config.json").read_text())["version"] for d in tmp_path.glob("repo-hvtui-*")}
    assert versions == {"repo-hvtui-v1-files": 1, "repo-hvtui-v2-packs": 2}
    assert "v2 full at least as fast as v1: v1 " in out  # the format-2 targets compare the two rows


def test_the_engine_bench_measures_a_zstd_repository_beside_lz4(tmp_path: Path) -> None:
    args = ["--size", "0.25", "--data", "0.07", "--runs", "1", "--tools", "hvtui-v2,hvtui-zstd", "--workdir", str(tmp_path)]
    out = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=600, check=True).stdout
    lz4 = next(line for line in out.splitlines() if line.startswith("hvtui v2 packs "))
    zstd = next(line for line in out.splitlines() if line.startswith("hvtui v2 zstd 3 "))
    assert zstd.split()[-4] == "yes" and lz4.split()[-4] == "yes", out  # both restore what was backed up
    packs = [p for p in (tmp_path / "repo-hvtui-v2-zstd-3" / "packs").rglob("*") if p.is_file()]
    codecs = {p.read_bytes()[e.offset + 4] for p in packs for e in read_trailer(p, p.name)}  # each chunk's codec byte
    assert CODEC_ZSTD in codecs and CODEC_LZ4 not in codecs, out
def test_the_engine_bench_reads_the_same_disk_over_smb3_beside_the_local_file(tmp_path: Path) -> None:
    # A real smbd (tests/samba_support.py) serves the data set; hvtui reads it through hosts/smb.
    work = Path("/tmp") / f"hb-{tmp_path.name[-12:]}"  # smbd's share and the data on one file system
    args = ["--size", "0.25", "--data", "0.07", "--runs", "1", "--tools", "hvtui,hvtui-smb", "--workdir", str(work)]
    try:
        out = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=600, check=True).stdout
    finally:
        shutil.rmtree(work, ignore_errors=True)
    row = next(line for line in out.splitlines() if line.startswith("hvtui smb "))
    assert row.split()[-4] == "yes", out  # the restored disk (backed up over SMB) reads as changed
    full, incr, changed = map(
        float, re.search(r"over SMB3 the full read ([\d.]+) MiB, the incremental ([\d.]+) MiB for ([\d.]+) MiB changed", out).groups()
    )
    allocated_mib = float(re.search(r"([\d.]+) GiB allocated", out).group(1)) * 1024
    assert full >= 0.9 * allocated_mib, out  # the whole allocated data crossed SMB once
    # 2x the change, the VHDX's fixed headers, log, metadata and BAT (4 MiB), and the BAT parsed
    # through the reader once more.
    assert incr <= 2 * changed + 4 + 1.5, out
    assert "SMB full backup throughput in the table = " in out and "SMB peak RSS" in out
    # The interleaved pairs (5 by default) give the verdict, not the table's runs between other work.
    assert "(judged by the interleaved pairs below)" in out and re.search(r"SMB throughput = [\d.]+ % .*target >= 60 %: (NOT )?met", out), out
    # smbd's CPU is counted beside the client's (its process tree), and so is what else ran meanwhile.
    client, server = (float(x) for x in re.search(r"SMB3 client ([\d.]+) s \+ smbd ([\d.]+) s", out).groups())
    assert client > 0 and server > 0, out
    assert re.search(r"its share would be \d+ %", out) and re.search(r"\d+ of 5 pairs ran with <= 5 %", out), out


def test_the_engine_bench_backs_up_restores_and_copies_to_a_loopback_seaweedfs(tmp_path: Path) -> None:
    # bench/s3_target.py starts tests/seaweed_support.py's server; the S3 rows come from real objects.
    args = ["--size", "0.25", "--data", "0.07", "--runs", "1", "--tools", "hvtui-s3", "--workdir", str(tmp_path)]
    out = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=600, check=True).stdout
    s3 = next(line for line in out.splitlines() if line.startswith("hvtui s3 "))
    local = next(line for line in out.splitlines() if line.startswith("hvtui v2 encrypted "))  # added as the reference
    assert s3.split()[-4] == "yes" and local.split()[-4] == "yes", out  # restored from the bucket, as changed
    assert float(s3.split()[-2]) > 0, out  # the bucket holds the repository's objects
    sent = float(re.search(r"copy local -> S3 .*?: [\d.]+ s, (\d+) MB sent", out).group(1))
    assert sent >= 0.5 * float(local.split()[-2]), out  # the copy sent about the local repository's bytes
    assert "backup to S3 >= 70 % of v2 encrypted local:" in out and "copy >= 100 MB/s (the copy itself):" in out, out
    total, own = (float(x) for x in re.search(r"copy local -> S3 .*?: ([\d.]+) s, .*\n +of which the copy itself ([\d.]+) s", out).groups())
    assert 0 < own < total, out  # the copy's own time leaves out the process start and the two unlocks
    # In the same run: the copy with --read-back, the store's own ceiling, restic on the same store.
    back = float(re.search(r"copy --read-back .*?: [\d.]+ s = (\d+) MB/s sent", out).group(1))
    ceilings = {int(t): float(r) for t, r in re.findall(r"plain boto3 PUTs of 16 MiB, (\d) thread\(s\): (\d+) MB/s", out)}
    assert back > 0 and set(ceilings) == {1, 3} and min(ceilings.values()) > 0, out
    restic = next(line for line in out.splitlines() if line.startswith("restic s3 "))
    assert restic.split()[-3] == "yes" and float(restic.split()[-2]) > 0, out  # restored as changed; objects in the bucket
    assert "peer on the same store, restic" in out, out
    assert not list(tmp_path.glob("seaweed/*.pid")) and "weed" not in subprocess.run(
        ["pgrep", "-af", str(tmp_path)], capture_output=True, text=True
    ).stdout  # the server was stopped with the bench
