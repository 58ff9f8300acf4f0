"""The core: everything the CLI and the console share, built once from the config.

The TUI and the CLI never talk to a host or a repository directly: they call the
services hung off ``Core`` (inventory, actions, engine, jobs), from worker threads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hvtui.clock import Clock, SystemClock
from hvtui.config import Config, HostConfig, SecretSource
from hvtui.hosts.base import Host
from hvtui.hosts.factory import make_host
from hvtui.hosts.registry import HostRegistry
from hvtui.model import Volume
from hvtui.paths import Paths
from hvtui.secrets import resolve_secret

# Each service is imported when it is first built, not here: the console's first paint
# needs only the inventory, and the engine, the jobs and the actions cost ~70 ms of imports.
if TYPE_CHECKING:
    from hvtui.actions.service import CheckpointActions
    from hvtui.audit import AuditLog
    from hvtui.backups.copies import RepositoryCopies
    from hvtui.backups.keyslots import RepositoryKeys
    from hvtui.backups.migration import RepositoryMigrations
    from hvtui.backups.repo_locks import RepositoryLocks
    from hvtui.backups.repositories import RepositoryList
    from hvtui.backups.service import Backups
    from hvtui.changes.service import ChangeWindows
    from hvtui.hosts.doctor import Doctor
    from hvtui.inventory import InventoryService
    from hvtui.jobs.manager import JobManager
    from hvtui.notify.service import Notifier
    from hvtui.notify.state import DeliveryState
    from hvtui.schedules.runner import ScheduleRunner

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Options:
    """Command-line options that override the config."""

    config_path: Path | None = None
    lab_dir: Path | None = None
    read_only: bool = False
    theme: str | None = None
    log_level: str | None = None


class Core:
    """The composition root: builds the hosts and the services once, on first use, and hands
    each service what it uses (nothing below the core imports it)."""

    def __init__(
        self,
        config: Config,
        paths: Paths,
        clock: Clock | None = None,
        read_only: bool = False,
        lab_dir: Path | None = None,
        theme: str | None = None,
        hosts: dict[str, Host] | None = None,
    ) -> None:
        self.config = config
        self.paths = paths
        self.clock: Clock = clock or SystemClock()
        # Read-only is enforced by the services the core builds, for every caller.
        self.read_only = read_only or config.read_only
        self.lab_dir = lab_dir or config.lab.dir or paths.lab_dir
        self.theme = theme or config.ui.theme
        # Asks the user for a secret at connect time (set by the console or the CLI);
        # called as prompter(prompt_text) -> secret.
        self.secret_prompter: Callable[[str], str] | None = None
        # Pre-built hosts (tests, benchmarks); otherwise built from the config on first use.
        self._hosts = HostRegistry(
            lambda: self.host_configs,
            self._make_host,
            settings=config.hosts,
            read_only=self.read_only,
            hosts=hosts,
        )
        # Services are built once, on first use, from any thread (the console's workers).
        self._services: dict[str, Any] = {}
        self._services_lock = threading.RLock()

    # -- construction --------------------------------------------------------------
    @classmethod
    def from_options(cls, options: Options, paths: Paths | None = None, clock: Clock | None = None) -> Core:
        from hvtui.config import find_config_file, load_config

        paths = paths or Paths.default()
        path = find_config_file(options.config_path, paths)
        config = load_config(path, paths) if path is not None else Config.lab_default(paths)
        return cls(
            config,
            paths,
            clock=clock,
            read_only=options.read_only,
            lab_dir=options.lab_dir,
            theme=options.theme,
        )

    @property
    def host_configs(self) -> tuple[HostConfig, ...]:
        if not self.config.hosts:
            # No config file, or one that lists no hosts: the lab, created on first use.
            from hvtui.hosts.lab.estate import ensure_lab, lab_host_names

            ensure_lab(self.lab_dir, self.config.lab.profile, self.clock)
            return tuple(HostConfig(name=name, kind="lab") for name in lab_host_names(self.lab_dir))
        return self.config.hosts

    def _make_host(self, host_config: HostConfig) -> Host:
        return make_host(host_config, lab_dir=self.lab_dir, clock=self.clock, secret_prompter=self._prompt_secret)

    def _prompt_secret(self, prompt: str) -> str:
        """Asks through the prompter set now: the console sets its own after the hosts may be built."""
        prompter = self.secret_prompter
        if prompter is None:  # the error the secrets module gives when nobody can be asked
            return resolve_secret(SecretSource(prompt=True), prompt.removesuffix(": "), None)
        return prompter(prompt)

    @property
    def hosts(self) -> dict[str, Host]:
        return self._hosts.hosts

    def host(self, name: str) -> Host:
        return self._hosts.host(name)

    def host_is_read_only(self, name: str) -> bool:
        return self._hosts.is_read_only(name)

    def restore_volume(self, name: str) -> Volume | None:
        """The volume a restore to host ``name`` writes to, read from the host now (blocking)."""
        return self.host(name).restore_volume()

    # -- services (built lazily, once) --------------------------------------------------
    def _service(self, name: str, build: Callable[[], Any]) -> Any:
        with self._services_lock:
            if name not in self._services:
                self._services[name] = build()
            return self._services[name]

    @property
    def inventory(self) -> InventoryService:
        from hvtui.inventory import InventoryService

        return self._service("inventory", lambda: InventoryService(self._hosts, self.clock))

    @property
    def actions(self) -> CheckpointActions:
        from hvtui.actions.service import CheckpointActions

        return self._service(
            "actions",
            lambda: CheckpointActions(
                self._hosts,
                self.inventory,
                self.audit,
                self.clock,
                self.config.policy,
                read_only=self.read_only,
            ),
        )

    @property
    def doctor(self) -> Doctor:
        """Checks each step hvtui needs of a host and names the first that fails (``hvtui doctor``)."""
        from hvtui.hosts.doctor import Doctor

        return self._service(
            "doctor",
            lambda: Doctor(
                self.host,
                lambda: [host.name for host in self.host_configs],
                min_free_percent=self.config.policy.defaults.merge_min_free_percent,
            ),
        )

    @property
    def audit(self) -> AuditLog:
        from hvtui.audit import AuditLog

        return self._service("audit", lambda: AuditLog(self.paths.audit_log))

    @property
    def jobs(self) -> JobManager:
        """The job manager (queue, limits, journal; backup and restore kinds)."""
        return self._service("jobs", self._build_jobs)

    def _build_jobs(self) -> JobManager:
        """The manager the console and the CLI share: limits from ``config.jobs``, the journal
        under the user state directory, the backup, restore and change-window kinds registered."""
        from hvtui.jobs.kinds import register_engine_kinds
        from hvtui.jobs.kinds.base import EngineServices
        from hvtui.jobs.kinds.change import change_open_kind
        from hvtui.jobs.manager import JobManager

        limits = self.config.jobs
        manager = JobManager(
            self.paths.job_journal,
            max_concurrent=limits.max_concurrent,
            per_host=limits.per_host,
            clock=self.clock,
            services=EngineServices(
                backups_of=lambda: self.backups, hosts=self._hosts, audit=self.audit, copies_of=lambda: self.copies
            ),
        )
        register_engine_kinds(manager)
        manager.register_kind(change_open_kind(lambda: self.changes))
        return manager

    @property
    def repositories(self) -> RepositoryList:
        """The configured repositories, each opened (and, encrypted, unlocked) once per process."""
        from hvtui.backups.repositories import RepositoryList

        return self._service(
            "repositories",
            lambda: RepositoryList(
                self.config.repositories, self.paths.default_repository, prompter=self._passphrase_prompter,
                clock=self.clock,
            ),
        )

    def _passphrase_prompter(self) -> Callable[[str], str] | None:
        return self.secret_prompter  # the console's dialog, the terminal's getpass, or nobody

    @property
    def repository_keys(self) -> RepositoryKeys:
        """Key slots of encrypted repositories (``hvtui repo key``)."""
        from hvtui.backups.guard import SafetyGuard
        from hvtui.backups.keyslots import RepositoryKeys

        return self._service(
            "repository_keys",
            lambda: RepositoryKeys(self.repositories, SafetyGuard(self._hosts, self.audit, self.read_only)),
        )

    @property
    def repository_locks(self) -> RepositoryLocks:
        """Lock records of a repository (``hvtui repo locks``)."""
        from hvtui.backups.guard import SafetyGuard
        from hvtui.backups.repo_locks import RepositoryLocks

        return self._service(
            "repository_locks",
            lambda: RepositoryLocks(self.repositories, SafetyGuard(self._hosts, self.audit, self.read_only)),
        )

    @property
    def backups(self) -> Backups:
        """The backup service (repositories, points, backup/restore/verify/prune)."""
        from hvtui.backups.service import Backups

        return self._service(
            "backups",
            lambda: Backups(
                self.repositories,
                self._hosts,
                self.inventory,
                self.audit,
                self.clock,
                read_only=self.read_only,
                checkpoint_journal=self.paths.checkpoint_journal,
                job_journal=self.paths.job_journal,
            ),
        )

    @property
    def copies(self) -> RepositoryCopies:
        """``hvtui copy``: restore points copied from one repository into another."""
        from hvtui.backups.copies import RepositoryCopies

        return self._service("copies", lambda: RepositoryCopies(self.backups, self.audit))

    @property
    def migrations(self) -> RepositoryMigrations:
        """``hvtui repo migrate``: format-1 repositories converted to format 2."""
        from hvtui.backups.migration import RepositoryMigrations

        return self._service("migrations", lambda: RepositoryMigrations(self.backups, self.audit))

    @property
    def changes(self) -> ChangeWindows:
        """Change windows: checkpoints of many VMs before a change; roll back, promote or discard."""
        from hvtui.changes.service import ChangeWindows
        from hvtui.changes.store import WindowStore
        from hvtui.jobs.kinds.change import backup_runner

        return self._service(
            "changes",
            lambda: ChangeWindows(
                WindowStore(self.paths.change_windows),
                self.actions,
                self.audit,
                self.clock,
                backup=backup_runner(lambda: self.jobs),
                find_vm=lambda host, vm_id: self.inventory.refresh([host]).vm(host, vm_id),
            ),
        )

    @property
    def notification_state(self) -> DeliveryState:
        """Each notification's latest delivery outcome, shared with other hvtui processes."""
        from hvtui.notify.state import DeliveryState

        return self._service("notification_state", lambda: DeliveryState(self.paths.notification_state, self.clock))

    @property
    def notifier(self) -> Notifier:
        """Sends run reports to the configured notifications (``notifier.send`` is what the
        schedule runner is given); secrets come from the usual sources, prompting through the
        console's or the CLI's prompter."""
        from hvtui.notify.service import Notifier

        return self._service(
            "notifier",
            lambda: Notifier(
                self.config.notifications,
                lambda source, what: resolve_secret(source, what, self.secret_prompter),
                self.audit,
                self.notification_state,
            ),
        )

    @property
    def schedules(self) -> ScheduleRunner:
        """Backup schedules: what is due, running them through the job manager, their journal."""
        from hvtui.schedules.journal import ScheduleJournal
        from hvtui.schedules.runner import ScheduleRunner

        return self._service(
            "schedules",
            lambda: ScheduleRunner(
                self.config.schedules,
                ScheduleJournal(self.paths.schedule_journal),
                self.paths.schedule_lock,
                inventory=lambda: self.inventory.refresh(),
                points=lambda host, vm_id, repository: self.backups.list_points(host, vm_id, repository),
                jobs=lambda: self.jobs,
                clock=self.clock,
                notifier=lambda report, targets: self.notifier.send(report, targets),
            ),
        )

    def close(self) -> None:
        jobs = self._services.get("jobs")
        # The console asks before quitting with jobs running; by now stopping them is the
        # user's choice.  A cancelled backup still removes its checkpoint.
        if jobs is not None and not jobs.shutdown(cancel_running=True, timeout=120):
            log.warning("jobs still running at exit; the journal will list them as interrupted")
        self._hosts.close()
