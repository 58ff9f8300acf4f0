"""What the console shows, computed from the inventory and the findings, without Textual.

Everything here is plain data and runs in the refresh worker thread: the UI thread only
diffs the prepared rows against what the table shows.  Cells carry display text (via
humanize) and separate sort keys, so "9 days" sorts below "10 days" and "900 MiB" below
"1.2 GiB".
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import humanize
from rich.cells import cell_len
from rich.style import Style
from rich.text import Text

from hvtui.model import VM, Finding, HostInventory, Inventory, Severity, VhdLink
from hvtui.policy import age_text as policy_age_text

# -- formatting -------------------------------------------------------------------------------


def age_text(seconds: float | None) -> str:
    """An age as the findings word it too ("47 hours", "23 days"); empty for none."""
    if seconds is None:
        return ""
    return policy_age_text(seconds)


def size_text(num_bytes: int | float | None) -> str:
    if num_bytes is None:
        return ""
    return humanize.naturalsize(num_bytes, binary=True)


def aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def seconds_between(now: datetime, then: datetime) -> float:
    return max(0.0, (aware(now) - aware(then)).total_seconds())


def file_name(path: str) -> str:
    """The last component of a Windows or POSIX path."""
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def host_now(host: HostInventory | None, fallback: datetime) -> datetime:
    """Ages are measured against the host's own clock when it told us one."""
    if host is not None and host.facts is not None:
        return host.facts.now
    return fallback


def default_checkpoint_name(vm_name: str, when: datetime) -> str:
    """Hyper-V Manager's default: ``web01 - (11/24/2026 - 12:00:00 PM)`` (local time)."""
    local = aware(when).astimezone()
    hour = local.hour % 12 or 12
    suffix = "AM" if local.hour < 12 else "PM"
    return f"{vm_name} - ({local.month}/{local.day}/{local.year} - {hour}:{local.minute:02d}:{local.second:02d} {suffix})"


# -- cells ------------------------------------------------------------------------------------

NO_STYLE = Style()  # one shared instance: thousands of cells carry it


class Cell:
    """A table cell: its text, a Rich style and an alignment.

    A much lighter stand-in for ``rich.text.Text`` (a Text holds two lists and strips
    control codes on creation): with 5,000 VMs the table keeps 50,000 of these.  The
    console's table draws them directly; anything else renders them through ``__rich__``.
    """

    __slots__ = ("plain", "style", "justify")

    def __init__(self, plain: str, style: Style = NO_STYLE, justify: str = "left") -> None:
        self.plain = plain
        self.style = style
        self.justify = justify

    def __rich__(self) -> Text:
        return Text(self.plain, style=self.style, justify=self.justify, no_wrap=True, overflow="ellipsis", end="")  # type: ignore[arg-type]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Cell):
            return (self.plain, self.style, self.justify) == (other.plain, other.style, other.justify)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.plain, self.style, self.justify))

    def __str__(self) -> str:
        return self.plain

    def __repr__(self) -> str:
        return f"Cell({self.plain!r}, {self.style!r}, {self.justify!r})"


# -- palette ----------------------------------------------------------------------------------

ROLES = ("crit", "warn", "ok", "muted")


@dataclasses.dataclass(frozen=True)
class Palette:
    """Rich styles for the severity roles, taken from the current theme's variables."""

    crit: Style = Style(bold=True)
    warn: Style = Style(bold=True)
    ok: Style = Style()
    muted: Style = Style(dim=True)
    generation: int = 0

    @classmethod
    def from_variables(cls, variables: dict[str, str], generation: int = 0) -> Palette:
        from textual.color import Color, ColorParseError

        def colour(name: str, **extra: Any) -> Style:
            value = variables.get(name)
            if not value:
                return Style(**extra)
            try:
                return Style(color=Color.parse(value.split()[0]).rich_color, **extra)
            except (ColorParseError, IndexError):
                return Style(**extra)

        return cls(
            crit=colour("sev-crit", bold=True),
            warn=colour("sev-warn", bold=True),
            ok=colour("sev-ok"),
            muted=colour("sev-muted"),
            generation=generation,
        )

    def severity(self, severity: Severity | None) -> Style:
        if severity == Severity.CRIT:
            return self.crit
        if severity == Severity.WARN:
            return self.warn
        if severity == Severity.OK:
            return self.ok
        return self.muted


