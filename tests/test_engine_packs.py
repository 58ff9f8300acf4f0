"""Format 2: chunks in pack files with trailers, index files, the local index cache.

Backup, restore and the rest run on both formats in test_engine_backup.py (its ``repo``
fixture is parametrized); this file checks what is particular to packs: the layout, the
index rebuilt from the packs' trailers, prune deleting whole packs only after the new
index is durable, damage in a pack, and kill -9 during a backup.
"""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import hvtui.engine.packindex as packindex
import hvtui.engine.packobjects as packobjects
import hvtui.engine.packstore as packstore
from hvtui.audit import AuditLog
from hvtui.backups.ledger import CheckpointJournal
from hvtui.backups.leftovers import LeftoverCheckpoints
from hvtui.clock import FixedClock
from hvtui.config import Retention
from hvtui.engine.backup import run_backup
from hvtui.engine.errors import RepositoryDamaged
from hvtui.engine.locks import lock_records
from hvtui.engine.packfile import FOOTER, PackDamaged, read_trailer
from hvtui.engine.packstore import REPACK_BELOW, PackStore
from hvtui.engine.prune import run_prune
from hvtui.engine.repair import plan_config_repair, repair_config
from hvtui.engine.repository import Repository
from hvtui.engine.restore import restore_to_directory
from hvtui.engine.store import ChunkStore
from hvtui.engine.verify import run_verify
from hvtui.errors import RepositoryError
from hvtui.hosts.lab import disk as vdisk
from hvtui.hosts.lab.host import LabHost

sys.path.insert(0, str(Path(__file__).parent))
from engine_support import DirHost, OneHost, read_tree  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
CS = 64 * KiB
DISK = "Virtual Hard Disks/web01.vhdx"


def open_v2(path: Path) -> Repository:
    repo = Repository.open(path, create=True, chunk_size=CS, version=2)
    repo.store.pack_size = 256 * KiB  # type: ignore[union-attr]  # many packs from a few MiB
    return repo


def packs(repo: Repository) -> list[Path]:
    return sorted(p for p in (repo.root / "packs").rglob("*") if p.is_file())


def index_files(repo: Repository) -> list[Path]:
    """The pack index files (not the point index, index/points.json)."""
    return sorted(p for p in (repo.root / "index").iterdir() if p.name != "points.json")


@pytest.fixture
def host(tmp_path: Path) -> DirHost:
    h = DirHost(tmp_path / "host")
    h.add_vm("vm1", "web01")
    h.create_disk("vm1", DISK, 8 * MiB, seed=3, data_mib=3)
    return h


def test_a_v2_repository_keeps_chunks_in_packs_listed_by_their_trailers_and_an_index(host: DirHost, tmp_path: Path) -> None:
    repo = open_v2(tmp_path / "repo")
    config = json.loads((repo.root / "config.json").read_text())
    assert (config["version"], config["pack_size"]) == (2, 32 * MiB)
    point = run_backup(repo, host, "vm1", "full").point_id

    assert isinstance(repo.store, PackStore)
    assert list((repo.root / "chunks").iterdir()) == []  # no chunk objects of their own
    assert len(packs(repo)) > 1  # 3 MiB of data, 256 KiB packs
    listed = {e.digest: (p.name, e.offset, e.length) for p in packs(repo) for e in read_trailer(p, p.name)}
    assert repo.load_point(point).chunk_ids() <= set(listed)
    (only,) = index_files(repo)  # one index file per backup, written before the manifest
    doc = json.loads(only.read_text())
    indexed = {bytes.fromhex(h): (pid, o, n) for pid, rows in doc["packs"].items() for h, o, n in rows}
    assert indexed == listed
    assert _restored(repo, point, tmp_path / "out") == read_tree(host.vm_dir("vm1"))
    # A repository asked for as v1 is v1, chunk files and all.
    old = Repository.open(tmp_path / "v1", create=True, chunk_size=CS, version=1)
    assert (old.version, type(old.store)) == (1, ChunkStore)
    assert "pack_size" not in json.loads((old.root / "config.json").read_text())


