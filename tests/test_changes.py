"""Change windows on a real lab estate: one checkpoint per VM through the checkpoint actions,
a VM that fails is reported and the others go on, the window is stored durably and read back
by a new core; roll back, promote (backup first, checkpoint deleted only after it succeeded)
and discard, each audited with the window's name."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from changes_support import (
    HOST_B,
    build_estate,
    checkpoint_names,
    disk_digest,
    make_core,
    write_guest,
)

from hvtui.changes import VMState
from hvtui.errors import HvtuiError, UsageError
from hvtui.paths import Paths

NAME = "pre-patch-KB5031364"


@pytest.fixture
def estate(tmp_path: Path) -> dict[str, tuple[str, str]]:
    return build_estate(tmp_path)


def vms_of(core, names):  # noqa: ANN001, ANN201
    return [core.inventory.find_vm(name) for name in names]


def test_open_on_five_vms_with_one_host_offline_reports_it_and_goes_on(tmp_path: Path, paths: Paths, estate) -> None:
    core = make_core(tmp_path, paths)
    try:
        targets = vms_of(core, ["web1", "web2", "sql1", "app1", "app2"])
        shutil.move(tmp_path / HOST_B, tmp_path / "b-away")  # lab-b goes off-line after it was read
        report = core.changes.open(NAME, targets, "Production", ticket="CHG-1")
    finally:
        core.close()
    by_vm = {o.vm_name: o for o in report.outcomes}
    assert [name for name, o in by_vm.items() if o.ok] == ["web1", "web2", "sql1"]
    assert not by_vm["app1"].ok and "lab-b" in by_vm["app1"].message and not by_vm["app1"].refused
    assert report.exit_code == 1
    for name in ("web1", "web2", "sql1"):
        assert checkpoint_names(tmp_path, *estate[name]) == [NAME]

    # A new core (a restart, or the CLI) reads the same window back from the state directory.
    again = make_core(tmp_path, paths)
    try:
        window = again.changes.window(NAME)
    finally:
        again.close()
    assert window.ticket == "CHG-1" and window.checkpoint_type == "Production" and window.is_open
    states = {v.vm_name: v.state for v in window.vms}
    assert states == {"web1": VMState.OPEN, "web2": VMState.OPEN, "sql1": VMState.OPEN, "app1": VMState.FAILED, "app2": VMState.FAILED}
    assert all(v.checkpoint_id for v in window.vms if v.state is VMState.OPEN)
    assert paths.change_windows.stat().st_mode & 0o777 == 0o600
    creates = [e for e in again.audit.read() if e["action"] == "checkpoint.create"]
    assert len(creates) == 5 and all(e["args"]["window"] == NAME and e["args"]["ticket"] == "CHG-1" for e in creates)
    assert sorted(e["result"] for e in creates) == ["failed", "failed", "ok", "ok", "ok"]


def test_a_read_only_host_is_refused_and_the_others_go_on(tmp_path: Path, paths: Paths, estate) -> None:
    core = make_core(tmp_path, paths, read_only_b=True)
    try:
        report = core.changes.open(NAME, vms_of(core, ["web1", "app1"]))
    finally:
        core.close()
    by_vm = {o.vm_name: o for o in report.outcomes}
    assert by_vm["web1"].ok and not by_vm["app1"].ok and by_vm["app1"].refused
    assert "read-only" in by_vm["app1"].message
    assert checkpoint_names(tmp_path, *estate["app1"]) == []
    assert checkpoint_names(tmp_path, *estate["web1"]) == [NAME]


def test_rollback_two_then_promote_the_rest(tmp_path: Path, paths: Paths, estate) -> None:
    names = ["web1", "web2", "sql1", "app1"]
    before = {name: disk_digest(tmp_path, *estate[name]) for name in names}
    core = make_core(tmp_path, paths)
    try:
        core.changes.open(NAME, vms_of(core, names))
        for seed, name in enumerate(names):  # the change: every VM's disk is written
            write_guest(tmp_path, *estate[name], seed=100 + seed)
        changed = {name: disk_digest(tmp_path, *estate[name]) for name in names}
        assert all(changed[n] != before[n] for n in names)

        rolled = core.changes.rollback(NAME, ["web1", "app1"])
        assert [o.ok for o in rolled.outcomes] == [True, True]
        assert disk_digest(tmp_path, *estate["web1"]) == before["web1"]
        assert disk_digest(tmp_path, *estate["app1"]) == before["app1"]
        assert disk_digest(tmp_path, *estate["web2"]) == changed["web2"]  # not chosen: untouched

        promoted = core.changes.promote(NAME, ["web2", "sql1"])
        assert [o.ok for o in promoted.outcomes] == [True, True], promoted.outcomes
        points = core.backups.point_listing().points
    finally:
        core.close()
    assert sorted(p.summary.vm_name for p in points) == ["sql1", "web2"]
    assert checkpoint_names(tmp_path, *estate["web2"]) == []
    assert checkpoint_names(tmp_path, *estate["sql1"]) == []
    assert disk_digest(tmp_path, *estate["web2"]) == changed["web2"]  # promoted: the change stays
    assert checkpoint_names(tmp_path, *estate["web1"]) == [NAME]  # rolled back: still held
    window = promoted.window
    states = {v.vm_name: v.state for v in window.vms}
    assert states == {"web1": VMState.ROLLED_BACK, "app1": VMState.ROLLED_BACK, "web2": VMState.PROMOTED, "sql1": VMState.PROMOTED}
    assert {v.vm_name: v.point_id for v in window.vms if v.point_id} == {p.summary.vm_name: p.summary.id for p in points}
    audit = [(e["action"], e["vm"], e["result"]) for e in core.audit.read() if e["args"].get("window") == NAME]
    assert ("checkpoint.apply", "web1", "ok") in audit and ("checkpoint.apply", "app1", "ok") in audit
    assert ("change.promote", "web2", "ok") in audit and ("checkpoint.remove", "sql1", "ok") in audit


def test_a_failed_backup_keeps_the_checkpoint_and_says_why(tmp_path: Path, paths: Paths, estate) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the repository should be\n")
    core = make_core(tmp_path, paths, repository=blocker / "repo")
    try:
        core.changes.open(NAME, vms_of(core, ["web1"]))
        report = core.changes.promote(NAME)
    finally:
        core.close()
    (outcome,) = report.outcomes
    assert not outcome.ok and outcome.message.startswith("backup failed, checkpoint kept:")
    assert checkpoint_names(tmp_path, *estate["web1"]) == [NAME]
    (entry,) = report.window.vms
    assert entry.state is VMState.OPEN and entry.error == outcome.message
    assert "last step failed: backup failed" in entry.remaining
    promote = [e for e in core.audit.read() if e["action"] == "change.promote"]
    assert [(e["result"], e["args"]["window"]) for e in promote] == [("failed", NAME)]
    assert not [e for e in core.audit.read() if e["action"] == "checkpoint.remove"]


def test_discard_deletes_the_checkpoints_and_closes_the_window(tmp_path: Path, paths: Paths, estate) -> None:
    core = make_core(tmp_path, paths)
    try:
        core.changes.open(NAME, vms_of(core, ["web1", "app2"]))
        report = core.changes.discard(NAME)
        with pytest.raises(UsageError, match="closed"):
            core.changes.discard(NAME)
        assert core.changes.open_windows() == []
        # A closed window's name can be used again.
        assert core.changes.open(NAME, vms_of(core, ["web1"])).window.is_open
    finally:
        core.close()
    assert [o.ok for o in report.outcomes] == [True, True] and not report.window.is_open
    assert checkpoint_names(tmp_path, *estate["app2"]) == []


def test_names_are_checked_and_an_open_name_is_not_reused(tmp_path: Path, paths: Paths, estate) -> None:
    core = make_core(tmp_path, paths)
    try:
        with pytest.raises(UsageError, match="empty"):
            core.changes.open("  ", vms_of(core, ["web1"]))
        with pytest.raises(UsageError, match="at least one VM"):
            core.changes.open(NAME, [])
        with pytest.raises(UsageError, match="ticket"):
            core.changes.open(NAME, vms_of(core, ["web1"]), ticket="x\x1b[2J")
        core.changes.open(NAME, vms_of(core, ["web1"]))
        with pytest.raises(UsageError, match="open already"):
            core.changes.open(NAME, vms_of(core, ["web2"]))
        with pytest.raises(UsageError, match="not in it"):
            core.changes.rollback(NAME, ["web2"])
        with pytest.raises(UsageError, match="no change window named 'nope'"):
            core.changes.window("nope")
    finally:
        core.close()
    assert checkpoint_names(tmp_path, *estate["web2"]) == []


def test_a_damaged_window_file_is_reported_and_left_as_it_is(tmp_path: Path, paths: Paths, estate) -> None:
    paths.change_windows.parent.mkdir(parents=True, exist_ok=True)
    paths.change_windows.write_text('{"version": 1, "windows": [{"name": ')
    core = make_core(tmp_path, paths)
    try:
        with pytest.raises(HvtuiError, match="is damaged .*left as it is"):
            core.changes.windows()
        with pytest.raises(HvtuiError, match="is damaged"):
            core.changes.open(NAME, vms_of(core, ["web1"]))
    finally:
        core.close()
    assert paths.change_windows.read_text() == '{"version": 1, "windows": [{"name": '
    assert checkpoint_names(tmp_path, *estate["web1"]) == []


def test_a_checkpoint_the_host_will_not_delete_after_the_backup_is_reported_not_a_crash(
    tmp_path: Path, paths: Paths, estate, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hvtui.errors import HostError
    from hvtui.hosts.lab.host import LabHost

    def merge_fails(self: LabHost, vm_id: str, checkpoint_id: str, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        raise HostError(self.name, "remove checkpoint", "the merge failed: the file is in use")

    core = make_core(tmp_path, paths)
    try:
        core.changes.open(NAME, vms_of(core, ["web1"]))
        monkeypatch.setattr(LabHost, "remove_checkpoint", merge_fails)
        report = core.changes.promote(NAME)
    finally:
        core.close()
    (outcome,) = report.outcomes
    (entry,) = report.window.vms
    assert not outcome.ok and not outcome.refused
    assert outcome.message == (
        f"backed up as point {entry.point_id}, but the checkpoint was kept: "
        "lab-a: remove checkpoint: the merge failed: the file is in use"
    )
    assert entry.state is VMState.OPEN and entry.point_id and checkpoint_names(tmp_path, *estate["web1"]) == [NAME]