# -- the VM table -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ColumnSpec:
    id: str
    label: str
    priority: int  # 0 always shown; higher numbers are dropped first on narrow terminals
    max_width: int
    right: bool = False  # numbers and sizes align right
    flex: bool = False  # takes the width left over (at least FLEX_MIN), instead of its content's


VM_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("health", "HEALTH", 0, 6),
    ColumnSpec("host", "HOST", 0, 20),
    ColumnSpec("name", "VM", 0, 32),
    ColumnSpec("state", "STATE", 0, 10),
    ColumnSpec("uptime", "UPTIME", 3, 16),
    ColumnSpec("checkpoints", "CPS", 0, 4, right=True),
    ColumnSpec("oldest", "OLDEST CP", 1, 18),
    ColumnSpec("depth", "DEPTH", 2, 5, right=True),
    ColumnSpec("diff", "DIFF", 1, 10, right=True),
    ColumnSpec("backup", "LAST BACKUP", 4, 18),
)
VM_COLUMN_IDS = tuple(spec.id for spec in VM_COLUMNS)

# Sort keys: which column, and whether the first press sorts descending (worst, oldest,
# biggest first: what an admin looks for).
SORT_DESCENDING_FIRST = {
    "health": True,
    "host": False,
    "name": False,
    "state": False,
    "uptime": True,
    "checkpoints": True,
    "oldest": True,
    "depth": True,
    "diff": True,
    "backup": False,
}

HEALTH_TEXT = {Severity.CRIT: "CRIT", Severity.WARN: "WARN", Severity.OK: "OK"}
_STATE_ORDER = {"Running": 0, "Paused": 1, "Saved": 2, "Off": 3}


@dataclasses.dataclass(frozen=True, slots=True)
class VmRow:
    key: str  # VM.key: host/id
    host: str
    vm: VM
    health: Severity
    stale: bool
    plain: tuple[str, ...]  # display text per column of VM_COLUMNS
    sort: tuple[Any, ...]  # sort key per column of VM_COLUMNS
    haystack: str  # what the / filter matches: host and VM name, folded
    texts: tuple[Cell, ...]  # styled cells for the palette they were built with
    palette_generation: int

    def restyled(self, palette: Palette) -> VmRow:
        return dataclasses.replace(
            self,
            texts=_vm_texts(self.plain, self.health, self.stale, palette),
            palette_generation=palette.generation,
        )


def _vm_texts(plain: tuple[str, ...], health: Severity, stale: bool, palette: Palette) -> tuple[Cell, ...]:
    base = palette.muted if stale else NO_STYLE
    severity = palette.severity(health)
    return tuple(
        Cell(value, severity if spec.id == "health" else base, "right" if spec.right else "left")
        for spec, value in zip(VM_COLUMNS, plain, strict=True)
    )


LastBackup = Callable[[VM], datetime | None]