def _restored(repo: Repository, point: str, out: Path) -> dict[str, bytes]:
    restore_to_directory(repo, point, out)
    return read_tree(out)


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated"])
def test_a_lost_or_damaged_index_is_rebuilt_from_the_pack_trailers(host: DirHost, tmp_path: Path, damage: str) -> None:
    repo = open_v2(tmp_path / "repo")
    first = run_backup(repo, host, "vm1", "full").point_id
    expected = _restored(repo, first, tmp_path / "before")
    (index,) = index_files(repo)
    if damage == "missing":
        index.unlink()
    elif damage == "garbage":
        index.write_bytes(b"\x00not json")
    else:
        index.write_bytes(index.read_bytes()[:-40])

    fresh = Repository.open(repo.root)  # another process: the cache no longer matches
    assert _restored(fresh, first, tmp_path / "after") == expected
    assert run_verify(fresh).ok
    store = fresh.store
    assert isinstance(store, PackStore)
    assert store.index.current().unindexed == {p.name for p in packs(repo)}
    # The next backup writes an index for the packs it found without one.
    host.write("vm1", DISK, 0, os.urandom(5000))
    second = run_backup(fresh, host, "vm1", "incremental")
    assert second.new_chunks == 1  # everything else was found in the rebuilt index
    again = Repository.open(repo.root)
    assert again.store.index.current().unindexed == set()  # type: ignore[union-attr]
    assert run_verify(again).ok


