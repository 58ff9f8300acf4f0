"""Repository integrity as the operator meets it: damaged manifests, corrupt chunks, the audit log.

Real everything: a lab host with a real VM disk, the real repository on disk, the CLI
through ``hvtui.cli.main`` (in-process, so each run is quick) and the service the console
calls.  Damage is done the way it happens: a truncated manifest, a flipped byte in a chunk
object, a chunk file that disappeared.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from hvtui.audit import AuditLog
from hvtui.cli import main
from hvtui.clock import SystemClock
from hvtui.config import load_config
from hvtui.core import Core
from hvtui.engine.backup import run_backup
from hvtui.engine.repository import Repository
from hvtui.engine.restore import restore_to_directory
from hvtui.engine.verify import run_verify
from hvtui.hosts.lab import disk as vdisk
from hvtui.hosts.lab.host import LabHost
from hvtui.paths import Paths

sys.path.insert(0, str(Path(__file__).parent))
from engine_support import DirHost, read_tree  # noqa: E402

MiB = 1 << 20
HOST = "lab-a"
DISK = 8 * MiB


@pytest.fixture
def estate(tmp_path: Path, paths: Paths, restore_logging: None, request: pytest.FixtureRequest) -> dict:
    """One lab host with VM app01 (some data on its disk) and a config naming repository "main"
    (format 2, the default, unless a test asks for another through ``indirect`` parametrization)."""
    repo_format = getattr(request, "param", None)
    format_line = f"\n    format: {repo_format}" if repo_format is not None else ""
    lab_dir = tmp_path / "lab"
    host = LabHost.create(lab_dir / HOST, HOST, SystemClock())
    vm_id = host.add_vm("app01", state="Off", disk_sizes=(DISK,), fsync=False)
    host.write_guest_data(vm_id, 0, 0, os.urandom(3 * MiB))
    host.write_guest_data(vm_id, 0, 5 * MiB, b"app01 page " * 100_000)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""
hosts:
  - name: {HOST}
    kind: lab
repositories:
  - name: main
    path: {tmp_path / "repo"}
    default: true{format_line}
    retention:
      keep_last: 3
      keep_hourly: 0
      keep_daily: 0
      keep_weekly: 0
      keep_monthly: 0
      keep_yearly: 0
"""
    )
    return {"lab_dir": lab_dir, "config": config, "repo": tmp_path / "repo", "vm_id": vm_id, "paths": paths}


