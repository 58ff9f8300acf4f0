"""Checkpoint actions through the core API: plans, the merge-headroom refusal, read-only
refusal in the core, and audit entries for success, failure and refusal."""

from __future__ import annotations

import dataclasses

import pytest
from sprawl_support import DAY, HOUR, GiB, MiB, StubHost, host_error, linear_vm, make_core, make_facts

from hvtui.actions import find_checkpoint
from hvtui.config import PolicyConfig, Thresholds
from hvtui.core import Core
from hvtui.errors import HostError, HvtuiError, NotFoundError, ReadOnlyError, RefusedError, UsageError
from hvtui.model import Disk, VhdLink, Volume
from hvtui.paths import Paths


def estate(paths: Paths, read_only: bool = False, host_read_only: bool = False, free: int = 500 * GiB, **kw):
    vm = linear_vm(
        "sql01", ages=(10 * DAY, 5 * DAY, HOUR), diff_sizes=(300 * MiB, 200 * MiB, 100 * MiB), base_virtual=100 * GiB
    )
    host = StubHost("hv01", [vm], facts=make_facts(free=free), read_only=host_read_only)
    other = StubHost("hv02", [linear_vm("web01", host="hv02", ages=(DAY,))])
    core = make_core([host, other], paths, read_only=read_only, **kw)
    return core, host, vm


def audit_results(core: Core) -> list[tuple[str, str]]:
    return [(e["action"], e["result"]) for e in core.audit.read()]


# -- plans -----------------------------------------------------------------------------------
def test_plan_remove_of_the_oldest_checkpoint_merges_its_file_into_the_base(paths: Paths) -> None:
    core, _host, vm = estate(paths)
    oldest = vm.checkpoints[0]
    chain = vm.disks[0].chain  # newest .avhdx ... base .vhdx
    plan = core.actions.plan_remove("hv01", vm.id, oldest.id)
    assert plan.exact and plan.checkpoints == (oldest,)
    assert [(m.source, m.target, m.bytes) for m in plan.merges] == [(chain[2].path, chain[3].path, 300 * MiB)]
    assert plan.bytes_to_move == 300 * MiB and plan.headroom_ok
    assert plan.volume.path == "D:\\" and plan.volume_free == 500 * GiB
    text = plan.describe()
    for needle in ("'hv01'", "'sql01'", repr(oldest.name), oldest.id, "300.0 MiB", "sql01.vhdx", "cannot be undone"):
        assert needle in text


def test_plan_remove_of_the_newest_checkpoint_merges_the_running_file(paths: Paths) -> None:
    core, _host, vm = estate(paths)
    chain = vm.disks[0].chain
    plan = core.actions.plan_remove("hv01", vm.id, vm.checkpoints[2].id)
    assert [(m.source, m.target) for m in plan.merges] == [(chain[0].path, chain[1].path)]
    assert plan.bytes_to_move == 100 * MiB


def test_plan_remove_subtree_merges_the_whole_branch_down(paths: Paths) -> None:
    core, _host, vm = estate(paths)
    chain = vm.disks[0].chain
    plan = core.actions.plan_remove("hv01", vm.id, vm.checkpoints[1].id, subtree=True)
    assert [cp.id for cp in plan.checkpoints] == [vm.checkpoints[1].id, vm.checkpoints[2].id]
    assert {m.target for m in plan.merges} == {chain[2].path}
    assert plan.bytes_to_move == 300 * MiB  # 200 + 100
    assert "2 checkpoints go" in plan.describe()


def test_plan_remove_when_the_chain_does_not_match_is_a_safe_estimate(paths: Paths) -> None:
    core, host, vm = estate(paths)
    # A leftover differencing file on top of the chain (a failed merge): depth 4, 3 checkpoints.
    disk = vm.disks[0]
    extra = dataclasses.replace(disk.chain[0], path="D:\\VMs\\sql01\\leftover.avhdx", file_size=GiB)
    host.vms[vm.id] = dataclasses.replace(vm, disks=(dataclasses.replace(disk, chain=(extra, *disk.chain)),))
    plan = core.actions.plan_remove("hv01", vm.id, vm.checkpoints[0].id)
    assert not plan.exact and plan.merges == ()
    assert plan.bytes_to_move == GiB + 600 * MiB
    assert "cannot map" in plan.describe()


def test_plan_apply_says_the_current_state_is_lost_and_offers_checkpoint_first(paths: Paths) -> None:
    core, _host, vm = estate(paths)
    plan = core.actions.plan_apply("hv01", vm.id, vm.checkpoints[0].id)
    assert plan.bytes_lost == 100 * MiB and plan.current_checkpoint == vm.checkpoints[2]
    text = plan.describe()
    assert "LOST" in text and "checkpoint first" in text and "'hv01'" in text and "'sql01'" in text
    first = plan.describe(checkpoint_first=True)
    assert "LOST" not in first and plan.checkpoint_first_name in first