def test_readers_use_the_local_cache_instead_of_every_index_file(
    host: DirHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = open_v2(tmp_path / "repo")
    for n in range(3):
        host.write("vm1", DISK, n * MiB, os.urandom(3000))
        run_backup(repo, host, "vm1", "incremental")
    assert len(index_files(repo)) == 3
    Repository.open(repo.root).store.refresh()  # reads the three, writes the cache
    cache = Path(os.environ["XDG_CACHE_HOME"]) / "hvtui" / "index" / f"{repo.id}.json"
    assert cache.is_file()

    reads: list[Path] = []
    real = Path.read_bytes

    def counting(self: Path) -> bytes:
        reads.append(self)
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", counting)
    fresh = Repository.open(repo.root)
    fresh.store.refresh()
    assert reads == [cache]  # one small object, not every index file
    assert set(fresh.store.iter_ids()) == set(repo.store.iter_ids())
    # A damaged cache is only a slower start.
    monkeypatch.setattr(Path, "read_bytes", real)
    cache.write_bytes(b"{broken")
    assert set(Repository.open(repo.root).store.iter_ids()) == set(repo.store.iter_ids())
    assert packindex.decode_index(json.loads(cache.read_bytes())["index"])  # rewritten whole


def test_prune_deletes_packs_without_live_chunks_after_writing_the_new_index(host: DirHost, tmp_path: Path) -> None:
    repo = open_v2(tmp_path / "repo")
    run_backup(repo, host, "vm1", "full")
    old_packs = set(packs(repo))
    host.create_disk("vm1", DISK, 8 * MiB, seed=4, data_mib=3)  # every chunk new
    kept = run_backup(repo, host, "vm1", "full").point_id
    expected = _restored(repo, kept, tmp_path / "before")

    result = run_prune(repo, Retention(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0))
    assert result.points_removed == 1 and result.chunks_removed > 0 and result.bytes_freed > 0
    assert not old_packs & set(packs(repo))  # the first backup's packs are gone (deleted or rewritten)
    live = repo.load_point(kept).chunk_ids()
    for pack in packs(repo):  # what stays is mostly live: packs under the threshold were rewritten
        entries = read_trailer(pack, pack.name)
        assert sum(e.length for e in entries if e.digest in live) >= REPACK_BELOW * sum(e.length for e in entries)
    (index,) = index_files(repo)  # one index naming what stays, superseding the others
    assert set(json.loads(index.read_text())["packs"]) == {p.name for p in packs(repo)}
    fresh = Repository.open(repo.root)
    assert _restored(fresh, kept, tmp_path / "after") == expected
    assert run_verify(fresh).ok


def damage_first_chunk(repo: Repository, point_id: str) -> tuple[bytes, Path]:
    """Flip one bit in the middle of the point's first chunk, inside its pack; return the chunk id
    and the pack's path."""
    digest = sorted(repo.load_point(point_id).chunk_ids())[0]
    pack_id, offset, length = repo.store.location(digest)  # type: ignore[union-attr]
    pack = repo.store.pack_path(pack_id)  # type: ignore[union-attr]
    blob = bytearray(pack.read_bytes())
    blob[offset + length // 2] ^= 0x40
    pack.write_bytes(bytes(blob))
    return digest, pack


def test_a_damaged_blob_in_a_pack_is_named_taken_out_of_the_index_and_stored_again(
    host: DirHost, tmp_path: Path
) -> None:
    repo = open_v2(tmp_path / "repo")
    first = run_backup(repo, host, "vm1", "full").point_id
    digest, _pack = damage_first_chunk(repo, first)

    assert run_verify(repo, quick=True).ok  # quick: the index, the pack and the header only
    report = run_verify(repo)
    assert [(p.chunk, p.points) for p in report.chunk_problems] == [(digest.hex(), [first])]
    assert "corrupt" in report.chunk_problems[0].problem
    assert report.quarantined == [digest.hex()]
    with pytest.raises(RepositoryDamaged, match="quarantined by verify"):
        restore_to_directory(repo, first, tmp_path / "out")
    fresh = Repository.open(repo.root)  # the quarantine is in the index, for every reader
    assert not fresh.store.has(digest)
    second = run_backup(fresh, host, "vm1", "full")
    assert second.new_chunks == 1  # the damaged chunk, stored again in a new pack
    assert run_verify(Repository.open(repo.root)).ok  # which heals the first point too


def test_a_pack_with_a_damaged_trailer_is_refused_by_name(tmp_path: Path, host: DirHost) -> None:
    repo = open_v2(tmp_path / "repo")
    point = run_backup(repo, host, "vm1", "full").point_id
    expected = _restored(repo, point, tmp_path / "before")
    pack = packs(repo)[0]
    data = pack.read_bytes()
    pack.write_bytes(data[:-8] + b"\xff" * 4 + data[-4:])  # the trailer's checksum
    report = run_verify(Repository.open(repo.root))
    assert not report.ok and report.chunk_problems == []  # the index still finds every chunk ...
    assert report.pack_problems == [{"pack": pack.name, "problem": "its trailer does not match its checksum (corrupt)"}]
    assert any("trailer" in step for step in report.next_steps())
    assert _restored(Repository.open(repo.root), point, tmp_path / "after") == expected  # ... and restore works
    pack.write_bytes(data[:-FOOTER.size] + bytes(FOOTER.size))
    with pytest.raises(PackDamaged, match="no pack footer"):
        read_trailer(pack, pack.name)
    pack.write_bytes(data[:-FOOTER.size - 3] + data[-FOOTER.size:])
    with pytest.raises(PackDamaged, match="checksum|outside"):
        read_trailer(pack, pack.name)


def test_pack_size_and_format_are_checked_at_creation(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="pack size must be between 16 and 128 MiB, not 8 MiB"):
        Repository.open(tmp_path / "a", create=True, version=2, pack_size=8 * MiB)
    with pytest.raises(RepositoryError, match="unknown repository format 3"):
        Repository.open(tmp_path / "b", create=True, version=3)
    repo = Repository.open(tmp_path / "c", create=True, version=2, pack_size=64 * MiB)
    config = json.loads((repo.root / "config.json").read_text())
    config["pack_size"] = 1
    (repo.root / "config.json").write_text(json.dumps(config))
    with pytest.raises(RepositoryError, match="invalid pack size"):
        Repository.open(repo.root)


# -- kill -9 during a v2 backup ------------------------------------------------------------
LAB_BACKUP_V2 = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import hvtui.engine.backup as backup
    from hvtui.backups.ledger import CheckpointJournal
    from hvtui.clock import SystemClock
    from hvtui.engine.repository import Repository
    from hvtui.hosts.lab.host import LabHost

    lab_root, repo_path, vm_id, journal_path = sys.argv[1:5]
    host = LabHost.open(Path(lab_root), "lab-a", SystemClock())
    repo = Repository.open(Path(repo_path), create=True, chunk_size=64 * 1024, version=2)
    repo.store.pack_size = 256 * 1024  # publish packs often, so a kill finds some stored

    def progress(event):
        print(json.dumps({"phase": event.phase, "stored": event.bytes_stored}), flush=True)

    journal = CheckpointJournal(Path(journal_path))  # what hvtui's backups record, as Backups does

    def taken(checkpoint_id, name):
        journal.taken("lab-a", vm_id, checkpoint_id, name, None, "")

    result = backup.run_backup(repo, host, vm_id, "full", progress=progress, progress_interval=0, on_checkpoint=taken)
    print(json.dumps({"phase": "result", "point": result.point_id}), flush=True)
    """
)


def _kill_at(lab_root: Path, repo: Path, vm_id: str, phase: str, nth: int) -> bool:
    proc = subprocess.Popen(
        [sys.executable, "-c", LAB_BACKUP_V2, str(lab_root), str(repo), vm_id, str(repo.parent / "checkpoints.jsonl")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        seen.append(event["phase"])
        if event["phase"] == phase and (phase != "backup" or event["stored"] > 0) and seen.count(phase) >= nth:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=120)
            return True
    proc.wait(timeout=120)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    return False


@pytest.mark.slow
def test_kill_9_during_a_v2_backup_leaves_no_damaged_point_and_the_packs_are_reused(tmp_path: Path) -> None:
    host = LabHost.create(tmp_path / "lab" / "lab-a", "lab-a", FixedClock())
    vm_id = host.add_vm("web01", state="Off", disk_sizes=(40 * MiB,), fsync=False)
    rng = random.Random(7)
    for i in range(24):
        half = 512 * KiB
        host.write_guest_data(vm_id, 0, i * 1536 * KiB, b"text %d " % i * (half // 8) + rng.randbytes(half))
    reused_somewhere = False
    for run, (phase, nth) in enumerate([("backup", 1), ("backup", rng.randint(2, 5)), ("commit", 1), ("cleanup", 2)]):
        repo_path = tmp_path / f"repo-{run}"
        killed = _kill_at(host.root, repo_path, vm_id, phase, nth)
        repo = open_v2(repo_path)
        report = run_verify(repo)
        assert report.ok, (phase, report.lines())  # whatever the moment: only complete points
        assert len(repo.point_ids()) <= 1
        if phase == "cleanup" and killed:
            assert len(repo.point_ids()) == 1
        present = set(repo.store.iter_ids())  # packs the dead backup published, from their trailers

        journal = CheckpointJournal(tmp_path / "checkpoints.jsonl")
        leftovers = LeftoverCheckpoints(journal, OneHost(host), AuditLog(tmp_path / "audit.jsonl"))
        clear = functools.partial(leftovers.clear, host.name, vm_id, "web01")
        result = run_backup(repo, host, vm_id, "full", clear_leftovers=clear)
        referenced = repo.load_point(result.point_id).chunk_ids()
        assert result.new_chunks == len(referenced - present), phase  # nothing stored twice
        reused_somewhere |= bool(present & referenced) and result.new_chunks < len(referenced)
        assert lock_records(repo.root) == [] and os.listdir(repo.tmp_dir) == []  # leftovers cleared
        out = tmp_path / f"out-{run}"
        restore_to_directory(Repository.open(repo_path), result.point_id, out)
        assert vdisk.read_logical(out / "web01.vhdx", 0, 40 * MiB) == host.read_disk(vm_id, 0, 0, 40 * MiB)
        assert run_verify(Repository.open(repo_path)).ok
    assert reused_somewhere


# -- the config asks for format 2; the commands work on it -----------------------------------
def test_a_repository_configured_as_format_2_is_created_so_and_every_command_works(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    host = LabHost.create(lab_dir / "lab-a", "lab-a", FixedClock())
    vm_id = host.add_vm("db01", state="Off", disk_sizes=(16 * MiB,), fsync=False)
    host.write_guest_data(vm_id, 0, 3 * MiB, b"database page " * 50_000)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""
hosts:
  - name: lab-a
    kind: lab
repositories:
  - name: main
    path: {tmp_path / "repo"}
    format: 2
    pack_size_mib: 16
    retention:
      keep_last: 1
"""
    )

    def hvtui(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "hvtui", "--config", str(config), "--lab-dir", str(lab_dir), *args]
        return subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)

    first = hvtui("backup", "db01", "--json")
    assert first.returncode == 0, first.stderr
    repo = Repository.open(tmp_path / "repo")
    assert (repo.version, repo.config["pack_size"]) == (2, 16 * MiB) and packs(repo)
    host.write_guest_data(vm_id, 0, 3 * MiB, b"new page " * 10_000)
    second = hvtui("backup", "db01", "--json")
    assert second.returncode == 0 and json.loads(second.stdout)["mode"] == "incremental"
    listed = json.loads(hvtui("points", "db01", "--json").stdout)["points"]
    assert len(listed) == 1  # keep_last 1 removed the first
    verified = hvtui("verify", "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"] is True
    pruned = hvtui("prune", "--yes", "--json")
    assert pruned.returncode == 0 and json.loads(pruned.stdout)["ok"] is True, pruned.stderr
    out = tmp_path / "out"
    restored = hvtui("restore", "db01", "--to", str(out), "--json")
    assert restored.returncode == 0, restored.stderr
    assert vdisk.read_logical(out / "db01.vhdx", 0, 16 * MiB) == host.read_disk(vm_id, 0, 0, 16 * MiB)
    assert hvtui("verify").returncode == 0
    sample = hvtui("verify", "--read-data", "50", "--json")
    assert sample.returncode == 0 and 0 < json.loads(sample.stdout)["chunks_read"] < json.loads(sample.stdout)["chunks_checked"]
    text = hvtui("verify", "--read-data", "50%")
    assert text.returncode == 0 and "a random 50 %" in text.stdout
    for bad_args in (("--read-data", "0"), ("--read-data", "many"), ("--quick", "--read-data", "10")):
        refused = hvtui("verify", *bad_args)
        assert refused.returncode == 2 and "read-data" in refused.stderr and "Traceback" not in refused.stderr
    # a bad value in the config is named, not a traceback
    config.write_text(config.read_text().replace("pack_size_mib: 16", "pack_size_mib: 8"))
    bad = hvtui("points")
    assert bad.returncode == 2 and "pack_size_mib" in bad.stderr and "Traceback" not in bad.stderr


