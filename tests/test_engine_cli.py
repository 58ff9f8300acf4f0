"""`hvtui backup/restore/points/verify/prune` as a cron job sees them: real processes, exit codes, JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hvtui.clock import SystemClock
from hvtui.engine.repository import Repository
from hvtui.hosts.lab import disk as vdisk
from hvtui.hosts.lab.host import LabHost

sys.path.insert(0, str(Path(__file__).parent))
from engine_support import flip_last_byte_of_chunk, store_chunk_again  # noqa: E402

MiB = 1 << 20


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Shared by the tests that do not care what the others backed up before them."""
    return build_estate(tmp_path_factory.mktemp("cli"))


@pytest.fixture
def own_estate(tmp_path: Path) -> dict:
    """For a test that counts points from the first backup on: in random order, another test
    had already backed db01 up, so its "first" backup was an incremental."""
    return build_estate(tmp_path / "cli")


def build_estate(root: Path) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    lab_dir = root / "lab"
    clock = SystemClock()
    ids = {}
    for name in ("lab-a", "lab-b"):
        host = LabHost.create(lab_dir / name, name, clock)
        ids[(name, "web01")] = host.add_vm("web01", state="Off", disk_sizes=(8 * MiB,), fsync=False)
        host.write_guest_data(ids[(name, "web01")], 0, MiB, os.urandom(300_000))
    host_a = LabHost.open(lab_dir / "lab-a", "lab-a", clock)
    ids[("lab-a", "db01")] = host_a.add_vm("db01", state="Off", disk_sizes=(16 * MiB,), fsync=False)
    host_a.write_guest_data(ids[("lab-a", "db01")], 0, 3 * MiB, b"database page " * 50_000)
    config = root / "config.yaml"
    config.write_text(
        f"""
hosts:
  - name: lab-a
    kind: lab
  - name: lab-b
    kind: lab
repositories:
  - name: main
    path: {root / "repo"}
    default: true
    retention:
      keep_last: 2
      keep_daily: 0
      keep_weekly: 0
      keep_monthly: 0
"""
    )
    return {"root": root, "lab_dir": lab_dir, "config": config, "ids": ids, "repo": root / "repo"}


def hvtui(estate: dict, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "hvtui", "--config", str(estate["config"]), "--lab-dir", str(estate["lab_dir"]), *args]
    return subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)


def as_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout)


def test_backup_points_restore_verify_prune_exit_codes_and_json(own_estate: dict, tmp_path: Path) -> None:
    estate = own_estate
    first = hvtui(estate, "backup", "db01", "--json")
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""  # --json: stdout for the document, stderr for errors only (no progress)
    doc = as_json(first)
    assert doc["ok"] is True and doc["mode"] == "full" and doc["vm_name"] == "db01" and doc["repository"] == "main"

    host = LabHost.open(estate["lab_dir"] / "lab-a", "lab-a", SystemClock())
    vm_id = estate["ids"][("lab-a", "db01")]
    host.write_guest_data(vm_id, 0, 3 * MiB, b"new page " * 10_000)  # only the full keeps the old data
    second = as_json(hvtui(estate, "backup", "db01", "--json"))
    assert second["mode"] == "incremental" and second["parent"] == doc["point_id"]
    diff = hvtui(estate, "backup", "db01", "--mode", "differential")
    assert diff.returncode == 0 and "differential restore point" in diff.stdout
    assert "retention removed point" in diff.stdout  # keep_last 2 after a successful backup

    listed = as_json(hvtui(estate, "points", "db01", "--json"))["points"]
    assert [p["mode"] for p in listed] == ["incremental", "differential"]
    table = hvtui(estate, "points")
    assert table.returncode == 0 and "db01" in table.stdout and "POINT" in table.stdout

    out = tmp_path / "restored"
    restored = hvtui(estate, "restore", "db01", "--to", str(out), "--json")
    assert restored.returncode == 0, restored.stderr
    assert as_json(restored)["point_id"] == listed[-1]["id"]
    assert vdisk.read_logical(out / "db01.vhdx", 0, 16 * MiB) == host.read_disk(vm_id, 0, 0, 16 * MiB)
    again = hvtui(estate, "restore", "db01", "--to", str(out))
    assert again.returncode == 4 and "refusing to overwrite" in again.stderr  # a refusal (issue 15.8)

    # Changes to a VM need a confirmation: no terminal and no --yes is a refusal.
    refused = hvtui(estate, "restore", "db01", "--in-place")
    assert refused.returncode == 4 and "re-run with --yes" in refused.stderr
    in_place = hvtui(estate, "restore", "db01", "--in-place", "--yes", "--point", listed[0]["id"], "--json")
    assert in_place.returncode == 0, in_place.stderr
    copy = as_json(hvtui(estate, "restore", "db01", "--as", "db01-copy", "--yes", "--json"))
    assert copy["vm_name"] == "db01-copy"
    assert "db01-copy" in {vm.name for vm in host.inventory(10).vms}

    ok = hvtui(estate, "verify", "--json")
    assert ok.stderr == ""
    assert ok.returncode == 0 and as_json(ok)["ok"] is True
    repo = Repository.open(estate["repo"])
    victim = sorted(repo.load_point(listed[-1]["id"]).chunk_ids())[0]
    good = repo.store.get(victim)
    flip_last_byte_of_chunk(repo, victim)  # in its chunk file (format 1) or its pack (format 2)
    assert hvtui(estate, "verify", "--quick").returncode == 0  # presence only: a flipped byte passes
    damaged = hvtui(estate, "verify", "--json")
    assert damaged.returncode == 3
    problems = as_json(damaged)["chunk_problems"]
    assert problems[0]["chunk"] == victim.hex() and listed[-1]["id"] in problems[0]["points"]
    assert as_json(damaged)["quarantined"] == [victim.hex()]  # kept: renamed .bad (format 1), out of the index (2)
    text = hvtui(estate, "verify")
    assert text.returncode == 3 and f"chunk {victim.hex()[:16]}" in text.stdout
    broken = hvtui(estate, "restore", "db01", "--to", str(tmp_path / "broken"))
    assert broken.returncode == 1 and "quarantined by verify" in broken.stderr
    assert not list((tmp_path / "broken").iterdir())
    store_chunk_again(Repository.open(estate["repo"]), victim, good)  # what the next full backup would store

    dry = hvtui(estate, "prune", "--dry-run", "--json")
    dry_doc = as_json(dry)
    assert dry.returncode == 0 and dry_doc["dry_run"] is True and dry.stderr == ""
    # The point retention dropped after the third backup left its own chunks behind.
    assert dry_doc["chunks_unreferenced"] > 0
    unconfirmed = hvtui(estate, "prune")
    assert unconfirmed.returncode == 4 and "--yes" in unconfirmed.stderr
    pruned = hvtui(estate, "prune", "--yes", "--json")
    assert pruned.returncode == 0 and as_json(pruned)["ok"] is True
    assert hvtui(estate, "verify").returncode == 0


