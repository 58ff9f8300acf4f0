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
from hvtui.config import Config, HostConfig
from hvtui.errors import ConfigError
from hvtui.hosts.base import Host
from hvtui.paths import Paths

if TYPE_CHECKING:
    from hvtui.actions import CheckpointActions
    from hvtui.audit import AuditLog
    from hvtui.backups import Backups
    from hvtui.inventory import InventoryService
    from hvtui.jobs import JobManager

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
        # Read-only is enforced here, in the core, for every caller.
        self.read_only = read_only or config.read_only
        self.lab_dir = lab_dir or config.lab.dir or paths.lab_dir
        self.theme = theme or config.ui.theme
        # Pre-built hosts (tests, benchmarks); otherwise built from the config on first use.
        self._hosts: dict[str, Host] | None = dict(hosts) if hosts is not None else None
        # Services are built once, on first use, from any thread (the console's workers).
        self._services: dict[str, Any] = {}
        self._services_lock = threading.RLock()
        # Asks the user for a secret at connect time (set by the console or the CLI);
        # called as prompter(prompt_text) -> secret.
        self.secret_prompter: Callable[[str], str] | None = None

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
    def is_lab_mode(self) -> bool:
        return all(host.kind == "lab" for host in self.host_configs)

    @property
    def host_configs(self) -> tuple[HostConfig, ...]:
        if not self.config.hosts:
            # No config file, or one that lists no hosts: the lab, created on first use.
            from hvtui.hosts.lab.estate import ensure_lab, lab_host_names

            ensure_lab(self.lab_dir, self.config.lab.profile, self.clock)
            return tuple(HostConfig(name=name, kind="lab") for name in lab_host_names(self.lab_dir))
        return self.config.hosts

    @property
    def hosts(self) -> dict[str, Host]:
        if self._hosts is None:
            from hvtui.hosts.factory import make_host

            with self._services_lock:  # worker threads may ask at the same time: build once
                if self._hosts is None:
                    self._hosts = {hc.name: make_host(hc, self) for hc in self.host_configs}
        return self._hosts

    def host(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            known = ", ".join(sorted(self.hosts)) or "none"
            raise ConfigError(f"unknown host {name!r} (configured hosts: {known})") from None

    def host_is_read_only(self, name: str) -> bool:
        return self.read_only or self.host(name).read_only

    # -- services (built lazily, once) --------------------------------------------------
    def _service(self, name: str, build: Callable[[], Any]) -> Any:
        with self._services_lock:
            if name not in self._services:
                self._services[name] = build()
            return self._services[name]

    @property
    def inventory(self) -> InventoryService:
        from hvtui.inventory import InventoryService

        return self._service("inventory", lambda: InventoryService(self))

    @property
    def actions(self) -> CheckpointActions:
        from hvtui.actions import CheckpointActions

        return self._service("actions", lambda: CheckpointActions(self))

    @property
    def audit(self) -> AuditLog:
        from hvtui.audit import AuditLog

        return self._service("audit", lambda: AuditLog(self.paths.audit_log))

    @property
    def jobs(self) -> JobManager:
        """The job manager (queue, limits, journal; backup and restore kinds)."""
        from hvtui.jobs import JobManager

        return self._service("jobs", lambda: JobManager.from_core(self))

    @property
    def backups(self) -> Backups:
        """The backup service (repositories, points, backup/restore/verify/prune)."""
        from hvtui.backups import Backups

        return self._service("backups", lambda: Backups(self))

    def close(self) -> None:
        jobs = self._services.get("jobs")
        # The console asks before quitting with jobs running; by now stopping them is the
        # user's choice.  A cancelled backup still removes its checkpoint.
        if jobs is not None and not jobs.shutdown(cancel_running=True, timeout=120):
            log.warning("jobs still running at exit; the journal will list them as interrupted")
        for host in (self._hosts or {}).values():
            try:
                host.close()
            except Exception:  # closing must never mask the real outcome
                log.debug("closing host %s failed", host.name, exc_info=True)
