"""The sprawl policy: every rule at, just below and above its thresholds; overrides,
exemptions (kept and visible), host clocks, unreachable hosts, ordering and summaries."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from sprawl_support import DAY, HOUR, NOW, GiB, MiB, linear_vm, make_facts

from hvtui.config import Exemption, PolicyConfig, Thresholds
from hvtui.model import VM, Disk, Finding, HostInventory, Inventory, Severity, VhdLink, Volume
from hvtui.policy import (
    CHAIN_DEPTH,
    CHECKPOINT_AGE,
    CHECKPOINT_COUNT,
    CHECKPOINT_NOT_BACKUP,
    DIFFERENCING_SIZE,
    DISK_UNREADABLE,
    HOST_UNREACHABLE,
    MERGE_HEADROOM,
    RECOVERY_LEFT,
    RUNNING_ON_AVHDX,
    STRAY_DISK_FILE,
    age_text,
    evaluate,
    sort_findings,
    summary,
    worst_by_vm,
)

# A recent backup for every VM, so checkpoint-not-backup stays out of rules that are not about it.
BACKED_UP = lambda vm: NOW - timedelta(hours=1)  # noqa: E731


def inv(*vms: VM, host: str = "hv01", group: str | None = None, facts=None, error=None, stale=False) -> Inventory:
    return Inventory(
        hosts=(
            HostInventory(
                name=host,
                kind="lab",
                group=group,
                facts=facts or make_facts(host),
                vms=tuple(vms),
                error=error,
                stale=stale,
                refreshed_at=NOW,
            ),
        )
    )


def rule_findings(findings: list[Finding], rule: str) -> list[Finding]:
    return [f for f in findings if f.rule == rule]


def severities(vm: VM, rule: str, policy: PolicyConfig | None = None, **kw) -> list[Severity]:
    findings = evaluate(inv(vm, **kw), policy or PolicyConfig(), last_backup=BACKED_UP)
    return [f.severity for f in rule_findings(findings, rule)]


# -- checkpoint-age ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (3 * DAY - 1, []),
        (3 * DAY, [Severity.WARN]),
        (7 * DAY - 1, [Severity.WARN]),
        (7 * DAY, [Severity.CRIT]),
        (40 * DAY, [Severity.CRIT]),
    ],
)
@pytest.mark.parametrize("cp_type", ["Standard", "Production"])
def test_checkpoint_age_thresholds(age: float, expected: list[Severity], cp_type: str) -> None:
    vm = linear_vm("web01", ages=(age,), types=(cp_type,))
    assert severities(vm, CHECKPOINT_AGE) == expected


def test_checkpoint_age_message_names_checkpoint_age_and_limit() -> None:
    vm = linear_vm("web01", ages=(12 * DAY,))
    (finding,) = rule_findings(evaluate(inv(vm), PolicyConfig(), BACKED_UP), CHECKPOINT_AGE)
    assert finding.checkpoint_id == vm.checkpoints[0].id
    assert "web01 cp1" in finding.message and "12 days" in finding.message and "7 days" in finding.message
    assert finding.age_seconds == pytest.approx(12 * DAY)
    assert finding.vm_name == "web01" and finding.host == "hv01"
    assert finding.action


def test_ages_use_the_host_clock_not_the_local_one() -> None:
    # The checkpoint is 2 days old by the jump box's idea of time, but the host's clock
    # (facts.now) says a week has passed: the host's clock wins.
    vm = linear_vm("web01", ages=(2 * DAY,))
    host_now = NOW + timedelta(days=5)
    findings = evaluate(inv(vm, facts=make_facts(now=host_now)), PolicyConfig(), BACKED_UP)
    (finding,) = rule_findings(findings, CHECKPOINT_AGE)
    assert finding.severity == Severity.CRIT
    assert finding.age_seconds == pytest.approx(7 * DAY)


def test_a_checkpoint_from_the_future_is_not_aged() -> None:
    vm = linear_vm("web01", ages=(-5 * DAY,))
    assert severities(vm, CHECKPOINT_AGE) == []


# -- recovery-checkpoint-left -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("age", "expected"),
    [(HOUR - 1, []), (HOUR, [Severity.WARN]), (DAY - 1, [Severity.WARN]), (DAY, [Severity.CRIT])],
)
def test_recovery_checkpoint_thresholds(age: float, expected: list[Severity]) -> None:
    vm = linear_vm("sql01", ages=(age,), types=("Recovery",))
    findings = evaluate(inv(vm), PolicyConfig(), BACKED_UP)
    assert [f.severity for f in rule_findings(findings, RECOVERY_LEFT)] == expected
    assert rule_findings(findings, CHECKPOINT_AGE) == []  # a Recovery checkpoint is not a user checkpoint


@pytest.mark.parametrize(
    ("age", "expected"),
    [(-30, [Severity.WARN]), (1, [Severity.WARN]), (DAY - 1, [Severity.WARN]), (DAY, [Severity.CRIT])],
)
def test_recovery_checkpoint_of_a_dead_hvtui_backup_is_flagged_at_once(age: float, expected: list[Severity]) -> None:
    """The journal knows the hvtui job that took it is dead: no hour of grace (a host clock
    a little behind still counts); critical past the configured age as before."""
    vm = linear_vm("sql01", ages=(age,), types=("Recovery",))
    asked: list[tuple[str, str]] = []

    def left_by(vm: VM, checkpoint) -> str:  # noqa: ANN001
        asked.append((vm.name, checkpoint.name))
        return "hvtui backup job 1a2b3c"

    findings = rule_findings(evaluate(inv(vm), PolicyConfig(), BACKED_UP, left_by), RECOVERY_LEFT)
    assert [f.severity for f in findings] == expected
    assert asked == [("sql01", "sql01 cp1")]
    assert "hvtui backup job 1a2b3c" in findings[0].message and "no longer running" in findings[0].message
    assert "crit at 24 hours" in findings[0].message


def test_recovery_checkpoint_nobody_vouches_for_keeps_its_grace() -> None:
    """Another product's (or a running backup's) checkpoint: the lookup says None, the hour stands."""
    vm = linear_vm("sql01", ages=(HOUR - 1,), types=("Recovery",))
    findings = evaluate(inv(vm), PolicyConfig(), BACKED_UP, lambda vm, cp: None)
    assert rule_findings(findings, RECOVERY_LEFT) == []


# -- replica types ---------------------------------------------------------------------------------
def test_replica_checkpoints_raise_nothing_by_default() -> None:
    ages = tuple(30 * DAY for _ in range(12))
    vm = linear_vm("replica01", ages=ages, types=tuple("Replica" for _ in ages))
    assert evaluate(inv(vm), PolicyConfig(), last_backup=None) == []


def test_replica_alerts_can_be_switched_on() -> None:
    ages = tuple(30 * DAY for _ in range(12))
    vm = linear_vm("replica01", ages=ages, types=tuple("AppConsistentReplica" for _ in ages))
    policy = PolicyConfig(defaults=Thresholds(replica_alerts=True))
    rules = {f.rule for f in evaluate(inv(vm), policy, BACKED_UP)}
    assert {CHECKPOINT_AGE, CHECKPOINT_COUNT, CHAIN_DEPTH} <= rules


# -- checkpoint-count ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("count", "expected"),
    [(3, []), (4, [Severity.WARN]), (10, [Severity.WARN]), (11, [Severity.CRIT])],
)
def test_checkpoint_count_thresholds(count: int, expected: list[Severity]) -> None:
    vm = linear_vm("app01", ages=tuple(HOUR for _ in range(count)))
    assert severities(vm, CHECKPOINT_COUNT) == expected


@pytest.mark.parametrize(("count", "expected"), [(44, []), (45, [Severity.CRIT])])
def test_checkpoint_count_platform_limit_is_always_crit(count: int, expected: list[Severity]) -> None:
    # Warn/crit set out of reach: only the hard limit can fire; it counts replica points too.
    policy = PolicyConfig(defaults=Thresholds(count_warn=100, count_crit=200, depth_warn=100, depth_crit=200))
    types = ("Standard",) + tuple("Replica" for _ in range(count - 1))
    vm = linear_vm("app01", ages=tuple(HOUR for _ in range(count)), types=types)
    found = rule_findings(evaluate(inv(vm), policy, BACKED_UP), CHECKPOINT_COUNT)
    assert [f.severity for f in found] == expected
    if found:
        assert "45 checkpoints" in found[0].message


# -- chain-depth -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("depth", "expected"),
    [(3, []), (4, [Severity.WARN]), (8, [Severity.WARN]), (9, [Severity.CRIT])],
)
def test_chain_depth_thresholds(depth: int, expected: list[Severity]) -> None:
    vm = linear_vm("deep01", ages=tuple(HOUR for _ in range(depth)))
    found = rule_findings(evaluate(inv(vm), PolicyConfig(), BACKED_UP), CHAIN_DEPTH)
    assert [f.severity for f in found] == expected
    for finding in found:
        assert f"{depth} differencing files" in finding.message and "deep01.vhdx" in finding.message
        assert finding.file == vm.disks[0].path


# -- differencing-size ----------------------------------------------------------------------------------
def test_differencing_size_fires_above_the_percentage_not_at_it() -> None:
    base = 10 * GiB
    at_limit = linear_vm("fat01", ages=(HOUR,), diff_sizes=(2 * GiB,), base_virtual=base)  # exactly 20 %
    above = linear_vm("fat02", ages=(HOUR,), diff_sizes=(2 * GiB + 1,), base_virtual=base)
    assert severities(at_limit, DIFFERENCING_SIZE) == []
    assert severities(above, DIFFERENCING_SIZE) == [Severity.WARN]
    (finding,) = rule_findings(evaluate(inv(above), PolicyConfig(), BACKED_UP), DIFFERENCING_SIZE)
    assert "2.0 GiB" in finding.message and "20%" in finding.message and "10.0 GiB" in finding.message


def test_differencing_size_absolute_threshold() -> None:
    policy = PolicyConfig(defaults=Thresholds(differencing_warn_bytes=300 * MiB))
    at_limit = linear_vm("a", ages=(HOUR,), diff_sizes=(300 * MiB,), base_virtual=100 * GiB)
    above = linear_vm("b", ages=(HOUR,), diff_sizes=(300 * MiB + 1,), base_virtual=100 * GiB)
    assert severities(at_limit, DIFFERENCING_SIZE, policy) == []
    assert severities(above, DIFFERENCING_SIZE, policy) == [Severity.WARN]


# -- merge-headroom ---------------------------------------------------------------------------------------
def test_merge_headroom_fires_when_the_merge_would_eat_the_margin() -> None:
    size = 1000 * GiB
    margin = int(size * 0.05)
    need = 3 * GiB  # three 1 GiB differencing files
    vm = linear_vm("big01", ages=(HOUR, HOUR, HOUR), diff_sizes=(GiB, GiB, GiB), base_virtual=2000 * GiB)
    just_enough = make_facts(free=need + margin, size=size)
    one_byte_short = make_facts(free=need + margin - 1, size=size)
    assert severities(vm, MERGE_HEADROOM, facts=just_enough) == []
    findings = evaluate(inv(vm, facts=one_byte_short), PolicyConfig(), BACKED_UP)
    (finding,) = rule_findings(findings, MERGE_HEADROOM)
    assert finding.severity == Severity.CRIT
    assert finding.file == "D:\\"
    assert finding.data["need"] == need and finding.data["margin"] == margin
    assert "3.0 GiB" in finding.message and "D:\\" in finding.message


def test_merge_headroom_uses_the_volume_holding_the_files() -> None:
    # The VM lives on E:, which is nearly full; D: has plenty of room.
    facts = dataclasses.replace(
        make_facts(), volumes=(Volume("D:\\", "VMs", 1000 * GiB, 900 * GiB), Volume("E:\\", "Fast", 100 * GiB, 6 * GiB))
    )
    vm = linear_vm("fast01", ages=(HOUR,), diff_sizes=(2 * GiB,), folder="E:\\VMs\\fast01")
    (finding,) = rule_findings(evaluate(inv(vm, facts=facts), PolicyConfig(), BACKED_UP), MERGE_HEADROOM)
    assert finding.file == "E:\\"


@pytest.mark.parametrize(("files_on", "folder_on", "short"), [("E:", "D:", True), ("D:", "E:", False)])
def test_merge_headroom_is_measured_where_the_differencing_files_are_not_the_vm_folder(
    files_on: str, folder_on: str, short: bool
) -> None:
    # Checkpoint files kept on another volume than the VM's configuration (a separate
    # checkpoint path): the merge writes there, so that volume's free space decides.
    facts = dataclasses.replace(
        make_facts(), volumes=(Volume("D:\\", "VMs", 1000 * GiB, 900 * GiB), Volume("E:\\", "Fast", 100 * GiB, 6 * GiB))
    )
    vm = linear_vm("fast01", ages=(HOUR,), diff_sizes=(2 * GiB,), folder=f"{files_on}\\VMs\\fast01")
    vm = dataclasses.replace(vm, path=f"{folder_on}\\VMs\\fast01")
    found = rule_findings(evaluate(inv(vm, facts=facts), PolicyConfig(), BACKED_UP), MERGE_HEADROOM)
    assert [f.file for f in found] == (["E:\\"] if short else [])


# -- running-on-avhdx ------------------------------------------------------------------------------------
def orphan_avhdx_vm(with_checkpoint: bool) -> VM:
    vm = linear_vm("broken01", ages=(HOUR,))
    if not with_checkpoint:
        vm = dataclasses.replace(vm, checkpoints=(), parent_checkpoint_id=None)
    return vm


def test_running_on_avhdx_without_checkpoint_is_crit() -> None:
    vm = orphan_avhdx_vm(with_checkpoint=False)
    findings = evaluate(inv(vm), PolicyConfig(), BACKED_UP)
    (finding,) = rule_findings(findings, RUNNING_ON_AVHDX)
    assert finding.severity == Severity.CRIT and finding.file.endswith(".avhdx")


def test_running_on_avhdx_with_a_checkpoint_is_normal() -> None:
    assert severities(orphan_avhdx_vm(with_checkpoint=True), RUNNING_ON_AVHDX) == []


def test_running_on_a_base_disk_is_normal() -> None:
    assert severities(linear_vm("plain01"), RUNNING_ON_AVHDX) == []


# -- stray-disk-file --------------------------------------------------------------------------------------
def test_stray_disk_files_warn_one_each() -> None:
    stray = ("D:\\VMs\\web01\\web01_0A7C.avhdx", "D:\\VMs\\web01\\old copy.vhdx")
    findings = evaluate(inv(linear_vm("web01", stray=stray)), PolicyConfig(), BACKED_UP)
    found = rule_findings(findings, STRAY_DISK_FILE)
    assert [f.severity for f in found] == [Severity.WARN, Severity.WARN]
    assert sorted(f.file for f in found) == sorted(stray)
    assert any("web01_0A7C.avhdx" in f.message for f in found)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (45, "45 seconds"),
        (23 * 60, "23 minutes"),
        (HOUR, "1 hour"),
        (DAY, "24 hours"),  # beside "crit at 2 days", "a day" would hide how close it is
        (47 * HOUR, "47 hours"),
        (2 * DAY, "2 days"),
        (23 * DAY + 5000, "23 days"),  # naturaldelta alone says "a month"
        (45 * DAY, "45 days"),
        (400 * DAY, "1 year, 35 days"),
    ],
)
def test_ages_are_exact_enough_to_compare_with_thresholds(seconds: float, text: str) -> None:
    assert age_text(seconds) == text


def test_a_disk_the_host_cannot_read_is_a_warning_naming_the_file() -> None:
    vm = linear_vm("web01")
    broken = dataclasses.replace(vm.disks[0], chain=(), error="Get-VHD cannot read D:\\VMs\\web01\\web01.vhdx: in use")
    vm = dataclasses.replace(vm, disks=(broken,))
    (finding,) = rule_findings(evaluate(inv(vm), PolicyConfig(), BACKED_UP), DISK_UNREADABLE)
    assert finding.severity == Severity.WARN and finding.file == broken.path
    assert finding.message == "web01.vhdx: Get-VHD cannot read D:\\VMs\\web01\\web01.vhdx: in use"


# -- checkpoint-not-backup -----------------------------------------------------------------------------------
def test_checkpoint_without_any_backup_known_is_crit() -> None:
    vm = linear_vm("db01", ages=(HOUR,))
    for lookup in (None, lambda _vm: None):
        (finding,) = rule_findings(evaluate(inv(vm), PolicyConfig(), lookup), CHECKPOINT_NOT_BACKUP)
        assert finding.severity == Severity.CRIT and "no backup known" in finding.message


@pytest.mark.parametrize(
    ("age", "expected"), [(1, Severity.WARN), (HOUR - 1, Severity.WARN), (HOUR, Severity.CRIT), (3 * DAY, Severity.CRIT)]
)
def test_checkpoint_not_backup_warns_first_then_is_crit_past_its_age(age: float, expected: Severity) -> None:
    """A routine checkpoint (seconds old, on a VM never backed up) does not page at once."""
    vm = linear_vm("dc01", ages=(age,))
    (finding,) = rule_findings(evaluate(inv(vm), PolicyConfig(), None), CHECKPOINT_NOT_BACKUP)
    assert finding.severity == expected
    if expected is Severity.WARN:
        assert "critical once its oldest checkpoint is 1 hour old" in finding.message


def test_checkpoint_not_backup_grace_is_configurable_and_counts_for_an_old_backup_too() -> None:
    vm = linear_vm("dc01", ages=(2 * HOUR,))
    policy = PolicyConfig(defaults=Thresholds(not_backup_crit=DAY))
    stale_backup = lambda _vm: NOW - timedelta(days=30)  # noqa: E731
    for lookup in (None, stale_backup):
        (finding,) = rule_findings(evaluate(inv(vm), policy, lookup), CHECKPOINT_NOT_BACKUP)
        assert finding.severity == Severity.WARN
    old = linear_vm("dc01", ages=(DAY,))
    (finding,) = rule_findings(evaluate(inv(old), policy, stale_backup), CHECKPOINT_NOT_BACKUP)
    assert finding.severity == Severity.CRIT


@pytest.mark.parametrize(("backup_age", "fires"), [(7 * DAY - 1, False), (7 * DAY, True)])
def test_checkpoint_not_backup_threshold(backup_age: float, fires: bool) -> None:
    vm = linear_vm("db01", ages=(HOUR,))
    host_now = NOW + timedelta(days=1)  # measured against the host clock
    findings = evaluate(
        inv(vm, facts=make_facts(now=host_now)),
        PolicyConfig(),
        last_backup=lambda _vm: host_now - timedelta(seconds=backup_age),
    )
    assert bool(rule_findings(findings, CHECKPOINT_NOT_BACKUP)) is fires


def test_a_backup_in_progress_is_not_flagged_as_checkpoint_not_backup() -> None:
    # A first backup running: its Recovery checkpoint is minutes old and no backup is known
    # yet.  Nothing is wrong (the console raised a false CRIT for hvtui's own backup).
    running = linear_vm("db01", ages=(10 * 60,), types=("Recovery",))
    assert evaluate(inv(running), PolicyConfig(), None) == []
    # Beside a user checkpoint, only that one counts (and its age, not the Recovery one's).
    mixed = linear_vm("db02", ages=(2 * DAY, 10 * 60), types=("Standard", "Recovery"))
    (finding,) = rule_findings(evaluate(inv(mixed), PolicyConfig(), None), CHECKPOINT_NOT_BACKUP)
    assert finding.message.startswith("has 1 checkpoint and no backup known")
    assert finding.age_seconds == pytest.approx(2 * DAY, abs=1)


def test_no_checkpoint_no_backup_finding() -> None:
    assert rule_findings(evaluate(inv(linear_vm("clean01")), PolicyConfig(), None), CHECKPOINT_NOT_BACKUP) == []


def test_a_healthy_estate_has_no_findings() -> None:
    vms = [linear_vm(f"vm{i}", ages=(HOUR,) * (i % 3)) for i in range(6)]
    assert evaluate(inv(*vms), PolicyConfig(), BACKED_UP) == []


# -- overrides -------------------------------------------------------------------------------------------
def test_group_override_applies_to_hosts_of_the_group() -> None:
    policy = PolicyConfig(groups={"prod": Thresholds(checkpoint_age_warn=1 * DAY, checkpoint_age_crit=2 * DAY)})
    vm = linear_vm("web01", ages=(2 * DAY,))
    assert severities(vm, CHECKPOINT_AGE, policy, group="prod") == [Severity.CRIT]
    assert severities(vm, CHECKPOINT_AGE, policy, group="test") == []
    assert severities(vm, CHECKPOINT_AGE, policy) == []


def test_vm_override_beats_group_and_accepts_host_slash_vm() -> None:
    lenient = Thresholds(checkpoint_age_warn=30 * DAY, checkpoint_age_crit=60 * DAY)
    strict_group = {"prod": Thresholds(checkpoint_age_warn=HOUR, checkpoint_age_crit=2 * HOUR)}
    vm = linear_vm("build01", ages=(10 * DAY,))
    for key in ("build01", "hv01/build01"):
        policy = PolicyConfig(groups=strict_group, vms={key: lenient})
        assert severities(vm, CHECKPOINT_AGE, policy, group="prod") == []
    other = PolicyConfig(groups=strict_group, vms={"hv02/build01": lenient})
    assert severities(vm, CHECKPOINT_AGE, other, group="prod") == [Severity.CRIT]


# -- exemptions -------------------------------------------------------------------------------------------
def test_exempt_vm_keeps_its_findings_visible_but_not_counted() -> None:
    policy = PolicyConfig(exemptions=(Exemption(vm="veeam-*", reason="backup proxy keeps a checkpoint"),))
    exempt = linear_vm("veeam-proxy", ages=(30 * DAY,))
    other = linear_vm("web01", ages=(30 * DAY,))
    findings = evaluate(inv(exempt, other), policy, BACKED_UP)
    exempt_findings = [f for f in findings if f.vm_name == "veeam-proxy"]
    assert exempt_findings, "exempted findings must stay visible"
    for finding in exempt_findings:
        assert finding.exempt_reason == "backup proxy keeps a checkpoint"
        assert finding.severity == Severity.OK
    assert {f.data["exempt_severity"] for f in exempt_findings} == {"CRIT"}
    assert summary(findings) == (1, 0)  # only web01's checkpoint-age crit counts
    worst = worst_by_vm(findings)
    assert worst[exempt.key] == Severity.OK and worst[other.key] == Severity.CRIT


def test_checkpoint_name_exemption_only_touches_that_checkpoint() -> None:
    vm = linear_vm("sql01", ages=(30 * DAY, 30 * DAY))
    keep = vm.checkpoints[0]
    vm = dataclasses.replace(vm, checkpoints=(dataclasses.replace(keep, name="Veeam keep"), *vm.checkpoints[1:]))
    policy = PolicyConfig(exemptions=(Exemption(vm="hv01/sql*", checkpoint="veeam*", reason="on purpose"),))
    ages = rule_findings(evaluate(inv(vm), policy, BACKED_UP), CHECKPOINT_AGE)
    by_cp = {f.checkpoint_id: f for f in ages}
    assert by_cp[keep.id].exempt_reason == "on purpose" and by_cp[keep.id].severity == Severity.OK
    assert by_cp[vm.checkpoints[1].id].exempt_reason is None and by_cp[vm.checkpoints[1].id].severity == Severity.CRIT


def test_checkpoint_name_exemption_leaves_the_vms_other_findings_alone() -> None:
    # Exempting one checkpoint by name must not quiet what is said about the VM as a whole
    # (no backup, the chain, the differencing data, the headroom), nor its other checkpoints.
    vm = linear_vm("sql01", ages=(30 * DAY,) * 6, diff_sizes=(9 * GiB,) * 6, base_virtual=20 * GiB)
    keep = vm.checkpoints[0]
    vm = dataclasses.replace(vm, checkpoints=(dataclasses.replace(keep, name="Veeam keep"), *vm.checkpoints[1:]))
    facts = make_facts(free=60 * GiB, size=1024 * GiB)
    policy = PolicyConfig(exemptions=(Exemption(vm="hv01/sql*", checkpoint="veeam*", reason="on purpose"),))
    findings = [f for f in evaluate(inv(vm, facts=facts), policy, last_backup=None) if f.vm_name == "sql01"]
    exempted = [f for f in findings if f.exempt_reason is not None]
    assert exempted and {f.checkpoint_id for f in exempted} == {keep.id}
    vm_level = [f for f in findings if f.checkpoint_id is None]
    assert {CHECKPOINT_NOT_BACKUP, CHAIN_DEPTH, DIFFERENCING_SIZE, MERGE_HEADROOM} <= {f.rule for f in vm_level}
    assert all(f.severity > Severity.OK for f in vm_level)
    others = [f for f in findings if f.checkpoint_id not in (None, keep.id)]
    assert others and all(f.exempt_reason is None and f.severity > Severity.OK for f in others)


def test_rule_exemption_leaves_other_rules_alone() -> None:
    vm = linear_vm("dev01", ages=(30 * DAY,))
    policy = PolicyConfig(exemptions=(Exemption(vm="dev01", rule=CHECKPOINT_NOT_BACKUP, reason="scratch VM"),))
    findings = evaluate(inv(vm), policy, last_backup=None)
    (not_backup,) = rule_findings(findings, CHECKPOINT_NOT_BACKUP)
    (age,) = rule_findings(findings, CHECKPOINT_AGE)
    assert not_backup.exempt_reason == "scratch VM"
    assert age.exempt_reason is None and age.severity == Severity.CRIT


# -- unreachable hosts and stale data ---------------------------------------------------------------------------
def test_unreachable_host_without_data_gives_one_host_finding() -> None:
    inventory = Inventory(
        hosts=(HostInventory(name="hv09", kind="winrm", error="hv09: inventory: connection refused"),)
    )
    (finding,) = evaluate(inventory, PolicyConfig())
    assert finding.rule == HOST_UNREACHABLE and finding.host == "hv09" and finding.vm_id is None
    assert finding.severity == Severity.WARN and "connection refused" in finding.message


def test_a_host_that_is_only_late_gives_no_unreachable_finding() -> None:
    late = HostInventory(name="hv09", kind="winrm", error="waiting for an answer (gives up after 60 s)", waiting=True)
    assert evaluate(Inventory(hosts=(late,)), PolicyConfig()) == []
    timed_out = HostInventory(name="hv09", kind="winrm", error="no answer within 60 s (timeout)")
    assert [f.rule for f in evaluate(Inventory(hosts=(timed_out,)), PolicyConfig())] == [HOST_UNREACHABLE]


def test_stale_host_data_is_still_evaluated_and_marked() -> None:
    vm = linear_vm("web01", ages=(30 * DAY,))
    findings = evaluate(inv(vm, error="timeout", stale=True), PolicyConfig(), BACKED_UP)
    assert rule_findings(findings, HOST_UNREACHABLE)
    (age,) = rule_findings(findings, CHECKPOINT_AGE)
    assert "stale" in age.message


# -- ordering and summaries --------------------------------------------------------------------------------------
def test_findings_sorted_by_severity_then_age() -> None:
    vm = linear_vm("mixed01", ages=(4 * DAY, 9 * DAY, 20 * DAY, 5 * DAY))
    findings = rule_findings(
        evaluate(inv(vm), PolicyConfig(defaults=Thresholds(count_warn=10)), BACKED_UP), CHECKPOINT_AGE
    )
    assert [(f.severity, round(f.age_seconds / DAY)) for f in findings] == [
        (Severity.CRIT, 20),
        (Severity.CRIT, 9),
        (Severity.WARN, 5),
        (Severity.WARN, 4),
    ]
    assert sort_findings(reversed(findings)) == findings


def test_summary_and_worst_by_vm() -> None:
    a = linear_vm("a", ages=(30 * DAY,))  # crit age
    b = linear_vm("b", ages=(4 * DAY,))  # warn age
    c = linear_vm("c")
    findings = evaluate(inv(a, b, c), PolicyConfig(), BACKED_UP)
    assert summary(findings) == (1, 1)
    assert worst_by_vm(findings) == {a.key: Severity.CRIT, b.key: Severity.WARN}


def test_disk_without_chain_does_not_break_rules() -> None:
    vm = VM(host="hv01", id="x", name="odd", state="Off", disks=(Disk("IDE", 0, 0, "D:\\odd.vhdx", ()),))
    assert evaluate(inv(vm), PolicyConfig(), BACKED_UP) == []
    vm2 = dataclasses.replace(
        vm, disks=(Disk("IDE", 0, 0, "D:\\odd.avhdx", (VhdLink("D:\\odd.avhdx", "Differencing", 5, 10, None),)),)
    )
    assert [f.rule for f in evaluate(inv(vm2), PolicyConfig(), BACKED_UP)] == [RUNNING_ON_AVHDX]


def test_unreachable_host_is_exempted_only_by_its_rule() -> None:
    inventory = Inventory(
        hosts=(
            HostInventory(name="lab-old", kind="winrm", error="timeout"),
            HostInventory(name="hv09", kind="winrm", error="timeout"),
        )
    )
    by_vm_only = PolicyConfig(exemptions=(Exemption(vm="*", reason="everything"),))
    assert summary(evaluate(inventory, by_vm_only)) == (0, 2)
    by_rule = PolicyConfig(exemptions=(Exemption(vm="lab-old/*", rule=HOST_UNREACHABLE, reason="decommissioned"),))
    findings = evaluate(inventory, by_rule)
    assert {f.host: f.exempt_reason for f in findings} == {"lab-old": "decommissioned", "hv09": None}
    assert summary(findings) == (0, 1)
