"""Inventory, policy, checkpoint actions and the CLI on the embedded lab (real files).

A small-scale demo lab (same estate, a fraction of the data) is built once for the
read-only tests; tests that change it build their own.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hvtui.cli import main
from hvtui.clock import SystemClock
from hvtui.config import Config
from hvtui.core import Core
from hvtui.errors import ReadOnlyError, RepositoryError
from hvtui.hosts.lab.estate import init_lab
from hvtui.model import Finding, Severity
from hvtui.paths import Paths
from hvtui.policy import evaluate, summary

LAB_SIZE = 0.05  # the demo estate with 5 % of its data: same problems, a fraction of the bytes


def build_lab(lab_dir: Path) -> Path:
    # The system clock, like the CLI's: ages seen by `hvtui check` match those built in.
    init_lab(lab_dir, "demo", SystemClock(), size=LAB_SIZE)
    return lab_dir


@pytest.fixture(scope="module")
def pristine_lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once and never opened: the others copy it (a lab directory is relocatable,
    and a copy takes a tenth of the time of a build)."""
    return build_lab(tmp_path_factory.mktemp("pristine") / "lab")


@pytest.fixture(scope="module")
def shared_lab(pristine_lab: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo lab no test changes (reading it still lets the guests write)."""
    return Path(shutil.copytree(pristine_lab, tmp_path_factory.mktemp("shared") / "lab"))


@pytest.fixture
def own_lab(pristine_lab: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pristine_lab, tmp_path / "lab"))


def lab_core(lab_dir: Path, paths: Paths, read_only: bool = False) -> Core:
    return Core(Config.lab_default(paths), paths, clock=SystemClock(), read_only=read_only, lab_dir=lab_dir)


def by_vm(findings: list[Finding]) -> dict[str, set[tuple[str, Severity]]]:
    out: dict[str, set[tuple[str, Severity]]] = {}
    for f in findings:
        out.setdefault(f.vm_name or f.host, set()).add((f.rule, f.severity))
    return out


def test_an_unreadable_repository_reads_as_no_backup(
    shared_lab: Path, paths: Paths, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The policy's "last backup" lookup never breaks a check: an unreadable repository is
    "no backup known" (so checkpoint-not-backup is raised), and the log says why."""
    core = lab_core(shared_lab, paths)
    inventory = core.inventory.refresh()

    def unreadable(host: str, vm_id: str) -> None:
        raise RepositoryError("repository 'default': permission denied")

    monkeypatch.setattr(core.backups, "last_backup", unreadable)
    sql01 = next(vm for host in inventory.hosts for vm in host.vms if vm.name == "sql01")
    assert core.backups.last_backup_of(sql01) is None
    assert "last backup of lab-hv01/sql01 unknown: repository 'default': permission denied" in caplog.text
    found = by_vm(evaluate(inventory, core.config.policy, core.backups.last_backup_of))
    assert ("checkpoint-not-backup", Severity.CRIT) in found["sql01"]


def test_the_demo_lab_produces_the_findings_it_was_built_for(shared_lab: Path, paths: Paths) -> None:
    core = lab_core(shared_lab, paths)
    inventory = core.inventory.refresh()
    assert [h.name for h in inventory.hosts] == ["lab-hv01", "lab-hv02", "lab-hv03"]
    assert all(h.error is None for h in inventory.hosts)
    found = by_vm(evaluate(inventory, core.config.policy, core.backups.last_backup_of))

    assert ("checkpoint-age", Severity.CRIT) in found["sql01"]  # forgotten for weeks
    assert {("chain-depth", Severity.CRIT), ("checkpoint-count", Severity.WARN)} <= found["app01"]  # nine deep
    assert ("recovery-checkpoint-left", Severity.CRIT) in found["file01"]  # a backup died two days ago
    assert ("running-on-avhdx", Severity.CRIT) in found["web02"]  # a merge failed
    assert ("stray-disk-file", Severity.WARN) in found["exch01"]
    assert ("merge-headroom", Severity.CRIT) in found["fs02"]  # nearly full volume
    assert ("checkpoint-age", Severity.WARN) in found["test01"]  # four days: a warning
    assert ("checkpoint-not-backup", Severity.CRIT) in found["build01"]  # no backup exists in the lab
    # Replica recovery points and healthy VMs raise nothing.
    for quiet in ("dc02-replica", "dc01", "web01", "mon01", "print01", "legacy01"):
        assert quiet not in found, (quiet, found.get(quiet))


def test_deleting_a_checkpoint_in_the_lab_merges_and_the_finding_goes(own_lab: Path, paths: Paths) -> None:
    core = lab_core(own_lab, paths)
    sql01 = core.inventory.find_vm("sql01", host="lab-hv01")
    (forgotten,) = sql01.checkpoints
    avhdx = Path(sql01.disks[0].path)
    assert avhdx.suffix == ".avhdx" and avhdx.exists()
    before = evaluate(core.inventory.latest, core.config.policy)
    assert any(f.rule == "checkpoint-age" and f.checkpoint_id == forgotten.id for f in before)

    plan = core.actions.remove("lab-hv01", sql01.id, forgotten.id)
    assert plan.exact and [Path(m.source) for m in plan.merges] == [avhdx]

    after_inv = core.inventory.refresh()
    merged = after_inv.vm("lab-hv01", sql01.id)
    assert merged.checkpoints == () and merged.chain_depth == 0
    assert not avhdx.exists() and merged.disks[0].path.endswith(".vhdx")
    after = [f for f in evaluate(after_inv, core.config.policy) if f.vm_id == sql01.id]
    assert after == []
    assert [(e["action"], e["result"], e["vm"]) for e in core.audit.read()] == [("checkpoint.remove", "ok", "sql01")]


def test_create_rename_apply_on_the_lab(own_lab: Path, paths: Paths) -> None:
    core = lab_core(own_lab, paths)
    vm = core.inventory.find_vm("dc01")
    created = core.actions.create(vm.host, vm.id, None, "Standard")
    core.actions.rename(vm.host, vm.id, created.id, "before the change")
    plan = core.actions.plan_apply(vm.host, vm.id, created.id)
    assert "LOST" in plan.describe()
    core.actions.apply(vm.host, vm.id, created.id)
    refreshed = core.inventory.refresh().vm(vm.host, vm.id)
    assert [cp.name for cp in refreshed.checkpoints] == ["before the change"]
    assert refreshed.parent_checkpoint_id == created.id
    assert [(e["action"], e["result"]) for e in core.audit.read()] == [
        ("checkpoint.create", "ok"),
        ("checkpoint.rename", "ok"),
        ("checkpoint.apply", "ok"),
    ]


def test_a_real_backup_clears_checkpoint_not_backup(own_lab: Path, paths: Paths) -> None:
    # Runs once the lab can be backed up (the lab's backup source lands separately).
    pytest.importorskip("hvtui.hosts.lab.backup")
    core = lab_core(own_lab, paths)
    test01 = core.inventory.find_vm("test01")

    def not_backup(inventory) -> list[Finding]:
        findings = evaluate(inventory, core.config.policy, core.backups.last_backup_of)
        return [f for f in findings if f.rule == "checkpoint-not-backup" and f.vm_id == test01.id]

    assert not_backup(core.inventory.latest)
    core.backups.backup(test01.host, test01.id, mode="full")
    assert not_backup(core.inventory.refresh()) == []


def test_read_only_refuses_changes_through_the_core_on_the_lab(shared_lab: Path, paths: Paths) -> None:
    core = lab_core(shared_lab, paths, read_only=True)
    app01 = core.inventory.find_vm("app01")
    before = core.inventory.latest.vm(app01.host, app01.id)
    for change in (
        lambda: core.actions.create(app01.host, app01.id, "x"),
        lambda: core.actions.remove(app01.host, app01.id, app01.checkpoints[0].id),
        lambda: core.actions.apply(app01.host, app01.id, app01.checkpoints[0].id),
        lambda: core.actions.rename(app01.host, app01.id, app01.checkpoints[0].id, "y"),
    ):
        with pytest.raises(ReadOnlyError):
            change()
    after = core.inventory.refresh().vm(app01.host, app01.id)
    assert after.checkpoints == before.checkpoints and after.disks == before.disks


# -- the CLI end to end ---------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["before", "after"])
def test_cli_read_only_flag_before_or_after_the_subcommand(shared_lab: Path, where: str, capsys) -> None:
    target = ["checkpoint", "remove", "--vm", "app01", "--checkpoint", "Nightly", "--yes"]
    flags = ["--read-only", "--lab-dir", str(shared_lab)]
    argv = flags + target if where == "before" else target + flags
    assert main(argv) == 4
    assert "refused" in capsys.readouterr().err
    entries = [json.loads(line) for line in Paths.default().audit_log.read_text().splitlines()]
    assert [(e["action"], e["result"]) for e in entries] == [("checkpoint.remove", "refused")]


def test_cli_read_only_host_in_the_config(shared_lab: Path, tmp_path: Path, capsys) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"lab:\n  dir: {shared_lab}\nhosts:\n  - name: lab-hv01\n    kind: lab\n    read_only: true\n"
        "  - name: lab-hv02\n    kind: lab\n"
    )
    argv = ["checkpoint", "create", "--host", "lab-hv01", "--vm", "dc01", "--config", str(config)]
    assert main(argv) == 4
    assert "lab-hv01' is read-only" in capsys.readouterr().err


