"""Exemptions: a finding the config exempts is kept, reported with severity OK and its reason.

The finding's would-be severity goes in ``data["exempt_severity"]``.  A checkpoint-name
pattern only exempts findings that name a checkpoint; a host-level finding (an unreachable
host) is only exempted by an exemption naming its rule, its vm glob matched against the
host name.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Iterable

from hvtui.config import Exemption
from hvtui.model import Checkpoint, Finding, Severity


@dataclasses.dataclass(frozen=True, slots=True)
class ExemptionMatcher:
    """An exemption with its globs compiled once per evaluation (thousands of findings)."""

    exemption: Exemption
    vm: re.Pattern[str]
    checkpoint: re.Pattern[str] | None

    @classmethod
    def compile(cls, exemption: Exemption) -> ExemptionMatcher:
        def glob(pattern: str) -> re.Pattern[str]:
            return re.compile(fnmatch.translate(pattern), re.IGNORECASE | re.DOTALL)

        checkpoint = glob(exemption.checkpoint) if exemption.checkpoint is not None else None
        return cls(exemption, glob(exemption.vm), checkpoint)

    def matches(self, finding: Finding, checkpoint: Checkpoint | None) -> bool:
        rule = self.exemption.rule
        if rule is not None and rule != finding.rule:
            return False
        if finding.vm_name is None:
            # A host-level finding (an unreachable host) is only silenced by an exemption
            # naming its rule; its vm glob is matched against "host" and "host/".
            if rule != finding.rule:
                return False
            names: tuple[str, ...] = (finding.host, f"{finding.host}/")
        else:
            names = (f"{finding.host}/{finding.vm_name}", finding.vm_name, f"{finding.host}/{finding.vm_id}")
        if not any(self.vm.match(name) for name in names):
            return False
        if self.checkpoint is not None:
            return checkpoint is not None and self.checkpoint.match(checkpoint.name) is not None
        return True


def apply_exemption(finding: Finding, checkpoint: Checkpoint | None, matchers: Iterable[ExemptionMatcher]) -> Finding:
    if finding.severity == Severity.OK:
        return finding
    for matcher in matchers:
        if matcher.matches(finding, checkpoint):
            data = dict(finding.data)
            data["exempt_severity"] = finding.severity.label
            reason = matcher.exemption.reason or "exempted by the policy"
            return dataclasses.replace(finding, severity=Severity.OK, exempt_reason=reason, data=data)
    return finding
