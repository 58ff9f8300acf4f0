"""The change-window-open rule: an open window's checkpoints are reported by window and
ticket (warn after 2 days, crit after 7, configurable) instead of as checkpoint-age findings;
pure, with the windows passed in through ``evaluate``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sprawl_support import DAY, HOUR, NOW, linear_vm
from test_policy import BACKED_UP, inv

from hvtui.config import Exemption, PolicyConfig, load_config
from hvtui.errors import ConfigError
from hvtui.model import Inventory, Severity
from hvtui.policy import CHANGE_WINDOW_OPEN, CHECKPOINT_AGE, OpenWindow, evaluate, is_about_host, summary, worst_by_vm


def window_of(vm, index: int, name: str = "pre-patch", ticket: str | None = "CHG-9", count: int = 12):  # noqa: ANN001, ANN201
    cp = vm.checkpoints[index]
    return {(vm.host, vm.id, cp.id): OpenWindow(name, ticket, cp.created, count)}


def by_rule(findings, rule: str):  # noqa: ANN001, ANN201
    return [f for f in findings if f.rule == rule]


def test_a_window_checkpoint_is_named_by_its_window_not_by_its_age() -> None:
    vm = linear_vm("web01", ages=(10 * DAY, 3 * DAY))  # both past checkpoint-age's warn (3 days)
    findings = evaluate(inv(vm), PolicyConfig(), last_backup=BACKED_UP, windows=window_of(vm, 1))
    (window,) = by_rule(findings, CHANGE_WINDOW_OPEN)
    assert window.severity is Severity.WARN and window.checkpoint_id == vm.checkpoints[1].id
    assert window.message == "window pre-patch (ticket CHG-9): 12 VMs, 3 days open (warn at 2 days)"
    assert window.data["window"] == "pre-patch" and window.data["ticket"] == "CHG-9"
    # The other checkpoint is not the window's: it keeps its checkpoint-age finding, alone.
    assert [f.checkpoint_id for f in by_rule(findings, CHECKPOINT_AGE)] == [vm.checkpoints[0].id]

    without = evaluate(inv(vm), PolicyConfig(), last_backup=BACKED_UP)
    assert by_rule(without, CHANGE_WINDOW_OPEN) == []
    assert len(by_rule(without, CHECKPOINT_AGE)) == 2


def test_thresholds_warn_after_2_days_crit_after_7() -> None:
    def severity(age: float) -> list[Severity]:
        vm = linear_vm("web01", ages=(age,))
        found = evaluate(inv(vm), PolicyConfig(), last_backup=BACKED_UP, windows=window_of(vm, 0, ticket=None, count=1))
        return [f.severity for f in by_rule(found, CHANGE_WINDOW_OPEN)]

    assert severity(2 * DAY - HOUR) == []
    assert severity(2 * DAY) == [Severity.WARN]
    assert severity(7 * DAY - HOUR) == [Severity.WARN]
    assert severity(7 * DAY) == [Severity.CRIT]


def test_thresholds_come_from_the_config(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("policy:\n  change_window_age:\n    warn: 1h\n    crit: 1d\n")
    policy = load_config(path).policy
    vm = linear_vm("web01", ages=(2 * HOUR,))
    found = evaluate(inv(vm), policy, last_backup=BACKED_UP, windows=window_of(vm, 0, ticket=None, count=1))
    (finding,) = by_rule(found, CHANGE_WINDOW_OPEN)
    assert finding.message == "window pre-patch: 1 VM, 2 hours open (warn at 1 hour)"

    path.write_text("policy:\n  change_window_age:\n    warn: 8d\n")
    with pytest.raises(ConfigError, match=r"config.yaml:3: policy.change_window_age: warn \(8d\) is above crit \(7d\)"):
        load_config(path)


def test_the_window_age_is_the_older_of_window_and_checkpoint() -> None:
    vm = linear_vm("web01", ages=(HOUR,))
    windows = {key: OpenWindow("w", None, NOW - timedelta(days=8), 1) for key in window_of(vm, 0)}
    (finding,) = by_rule(evaluate(inv(vm), PolicyConfig(), last_backup=BACKED_UP, windows=windows), CHANGE_WINDOW_OPEN)
    assert finding.severity is Severity.CRIT


def spanning_window():  # noqa: ANN201
    """web01 (3 days) and web02 (8 days) on hv01, db01 (3 days) on hv02: one window on all three."""
    web01 = linear_vm("web01", ages=(3 * DAY,))
    web02 = linear_vm("web02", ages=(8 * DAY,))
    db01 = linear_vm("db01", host="hv02", ages=(3 * DAY,))
    inventory = Inventory(hosts=(*inv(web01, web02).hosts, *inv(db01, host="hv02").hosts))
    window = OpenWindow("pre-patch", "CHG-9", NOW - 3 * timedelta(days=1), 3)
    windows = {(vm.host, vm.id, vm.checkpoints[0].id): window for vm in (web01, web02, db01)}
    return inventory, windows, (web01, web02, db01)


def test_a_window_on_many_vms_is_one_finding_and_each_vm_shows_its_severity() -> None:
    inventory, windows, vms = spanning_window()
    findings = evaluate(inventory, PolicyConfig(), last_backup=BACKED_UP, windows=windows)
    (window,) = by_rule(findings, CHANGE_WINDOW_OPEN)  # not three
    assert window.severity is Severity.CRIT  # the worst of its VMs' (web02's checkpoint is 8 days old)
    assert window.message == "window pre-patch (ticket CHG-9): 3 VMs, 8 days open (crit at 7 days)"
    assert (window.host, window.vm_id, window.checkpoint_id) == ("hv01, hv02", None, None)
    assert window.vm_keys == tuple(sorted(vm.key for vm in vms)) and window.data["vms"] == 3
    assert summary(findings) == (1, 0)
    assert worst_by_vm(findings) == {vm.key: Severity.CRIT for vm in vms}
    assert [is_about_host(window, host) for host in ("hv01", "hv02", "hv03")] == [True, True, False]


def test_an_exempted_vm_leaves_the_window_to_the_others() -> None:
    inventory, windows, vms = spanning_window()
    policy = PolicyConfig(exemptions=(Exemption(vm="hv01/web02", reason="kept for the vendor"),))
    (window,) = by_rule(evaluate(inventory, policy, last_backup=BACKED_UP, windows=windows), CHANGE_WINDOW_OPEN)
    assert window.severity is Severity.WARN and window.exempt_reason is None
    assert window.message == "window pre-patch (ticket CHG-9): 3 VMs, 3 days open (warn at 2 days)"

    everyone = PolicyConfig(exemptions=(Exemption(vm="*", reason="change freeze"),))
    (window,) = by_rule(evaluate(inventory, everyone, last_backup=BACKED_UP, windows=windows), CHANGE_WINDOW_OPEN)
    assert window.exempt_reason == "change freeze" and window.severity is Severity.OK
    assert summary([window]) == (0, 0)


def test_the_findings_view_lists_the_window_once_and_the_vm_list_marks_each_vm() -> None:
    from hvtui.tui.viewmodel.cells import Palette
    from hvtui.tui.viewmodel.snapshot import build_snapshot

    inventory, windows, vms = spanning_window()
    findings = evaluate(inventory, PolicyConfig(), last_backup=BACKED_UP, windows=windows)
    snapshot = build_snapshot(inventory, findings, Palette(), NOW)
    assert [row.plain[1:4] for row in snapshot.finding_rows if row.plain[3] == CHANGE_WINDOW_OPEN] == [
        ("hv01, hv02", "", CHANGE_WINDOW_OPEN)
    ]
    assert {key: row.health for key, row in snapshot.rows.items()} == {vm.key: Severity.CRIT for vm in vms}
    # The VM's own detail still lists the window that holds it.
    assert [f.rule for f in snapshot.findings_for("hv02", vms[2].id)] == [CHANGE_WINDOW_OPEN]
