"""The backup service's safety rules: read-only refusal (audit-logged) and audit entries
that never fail the operation they record."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from hvtui.audit import AuditLog
from hvtui.errors import ReadOnlyError
from hvtui.hosts.base import Host

log = logging.getLogger(__name__)


class HostLookup(Protocol):
    """The configured hosts (``hvtui.hosts.registry.HostRegistry``)."""

    def host(self, name: str) -> Host: ...


class SafetyGuard:
    def __init__(self, hosts: HostLookup, audit: AuditLog, read_only: bool) -> None:
        """``read_only``: the whole console runs read-only (a host may also be, in its settings)."""
        self._hosts = hosts
        self._audit = audit
        self._read_only = read_only

    @property
    def read_only(self) -> bool:
        return self._read_only

    def read_only_reason(self, host: str | None = None) -> str | None:
        if self._read_only:
            return "hvtui runs read-only (--read-only or read_only in the config)"
        if host is not None and self._hosts.host(host).read_only:
            return f"host {host!r} is read-only in the config"
        return None

    def refuse_if_read_only(self, action: str, host: str | None, vm: str | None, args: dict[str, Any]) -> None:
        reason = self.read_only_reason(host)
        if reason is not None:
            self.audit_record(action, host, vm, args, "refused", f"read-only: {reason}")
            raise ReadOnlyError(f"{action} refused: {reason}")

    def audit_record(
        self,
        action: str,
        host: str | None,
        vm: str | None,
        args: dict,
        result: str,
        error: str | None,
        duration: float = 0.0,
    ) -> None:
        try:
            self._audit.record(action, host or "-", vm, args, result, duration, error)
        except OSError as err:
            log.error("could not write the audit log: %s", err)