def test_repairing_the_config_of_a_v2_repository_keeps_it_v2(host: DirHost, tmp_path: Path) -> None:
    repo = open_v2(tmp_path / "repo")
    point = run_backup(repo, host, "vm1", "full").point_id
    expected = _restored(repo, point, tmp_path / "before")
    (repo.root / "config.json").unlink()
    plan = plan_config_repair(repo.root)
    assert plan.version == 2 and "format 2" in plan.describe()
    repair_config(plan)
    fresh = Repository.open(repo.root)
    assert fresh.version == 2 and isinstance(fresh.store, PackStore)
    assert _restored(fresh, point, tmp_path / "after") == expected


@pytest.mark.parametrize("version", [1, 2])
def test_verify_read_data_re_reads_a_random_share_and_checks_the_rest_quickly(
    tmp_path: Path, host: DirHost, version: int
) -> None:
    repo = Repository.open(tmp_path / "repo", create=True, chunk_size=CS, version=version)
    point = run_backup(repo, host, "vm1", "full").point_id
    chunks = sorted(repo.load_point(point).chunk_ids())
    share = run_verify(repo, read_share=0.1)
    assert share.ok and share.chunks_checked == len(chunks) and share.chunks_read == -(-len(chunks) // 10)
    assert share.to_dict()["chunks_read"] == share.chunks_read
    assert repo.verification(point) is None  # a sample proves no point whole: nothing recorded
    # A chunk that is gone is found whether or not the sample reads it.
    gone = chunks[0]
    if version == 1:
        repo.store.path(gone).unlink()  # type: ignore[union-attr]
    else:
        repo.store.quarantine(gone)  # type: ignore[union-attr]  # out of the index: as good as gone
    sampled = run_verify(Repository.open(repo.root), read_share=0.1, repair=False)
    assert [p.chunk for p in sampled.chunk_problems] == [gone.hex()]
    full = run_verify(Repository.open(repo.root))
    assert full.chunks_read == len(chunks) and repo.verification(point)["ok"] is False
    with pytest.raises(ValueError, match="read_share"):
        run_verify(repo, read_share=0)


class Crash(BaseException):
    """Stands for a kill at that moment: nothing after it runs (no except clause catches it)."""


@pytest.mark.parametrize("moment", ["repack", "index", "pack-delete", "index-delete"])
def test_prune_interrupted_at_any_step_leaves_every_kept_point_whole(
    host: DirHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moment: str
) -> None:
    repo = open_v2(tmp_path / "repo")
    run_backup(repo, host, "vm1", "full")
    host.create_disk("vm1", DISK, 8 * MiB, seed=4, data_mib=3)
    kept = run_backup(repo, host, "vm1", "full").point_id
    expected = _restored(repo, kept, tmp_path / "before")

    def crash(*_args: object, **_kwargs: object) -> None:
        raise Crash(moment)

    if moment == "repack":
        monkeypatch.setattr(packstore.PackStore, "publish_pack", crash)
    elif moment == "index":
        monkeypatch.setattr(packindex.PackIndex, "write_index", crash)
    else:
        real_unlink = os.unlink
        target = "packs" if moment == "pack-delete" else "index"

        def unlink(path: object, *args: object, **kwargs: object) -> None:
            if f"/{target}/" in str(path):
                raise Crash(moment)
            real_unlink(path, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(packobjects.os, "unlink", unlink)  # packs and index files are deleted there
    with pytest.raises(Crash):
        run_prune(repo, Retention(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0))
    monkeypatch.undo()

    after = Repository.open(repo.root)
    assert run_verify(after).ok
    assert _restored(after, kept, tmp_path / "after") == expected
    run_prune(after, Retention(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0))  # finishes the job
    assert len(index_files(after)) == 1 and run_verify(Repository.open(repo.root)).ok


def test_prune_keeps_a_pack_holding_a_quarantined_chunk_as_evidence(host: DirHost, tmp_path: Path) -> None:
    repo = open_v2(tmp_path / "repo")
    first = run_backup(repo, host, "vm1", "full").point_id
    digest, pack = damage_first_chunk(repo, first)
    damaged = pack.read_bytes()
    assert run_verify(repo).quarantined == [digest.hex()]
    host.create_disk("vm1", DISK, 8 * MiB, seed=4, data_mib=3)  # the VM no longer holds that data
    kept = run_backup(repo, host, "vm1", "full").point_id

    result = run_prune(repo, Retention(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0))
    assert result.points_removed == 1 and result.chunks_removed > 0
    assert pack.read_bytes() == damaged  # the evidence is kept whole, never rewritten
    assert (result.quarantined_packs, result.quarantined_bytes) == (1, len(damaged))
    assert run_verify(Repository.open(repo.root), kept).ok


def test_repo_init_list_and_info(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    host = LabHost.create(lab_dir / "lab-a", "lab-a", FixedClock())
    vm_id = host.add_vm("db01", state="Off", disk_sizes=(8 * MiB,), fsync=False)
    host.write_guest_data(vm_id, 0, MiB, b"database page " * 20_000)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""
hosts:
  - name: lab-a
    kind: lab
repositories:
  - name: main
    path: {tmp_path / "main"}
    default: true
  - name: offsite
    path: {tmp_path / "offsite"}
    format: 2
"""
    )

    def hvtui(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "hvtui", "--config", str(config), "--lab-dir", str(lab_dir), *args]
        return subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)

    listed = json.loads(hvtui("repo", "list", "--json").stdout)["repositories"]
    assert [(r["name"], r["state"]) for r in listed] == [("main", "absent"), ("offsite", "absent")]
    refused = hvtui("--read-only", "repo", "init", "offsite")
    assert refused.returncode == 4 and "read-only" in refused.stderr and not (tmp_path / "offsite").exists()
    made = hvtui("repo", "init", "offsite", "--json")
    assert made.returncode == 0, made.stderr
    assert (json.loads(made.stdout)["format"], json.loads(made.stdout)["pack_size"]) == (2, 32 * MiB)
    again = hvtui("repo", "init", "offsite")
    assert again.returncode == 1 and "already exists (format 2); nothing changed" in again.stderr
    assert hvtui("repo", "init", "main", "--pack-size", "8").returncode == 2
    main = json.loads(hvtui("repo", "init", "--format", "2", "--pack-size", "64", "--json").stdout)
    assert (main["name"], main["format"], main["pack_size"]) == ("main", 2, 64 * MiB)

    backed = hvtui("backup", "db01", "--repo", "offsite", "--json")
    assert backed.returncode == 0, backed.stderr
    info = json.loads(hvtui("repo", "info", "offsite", "--json").stdout)
    assert (info["format"], info["encrypted"], info["backend"], info["points"]) == (2, False, "local", 1)
    assert info["last_backup"] is not None and info["size_bytes"] > 0
    text = hvtui("repo", "list")
    assert text.returncode == 0 and "format 2, packs of 32 MiB" in text.stdout and "1 restore point," in text.stdout
    audit = hvtui("audit", "--json")
    actions = [(e["action"], e["result"]) for e in json.loads(audit.stdout) if e["action"] == "repo.init"]
    assert actions == [("repo.init", "refused"), ("repo.init", "ok"), ("repo.init", "failed"), ("repo.init", "ok")]


PRUNE_V2 = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from hvtui.config import Retention
    from hvtui.engine.prune import run_prune
    from hvtui.engine.repository import Repository

    repo = Repository.open(Path(sys.argv[1]))
    repo.store.pack_size = 256 * 1024

    def progress(event):
        print(json.dumps({"phase": event.phase}), flush=True)

    run_prune(repo, Retention(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0), progress=progress,
              progress_interval=0)
    print(json.dumps({"phase": "finished"}), flush=True)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["gc", "done"])
def test_kill_9_during_a_v2_prune_leaves_every_kept_point_whole(host: DirHost, tmp_path: Path, phase: str) -> None:
    repo = open_v2(tmp_path / "repo")
    run_backup(repo, host, "vm1", "full")
    host.create_disk("vm1", DISK, 8 * MiB, seed=4, data_mib=3)
    kept = run_backup(repo, host, "vm1", "full").point_id
    expected = _restored(repo, kept, tmp_path / "before")
    proc = subprocess.Popen(
        [sys.executable, "-c", PRUNE_V2, str(repo.root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if json.loads(line)["phase"] == phase:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=120)

    after = Repository.open(repo.root)
    assert run_verify(after).ok and [p for p in after.point_ids()] == [kept]
    assert _restored(after, kept, tmp_path / "after") == expected
    run_prune(after, Retention(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0))
    assert lock_records(after.root) == [] and os.listdir(after.tmp_dir) == []
    assert len(index_files(after)) == 1 and run_verify(Repository.open(repo.root)).ok