def build_vm_row(
    vm: VM,
    host: HostInventory | None,
    health: Severity,
    now: datetime,
    palette: Palette,
    last_backup: datetime | None = None,
    previous: VmRow | None = None,
) -> VmRow:
    """One VM's row; reuses ``previous``'s styled cells when they would come out the same
    (the table then skips the row entirely, and no Text objects are built)."""
    stale = bool(host is not None and host.stale)
    oldest = vm.oldest_checkpoint
    oldest_age = seconds_between(now, oldest.created) if oldest is not None else None
    # Whatever Hyper-V reports: a Paused VM keeps its uptime, an Off or Saved one reports 0.
    uptime = vm.uptime_seconds or None
    backup_age = seconds_between(now, last_backup) if last_backup is not None else None
    host_text = f"{vm.host} (stale)" if stale else vm.host
    plain = (
        HEALTH_TEXT.get(health, "OK"),
        host_text,
        vm.name,
        vm.state,
        age_text(uptime) if uptime else "",
        str(vm.checkpoint_count),
        age_text(oldest_age),
        str(vm.chain_depth),
        size_text(vm.differencing_bytes) if vm.differencing_bytes else "0",
        f"{age_text(backup_age)} ago" if backup_age is not None else "",
    )
    name_key = (vm.host.casefold(), vm.name.casefold())
    sort = (
        int(health),
        name_key,
        (vm.name.casefold(), vm.host.casefold()),
        _STATE_ORDER.get(vm.state, 9),
        uptime or 0,
        vm.checkpoint_count,
        oldest_age if oldest_age is not None else -1.0,
        vm.chain_depth,
        vm.differencing_bytes,
        # No backup sorts as the oldest possible (the worst).
        -(backup_age if backup_age is not None else float("inf")),
    )
    if (
        previous is not None
        and previous.plain == plain
        and previous.health == health
        and previous.stale == stale
        and previous.palette_generation == palette.generation
    ):
        texts = previous.texts
    else:
        texts = _vm_texts(plain, health, stale, palette)
    return VmRow(
        key=vm.key,
        host=vm.host,
        vm=vm,
        health=health,
        stale=stale,
        plain=plain,
        sort=sort,
        haystack=f"{vm.host}\t{vm.name}".casefold(),
        texts=texts,
        palette_generation=palette.generation,
    )


def column_widths(rows: Iterable[VmRow]) -> dict[str, int]:
    """Content width per column: the widest cell (capped), at least the label."""
    widths = [cell_len(spec.label) for spec in VM_COLUMNS]
    for row in rows:
        for index, value in enumerate(row.plain):
            length = len(value) if value.isascii() else cell_len(value)
            if length > widths[index]:
                widths[index] = length
    return {spec.id: min(max(width, cell_len(spec.label)), max(spec.max_width, cell_len(spec.label))) for spec, width in zip(VM_COLUMNS, widths, strict=True)}


def filter_rows(rows: Iterable[VmRow], query: str) -> list[VmRow]:
    """Rows whose host or VM name contains ``query`` (case-insensitive); all when empty."""
    folded = query.strip().casefold()
    if not folded:
        return list(rows)
    return [row for row in rows if folded in row.haystack]


def sort_rows(rows: Iterable[VmRow], column: str, descending: bool) -> list[VmRow]:
    """Rows ordered by the real values of ``column``; host and VM name break ties."""
    index = VM_COLUMN_IDS.index(column)
    name_index = VM_COLUMN_IDS.index("host")
    # Two stable sorts: ties keep host/name order whichever way the main key goes.
    ordered = sorted(rows, key=lambda row: row.sort[name_index])
    return sorted(ordered, key=lambda row: row.sort[index], reverse=descending)


# -- findings ---------------------------------------------------------------------------------------

FINDING_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("severity", "SEV", 0, 6),
    ColumnSpec("host", "HOST", 0, 16),
    ColumnSpec("vm", "VM", 0, 24),
    ColumnSpec("rule", "RULE", 1, 24),
    ColumnSpec("age", "AGE", 2, 14),
    ColumnSpec("message", "MESSAGE", 0, 200, flex=True),
)


def finding_key(finding: Finding) -> str:
    """A stable identity for a finding across refreshes (severity and numbers left out)."""
    return "|".join((finding.rule, finding.host, finding.vm_id or "", finding.checkpoint_id or "", finding.file or ""))


def finding_severity_text(finding: Finding) -> str:
    if finding.exempt_reason is not None:
        return "EXEMPT"
    return HEALTH_TEXT.get(finding.severity, "OK")