def test_ambiguous_and_unknown_vms_are_usage_errors(estate: dict) -> None:
    ambiguous = hvtui(estate, "backup", "web01")
    assert ambiguous.returncode == 2
    assert "lab-a/web01" in ambiguous.stderr and "lab-b/web01" in ambiguous.stderr and "--host" in ambiguous.stderr
    chosen = hvtui(estate, "backup", "web01", "--host", "lab-b", "--json")
    assert chosen.returncode == 0 and as_json(chosen)["host"] == "lab-b"
    unknown = hvtui(estate, "backup", "nosuchvm", "--json")
    assert unknown.returncode == 2 and as_json(unknown)["ok"] is False
    assert hvtui(estate, "restore", "nosuchvm", "--to", "/tmp/x").returncode == 2
    assert hvtui(estate, "backup", "db01", "--repo", "nope").returncode == 2


def test_read_only_refuses_changes_with_exit_code_4(estate: dict, tmp_path: Path) -> None:
    assert hvtui(estate, "backup", "db01").returncode == 0
    for args in (
        ["backup", "db01"],
        ["restore", "db01", "--in-place", "--yes"],
        ["restore", "db01", "--as", "x1", "--yes"],
        ["prune", "--yes"],
    ):
        proc = hvtui(estate, "--read-only", *args)
        assert proc.returncode == 4, (args, proc.stderr)
        assert "read-only" in proc.stderr
    as_doc = hvtui(estate, "backup", "db01", "--read-only", "--json")
    assert as_doc.returncode == 4 and as_json(as_doc) == {
        "ok": False,
        "error": as_json(as_doc)["error"],
        "exit_code": 4,
    }
    reading = hvtui(estate, "--read-only", "restore", "db01", "--to", str(tmp_path / "ro"))
    assert reading.returncode == 0 and (tmp_path / "ro" / "db01.vhdx").exists()
    assert hvtui(estate, "points", "--read-only").returncode == 0


def test_a_host_that_cannot_be_read_is_a_failure_not_a_usage_error(estate: dict, tmp_path: Path) -> None:
    # The request is fine; the host is what fails: 1, so a script can tell it from a typo (2).
    config = tmp_path / "config.yaml"
    extra_host = "  - name: lab-b\n    kind: lab\n  - name: lab-gone\n    kind: lab\n"
    config.write_text(estate["config"].read_text().replace("  - name: lab-b\n    kind: lab\n", extra_host), encoding="utf-8")
    cmd = [sys.executable, "-m", "hvtui", "--config", str(config), "--lab-dir", str(estate["lab_dir"])]
    gone = subprocess.run([*cmd, "backup", "web01", "--host", "lab-gone"], capture_output=True, text=True, timeout=300)
    assert gone.returncode == 1, gone.stderr
    assert "host 'lab-gone' cannot be read" in gone.stderr
    typo = subprocess.run([*cmd, "backup", "web01x", "--host", "lab-a"], capture_output=True, text=True, timeout=300)
    assert typo.returncode == 2 and "did you mean: web01" in typo.stderr
