"""A backup schedule as configured (``schedules:``), and which VMs it selects.

Plain data and pure functions: the schedule runner (``hvtui/schedules/``), the console and
the backup-overdue rule (``hvtui/policy/``) read the same selection.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from hvtui.config.timing import Timing

GROUP_PREFIX = "group:"


@dataclass(frozen=True, slots=True)
class Selection:
    """Whether a schedule selects one VM, and why, in words."""

    selected: bool
    reason: str


def _matches(selector: str, host: str, vm: str, group: str | None) -> bool:
    """``host/vm-glob``, ``vm-glob`` (on any host) or ``group:NAME`` (every VM of the group's
    hosts); globs and names compare case-insensitively, as Hyper-V names do."""
    folded = selector.casefold()
    if folded.startswith(GROUP_PREFIX):
        return group is not None and group.casefold() == folded[len(GROUP_PREFIX) :].strip()
    if "/" in folded:
        return fnmatchcase(f"{host}/{vm}".casefold(), folded)
    return fnmatchcase(vm.casefold(), folded)


@dataclass(frozen=True, slots=True)
class ScheduleConfig:
    name: str
    vms: tuple[str, ...]  # selectors: host/vm globs, vm globs, group:NAME
    timing: Timing
    window: float  # seconds after a slot within which its run must start, else it is missed
    exclude: tuple[str, ...] = ()
    repository: str | None = None  # None: the default repository
    mode: str = "incremental"  # full | incremental | differential
    full_every: float | None = None  # seconds: a full (a fresh differential base) at least this often
    copy_to: str | None = None  # a repository to copy each success to (once copy jobs exist)
    notify: tuple[str, ...] = ()  # notification target names
    line: int = 0  # where the config file defines it (0: built in code)

    def selection(self, host: str, vm: str, group: str | None) -> Selection:
        """Whether this schedule backs up ``host/vm`` (its host in ``group``), and why."""
        included = next((s for s in self.vms if _matches(s, host, vm, group)), None)
        if included is None:
            return Selection(False, "matches none of " + ", ".join(repr(s) for s in self.vms))
        excluded = next((s for s in self.exclude if _matches(s, host, vm, group)), None)
        if excluded is not None:
            return Selection(False, f"selected by {included!r} but excluded by {excluded!r}")
        return Selection(True, f"selected by {included!r}")

    def selects(self, host: str, vm: str, group: str | None) -> bool:
        return self.selection(host, vm, group).selected

    def may_select_host(self, host: str, group: str | None) -> bool:
        """Whether some selector could pick a VM of ``host`` (a host that cannot be read then
        hides VMs this schedule should back up)."""
        for selector in self.vms:
            folded = selector.casefold()
            if folded.startswith(GROUP_PREFIX):
                if group is not None and group.casefold() == folded[len(GROUP_PREFIX) :].strip():
                    return True
            elif "/" not in folded or fnmatchcase(host.casefold(), folded.split("/", 1)[0]):
                return True
        return False

    def unmatched_selectors(self, vms: list[tuple[str, str, str | None]]) -> list[str]:
        """The selectors of ``vms:`` matching none of ``vms`` ((host, vm, group) each): a typo, or
        a VM gone; worth a warning rather than silence."""
        return [s for s in self.vms if not any(_matches(s, host, vm, group) for host, vm, group in vms)]