def test_cli_check_and_inventory_on_the_lab(shared_lab: Path, capsys) -> None:
    assert main(["check", "--lab-dir", str(shared_lab)]) == 2
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("HVTUI CRITICAL - ") and "on 3 hosts" in out[0] and "hosts_down=0" in out[0]
    assert any("lab-hv01/app01 chain-depth" in line for line in out)

    assert main(["inventory", "--json", "--lab-dir", str(shared_lab)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [h["name"] for h in doc["hosts"]] == ["lab-hv01", "lab-hv02", "lab-hv03"]
    app01 = next(v for v in doc["vms"] if v["name"] == "app01")
    assert app01["host"] == "lab-hv01" and len(app01["checkpoints"]) == 9
    assert {"id", "name", "state", "checkpoints", "disks", "stray_disk_files", "parent_checkpoint_id"} <= app01.keys()
    assert len(app01["disks"][0]["chain"]) == 10

    assert main(["inventory", "--host", "lab-hv02", "--lab-dir", str(shared_lab)]) == 0
    table = capsys.readouterr().out
    assert "build01" in table and "app01" not in table and "1 of 1 hosts read" in table


def test_cli_unreadable_lab_host(shared_lab: Path, tmp_path: Path, capsys) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"lab:\n  dir: {shared_lab}\nhosts:\n  - name: lab-hv02\n    kind: lab\n  - name: gone\n    kind: lab\n")
    assert main(["check", "--host", "gone", "--config", str(config)]) == 3
    assert capsys.readouterr().out.startswith("HVTUI UNKNOWN - 0 crit, 1 warn, 0 VMs on 1 host, 1 not read (gone)")
    assert main(["inventory", "--json", "--config", str(config)]) == 1
    doc = json.loads(capsys.readouterr().out)
    gone = next(h for h in doc["hosts"] if h["name"] == "gone")
    assert gone["reachable"] is False and gone["error"]
    assert {v["host"] for v in doc["vms"]} == {"lab-hv02"}


def test_cli_audit_lists_what_was_done(own_lab: Path, capsys) -> None:
    lab = ["--lab-dir", str(own_lab)]
    assert main(["checkpoint", "create", "--vm", "dc01", "--name", "audit me", *lab]) == 0
    assert main(["checkpoint", "rename", "--vm", "dc01", "--checkpoint", "audit me", "--to", "renamed", *lab]) == 0
    assert main(["--read-only", "checkpoint", "remove", "--vm", "dc01", "--checkpoint", "renamed", "--yes", *lab]) == 4
    capsys.readouterr()
    assert main(["audit", *lab]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["TIME", "USER", "ACTION", "HOST", "VM", "RESULT", "SECS", "DETAILS"]
    assert [line.split()[2:6] for line in lines[1:]] == [
        ["checkpoint.create", "lab-hv01", "dc01", "ok"],
        ["checkpoint.rename", "lab-hv01", "dc01", "ok"],
        ["checkpoint.remove", "lab-hv01", "dc01", "refused"],
    ]
    assert main(["audit", "--json", "--limit", "1", *lab]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["result"] == "refused" and "read-only" in entry["error"]


def test_summary_counts_on_the_lab(shared_lab: Path, paths: Paths) -> None:
    core = lab_core(shared_lab, paths)
    findings = evaluate(core.inventory.refresh(), core.config.policy)
    crit, warn = summary(findings)
    assert crit == sum(1 for f in findings if f.severity == Severity.CRIT)
    assert warn == sum(1 for f in findings if f.severity == Severity.WARN)
    assert crit >= 8 and warn >= 3