# -- merge headroom ------------------------------------------------------------------------------
def test_remove_is_refused_when_the_volume_cannot_take_the_merge(paths: Paths) -> None:
    margin = int(1024 * GiB * 0.05)
    core, host, vm = estate(paths, free=margin + 100 * MiB)  # room for 100 MiB, the oldest moves 300
    plan = core.actions.plan_remove("hv01", vm.id, vm.checkpoints[0].id)
    assert not plan.headroom_ok and "NOT ENOUGH ROOM" in plan.describe()
    with pytest.raises(RefusedError, match="merge-headroom"):
        core.actions.remove("hv01", vm.id, vm.checkpoints[0].id)
    assert host.calls == []
    (entry,) = core.audit.read()
    assert entry["result"] == "refused" and entry["vm"] == "sql01" and "merge-headroom" in entry["error"]

    # The newest checkpoint only moves 100 MiB: allowed.
    core.actions.remove("hv01", vm.id, vm.checkpoints[2].id)
    # Forcing overrides the rule, and the audit says so.
    core.actions.remove("hv01", vm.id, vm.checkpoints[0].id, force=True)
    assert [c[0] for c in host.calls] == ["remove", "remove"]
    last = core.audit.read()[-1]
    assert last["result"] == "ok" and last["args"]["headroom_overridden"] is True


@pytest.mark.parametrize(("files_on", "folder_on", "refused"), [("E:", "D:", True), ("D:", "E:", False)])
def test_remove_headroom_is_measured_where_the_differencing_files_are_not_the_vm_folder(
    paths: Paths, files_on: str, folder_on: str, refused: bool
) -> None:
    # The checkpoint files on another volume than the VM's folder: the merge writes there.
    vm = linear_vm("sql01", ages=(DAY,), diff_sizes=(300 * MiB,), base_virtual=100 * GiB, folder=f"{files_on}\\VMs\\sql01")
    vm = dataclasses.replace(vm, path=f"{folder_on}\\VMs\\sql01")
    facts = dataclasses.replace(
        make_facts(), volumes=(Volume("D:\\", "VMs", 1024 * GiB, 900 * GiB), Volume("E:\\", "Fast", 100 * GiB, GiB))
    )
    # A second disk with no differencing file (added after the checkpoint): the merge cannot be
    # mapped file by file, so the plan estimates from all of the VM's differencing data.
    base_only = VhdLink(f"{folder_on}\\VMs\\sql01\\data.vhdx", "Dynamic", GiB, 10 * GiB, None)
    estimated = dataclasses.replace(vm, id="estimate", disks=(*vm.disks, Disk("SCSI", 0, 1, base_only.path, (base_only,))))
    host = StubHost("hv01", [vm, estimated], facts=facts)
    core = make_core([host], paths)
    core.inventory.refresh()
    for one in (vm, estimated):
        plan = core.actions.plan_remove("hv01", one.id, one.checkpoints[0].id)
        assert plan.exact is (one is vm)
        assert plan.volume.path == ("E:\\" if refused else "D:\\")
        assert plan.headroom_ok is not refused


def test_merge_margin_follows_per_vm_thresholds(paths: Paths) -> None:
    policy = PolicyConfig(vms={"sql01": Thresholds(merge_min_free_percent=60.0)})
    core, _host, vm = estate(paths, policy=policy)  # 500 GiB free of 1 TiB: 60% margin is too much
    core.inventory.refresh()
    assert not core.actions.plan_remove("hv01", vm.id, vm.checkpoints[0].id).headroom_ok


# -- read-only ------------------------------------------------------------------------------------
def every_change(core: Core, vm) -> list:
    cp = vm.checkpoints[0].id
    return [
        lambda: core.actions.create("hv01", vm.id, "x"),
        lambda: core.actions.apply("hv01", vm.id, cp),
        lambda: core.actions.apply("hv01", vm.id, cp, checkpoint_first=True),
        lambda: core.actions.remove("hv01", vm.id, cp),
        lambda: core.actions.remove("hv01", vm.id, cp, subtree=True, force=True),
        lambda: core.actions.rename("hv01", vm.id, cp, "new"),
    ]


@pytest.mark.parametrize("where", ["global", "host"])
def test_read_only_refuses_every_change_in_the_core(paths: Paths, where: str) -> None:
    core, host, vm = estate(paths, read_only=where == "global", host_read_only=where == "host")
    for change in every_change(core, vm):
        with pytest.raises(ReadOnlyError, match="refused"):
            change()
    assert host.calls == []
    results = audit_results(core)
    assert len(results) == 6 and {r for _a, r in results} == {"refused"}
    assert [a for a, _r in results] == [
        "checkpoint.create",
        "checkpoint.apply",
        "checkpoint.apply",
        "checkpoint.remove",
        "checkpoint.remove",
        "checkpoint.rename",
    ]
    assert core.actions.read_only_reason("hv01") is not None


def test_host_read_only_leaves_other_hosts_writable(paths: Paths) -> None:
    core, _host, _vm = estate(paths, host_read_only=True)
    web = core.inventory.find_vm("web01", host="hv02")
    created = core.actions.create("hv02", web.id, "before patch")
    assert created.name == "before patch"
    assert core.actions.read_only_reason("hv02") is None