@dataclasses.dataclass(frozen=True, slots=True)
class FindingRow:
    key: str
    finding: Finding
    plain: tuple[str, ...]
    haystack: str
    texts: tuple[Cell, ...]
    palette_generation: int

    def restyled(self, palette: Palette) -> FindingRow:
        return dataclasses.replace(
            self, texts=_finding_texts(self.finding, self.plain, palette), palette_generation=palette.generation
        )


def _finding_texts(finding: Finding, plain: tuple[str, ...], palette: Palette) -> tuple[Cell, ...]:
    exempt = finding.exempt_reason is not None
    severity = palette.muted if exempt else palette.severity(finding.severity)
    rest = palette.muted if exempt else NO_STYLE
    return tuple(Cell(value, severity if spec.id == "severity" else rest) for spec, value in zip(FINDING_COLUMNS, plain, strict=True))


def build_finding_rows(
    findings: Sequence[Finding], palette: Palette, previous: Sequence[FindingRow] = ()
) -> list[FindingRow]:
    rows: list[FindingRow] = []
    seen: dict[str, int] = {}
    before = {row.key: row for row in previous if row.palette_generation == palette.generation}
    for finding in findings:
        key = finding_key(finding)
        count = seen.get(key, 0)
        seen[key] = count + 1
        if count:
            key = f"{key}#{count}"
        old = before.get(key)
        if old is not None and old.finding == finding:
            rows.append(old)  # same finding, same look: the table skips it
            continue
        message = finding.message
        if finding.exempt_reason is not None:
            message = f"exempt ({finding.exempt_reason}): {message}"
        plain = (
            finding_severity_text(finding),
            finding.host,
            finding.vm_name or "",
            finding.rule,
            age_text(finding.age_seconds) if finding.age_seconds is not None else "",
            message,
        )
        rows.append(
            FindingRow(
                key=key,
                finding=finding,
                plain=plain,
                haystack="\t".join((finding.host, finding.vm_name or "", finding.rule, message)).casefold(),
                texts=_finding_texts(finding, plain, palette),
                palette_generation=palette.generation,
            )
        )
    return rows


def filter_finding_rows(rows: Iterable[FindingRow], query: str) -> list[FindingRow]:
    folded = query.strip().casefold()
    if not folded:
        return list(rows)
    return [row for row in rows if folded in row.haystack]


def finding_column_widths(rows: Iterable[FindingRow]) -> dict[str, int]:
    widths = [cell_len(spec.label) for spec in FINDING_COLUMNS]
    for row in rows:
        for index, value in enumerate(row.plain):
            length = len(value) if value.isascii() else cell_len(value)
            if length > widths[index]:
                widths[index] = length
    return {spec.id: min(width, max(spec.max_width, cell_len(spec.label))) for spec, width in zip(FINDING_COLUMNS, widths, strict=True)}


# -- checkpoints and files of one VM ----------------------------------------------------------------


def checkpoint_files(vm: VM) -> dict[str, list[VhdLink]]:
    """The differencing file(s) each checkpoint started, where the inventory shows them.

    Hyper-V freezes the current file when it takes a checkpoint and starts a new
    differencing file; along the VM's current branch (nearest first) the file started
    by the i-th checkpoint is ``chain[i]`` of each disk.  Checkpoints on other branches
    (or chains that do not match the tree after a failed merge) map to nothing.
    """
    branch = vm.current_branch()
    files: dict[str, list[VhdLink]] = {}
    for disk in vm.disks:
        if disk.depth != len(branch):
            continue
        for index, cp in enumerate(branch):
            link = disk.chain[index]
            if link.vhd_type == "Differencing":
                files.setdefault(cp.id, []).append(link)
    return files


def now_files(vm: VM) -> list[VhdLink]:
    """The files the VM writes to now (one per disk)."""
    return [disk.chain[0] for disk in vm.disks if disk.chain]


# -- the snapshot ---------------------------------------------------------------------------


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
        return [f for f in self.findings if f.host == host and f.vm_id == vm_id]

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
            rows[vm.key] = build_vm_row(vm, host, health, now_on_host, palette, backup, before.get(vm.key))
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
