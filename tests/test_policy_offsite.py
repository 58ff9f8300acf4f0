"""The no-offsite-copy rule: a VM whose newest point has no copy in a copy_to target for longer than
``policy.no_offsite_copy`` (warn 1 day, crit 3 days by default; configurable)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sprawl_support import DAY, NOW, linear_vm
from test_policy import BACKED_UP, inv, rule_findings

from hvtui.config import PolicyConfig, load_config
from hvtui.model import Severity
from hvtui.policy import evaluate

RULE = "no-offsite-copy"


def offsite_severities(age: float, missing: tuple[str, ...], policy: PolicyConfig | None = None) -> list[Severity]:
    vm = linear_vm("web01")
    findings = evaluate(
        inv(vm), policy or PolicyConfig(), last_backup=BACKED_UP, offsite=lambda _vm: (NOW - timedelta(seconds=age), missing)
    )
    return [f.severity for f in rule_findings(findings, RULE)]


@pytest.mark.parametrize(
    ("age", "expected"),
    [(DAY - 1, []), (DAY, [Severity.WARN]), (3 * DAY - 1, [Severity.WARN]), (3 * DAY, [Severity.CRIT])],
)
def test_thresholds(age: float, expected: list[Severity]) -> None:
    assert offsite_severities(age, ("offsite",)) == expected


def test_a_copied_point_or_no_copy_to_raises_nothing() -> None:
    assert offsite_severities(10 * DAY, ()) == []
    findings = evaluate(inv(linear_vm("web01")), PolicyConfig(), last_backup=BACKED_UP, offsite=lambda _vm: None)
    assert rule_findings(findings, RULE) == []


def test_the_message_names_the_targets_and_the_thresholds() -> None:
    vm = linear_vm("web01")
    state = (NOW - timedelta(days=2), ("nas", "offsite"))
    (finding,) = rule_findings(evaluate(inv(vm), PolicyConfig(), last_backup=BACKED_UP, offsite=lambda _vm: state), RULE)
    assert finding.message == "newest restore point (2 days old) has no copy in nas, offsite (warn after 24 hours, crit after 3 days)"
    assert "hvtui copy --to nas web01" in finding.action


def test_the_thresholds_come_from_the_config(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("policy:\n  no_offsite_copy:\n    warn: 2h\n    crit: 12h\n")
    policy = load_config(config).policy
    assert (policy.defaults.no_offsite_copy_warn, policy.defaults.no_offsite_copy_crit) == (7200, 43200)
    assert offsite_severities(3 * 3600, ("offsite",), policy) == [Severity.WARN]
    assert offsite_severities(13 * 3600, ("offsite",), policy) == [Severity.CRIT]
    config.write_text("policy:\n  no_offsite_copy:\n    warn: 2d\n    crit: 1d\n")
    with pytest.raises(Exception, match="no_offsite_copy"):
        load_config(config)
