"""Shared helpers for the schedule tests: a small lab host with real VM files, a core on a fake
clock with schedules, and driving ``run_due`` through days of schedule in seconds."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from lab_support import add_vm, make_host

from hvtui.clock import FixedClock
from hvtui.config import Config, HostConfig, RepositoryConfig, Retention
from hvtui.config.schedules import ScheduleConfig
from hvtui.config.timing import parse_timing
from hvtui.core import Core
from hvtui.notify.report import RunReport
from hvtui.paths import Paths
from hvtui.schedules.journal import ScheduleJournal
from hvtui.schedules.runner import ScheduleRunner

HOST = "lab-s1"
BERLIN = ZoneInfo("Europe/Berlin")


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def schedule(name: str = "nightly", vms: tuple[str, ...] = (f"{HOST}/*",), **kw: object) -> ScheduleConfig:
    timing = kw.pop("timing", None) or parse_timing("at", str(kw.pop("at", "22:00")))
    values: dict[str, object] = {"name": name, "vms": vms, "timing": timing, "window": 2 * 3600.0, **kw}
    return ScheduleConfig(**values)  # type: ignore[arg-type]


def make_lab(root: Path, vms: tuple[str, ...] = ("vm1", "vm2"), clock: FixedClock | None = None) -> dict[str, str]:
    """A lab host under ``root`` with small VMs; their ids by name."""
    host = make_host(root, HOST, clock)
    return {name: add_vm(host, name, blocks=2, seed=index) for index, name in enumerate(vms)}


def make_core(
    root: Path,
    paths: Paths,
    schedules: tuple[ScheduleConfig, ...],
    clock: FixedClock,
    retention: Retention | None = None,
    extra_hosts: tuple[str, ...] = (),
    notifications: tuple = (),
    extra_repositories: tuple[RepositoryConfig, ...] = (),
) -> Core:
    """``extra_hosts``: lab hosts the config names but the lab lacks (they cannot be read);
    ``extra_repositories``: more repositories beside the default one."""
    config = Config(
        source=root / "config.yaml",
        hosts=(HostConfig(name=HOST, kind="lab"), *(HostConfig(name=name, kind="lab") for name in extra_hosts)),
        repositories=(
            RepositoryConfig(name="default", path=root / "repo", default=True, retention=retention or Retention()),
            *extra_repositories,
        ),
        schedules=schedules,
        notifications=notifications,
    )
    core = Core(config, paths, clock=clock, lab_dir=root)
    core.backups.progress_interval = 0
    return core


def runner_with_notifier(core: Core, sent: list[tuple[RunReport, tuple[str, ...]]], errors: list[str] | None = None) -> ScheduleRunner:
    """The core's runner with a notifier that keeps what it is given (the sender is another item's)."""

    def notifier(report: RunReport, targets: tuple[str, ...]) -> list[str]:
        sent.append((report, targets))
        return list(errors or [])

    return ScheduleRunner(
        core.config.schedules,
        ScheduleJournal(core.paths.schedule_journal),
        core.paths.schedule_lock,
        inventory=lambda: core.inventory.refresh(),
        points=lambda host, vm_id, repository: core.backups.list_points(host, vm_id, repository),
        jobs=lambda: core.jobs,
        clock=core.clock,
        notifier=notifier,
    )


def drive(
    runner: ScheduleRunner, clock: FixedClock, until: datetime, step: timedelta = timedelta(minutes=15),
    after_each: Callable[[], None] | None = None,
) -> list[RunReport]:
    """Call ``run_due`` every ``step`` of fake time until ``until``; every report, in order."""
    reports: list[RunReport] = []
    while clock.now() < until:
        reports.extend(runner.run_due().reports)
        if after_each is not None:
            after_each()
        clock.advance(step.total_seconds())
    return reports