def hvtui(estate: dict, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main(["--config", str(estate["config"]), "--lab-dir", str(estate["lab_dir"]), *args])
    out, err = capsys.readouterr()
    return code, out, err


def backup(estate: dict, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    code, out, err = hvtui(estate, capsys, "backup", "app01", "--json", *extra)
    assert code == 0, err
    return json.loads(out)


def lab_host(estate: dict) -> LabHost:
    return LabHost.open(estate["lab_dir"] / HOST, HOST, SystemClock())


def make_core(estate: dict) -> Core:
    return Core(load_config(estate["config"]), estate["paths"], lab_dir=estate["lab_dir"])


# -- defect 1: a damaged newest manifest ---------------------------------------------------------


def test_a_damaged_newest_manifest_is_reported_and_latest_restore_is_refused(
    estate: dict, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    p1 = backup(estate, capsys, "--mode", "full")["point_id"]
    lab_host(estate).write_guest_data(estate["vm_id"], 0, 0, b"changed after P1 " * 1000)
    p2 = backup(estate, capsys, "--mode", "full")["point_id"]
    manifest = estate["repo"] / "points" / f"{p2}.json"
    os.truncate(manifest, 500)

    # points: the readable ones, plus the damaged one named on stderr and in the JSON.
    code, out, err = hvtui(estate, capsys, "points", "app01", "--json")
    doc = json.loads(out)
    assert code == 0 and [p["id"] for p in doc["points"]] == [p1]
    assert [(d["id"], d["repository"]) for d in doc["damaged"]] == [(p2, "main")]
    assert "not valid JSON" in doc["damaged"][0]["error"]
    assert "1 restore point manifest is damaged in repository main" in err and p2 in err
    assert "hvtui verify" in err
    code, out, err = hvtui(estate, capsys, "points")
    assert code == 0 and p1 in out and p2 not in out and p2 in err and "damaged" in err

    # The console's call: the VM's points and the damaged manifests it cannot attribute.
    core = make_core(estate)
    try:
        listing = core.backups.point_listing(host=HOST, vm=estate["vm_id"])
        assert [i.summary.id for i in listing.points] == [p1]
        assert [d.id for d in listing.damaged] == [p2]
        assert listing.damaged_newer_than(listing.points[-1]) == listing.damaged
        assert [d.id for d in core.backups.damaged_manifests()] == [p2]
    finally:
        core.close()

    # "Latest" would silently be P1: refused, naming P2 and how to restore P1 on purpose.
    target = tmp_path / "latest"
    code, out, err = hvtui(estate, capsys, "restore", "app01", "--to", str(target), "--json")
    assert code == 4, err
    doc = json.loads(out)
    assert doc["ok"] is False and doc["latest_readable"] == p1 and [d["id"] for d in doc["damaged"]] == [p2]
    assert p2 in doc["error"] and f"--point {p1}" in doc["error"] and "hvtui verify" in doc["error"]
    assert not target.exists() or not any(target.iterdir())

    # Asking for the damaged point by id: the specific error, exit 1.
    code, _, err = hvtui(estate, capsys, "restore", "app01", "--point", p2, "--to", str(target))
    assert code == 1
    assert f"the manifest of restore point {p2} in repository main is damaged: not valid JSON" in err
    assert "not a point of VM" not in err

    # The older point on purpose: restored, with the warning still shown.
    code, out, err = hvtui(estate, capsys, "restore", "app01", "--point", p1, "--to", str(target), "--json")
    assert code == 0, err
    assert json.loads(out)["point_id"] == p1 and p2 in err


def test_a_damaged_manifest_older_than_the_latest_point_warns_but_does_not_block(
    estate: dict, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    point = backup(estate, capsys)["point_id"]
    stray = "20200101T000000Z-0badf00d"
    (estate["repo"] / "points" / f"{stray}.json").write_text(json.dumps({"garbage": True}))
    target = tmp_path / "out"
    code, out, err = hvtui(estate, capsys, "restore", "app01", "--to", str(target), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["point_id"] == point and [d["id"] for d in doc["damaged"]] == [stray]
    assert stray in err and "hvtui verify" in err
    host = lab_host(estate)
    assert vdisk.read_logical(target / "app01.vhdx", 0, DISK) == host.read_disk(estate["vm_id"], 0, 0, DISK)


# -- defect 2: a corrupt chunk is quarantined and stored again ---------------------------------------


def flip_a_byte(path: Path) -> bytes:
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x55
    path.write_bytes(bytes(blob))
    return bytes(blob)


def damage_stored_chunk(repo: Repository, digest: bytes) -> Path:
    """Flip a byte in the middle of a stored chunk: its chunk file (format 1) or its blob inside
    its pack (format 2); the file changed."""
    if repo.version == 1:
        path = repo.store.path(digest)  # type: ignore[union-attr]
        flip_a_byte(path)
        return path
    pack_id, offset, length = repo.store.location(digest)  # type: ignore[union-attr, misc]
    path = repo.store.pack_path(pack_id)  # type: ignore[union-attr]
    blob = bytearray(path.read_bytes())
    blob[offset + length // 2] ^= 0x55
    path.write_bytes(bytes(blob))
    return path


@pytest.mark.parametrize("estate", [1, None], indirect=True)  # format 1 (chunk files); the default, 2 (packs)
def test_verify_quarantines_a_corrupt_chunk_and_the_next_full_backup_heals_older_points(
    estate: dict, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    p1 = backup(estate, capsys, "--mode", "full")["point_id"]
    repo = Repository.open(estate["repo"])
    victim = sorted(repo.load_point(p1).chunk_ids())[0]
    damaged = damage_stored_chunk(repo, victim)
    corrupt = damaged.read_bytes()

    code, out, _ = hvtui(estate, capsys, "verify", "--json")
    doc = json.loads(out)
    assert code == 3 and doc["quarantined"] == [victim.hex()] and doc["repair_skipped"] is None
    if repo.version == 1:  # the chunk file renamed .bad
        bad = repo.store.quarantine_path(victim)  # type: ignore[union-attr]
        assert not repo.store.path(victim).exists()  # type: ignore[union-attr]
    else:  # the blob taken out of the index, its pack kept whole as evidence
        bad = damaged
        fresh = Repository.open(estate["repo"])
        assert fresh.store.quarantined(victim) == damaged and not fresh.store.has(victim)
    assert doc["chunk_problems"][0]["quarantined_as"] == bad.relative_to(estate["repo"]).as_posix()
    assert bad.read_bytes() == corrupt  # kept, not deleted
    assert doc["affected_vms"] == [{"host": HOST, "vm_id": estate["vm_id"], "vm_name": "app01", "points": [p1]}]
    assert any("run a full backup of VM lab-a/app01" in step for step in doc["next_steps"])
    quarantines = [e for e in AuditLog(estate["paths"].audit_log).read() if e["action"] == "verify.quarantine"]
    assert [(e["result"], e["args"]["chunks"], e["args"]["points"]) for e in quarantines] == [
        ("ok", [victim.hex()], [p1])
    ]

    code, out, _ = hvtui(estate, capsys, "verify")  # the next verify still reports it, as quarantined
    assert code == 3 and "quarantined by an earlier verify" in out and "What to do:" in out
    code, _, err = hvtui(estate, capsys, "restore", "app01", "--point", p1, "--to", str(tmp_path / "broken"))
    assert code == 1 and f"chunk {victim.hex()[:16]}" in err and "quarantined by verify" in err

    # The next full backup reads the same data, finds the chunk absent and stores it again.
    p2 = backup(estate, capsys, "--mode", "full")
    assert p2["new_chunks"] == 1
    assert Repository.open(estate["repo"]).store.get(victim)  # present and hash-checked
    code, out, _ = hvtui(estate, capsys, "verify")
    assert code == 0, out
    code, _, err = hvtui(estate, capsys, "restore", "app01", "--point", p1, "--to", str(tmp_path / "p1"))
    assert code == 0, err
    host = lab_host(estate)
    assert vdisk.read_logical(tmp_path / "p1" / "app01.vhdx", 0, DISK) == host.read_disk(estate["vm_id"], 0, 0, DISK)

    # Prune leaves the quarantined file alone and says so.
    code, out, err = hvtui(estate, capsys, "prune", "--yes", "--json")
    doc = json.loads(out)
    assert code == 0, err
    assert (doc["quarantined_files"], doc["quarantined_bytes"]) == (1, len(corrupt)) and bad.read_bytes() == corrupt
    assert doc["quarantined_packs"] == (0 if repo.version == 1 else 1)


@pytest.mark.parametrize("estate", [1, None], indirect=True)  # format 1 (chunk files); the default, 2 (packs)
def test_read_only_verify_reports_but_does_not_quarantine(estate: dict, capsys: pytest.CaptureFixture[str]) -> None:
    p1 = backup(estate, capsys)["point_id"]
    repo = Repository.open(estate["repo"])
    victim = sorted(repo.load_point(p1).chunk_ids())[-1]
    damaged = damage_stored_chunk(repo, victim)
    corrupt = damaged.read_bytes()
    code, out, _ = hvtui(estate, capsys, "--read-only", "verify")
    assert code == 3 and "Not repaired:" in out and "read-only" in out and "Quarantined" not in out
    fresh = Repository.open(estate["repo"])  # what the verify left: the damaged object in place, in the index
    assert damaged.read_bytes() == corrupt and fresh.store.quarantined(victim) is None and fresh.store.has(victim)
    code, out, _ = hvtui(estate, capsys, "--read-only", "verify", "--json")
    doc = json.loads(out)
    assert code == 3 and doc["quarantined"] == [] and "read-only" in doc["repair_skipped"]
    assert "without --quick, not read-only" in doc["next_steps"][0]


@pytest.mark.parametrize(("how", "version"), [("deleted", 1), ("quarantined", 1), ("quarantined", 2)])  # a pack's blob is never deleted alone
def test_an_incremental_reads_again_the_parent_chunks_the_repository_lacks(tmp_path: Path, how: str, version: int) -> None:
    """Unchanged files and unchanged ranges of changed files: neither may reference a lost chunk."""
    host = DirHost(tmp_path / "host")
    host.add_vm("vm1", "web01")
    host.create_disk("vm1", "still.vhdx", 4 * MiB, seed=11, data_mib=3)  # unchanged between backups
    host.create_disk("vm1", "busy.vhdx", 4 * MiB, seed=12, data_mib=3)  # changes, tracked
    repo = Repository.open(tmp_path / "repo", create=True, chunk_size=64 * 1024, version=version)
    first = run_backup(repo, host, "vm1", "full").point_id
    frozen = read_tree(host.vm_dir("vm1"))
    parent = repo.load_point(first)
    still = next(f for f in parent.files if f.path == "still.vhdx")
    busy = next(f for f in parent.files if f.path == "busy.vhdx")
    lost = [next(c for c in still.chunks if c is not None), next(c for c in reversed(busy.chunks) if c is not None)]
    for digest in lost:
        if how == "deleted":
            repo.store.path(digest).unlink()  # type: ignore[union-attr]
        else:
            damage_stored_chunk(repo, digest)
    if how == "quarantined":
        assert sorted(run_verify(repo).quarantined) == sorted(d.hex() for d in lost)
    host.write("vm1", "busy.vhdx", 0, os.urandom(5000))  # far from busy's lost (last) chunk

    result = run_backup(repo, host, "vm1", "incremental")
    assert (result.mode, result.files_unchanged, result.files_changed_ranges) == ("incremental", 1, 1)
    # Every position that referenced a lost chunk was read again, except busy's first chunk (changed anyway).
    positions = [(f.path, i) for f in parent.files for i, c in enumerate(f.chunks) if c in lost]
    expected = len([p for p in positions if p != ("busy.vhdx", 0)])
    assert expected >= 2 and result.chunks_reread == expected
    assert any("read again from the VM" in w for w in result.warnings)
    assert all(repo.store.has(digest) for digest in lost)
    assert run_verify(repo).ok  # the new point is complete and the first one is healed
    restore_to_directory(repo, first, tmp_path / "first")
    restore_to_directory(repo, result.point_id, tmp_path / "new")
    assert read_tree(tmp_path / "first") == frozen
    assert read_tree(tmp_path / "new") == read_tree(host.vm_dir("vm1"))


# -- defect 3: the audit log -------------------------------------------------------------------------


def test_the_audit_log_records_the_mode_that_ran_and_retention_deletions(
    estate: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    first = backup(estate, capsys)  # no --mode: asks for an incremental, runs as the first full
    assert (first["mode"], first["requested_mode"]) == ("full", "incremental")
    later = [backup(estate, capsys) for _ in range(3)]  # keep_last 3: the fourth removes the first
    assert [p["pruned"] for p in later] == [[], [], [first["point_id"]]]

    entries = AuditLog(estate["paths"].audit_log).read()
    backups = [e for e in entries if e["action"] == "backup"]
    assert [(e["args"]["mode"], e["args"].get("requested")) for e in backups] == [
        ("full", "incremental"),
        ("incremental", None),
        ("incremental", None),
        ("incremental", None),
    ]
    assert [e["args"]["point"] for e in backups] == [first["point_id"]] + [p["point_id"] for p in later]
    (retention,) = [e for e in entries if e["action"] == "backup.retention"]
    assert retention["result"] == "ok" and retention["vm"] == "app01" and retention["host"] == HOST
    assert retention["args"]["removed"] == [first["point_id"]]
    assert retention["args"]["after"] == later[-1]["point_id"] and retention["args"]["keep"] == "last 3"

    code, out, _ = hvtui(estate, capsys, "audit")
    assert code == 0 and "mode=full requested=incremental" in out
    assert f"removed={first['point_id']}" in out
