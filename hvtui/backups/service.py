"""The backup service: what the CLI, the job manager and the console call.

``Backups`` (also ``core.backups``) resolves repositories from the config (a ``default``
repository under the user data directory when none is configured; ``repositories.py``),
lists restore points (``points.py``), and runs backup and restore on the engine
(``hvtui.engine``); verify, prune and repair are in ``maintenance.py``.  Every operation blocks, may run on any worker thread, reports
through a ``ProgressCallback`` and honours a ``CancelToken``.

Safety lives here, for every caller (``guard.py``): read-only mode (``--read-only``, the
config, or a read-only host) refuses backups (they checkpoint the VM and write the
repository), restores onto a host and prune, and keeps verify from quarantining damaged
chunks; restores onto a host, prune and quarantines are audit-logged, and so are backups
(they create and remove a checkpoint on the host; the entry records the mode that ran) and
the points retention deletes after a backup (``backup.retention``).

Every Recovery checkpoint a backup takes is recorded in the checkpoint journal
(``ledger``); before a backup, the VM's leftovers of hvtui's own dead backups are removed,
each named and audited, and no other Recovery checkpoint is touched (``leftovers``).
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from hvtui.audit import AuditLog
from hvtui.backups import catalog
from hvtui.backups.catalog import RepositoryInfo
from hvtui.backups.guard import HostLookup, SafetyGuard
from hvtui.backups.leftovers import AUDIT_ACTION, LeftoverCheckpoints
from hvtui.backups.maintenance import RepositoryMaintenance, Timing
from hvtui.backups.outcome import backup_audit_args, earlier_id_warning
from hvtui.backups.points import DamagedManifest, PointIndex, PointInfo, PointListing, VMPoints, vm_points
from hvtui.backups.repositories import RepositoryList
from hvtui.backups.restore_plan import RestorePlan, current_vm, plan_for
from hvtui.clock import Clock
from hvtui.config import RepositoryConfig, Retention
from hvtui.engine.backup import BackupResult, run_backup
from hvtui.engine.manifest import Manifest
from hvtui.engine.progress import DEFAULT_INTERVAL
from hvtui.engine.prune import PruneResult
from hvtui.engine.repair import ConfigRepairPlan, plan_config_repair
from hvtui.engine.repository import PointNotFound, Repository
from hvtui.engine.restore import RestoreResult, restore_to_directory, restore_to_host
from hvtui.engine.verify import VerifyReport
from hvtui.errors import ConfigError, HvtuiError, RefusedError, RepositoryError
from hvtui.events import CancelToken, ProgressCallback
from hvtui.hosts.formats import flattener_for
from hvtui.inventory import InventoryService
from hvtui.model import BACKUP_MODES, VM, Checkpoint, RestorePointSummary

log = logging.getLogger(__name__)


class Backups:
    def __init__(
        self,
        repositories: RepositoryList,
        hosts: HostLookup,
        inventory: InventoryService,
        audit: AuditLog,
        clock: Clock,
        *,
        read_only: bool = False,
        checkpoint_journal: Path | None = None,
        job_journal: Path | None = None,
    ) -> None:
        """``read_only``: the whole console runs read-only (a host may also be, in its settings).
        ``checkpoint_journal``: where the Recovery checkpoints backups take are recorded;
        without one, no leftover checkpoint is ever proven hvtui's (none is removed); the
        ``job_journal`` proves a WinRM backup's the checkpoint journal missed."""
        self._repositories = repositories
        self._hosts = hosts
        self._inventory = inventory
        self._audit = audit
        self._clock = clock
        self._guard = SafetyGuard(hosts, audit, read_only)
        self._leftovers = LeftoverCheckpoints.from_paths(checkpoint_journal, job_journal, hosts, audit)
        self._points = PointIndex()
        self._maintenance = RepositoryMaintenance(repositories, self._points, self._guard, audit, clock)
        self.recheck_seconds = 2.0
        self.progress_interval = DEFAULT_INTERVAL
        self.lock_timeout: float | None = 3600.0

    # -- repositories --------------------------------------------------------------------
    def repository_configs(self) -> list[RepositoryConfig]:
        return self._repositories.repository_configs()

    def repository_config(self, name: str | None = None) -> RepositoryConfig:
        return self._repositories.repository_config(name)

    def open_repository(self, name: str | None = None, create: bool = False) -> Repository | None:
        """The repository object (cached); None when it does not exist and ``create`` is False."""
        return self._repositories.open_repository(name, create)

    def retry_now(self, name: str | None = None) -> None:
        """An explicit action on repository ``name`` (None: every one): a storage that did not
        answer a moment ago is asked again at once (``reachability``)."""
        self._repositories.retry_now(name)

    def points_changed(self, name: str) -> None:
        """Another service (a copy) added or removed points of repository ``name``: list them afresh."""
        self._points.invalidate(name)

    # -- points --------------------------------------------------------------------------
    def list_points(
        self, host: str | None = None, vm: str | None = None, repository: str | None = None
    ) -> list[RestorePointSummary]:
        """Restore points, oldest first; ``vm`` matches a VM id or (case-insensitive) name."""
        return [info.summary for info in self.point_infos(host, vm, repository)]

    def point_infos(
        self, host: str | None = None, vm: str | None = None, repository: str | None = None
    ) -> list[PointInfo]:
        return self.point_listing(host, vm, repository).points

    def point_listing(
        self, host: str | None = None, vm: str | None = None, repository: str | None = None
    ) -> PointListing:
        """``point_infos`` plus every damaged manifest of the repositories searched.

        A damaged manifest cannot be attributed to a host or VM, so it is included whatever
        ``host`` and ``vm`` ask for: the point it was may be the one wanted.
        """
        out: list[PointInfo] = []
        damaged: list[DamagedManifest] = []
        unreadable: list[tuple[str, RepositoryError]] = []
        wanted = vm.casefold() if vm else None
        format_1: list[str] = []
        for repo in self._repositories.repos_for(repository, unreadable):
            infos, bad = self._points.fresh_points_of(repo, self.recheck_seconds)
            damaged.extend(bad)
            format_1 += [repo.name] if repo.version < 2 else []
            for info in infos:
                s = info.summary
                if host is not None and s.host != host:
                    continue
                if wanted is not None and s.vm_id.casefold() != wanted and s.vm_name.casefold() != wanted:
                    continue
                out.append(info)
        out.sort(key=lambda i: (i.summary.time, i.committed_ns, i.summary.id))
        return PointListing(out, damaged, unreadable, format_1)

    def vm_points(self, host: str, vm_id: str, vm_name: str, repository: str | None = None) -> VMPoints:
        """The VM's points by the one rule (``VMPoints``): its id's, else the same host and name's
        under an id no VM on the host has now (as last read), marked as such."""
        known = self._inventory.latest.host(host)
        current = {vm.id for vm in known.vms} if known is not None else set()
        return vm_points(self.point_listing(host=host, repository=repository), vm_id, vm_name, current)

    def damaged_manifests(self, repository: str | None = None) -> list[DamagedManifest]:
        """Manifests that cannot be read (their points are missing from every listing)."""
        return self.point_listing(repository=repository).damaged

    def last_backup(self, host: str, vm_id: str) -> datetime | None:
        """Time of the newest restore point of the VM in any repository (None: never backed up)."""
        times = []
        for repo in self._repositories.repos_for(None):
            self._points.fresh_points_of(repo, self.recheck_seconds)
            when = self._points.latest(repo.name, host, vm_id)
            if when is not None:
                times.append(when)
        return max(times, default=None)

    def last_backup_of(self, vm: VM) -> datetime | None:
        """``last_backup`` for the policy's backup-recency rule (``policy.context.LastBackup``).

        An unreadable repository must not break the check: "no backup known" is the
        conservative answer (it raises checkpoint-not-backup), and the log says why.
        """
        try:
            return self.last_backup(vm.host, vm.id)
        except HvtuiError as err:
            log.warning("last backup of %s/%s unknown: %s", vm.host, vm.name, err)
            return None

    def find_point(self, point_id: str, repository: str | None = None) -> tuple[Repository, Manifest]:
        for repo in self._repositories.repos_for(repository):
            try:
                return repo, repo.load_point(point_id)
            except PointNotFound:
                continue
        where = f"repository {repository!r}" if repository else "any repository"
        raise PointNotFound(f"no restore point {point_id} in {where}")

    def latest_point(self, host: str, vm_id: str, repository: str | None = None) -> RestorePointSummary | None:
        infos = [i for i in self.point_infos(host=host, repository=repository) if i.summary.vm_id == vm_id]
        return infos[-1].summary if infos else None

    # -- VMs -------------------------------------------------------------------------------
    def resolve_vm(self, name: str, host: str | None = None) -> VM:
        """A VM by name or id on the configured hosts (``host`` only needed when ambiguous)."""
        return self._inventory.find_vm(name, host)

    # -- leftover Recovery checkpoints --------------------------------------------------------
    def backup_checkpoint_left(self, vm: VM, checkpoint: Checkpoint) -> str | None:
        """Who left ``checkpoint`` ("hvtui backup job 1a2b") when it is the leftover of one of
        hvtui's own backups that is over; None otherwise (``policy.context.BackupLeft``)."""
        try:
            return self._leftovers.made_by_dead_job(vm, checkpoint)
        except OSError as err:  # an unreadable journal must not break the check: "not proven"
            log.warning("checkpoint journal unreadable: %s", err)
            return None

    def clear_leftover_checkpoints(
        self,
        host_name: str,
        vm_id: str,
        vm_label: str,
        progress: ProgressCallback | None = None,
        extra_args: dict[str, Any] | None = None,
    ) -> list[str]:
        """Remove the VM's Recovery checkpoints left by hvtui's own dead backups (only those);
        each is named on ``progress`` and audited.  The caller holds the VM's backup lock.
        Returns the names removed."""
        self._guard.refuse_if_read_only(AUDIT_ACTION, host_name, vm_label, {"vm_id": vm_id, **(extra_args or {})})
        return self._leftovers.clear(host_name, vm_id, vm_label, progress, extra_args)

    # -- safety ----------------------------------------------------------------------------
    def read_only_reason(self, host: str | None = None) -> str | None:
        return self._guard.read_only_reason(host)

    # -- operations --------------------------------------------------------------------------
    def backup(
        self,
        host_name: str,
        vm_id: str,
        mode: str | None = "incremental",
        repository: str | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        apply_retention: bool = True,
        job_id: str | None = None,
        vm_name: str | None = None,
        consistency: str | None = None,
    ) -> BackupResult:
        """Back up one VM; an incremental/differential with no earlier point runs as a full,
        and says why in ``warnings``.  ``mode`` None: automatic (an incremental where a point
        exists, else a full, without a warning).  ``job_id``: the job running it (recorded
        with its Recovery checkpoint); ``vm_name``: the VM's name as the caller knows it;
        ``consistency``: the checkpoint's (None: the host's setting; a crash fall back is audited).

        After a successful backup (only then) the repository's retention is applied to this
        VM's points (manifests only; ``prune`` frees the chunks).
        """
        auto = mode is None
        mode = "incremental" if mode is None else mode
        if mode not in BACKUP_MODES:
            raise ConfigError(f"unknown backup mode {mode!r} (expected full, incremental or differential)")
        host = self._hosts.host(host_name)
        rc = self.repository_config(repository)
        args: dict[str, Any] = {"mode": mode, "repository": rc.name, "vm_id": vm_id, **({"consistency": consistency} if consistency else {})}
        # Audited under the VM's name whatever the outcome, so one grep finds every attempt
        # (the name as last seen; the id is in the args).
        known = self._inventory.latest.vm(host_name, vm_id)
        vm_label = known.name if known is not None else vm_name or vm_id
        self._guard.refuse_if_read_only("backup", host_name, vm_label, args)
        self._repositories.retry_now(rc.name)  # an explicit action: a storage held as unreachable is asked again
        repo = self.open_repository(rc.name, create=True)
        assert repo is not None
        taken: list[str] = []
        record = self._leftovers.recorder(host_name, vm_id, job_id, lambda: self._clock.now().isoformat())

        def on_checkpoint(checkpoint_id: str, checkpoint_name: str) -> None:
            taken.append(checkpoint_id)
            try:
                record(checkpoint_id, checkpoint_name)
            except OSError as err:  # the backup still runs; only a leftover could not be proven ours
                log.warning("could not record the backup checkpoint of %s/%s: %s", host_name, vm_label, err)

        def clear_leftovers(cleanup_progress: ProgressCallback | None) -> None:
            self._leftovers.clear(host_name, vm_id, vm_label, cleanup_progress)

        with self._audit.action("backup", host_name, vm_label, args) as entry:
            try:
                result = run_backup(
                    repo,
                    host,
                    vm_id,
                    mode,
                    clock=self._clock,
                    progress=progress,
                    cancel=cancel,
                    progress_interval=self.progress_interval,
                    lock_timeout=self.lock_timeout,
                    clear_leftovers=clear_leftovers,
                    on_checkpoint=on_checkpoint,
                    vm_name=vm_label if vm_label != vm_id else None,
                    consistency=consistency, label=f"hvtui backup {job_id}" if job_id else None,
                )
            finally:
                try:
                    self._leftovers.ended(taken)
                except OSError as err:
                    log.warning("could not record the end of the backup of %s/%s: %s", host_name, vm_label, err)
            if result.fallback and not auto:
                result.warnings.insert(0, f"{mode} asked for, but {result.fallback}: {result.vm_name} got a full restore point")
            if result.fallback:
                result.warnings.extend(earlier_id_warning(self.point_listing, self._inventory, host_name, result))
            entry.vm = result.vm_name
            entry.args = backup_audit_args(result, entry.args)
        self._points.invalidate(rc.name)
        if apply_retention:
            self._maintenance.apply_retention(repo, rc, host_name, result)
            self._points.invalidate(rc.name)
        return result

    def plan_restore(
        self,
        point_id: str,
        *,
        to_dir: Path | str | None = None,
        as_name: str | None = None,
        in_place: bool = False,
        host: str | None = None,
        repository: str | None = None,
        keep_checkpoints: bool = False,
    ) -> RestorePlan:
        """What ``restore`` with these arguments would do, changing nothing (see ``restore_plan``)."""
        repo, manifest = self.find_point(point_id, repository)
        return self._plan(manifest, to_dir, as_name, in_place, host, keep_checkpoints)

    def _plan(
        self,
        manifest: Manifest,
        to_dir: Path | str | None,
        as_name: str | None,
        in_place: bool,
        host: str | None,
        keep_checkpoints: bool,
    ) -> RestorePlan:
        target_host = host or manifest.host
        host_obj = self._hosts.host(target_host) if in_place and to_dir is None else None
        return plan_for(manifest, to_dir, as_name, target_host, keep_checkpoints, host_obj)

    def restore(
        self,
        point_id: str,
        *,
        to_dir: Path | str | None = None,
        as_name: str | None = None,
        in_place: bool = False,
        host: str | None = None,
        repository: str | None = None,
        keep_checkpoints: bool = False,
        staging_name: str | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> RestoreResult:
        """Restore a point to a directory, as a new VM ``as_name``, or over the original VM.

        Exactly one target.  ``host`` (new VM only) picks the host; default: the point's.
        Over the original, the VM must exist and be off; its audit entry names the
        checkpoints and files the restore replaces.  A new VM or a directory gets one
        flattened disk per drive and no checkpoints unless ``keep_checkpoints``.
        ``staging_name``: the folder the restore stages in, a directory's or a WinRM host's (the job journals it).
        """
        targets = sum(1 for t in (to_dir is not None, as_name is not None, in_place) if t)
        if targets != 1:
            raise ConfigError("restore needs exactly one target: a directory, a new VM name, or in place")
        self._repositories.retry_now(repository)  # an explicit action: a storage held as unreachable is asked again
        repo, manifest = self.find_point(point_id, repository)
        common = {"progress": progress, "cancel": cancel, "progress_interval": self.progress_interval}
        if to_dir is not None:
            flatten = None if keep_checkpoints else flattener_for(manifest.vm_config)
            finish = (lambda staging: flatten(dict(manifest.vm_config), staging)) if flatten is not None else None
            return restore_to_directory(
                repo,
                manifest,
                Path(to_dir),
                lock_timeout=self.lock_timeout,
                finish=finish,
                staging_name=staging_name,
                **common,
            )

        target_host = host or manifest.host
        args: dict[str, Any] = {"point": manifest.id, "repository": repo.name}
        if as_name is not None:
            action, vm_label = "restore-as-new", as_name
            args["new_name"] = as_name
            args["source_vm"] = manifest.vm_name
        else:
            action, vm_label = "restore-in-place", manifest.vm_name
            args["vm_id"] = manifest.vm_id
        self._guard.refuse_if_read_only(action, target_host, vm_label, args)
        host_obj = self._hosts.host(target_host)
        if in_place:
            if target_host != manifest.host:
                raise ConfigError("an in-place restore goes back to the point's own host")
            vm = current_vm(host_obj, manifest.vm_id)
            if vm is None:
                self._guard.audit_record(action, target_host, vm_label, args, "refused", "the VM no longer exists")
                raise RefusedError(
                    f"VM {manifest.vm_name} (id {manifest.vm_id}) no longer exists on {target_host}; restore it as a new VM"
                )
            if vm.state.lower() not in ("off", "stopped"):
                self._guard.audit_record(action, target_host, vm_label, args, "refused", f"VM is {vm.state}")
                raise RefusedError(f"VM {vm.name} is {vm.state}: turn it off before restoring over it")
        args.update(self._plan(manifest, None, as_name, in_place, target_host, keep_checkpoints).audit_args())
        with self._audit.action(action, target_host, vm_label, args) as entry:
            result = restore_to_host(
                repo,
                manifest,
                host_obj,
                "in_place" if in_place else "new",
                vm_id=manifest.vm_id if in_place else None,
                new_name=as_name,
                keep_checkpoints=keep_checkpoints or in_place,
                staging_name=staging_name,
                lock_timeout=self.lock_timeout,
                **common,
            )
            if result.vm_id:
                entry.args["restored_vm_id"] = result.vm_id
        return result

    def verify(
        self,
        point_id: str | None = None,
        quick: bool = False,
        repository: str | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        read_share: float = 1.0,
    ) -> VerifyReport:
        """Check a repository (or the repository holding ``point_id``): ``maintenance.verify``."""
        self._repositories.retry_now(repository)
        if point_id is not None:
            repo, _ = self.find_point(point_id, repository)
        else:
            repo = self._repositories.require_repository(repository)
        return self._maintenance.verify(repo, point_id, quick, progress, cancel, self._timing(), read_share)

    def prune(
        self,
        dry_run: bool = False,
        repository: str | None = None,
        host: str | None = None,
        vm_id: str | None = None,
        retention: Retention | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> PruneResult:
        """Apply the repository's retention, then remove unreferenced chunks: ``maintenance.prune``."""
        rc = self.repository_config(repository)
        self._repositories.retry_now(rc.name)
        return self._maintenance.prune(rc, dry_run, host, vm_id, retention, progress, cancel, self._timing())

    def repository_infos(self, repository: str | None = None, retry: bool = False) -> list[RepositoryInfo]:
        """What each configured repository (or the one named) is: ``hvtui repo list|info``.
        ``retry``: asked by the user, so a storage held as unreachable is asked again now."""
        configs = [self.repository_config(repository)] if repository else self.repository_configs()
        if retry:
            self._repositories.retry_now(repository)
        return catalog.list_infos(configs, self.open_repository, self._points.points_of, self._repositories.location)

    def init_repository(
        self, repository: str | None = None, version: int | None = None, pack_size_mib: int | None = None,
        passphrase: str | None = None,
    ) -> RepositoryInfo:
        """Create the configured repository in format ``version`` (default: its config's), encrypted
        with ``passphrase`` if given; refused read-only, audit-logged; an existing one is an error."""
        rc = self.repository_config(repository)
        location = self._repositories.location(rc.name)
        repo = catalog.init(location, self._guard, version or rc.format, pack_size_mib or rc.pack_size_mib, passphrase)
        self._repositories.adopt(rc.name, repo)
        return self.repository_infos(rc.name)[0]

    def plan_repository_repair(self, repository: str | None = None) -> ConfigRepairPlan:
        """What ``repair_repository`` would write (changes nothing; allowed read-only)."""
        return plan_config_repair(self._repositories.location(repository).require_local("repair-repository"))

    def repair_repository(self, repository: str | None = None) -> tuple[ConfigRepairPlan, str | None]:
        """Rebuild a repository's lost or damaged ``config.json``: ``maintenance.repair``."""
        self._repositories.location(repository).require_local("repair-repository")
        return self._maintenance.repair(self.repository_config(repository))

    def _timing(self) -> Timing:
        # Read at each call: tests and the console set these on the service after it is built.
        return Timing(progress_interval=self.progress_interval, lock_timeout=self.lock_timeout)
