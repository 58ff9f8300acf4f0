"""``WinRMHost``: a real Hyper-V host, driven by PowerShell templates over WinRM.

Each operation is one ``.ps1`` template from ``scripts/`` (sent after ``_prelude.ps1``)
plus a JSON arguments object; the answer is one JSON document between markers, read by
``hvtui.wire``.  Backups (``hosts/winrm/backup.py``) read the host's files through a
``RemoteFiles``: SMB3 as the host's ``smb:`` block says (``files``), or one given to the
constructor (tests).  Restores write their files over SMB3 the same way
(``hosts/winrm/restore.py``) and register the VM over WinRM.

Test-only allowance: ``allow_basic_over_http_for_tests=True`` lets the loopback
WS-Management server in ``tests/`` use the ``basic`` transport over plain HTTP.  The config
layer never sets it (``hosts/factory.py`` does not pass it), so users cannot reach it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from hvtui.config import HostConfig, SecretSource, WinRMSettings
from hvtui.errors import ConfigError, HostError, HvtuiError, NotFoundError
from hvtui.events import CancelToken, Progress, ProgressCallback
from hvtui.hosts.base import (
    CHECKPOINT_TYPES_CREATABLE,
    BackupSource,
    CheckpointTaken,
    Host,
    HostSnapshot,
    RemoveOutcome,
    RestoreTarget,
)
from hvtui.hosts.ratelimit import RateLimiter
from hvtui.hosts.remote_files import RemoteFiles
from hvtui.hosts.winrm import restore as winrm_restore
from hvtui.hosts.winrm.operations import full_script, has_document, result_document
from hvtui.hosts.winrm.transport import CommandOutput, WinRMConnection
from hvtui.model import Checkpoint, Volume
from hvtui.wire import OPERATION_LABELS, WIRE_VERSION, OperationResult, parse_inventory, parse_result

log = logging.getLogger(__name__)

MERGE_WAIT_MARGIN = 60.0  # seconds of the long deadline kept back from waiting for a merge
TYPE_RESTORE_MARGIN = 10.0  # seconds of a type restore's deadline kept back from retrying Set-VM


# checkpoint.type arguments that only read the type.
_TYPE_READ: dict = {"restore_from": None, "restore_to": None, "wait_seconds": 0}


class _PasswordCache:
    """Resolves the password on first connect (maybe prompting) and keeps it in memory only."""

    def __init__(self, source: SecretSource, what: str, prompter: Callable[[str], str] | None) -> None:
        self._source = source
        self._what = what
        self._prompter = prompter
        self._value: str | None = None
        self._lock = threading.Lock()

    def __call__(self) -> str | None:
        with self._lock:
            if self._value is None:
                from hvtui.secrets import resolve_secret

                self._value = resolve_secret(self._source, self._what, self._prompter)
            return self._value

    def forget(self) -> None:
        """After a refused logon: a prompt asks again next time."""
        with self._lock:
            self._value = None


def create_switches_type(vm_type: str | None, wanted: str) -> bool:
    """Whether ``checkpoint_create.ps1`` switches the VM's checkpoint type for this create
    (the same test as the script's ``$switchType``)."""
    if vm_type is None or vm_type == "Disabled" or wanted not in ("Standard", "Production"):
        return False
    return not (vm_type == wanted or (wanted == "Production" and vm_type == "ProductionOnly"))


class WinRMHost(Host):
    kind = "winrm"
    in_place_replaces = "the VM's disks (its configuration stays)"

    def __init__(
        self,
        host_config: HostConfig,
        secret_prompter: Callable[[str], str] | None = None,
        *,
        allow_basic_over_http_for_tests: bool = False,
        max_shells: int = 2,
        remote_files: RemoteFiles | None = None,
    ) -> None:
        """``remote_files``: the host's files by host path; None: SMB3 per the ``smb:`` block, on first use."""
        if host_config.winrm is None:
            raise ConfigError(f"host {host_config.name!r}: kind winrm needs its winrm settings")
        self.name = host_config.name
        self.group = host_config.group
        self.read_only = host_config.read_only
        self.settings: WinRMSettings = host_config.winrm
        user = self.settings.username or "the configured user"
        self._password = _PasswordCache(self.settings.password, f"password for {user} on {self.name}", secret_prompter)
        self._secret_prompter = secret_prompter
        # One bucket for every reader of this host's files (the config's smb: rate_limit).
        smb_rate = self.settings.smb.rate_limit
        self.read_rate_limiter: RateLimiter | None = RateLimiter(smb_rate) if smb_rate is not None else None
        self._connection = WinRMConnection(
            self.name,
            self.settings,
            self._password,
            allow_basic_over_http_for_tests=allow_basic_over_http_for_tests,
            max_shells=max_shells,
        )
        self._scripts: dict[str, str] = {}
        self.remote_files = remote_files
        self._files_lock = threading.Lock()
        # remote_files (tests): the data path to use; None: SMB3 per the smb: block, per restore.
        self._restores = winrm_restore.WinRMRestores(
            self.name, self.settings, self._call, self.inventory, self.open_remote_files, remote_files
        )

    # -- plumbing -------------------------------------------------------------------------------
    def _script(self, op: str) -> str:
        if op not in self._scripts:
            self._scripts[op] = full_script(op)
        return self._scripts[op]

    def _run(self, op: str, arguments: dict, timeout: float, operation: str | None = None) -> CommandOutput:
        """Run one operation's script; ``operation`` names it in errors (default: its own label)."""
        operation = operation or OPERATION_LABELS[op]
        payload = {"op": op, "v": WIRE_VERSION, **arguments}
        try:
            return self._connection.run(operation, self._script(op), payload, timeout)
        except HostError as err:
            log.info("%s", err)
            raise
        except HvtuiError as err:  # the password could not be obtained: name the host and operation
            log.info("%s: %s: %s", self.name, operation, err)
            raise HostError(self.name, operation, str(err), kind="auth") from None

    def call_operation(self, op: str, arguments: dict, timeout: float, operation: str | None = None) -> object:
        """Run one operation; its JSON document, not yet checked (the backup module reads it).
        ``operation`` names it in errors (default: its label, or ``op`` itself)."""
        return self._call(op, arguments, timeout, operation or OPERATION_LABELS.get(op, op))

    def _call(self, op: str, arguments: dict, timeout: float, operation: str | None = None) -> object:
        """Run one operation; return its JSON document (not yet checked for ``ok``)."""
        operation = operation or OPERATION_LABELS[op]
        output = self._run(op, arguments, timeout, operation)
        try:
            return result_document(self.name, output, operation)
        except HostError as err:
            log.info("%s", err)
            raise

    def _operation(self, op: str, arguments: dict, timeout: float, operation: str | None = None) -> OperationResult:
        doc = self._call(op, arguments, timeout, operation)
        return self._result(doc, op, operation)

    def _result(self, doc: object, op: str, operation: str | None = None) -> OperationResult:
        try:
            return parse_result(doc, self.name, op, operation)
        except HostError as err:
            log.info("%s", err)
            raise

    # -- Host interface ---------------------------------------------------------------------------
    def inventory(self, timeout: float) -> HostSnapshot:
        """One call; the deadline is the smaller of ``timeout`` and the host's configured one."""
        deadline = min(timeout, self.settings.timeout) if timeout and timeout > 0 else self.settings.timeout
        doc = self._call("inventory", {}, deadline)
        try:
            return parse_inventory(doc, self.name)
        except HostError as err:
            log.info("%s", err)
            raise

    def create_checkpoint(self, vm_id: str, name: str | None, checkpoint_type: str = "Standard") -> Checkpoint:
        operation = OPERATION_LABELS["checkpoint.create"]
        if checkpoint_type not in CHECKPOINT_TYPES_CREATABLE:
            raise HostError(
                self.name,
                operation,
                f"cannot create a {checkpoint_type!r} checkpoint "
                f"(expected one of {', '.join(CHECKPOINT_TYPES_CREATABLE)})",
            )
        vm_type: str | None = None
        if checkpoint_type != "Recovery":
            # Read the VM's type first: the script switches it for Checkpoint-VM and puts it back
            # in ``finally``, which does not run when an abandoned call's shell is terminated.
            # Knowing the original, this client can put it back itself.
            vm_type = self._operation(
                "checkpoint.type", {"vm_id": vm_id, **_TYPE_READ}, self.settings.timeout, operation
            ).checkpoint_type
        arguments = {"vm_id": vm_id, "name": name, "checkpoint_type": checkpoint_type, "expected_type": vm_type}
        output: CommandOutput | None = None
        try:
            # A Standard checkpoint saves the memory, a Production one waits for VSS in the guest:
            # both can take minutes on a big VM, so the long deadline, as for apply and merges.
            output = self._run("checkpoint.create", arguments, self.settings.long_timeout)
            result = self._result(result_document(self.name, output, operation), "checkpoint.create")
        except HostError as err:
            if has_document(output) or not create_switches_type(vm_type, checkpoint_type):
                raise  # the script ran to its end (its finally restored the type), or switched nothing
            assert vm_type is not None
            raise self._restore_type_after(err, vm_id, checkpoint_type, vm_type) from None
        assert result.checkpoint is not None  # parse_result requires it
        return result.checkpoint

    def _restore_type_after(self, err: HostError, vm_id: str, switched_to: str, original: str) -> HostError:
        """``err`` (a create cut off before its end), completed with what became of the VM's
        checkpoint type: put back to ``original`` only if it is still ``switched_to``."""
        timeout = self.settings.timeout
        arguments = {
            "vm_id": vm_id,
            "restore_from": switched_to,
            "restore_to": original,
            "wait_seconds": max(0.0, timeout - min(TYPE_RESTORE_MARGIN, timeout / 2)),
        }
        try:
            result = self._operation("checkpoint.type", arguments, timeout, err.operation)
        except HostError as restore_err:
            note = (
                f"the VM's checkpoint type may still be {switched_to} (switched for this checkpoint): "
                f"putting it back to {original} failed: {restore_err.detail}; "
                f"set it back with Set-VM -CheckpointType {original}"
            )
            log.warning("%s: %s: %s", self.name, err.operation, note)
        else:
            if result.type_restored:
                note = f"the VM's checkpoint type, switched to {switched_to} for this checkpoint, was put back to {original}"
                log.info("%s: %s: %s", self.name, err.operation, note)
            elif result.checkpoint_type in (None, original):
                return err  # the switch never happened or was undone on the host
            else:
                note = f"the VM's checkpoint type is now {result.checkpoint_type} (it was {original}); check it"
                log.warning("%s: %s: %s", self.name, err.operation, note)
        return HostError(err.host, err.operation, f"{err.detail}; {note}", kind=err.kind)

    def apply_checkpoint(self, vm_id: str, checkpoint_id: str, progress: ProgressCallback | None = None) -> None:
        if progress:
            progress(Progress(phase="apply", message=f"applying checkpoint on {self.name}", done=0, total=1))
        self._operation(
            "checkpoint.apply", {"vm_id": vm_id, "checkpoint_id": checkpoint_id}, self.settings.long_timeout
        )
        if progress:
            progress(Progress(phase="apply", message=f"applied checkpoint on {self.name}", done=1, total=1))

    def remove_checkpoint(
        self,
        vm_id: str,
        checkpoint_id: str,
        subtree: bool = False,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> RemoveOutcome:
        # A merge Hyper-V has started cannot be cancelled: cancelling is possible only before.
        if cancel is not None:
            cancel.check()
        long_timeout = self.settings.long_timeout
        wait_seconds = max(0.0, long_timeout - min(MERGE_WAIT_MARGIN, long_timeout / 2))
        if progress:
            progress(Progress(phase="merge", message=f"removing checkpoint on {self.name}", done=0, total=1))
        result = self._operation(
            "checkpoint.remove",
            {"vm_id": vm_id, "checkpoint_id": checkpoint_id, "subtree": bool(subtree), "wait_seconds": wait_seconds},
            long_timeout,
        )
        # The script waited for the merge up to wait_seconds; past that the host still merges.
        outcome = RemoveOutcome(removed=result.removed, merge_pending=result.merge_pending)
        if progress:
            message = f"removed {len(result.removed)} checkpoint(s) on {self.name}"
            if outcome.merge_pending:
                message += "; the merge continues on the host"
            progress(Progress(phase="merge", message=message, done=1, total=1))
        return outcome

    def start_vm(self, vm_id: str) -> None:
        # The wire contract is fixed at v1 (docs/winrm-wire.md): it has no operation that starts a VM.
        raise HostError(
            self.name,
            "start VM",
            "the WinRM wire contract v1 has no operation to start a VM: start it in Hyper-V Manager "
            "(or with Start-VM on the host)",
            kind="unsupported",
        )

    def rename_checkpoint(self, vm_id: str, checkpoint_id: str, new_name: str) -> None:
        self._operation(
            "checkpoint.rename",
            {"vm_id": vm_id, "checkpoint_id": checkpoint_id, "new_name": new_name},
            self.settings.timeout,
        )

    # -- backup ------------------------------------------------------------------------------------
    def open_backup_source(
        self,
        vm_id: str,
        progress: ProgressCallback | None = None,
        on_checkpoint: CheckpointTaken | None = None,
        consistency: str | None = None,
        label: str | None = None,
    ) -> BackupSource:
        from hvtui.hosts.winrm import backup

        # backup.begin waits for VSS in the guest: the long deadline, as for a Production checkpoint.
        return backup.open_backup_source(
            self,
            self.files(),
            vm_id,
            consistency or self.settings.consistency,
            self.settings.long_timeout,
            progress,
            on_checkpoint,
            label,
        )

    def recovery_checkpoints(self, vm_id: str, timeout: float = 60.0) -> list[Checkpoint]:
        """hvtui's own Recovery checkpoints of the VM (``backup.leftovers``; another product's are
        never cleaned up, so they are not asked for)."""
        from hvtui.hosts.winrm.backup import leftover_checkpoints

        return leftover_checkpoints(self, vm_id, min(timeout, self.settings.long_timeout))

    def release_backup_checkpoint(self, vm_id: str, checkpoint_id: str) -> None:
        """``backup.end`` with outcome failed: the checkpoint goes, no reference point stays."""
        from hvtui.wire.backup import parse_end

        arguments = {"vm_id": vm_id, "checkpoint_id": checkpoint_id, "outcome": "failed", "retire": []}
        doc = self.call_operation("backup.end", arguments, self.settings.long_timeout)
        if parse_end(doc, self.name, "failed").already_gone:
            raise NotFoundError(self.name, "backup.end", f"no checkpoint with id {checkpoint_id} on the VM")

    def files(self) -> RemoteFiles:
        """The host's files, kept for the host's life (SMB3 through its ``smb:`` block unless the
        host was built with its own ``remote_files``); closed with the host."""
        with self._files_lock:
            if self.remote_files is None:
                self.remote_files = self.open_remote_files()
            return self.remote_files

    # -- restore (hosts/winrm/restore.py does the work) ---------------------------------------
    def prepare_restore(
        self,
        config: dict,
        mode: str,
        vm_id: str | None = None,
        new_name: str | None = None,
        keep_checkpoints: bool = True,
        write_bytes: int = 0,
        staging_name: str | None = None,
    ) -> RestoreTarget:
        return self._restores.prepare(
            self.read_only, config, mode, vm_id, new_name, keep_checkpoints, write_bytes, staging_name
        )

    def discard_restore(self, staging_name: str, rel_paths: list[str]) -> None:
        self._restores.discard(staging_name, rel_paths)

    def vm_folder_files(self, vm_id: str) -> list[tuple[str, int]]:
        return winrm_restore.disk_names(super().vm_folder_files(vm_id))

    def restore_volume(self, timeout: float = 30.0) -> Volume | None:
        return self._restores.volume(timeout)

    def open_remote_files(self) -> RemoteFiles:
        """The host's files over SMB3 (its ``smb:`` block; the WinRM credentials unless it names
        others); the caller closes it."""
        from hvtui.hosts.smb import open_remote_files  # smbprotocol only when files move

        smb = self.settings.smb
        return open_remote_files(
            self.name,
            self.settings.address,
            smb,
            self.settings.username,
            self._password,
            self._secret_prompter,
            rate_limiter=self.read_rate_limiter,
        )

    @property
    def read_rate_limit(self) -> int | None:
        return self.read_rate_limiter.rate if self.read_rate_limiter is not None else None

    def limit_read_rate(self, rate: int) -> RateLimiter:
        """Reads of this host's files at most ``rate`` bytes/s from now on (``--limit-rate``)."""
        if self.read_rate_limiter is None:
            self.read_rate_limiter = RateLimiter(rate)
            if self.remote_files is not None and getattr(self.remote_files, "rate_limiter", False) is None:
                self.remote_files.rate_limiter = self.read_rate_limiter  # files opened before: limit them too
        else:
            self.read_rate_limiter.set_rate(rate)
        return self.read_rate_limiter

    def close(self) -> None:
        if self.remote_files is not None:
            self.remote_files.close()
        self._connection.close()
