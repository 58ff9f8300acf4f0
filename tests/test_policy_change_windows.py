"""The change-window-open rule: an open window's checkpoints are reported by window and
ticket (warn after 2 days, crit after 7, configurable) instead of as checkpoint-age findings;
pure, with the windows passed in through ``evaluate``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sprawl_support import DAY, HOUR, NOW, linear_vm
from test_policy import BACKED_UP, inv

from hvtui.config import PolicyConfig, load_config
from hvtui.errors import ConfigError
from hvtui.model import Severity
from hvtui.policy import CHANGE_WINDOW_OPEN, CHECKPOINT_AGE, OpenWindow, evaluate


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
