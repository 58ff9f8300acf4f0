"""zstd per repository: round trips in both formats, a repository holding lz4 and zstd chunks,
a corrupt zstd frame named as such, and the configuration keys that choose it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hvtui.engine.backup import run_backup
from hvtui.engine.compression import CODEC_LZ4, CODEC_RAW, CODEC_ZSTD, Compressor, CorruptPayload, decompress
from hvtui.engine.repository import Repository
from hvtui.engine.restore import restore_to_directory
from hvtui.engine.store import HEADER, ChunkDamaged, chunk_id, decode_chunk
from hvtui.engine.verify import run_verify

sys.path.insert(0, str(Path(__file__).parent))
from engine_support import DirHost, read_tree  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
CS = 64 * KiB
DISK = "Virtual Hard Disks/web01.vhdx"
TEXT = b"".join(b"row %08d: a page of a database with some repeated words in it\n" % i for i in range(40_000))


@pytest.fixture
def host(tmp_path: Path) -> DirHost:
    h = DirHost(tmp_path / "host")
    h.add_vm("vm1", "web01")
    h.create_disk("vm1", DISK, 8 * MiB, seed=3, data_mib=2)
    h.write("vm1", DISK, 4 * MiB, TEXT[: 2 * MiB])  # compressible data beside the random data
    return h


def chunk_codecs(repo: Repository, point: str) -> dict[bytes, int]:
    codecs = {}
    for digest in repo.load_point(point).chunk_ids():
        blob = repo.store.read_blob(digest)
        if isinstance(blob, tuple):  # format 2: (blob, pack id)
            blob = blob[0]
        codecs[digest] = HEADER.unpack_from(blob)[1]
    return codecs


def open_repo(path: Path, version: int, compressor: Compressor) -> Repository:
    repo = Repository.open(path, create=True, chunk_size=CS, version=version, compressor=compressor)
    if version == 2:
        repo.store.pack_size = 256 * KiB  # type: ignore[union-attr]
    return repo


def test_codecs_round_trip_and_incompressible_data_stays_raw() -> None:
    rand = os.urandom(256 * KiB)
    for compressor in (Compressor("lz4"), Compressor("zstd", 3), Compressor("zstd", 19)):
        codec, packed = compressor.compress(TEXT[: 256 * KiB])
        assert codec == (CODEC_ZSTD if compressor.name == "zstd" else CODEC_LZ4) and packed is not None
        assert decompress(codec, packed, 256 * KiB) == TEXT[: 256 * KiB]
        assert compressor.compress(rand) == (CODEC_RAW, None)
    zstd3 = Compressor("zstd", 3).compress(TEXT[: 256 * KiB])[1]
    lz4 = Compressor("lz4").compress(TEXT[: 256 * KiB])[1]
    assert zstd3 is not None and lz4 is not None and len(zstd3) < len(lz4)
    with pytest.raises(ValueError, match="zstd level"):
        Compressor("zstd", 25)
    with pytest.raises(ValueError, match="unknown compression"):
        Compressor("gzip")


@pytest.mark.parametrize("version", [1, 2])
def test_a_zstd_repository_round_trips_and_verifies(host: DirHost, tmp_path: Path, version: int) -> None:
    repo = open_repo(tmp_path / "repo", version, Compressor("zstd", 3))
    point = run_backup(repo, host, "vm1", "full").point_id
    codecs = chunk_codecs(repo, point)
    assert CODEC_ZSTD in codecs.values() and CODEC_LZ4 not in codecs.values()
    assert CODEC_RAW in codecs.values()  # the random half stays raw
    fresh = Repository.open(repo.root)  # a reader configured for lz4 reads zstd chunks
    restore_to_directory(fresh, point, tmp_path / "out")
    assert read_tree(tmp_path / "out") == read_tree(host.vm_dir("vm1"))
    assert run_verify(fresh).ok


@pytest.mark.parametrize("version", [1, 2])
def test_a_repository_holds_lz4_and_zstd_chunks_and_reads_both(host: DirHost, tmp_path: Path, version: int) -> None:
    lz4_repo = open_repo(tmp_path / "repo", version, Compressor("lz4"))
    first = run_backup(lz4_repo, host, "vm1", "full").point_id
    before = tmp_path / "before"
    restore_to_directory(lz4_repo, first, before)
    # the configuration changes to zstd; new chunks are zstd, old ones stay lz4
    zstd_repo = Repository.open(lz4_repo.root, compressor=Compressor("zstd", 5))
    host.write("vm1", DISK, 6 * MiB, TEXT[:MiB].replace(b"row", b"ROW"))
    second = run_backup(zstd_repo, host, "vm1", "incremental").point_id
    codecs = chunk_codecs(zstd_repo, second)
    assert {CODEC_LZ4, CODEC_ZSTD} <= set(codecs.values())
    for reader in (Repository.open(lz4_repo.root), Repository.open(lz4_repo.root, compressor=Compressor("zstd"))):
        restore_to_directory(reader, first, tmp_path / f"a{id(reader)}")
        restore_to_directory(reader, second, tmp_path / f"b{id(reader)}")
        assert read_tree(tmp_path / f"a{id(reader)}") == read_tree(before)
        assert read_tree(tmp_path / f"b{id(reader)}") == read_tree(host.vm_dir("vm1"))
        assert run_verify(reader).ok


def test_a_corrupt_zstd_frame_is_a_named_error(host: DirHost, tmp_path: Path) -> None:
    data = TEXT[: 64 * KiB]
    codec, packed = Compressor("zstd").compress(data)
    assert codec == CODEC_ZSTD and packed is not None
    damaged = bytearray(packed)
    damaged[0] ^= 0xFF  # the frame's magic number
    with pytest.raises(CorruptPayload, match="corrupt zstd frame"):
        decompress(CODEC_ZSTD, bytes(damaged), len(data))
    blob = HEADER.pack(b"HVC1", CODEC_ZSTD, len(data), len(damaged)) + bytes(damaged)
    with pytest.raises(ChunkDamaged, match="corrupt zstd frame"):
        decode_chunk(chunk_id(data), blob)
    truncated = HEADER.pack(b"HVC1", CODEC_ZSTD, len(data), len(packed) // 2) + packed[: len(packed) // 2]
    with pytest.raises(ChunkDamaged, match="zstd"):
        decode_chunk(chunk_id(data), truncated)

    # in a repository: a full verify names the damaged chunk and the point
    repo = open_repo(tmp_path / "repo", 1, Compressor("zstd"))
    point = run_backup(repo, host, "vm1", "full").point_id
    zstd_chunk = next(d for d, c in chunk_codecs(repo, point).items() if c == CODEC_ZSTD)
    path = repo.root / "chunks" / zstd_chunk.hex()[:2] / zstd_chunk.hex()
    raw = bytearray(path.read_bytes())
    raw[HEADER.size] ^= 0xFF
    path.write_bytes(bytes(raw))
    report = run_verify(Repository.open(repo.root), repair=False)
    assert not report.ok
    (problem,) = report.chunk_problems
    assert problem.chunk == zstd_chunk.hex() and "corrupt zstd frame" in problem.problem and problem.points == [point]


def test_the_configuration_chooses_zstd_for_new_chunks(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""
repositories:
  - name: main
    path: {tmp_path / "repo"}
    compression: zstd
    zstd_level: 7
"""
    )

    def hvtui(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "hvtui", "--config", str(config), "--lab-dir", str(tmp_path / "lab"), *args]
        return subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)

    made = hvtui("repo", "init", "main", "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["compression"] == "zstd level 7"
    assert "zstd level 7" in hvtui("repo", "info", "main").stdout
    for bad, key in (("compression: zstd", "compression: gzip"), ("zstd_level: 7", "zstd_level: 40")):
        config.write_text(config.read_text().replace(bad, key))
        refused = hvtui("repo", "info", "main")
        assert refused.returncode == 2 and key.split(":")[0] in refused.stderr and "Traceback" not in refused.stderr
        config.write_text(config.read_text().replace(key, bad))
