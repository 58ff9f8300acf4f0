"""Repository integrity as the operator meets it: damaged manifests, corrupt chunks, the audit log.

Real everything: a lab host with a real VM disk, the real repository on disk, the CLI
through ``hvtui.cli.main`` (in-process, so each run is quick) and the service the console
calls.  Damage is done the way it happens: a truncated manifest, a flipped byte in a chunk
object, a chunk file that disappeared.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hvtui.cli import main
from hvtui.clock import SystemClock
from hvtui.config import load_config
from hvtui.core import Core
from hvtui.hosts.lab import disk as vdisk
from hvtui.hosts.lab.host import LabHost
from hvtui.paths import Paths

MiB = 1 << 20
HOST = "lab-a"
DISK = 8 * MiB


@pytest.fixture
def estate(tmp_path: Path, paths: Paths, restore_logging: None) -> dict:
    """One lab host with VM app01 (some data on its disk) and a config naming repository "main"."""
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
    default: true
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
