"""One refresh's worth of everything the console shows, built in the refresh worker."""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime

from hvtui.config.schedules import ScheduleConfig
from hvtui.config.timing import local_zone
from hvtui.model import Finding, HostInventory, Inventory, Severity
from hvtui.tui.viewmodel.cells import Palette
from hvtui.tui.viewmodel.finding_rows import FindingRow, build_finding_rows, finding_column_widths, finding_key
from hvtui.tui.viewmodel.format import host_now
from hvtui.tui.viewmodel.schedule_rows import next_runs
from hvtui.tui.viewmodel.vm_rows import LastBackup, VmRow, build_vm_row, column_widths


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One refresh's worth of everything the console shows."""

    inventory: Inventory
    findings: list[Finding]
    worst: dict[str, Severity]
    crit: int
    warn: int
    rows: dict[str, VmRow]  # by VM.key, in inventory order
    widths: dict[str, int]
    finding_rows: list[FindingRow]
    finding_widths: dict[str, int]
    taken_at: float  # time.monotonic() when the refresh finished
    taken_wall: datetime
    duration: float  # seconds the refresh took (inventory + policy + rows)
    palette_generation: int

    @property
    def hosts_total(self) -> int:
        return len(self.inventory.hosts)

    @property
    def hosts_reachable(self) -> int:
        return sum(1 for host in self.inventory.hosts if host.reachable)

    @property
    def hosts_waiting(self) -> int:
        """Hosts whose read is late but has not failed (not counted as reachable, nor as down)."""
        return sum(1 for host in self.inventory.hosts if host.waiting)

    @property
    def failing_hosts(self) -> list[HostInventory]:
        return [host for host in self.inventory.hosts if not host.reachable]

    def crit_keys(self) -> set[str]:
        return {
            finding_key(f) for f in self.findings if f.severity == Severity.CRIT and f.exempt_reason is None
        }

    def findings_for(self, host: str, vm_id: str) -> list[Finding]:
        key = f"{host}/{vm_id}"
        return [f for f in self.findings if (f.host == host and f.vm_id == vm_id) or key in f.vm_keys]

    def restyled(self, palette: Palette) -> Snapshot:
        return dataclasses.replace(
            self,
            rows={key: row.restyled(palette) for key, row in self.rows.items()},
            finding_rows=[row.restyled(palette) for row in self.finding_rows],
            palette_generation=palette.generation,
        )


def build_snapshot(
    inventory: Inventory,
    findings: list[Finding],
    palette: Palette,
    now: datetime,
    last_backup: LastBackup | None = None,
    started: float | None = None,
    previous: Snapshot | None = None,
    schedules: tuple[ScheduleConfig, ...] = (),
) -> Snapshot:
    """Turn an inventory and its findings into rows (runs in the worker thread).

    Rows and finding rows that did not change since ``previous`` are carried over as they
    were: with thousands of VMs, building their styled cells again is most of a refresh.
    """
    from hvtui.policy import summary, worst_by_vm

    worst = worst_by_vm(findings)
    crit, warn = summary(findings)
    rows: dict[str, VmRow] = {}
    before = previous.rows if previous is not None else {}
    upcoming = next_runs(schedules, now, local_zone()) if schedules else {}
    for host in inventory.hosts:
        now_on_host = host_now(host, now)
        for vm in host.vms:
            backup = None
            if last_backup is not None:
                try:
                    backup = last_backup(vm)
                except Exception:  # a broken lookup must not hide the inventory
                    backup = None
            health = worst.get(vm.key, Severity.OK)
            mine = tuple(s.name for s in schedules if s.selects(vm.host, vm.name, host.group))
            # Measured on the jump box's clock (the schedules run there), not the host's.
            next_in = min(((upcoming[name] - now).total_seconds() for name in mine), default=None)
            rows[vm.key] = build_vm_row(
                vm, host, health, now_on_host, palette, backup, before.get(vm.key), next_in, tuple(n.casefold() for n in mine)
            )
    finding_rows = build_finding_rows(findings, palette, previous.finding_rows if previous is not None else ())
    finished = time.monotonic()
    return Snapshot(
        inventory=inventory,
        findings=findings,
        worst=worst,
        crit=crit,
        warn=warn,
        rows=rows,
        widths=column_widths(rows.values()),
        finding_rows=finding_rows,
        finding_widths=finding_column_widths(finding_rows),
        taken_at=finished,
        taken_wall=now,
        duration=finished - started if started is not None else 0.0,
        palette_generation=palette.generation,
    )
