"""The schema of ``schedules:`` (backup schedules), read against by ``hvtui.config.walk``
and converted by ``hvtui.config.load_schedules``."""

from __future__ import annotations

from typing import Annotated

from msgspec import UNSET, Meta, UnsetType

from hvtui.config.fields import Model, choice, collection, described, duration, name, text
from hvtui.model import BACKUP_MODES

Selector = Annotated[
    str,
    Meta(min_length=1, pattern=r"\S"),
    described('A VM selector: "host/vm-glob", "vm-glob" or "group:NAME".', kind="text", what="a VM selector (host/vm glob, vm glob or group:NAME)"),
]
TargetName = name("a notification target name", "A name under notifications:.")


class ScheduleModel(Model, kw_only=True):
    """A backup schedule: which VMs, into which repository, when; the host's own scheduler
    (a systemd timer or cron) starts `hvtui schedule run-due`, which runs what is due."""

    name: name("a schedule name", "How `hvtui schedule` names it.")
    vms: collection(list[Selector], "a list of VM selectors", "The VMs it backs up.")
    exclude: collection(list[Selector], "a list of VM selectors", "VMs left out although vms: selects them.") | UnsetType = UNSET
    repository: name("a repository name", "Where the points go (default: the default repository).") | UnsetType = UNSET
    mode: choice(BACKUP_MODES, "a backup mode", "full, incremental (default) or differential.") | UnsetType = UNSET
    full_every: duration("A full (or a fresh differential base) at least this often") | UnsetType = UNSET
    at: text("a time of day such as \"22:00\"", "Daily at this local time (HH:MM, quoted).") | UnsetType = UNSET
    every: duration("Every this long (at least 1m)", minimum=60.0) | UnsetType = UNSET
    cron: text("a cron expression", "Five cron fields in local time, e.g. '0 22 * * 1-5'.") | UnsetType = UNSET
    window: duration("A run not started this long after its time is missed (default 6h, or the interval if shorter)") | UnsetType = UNSET
    copy_to: name("a repository name", "A repository each success is copied to (when copy jobs exist).") | UnsetType = UNSET
    notify: collection(list[TargetName], "a list of notification target names", "Who hears about each run.") | UnsetType = UNSET
