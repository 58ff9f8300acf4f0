"""Views over findings the screens and ``hvtui check`` share: order, counts, worst per VM."""

from __future__ import annotations

from collections.abc import Iterable

from hvtui.model import Finding, Severity


def is_problem(finding: Finding) -> bool:
    """A finding that counts: not OK, not exempted."""
    return finding.exempt_reason is None and finding.severity > Severity.OK


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Severity (worst first), then age (oldest first), then host, VM and rule for a stable order."""
    return sorted(
        findings,
        key=lambda f: (
            -int(f.severity),
            -(f.age_seconds or 0.0),
            f.host,
            f.vm_name or "",
            f.rule,
            f.checkpoint_id or "",
            f.file or "",
        ),
    )


def summary(findings: Iterable[Finding]) -> tuple[int, int]:
    """(crit, warn) counts, exempted findings left out."""
    crit = warn = 0
    for finding in findings:
        if not is_problem(finding):
            continue
        if finding.severity == Severity.CRIT:
            crit += 1
        elif finding.severity == Severity.WARN:
            warn += 1
    return crit, warn


def vm_key(host: str, vm_id: str) -> str:
    """Same form as ``VM.key``."""
    return f"{host}/{vm_id}"


def vm_keys_of(finding: Finding) -> tuple[str, ...]:
    """The VMs (``VM.key``) a finding is about: its own VM, or every VM of a change window's; () for a host's."""
    if finding.vm_keys:
        return finding.vm_keys
    return (vm_key(finding.host, finding.vm_id),) if finding.vm_id is not None else ()


def is_about_host(finding: Finding, host: str) -> bool:
    """The finding names ``host`` itself or one of its VMs (a change window may span hosts)."""
    return finding.host == host or any(key.partition("/")[0] == host for key in finding.vm_keys)


def worst_by_vm(findings: Iterable[Finding]) -> dict[str, Severity]:
    """Worst severity per ``VM.key`` (exempted findings count as OK); VMs without findings are absent.

    Each VM of an open change window gets the window's severity: its one finding covers them all."""
    worst: dict[str, Severity] = {}
    for finding in findings:
        severity = finding.severity if finding.exempt_reason is None else Severity.OK
        for key in vm_keys_of(finding):
            if key not in worst or severity > worst[key]:
                worst[key] = severity
    return worst
