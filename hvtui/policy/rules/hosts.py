"""Host-level rules: a host that cannot be read."""

from __future__ import annotations

from hvtui.model import Finding, HostInventory, Severity
from hvtui.policy.context import HostRule

HOST_UNREACHABLE = "host-unreachable"


def host_unreachable(host: HostInventory) -> list[Finding]:
    if host.error is None or host.waiting:  # late is not unreadable (yet): the header counts it waiting
        return []
    if host.stale and host.refreshed_at is not None:
        since = f"; showing data from {host.refreshed_at.isoformat(timespec='seconds')}"
    else:
        since = "; no data"
    return [
        Finding(
            severity=Severity.WARN,
            rule=HOST_UNREACHABLE,
            host=host.name,
            vm_id=None,
            vm_name=None,
            message=f"cannot be read: {host.error}{since}",
            action="Check the host is up, reachable and that the credentials work (hvtui info, then the host itself)",
        )
    ]


RULES = (HostRule((HOST_UNREACHABLE,), host_unreachable),)