def test_require_writable_audits_the_refusal(paths: Paths) -> None:
    core, _host, vm = estate(paths, read_only=True)
    with pytest.raises(ReadOnlyError):
        core.actions.require_writable("checkpoint.remove", "hv01", "sql01", {"checkpoint": "x"})
    assert audit_results(core) == [("checkpoint.remove", "refused")]


# -- changes ---------------------------------------------------------------------------------------
def test_create_apply_rename_remove_reach_the_host_and_are_audited(paths: Paths) -> None:
    core, host, vm = estate(paths)
    created = core.actions.create("hv01", vm.id, None, type="production")
    assert host.calls[-1] == ("create", vm.id, None, "Production")
    core.actions.rename("hv01", vm.id, created.id, "  renamed  ")
    assert host.calls[-1] == ("rename", vm.id, created.id, "renamed")
    core.actions.apply("hv01", vm.id, vm.checkpoints[1].id)
    assert host.calls[-1] == ("apply", vm.id, vm.checkpoints[1].id)
    core.inventory.refresh()
    plan = core.actions.remove("hv01", vm.id, vm.checkpoints[0].id)
    assert host.calls[-1] == ("remove", vm.id, vm.checkpoints[0].id, False)
    assert plan.checkpoint == vm.checkpoints[0]
    assert audit_results(core) == [
        ("checkpoint.create", "ok"),
        ("checkpoint.rename", "ok"),
        ("checkpoint.apply", "ok"),
        ("checkpoint.remove", "ok"),
    ]
    entries = core.audit.read()
    assert entries[0]["args"]["checkpoint_id"] == created.id and entries[0]["vm"] == "sql01"
    assert entries[1]["args"]["old_name"] == created.name and entries[1]["args"]["new_name"] == "  renamed  "


def test_apply_with_checkpoint_first_saves_the_current_state_then_applies(paths: Paths) -> None:
    core, host, vm = estate(paths)
    saved = core.actions.apply("hv01", vm.id, vm.checkpoints[0].id, checkpoint_first=True)
    assert [c[0] for c in host.calls] == ["create", "apply"]
    assert saved is not None and saved.name.startswith("Before applying sql01 cp1")
    assert audit_results(core) == [("checkpoint.create", "ok"), ("checkpoint.apply", "ok")]
    assert core.audit.read()[1]["args"]["saved_checkpoint_id"] == saved.id


def test_host_failures_are_audited_and_raised(paths: Paths) -> None:
    core, host, vm = estate(paths)
    host.change_error = HostError("hv01", "checkpoint.remove", "merge failed: file in use")
    with pytest.raises(HostError, match="file in use"):
        core.actions.remove("hv01", vm.id, vm.checkpoints[2].id)
    (entry,) = core.audit.read()
    assert entry["result"] == "failed" and "file in use" in entry["error"]


@pytest.mark.parametrize("bad", ["", "   ", "x" * 101, "tab\tname"])
def test_bad_names_are_refused_before_the_host_is_asked(paths: Paths, bad: str) -> None:
    core, host, vm = estate(paths)
    with pytest.raises(HvtuiError):
        core.actions.rename("hv01", vm.id, vm.checkpoints[0].id, bad)
    with pytest.raises(HvtuiError):
        core.actions.create("hv01", vm.id, bad)
    assert host.calls == []
    assert {r for _a, r in audit_results(core)} == {"failed"}


def test_unknown_type_vm_and_checkpoint(paths: Paths) -> None:
    core, host, vm = estate(paths)
    with pytest.raises(HvtuiError, match="Standard, Production"):
        core.actions.create("hv01", vm.id, "x", type="Recovery")
    with pytest.raises(NotFoundError):
        core.actions.remove("hv01", "no-such-vm", "x")
    with pytest.raises(NotFoundError):
        core.actions.remove("hv01", vm.id, "no-such-checkpoint")
    assert host.calls == []


def test_actions_on_an_unreadable_host_say_so(paths: Paths) -> None:
    core, host, vm = estate(paths)
    host.fail_with = host_error("hv01", "connection refused")
    with pytest.raises(HvtuiError, match="connection refused"):
        core.actions.plan_remove("hv01", vm.id, vm.checkpoints[0].id)


# -- checkpoint lookup by name or id --------------------------------------------------------------------
def test_find_checkpoint_by_id_name_and_ambiguity() -> None:
    vm = linear_vm("sql01", ages=(3 * DAY, 2 * DAY, DAY))
    twin = dataclasses.replace(vm.checkpoints[1], name=vm.checkpoints[0].name)
    vm = dataclasses.replace(vm, checkpoints=(vm.checkpoints[0], twin, vm.checkpoints[2]))
    assert find_checkpoint(vm, vm.checkpoints[2].id.upper()) == vm.checkpoints[2]
    assert find_checkpoint(vm, "SQL01 CP3") == vm.checkpoints[2]
    with pytest.raises(UsageError) as err:  # the CLI exits 2: the name asked for is wrong
        find_checkpoint(vm, "sql01 cp1")
    assert vm.checkpoints[0].id in str(err.value) and twin.id in str(err.value)
    with pytest.raises(UsageError, match="no checkpoint 'nope'"):
        find_checkpoint(vm, "nope")
