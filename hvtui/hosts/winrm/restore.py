"""Restore to a WinRM host: files over SMB (``RemoteFiles``), the Hyper-V side over WinRM.

``restore.prepare`` makes a folder under the host's ``restore_dir`` after checking the volume
can take what the restore writes; the engine writes every file of the point there through
``RemoteFiles`` (never over WinRM); ``commit`` runs ``restore.import``, which registers the
files as a new VM (new id, the new name) or puts them in place of an Off VM's disks, checks the
disks with ``Test-VHD`` and removes the folder (a new VM is first flattened there unless its
checkpoints are kept: ``flatten``).  ``abort`` deletes every file written, then the emptied
folder; a restore that died (a killed console) is found in the job journal and its files and
folder removed by name (``discard``).
"""

from __future__ import annotations

import collections
import logging
import re
import uuid
from collections.abc import Callable
from pathlib import PureWindowsPath
from typing import Any, BinaryIO

import humanize

from hvtui.config import WinRMSettings
from hvtui.errors import HostError, HostRefused, NotFoundError, ReadOnlyError
from hvtui.hosts.base import HostSnapshot, RestoreTarget
from hvtui.hosts.remote_files import RemoteFiles
from hvtui.model import VM, Volume
from hvtui.wire.restore import ImportResult, parse_import, parse_prepare

log = logging.getLogger(__name__)

OPERATION = "restore"
CONFIG_SUFFIXES = (".vmcx", ".xml")  # Hyper-V's configuration files (2016+, 2012 R2)

ImportCall = Callable[[dict[str, Any]], ImportResult]


def host_path(folder: str, rel_path: str) -> str:
    """``rel_path`` (forward slashes, checked by the engine) as a path under ``folder`` on the host."""
    return folder.rstrip("\\") + "\\" + rel_path.replace("/", "\\")


def vm_home(vms: list[VM], restore_dir: str) -> str:
    """The folder a new VM's folder goes in: the one most of the host's VMs are in, else
    ``<drive of restore_dir>\\VMs``."""
    parents = collections.Counter(vm.path.rstrip("\\").rsplit("\\", 1)[0] for vm in vms if "\\" in vm.path.strip("\\"))
    if parents:
        return parents.most_common(1)[0][0]
    return restore_dir.split("\\", 1)[0] + "\\VMs"


def config_file(config: dict[str, Any], written: list[str]) -> str:
    """The restored file holding the VM's configuration, among the written ones."""
    named = config.get("config_file")
    if isinstance(named, str) and named in written:
        return named
    for rel in written:
        if rel.lower().endswith(CONFIG_SUFFIXES):
            return rel
    raise ValueError("the restore point holds no VM configuration file (.vmcx): nothing to import")


class WinRMRestoreTarget(RestoreTarget):
    """A restore in one folder of a WinRM host; files through ``RemoteFiles``."""

    staging_dir = None

    def __init__(
        self,
        host_name: str,
        files: RemoteFiles,
        folder: str,
        config: dict[str, Any],
        mode: str,
        vm_id: str | None,
        new_name: str | None,
        destination: str,
        run_import: ImportCall,
        find_vm: Callable[[str], VM],
        owns_files: bool = False,
    ) -> None:
        self.host_name = host_name
        self.files = files
        self.folder = folder
        self.config = config
        self.mode = mode
        self.vm_id = vm_id
        self.new_name = new_name
        self.destination = destination
        self.warnings: tuple[str, ...] = ()
        self.flatten = False  # new VM: one disk per drive, no checkpoints (done by the host after the import)
        self._run_import = run_import
        self._find_vm = find_vm
        self._written: list[str] = []  # relative paths, in the order written
        self._folders: set[str] = set()
        self._done = False
        self._owns_files = owns_files  # opened for this restore: closed when it ends

    def _release(self) -> None:
        if self._owns_files:
            self._owns_files = False
            try:
                self.files.close()
            except HostError as err:
                log.info("%s: restore: closing the SMB connection: %s", self.host_name, err.detail)

    def open_file(self, rel_path: str) -> BinaryIO:
        if self._done:
            raise HostError(self.host_name, OPERATION, "this restore was already committed or aborted")
        if any(ch in rel_path for ch in ':*?"<>|'):
            # ':' would name an NTFS alternate data stream; the others are not valid in Windows names.
            raise HostError(self.host_name, OPERATION, f"refused file name {rel_path!r}: not a valid Windows file name")
        path = host_path(self.folder, rel_path)
        parent = path.rsplit("\\", 1)[0]
        if parent not in self._folders:
            self.files.makedirs(parent)
            self._folders.add(parent)
        self._written.append(rel_path)
        return self.files.open_write(path)

    def commit(self) -> VM:
        if self._done:
            raise HostError(self.host_name, OPERATION, "this restore was already committed or aborted")
        try:
            try:
                config_rel = config_file(self.config, self._written)
            except ValueError as err:
                raise HostError(self.host_name, OPERATION, str(err), kind="incompatible") from None
            arguments: dict[str, Any] = {
                "folder": self.folder,
                "config_path": host_path(self.folder, config_rel),
                "mode": self.mode,
                "destination": self.destination,
            }
            if self.mode == "new":
                arguments["new_name"] = self.new_name
                arguments["flatten"] = self.flatten
            else:
                arguments["vm_id"] = self.vm_id
            result = self._run_import(arguments)
        except BaseException:
            self.abort()
            raise
        self._done = True
        self._release()
        self.warnings = result.warnings
        for warning in result.warnings:
            log.warning("%s: restore: %s", self.host_name, warning)
        return self._find_vm(result.vm_id)

    def abort(self) -> None:
        """Delete every file written, then the staging folder (unless something is left in it)."""
        if self._done:
            return
        self._done = True
        left: list[str] = []
        for rel in reversed(self._written):
            try:
                self.files.remove(host_path(self.folder, rel))
            except HostError as err:
                left.append(rel)
                log.warning("%s: restore: could not remove the staged %s: %s", self.host_name, rel, err.detail)
        if left:
            log.warning(
                "%s: restore: %d staged file(s) are left in %s: delete the folder on the host",
                self.host_name,
                len(left),
                self.folder,
            )
        else:  # a file that could not be removed keeps its folder anyway: no more calls to a failing share
            remove_staged_folders(self.host_name, self.files, self.folder, self._written)
        self._release()


STAGING_NAME = re.compile(r"hvtui-restore-[0-9A-Za-z]{1,40}")


def new_folder(restore_dir: str, staging_name: str | None = None) -> str:
    """``restore_dir\\<staging_name>`` (a job's own name), or a new random one."""
    if staging_name is None:
        staging_name = f"hvtui-restore-{uuid.uuid4().hex[:12]}"
    elif not STAGING_NAME.fullmatch(staging_name):
        raise ValueError(f"refused staging folder name {staging_name!r}: not a hvtui-restore-<id> name")
    return f"{restore_dir.rstrip(chr(92))}\\{staging_name}"


def staged_folders(folder: str, rel_paths: list[str]) -> list[str]:
    """The folders a restore's files went in, deepest first, ending with ``folder`` itself."""
    below: set[str] = set()
    for rel in rel_paths:
        parts = rel.split("/")[:-1]
        below.update("/".join(parts[: depth + 1]) for depth in range(len(parts)))
    ordered = sorted(below, key=lambda rel: (-rel.count("/"), rel))
    return [host_path(folder, rel) for rel in ordered] + [folder]


def remove_staged_folders(host_name: str, files: RemoteFiles, folder: str, rel_paths: list[str]) -> bool:
    """Remove the emptied staging folders (deepest first); False, after a warning naming what is
    left, when one of them still holds something or cannot be removed."""
    for path in staged_folders(folder, rel_paths):
        try:
            files.remove_folder(path)
        except HostError as err:
            # Its parents hold it: they cannot go either.
            log.warning("%s: restore: the staging folder %s is left on the host: %s", host_name, folder, err.detail)
            return False
    return True


def discard_staged(host_name: str, files: RemoteFiles, folder: str, rel_paths: list[str]) -> int:
    """Remove the files a dead restore may have written into ``folder``; how many removals failed."""
    failed = 0
    for rel in rel_paths:
        try:
            files.remove(host_path(folder, rel))
        except HostError as err:
            failed += 1
            log.warning("%s: restore: could not remove %s left by a dead restore: %s", host_name, rel, err.detail)
    return failed


def check_new_name(host_name: str, new_name: str | None, vms: list[VM]) -> str:
    if not new_name or not new_name.strip():
        raise HostError(host_name, OPERATION, "a restore as a new VM needs a name for it")
    if len(new_name) > 100 or any(ord(ch) < 32 for ch in new_name) or any(ch in new_name for ch in '\\/:*?"<>|'):
        # The name becomes the VM's folder: it must be a valid Windows folder name.
        raise HostError(
            host_name,
            OPERATION,
            f"{new_name!r} cannot name a VM on a Hyper-V host (1-100 characters, none of \\ / : * ? \" < > | "
            "or control characters)",
        )
    if any(vm.name.lower() == new_name.lower() for vm in vms):
        raise HostRefused(host_name, OPERATION, f"a VM named {new_name!r} already exists on this host")
    return new_name


def space_error(host_name: str, err: HostError, write_bytes: int) -> HostError:
    return HostError(
        host_name,
        OPERATION,
        f"the host has not enough free space for this restore ({humanize.naturalsize(write_bytes, binary=True)} "
        f"to write): {err.detail}; nothing was written",
        kind="space",
    )


class WinRMRestores:
    """The restore side of one WinRM host (``WinRMHost`` delegates to it): checks, restore.prepare,
    a target writing over SMB, restore.import on commit; the clean-up of a killed restore."""

    def __init__(
        self,
        host_name: str,
        settings: WinRMSettings,
        call: Callable[[str, dict, float], object],
        inventory: Callable[[float], HostSnapshot],
        open_files: Callable[[], RemoteFiles],
        given_files: RemoteFiles | None = None,
    ) -> None:
        self.host_name = host_name
        self.settings = settings
        self._call = call  # one operation's document (WinRMHost's plumbing)
        self._inventory = inventory
        self._open_files = open_files  # SMB3 per the host's smb: block; the caller closes it
        self._given_files = given_files  # tests: the data path to use instead

    def prepare(
        self,
        read_only: bool,
        config: dict,
        mode: str,
        vm_id: str | None,
        new_name: str | None,
        keep_checkpoints: bool,
        write_bytes: int,
        staging_name: str | None,
    ) -> WinRMRestoreTarget:
        """A folder under ``restore_dir`` checked for space and created (``restore.prepare``);
        the engine writes into it over SMB and ``commit`` imports (``restore.import``)."""
        name = self.host_name
        if read_only:
            raise ReadOnlyError(f"{name}: {OPERATION}: the host is read-only")
        vms = list(self._inventory(self.settings.timeout).vms)
        if mode == "new":
            new_name = check_new_name(name, new_name, vms)
            destination = vm_home(vms, self.settings.restore_dir) + "\\" + new_name
        elif mode == "in_place":
            destination = check_in_place(name, vm_id, vms).path
        else:
            raise HostError(name, OPERATION, f"unknown restore mode {mode!r} (expected new or in_place)")
        try:
            folder = new_folder(self.settings.restore_dir, staging_name)
        except ValueError as err:
            raise HostError(name, OPERATION, str(err), kind="argument") from None
        try:
            arguments = {"folder": folder, "bytes": int(write_bytes)}
            parse_prepare(self._call("restore.prepare", arguments, self.settings.timeout), name)
        except HostError as err:
            log.info("%s", err)
            if err.kind == "space":
                raise space_error(name, err, write_bytes) from None
            raise
        # The files travel over SMB3 (the host's smb: block), opened for this restore only.
        owned = self._given_files is None
        files = self._open_files() if self._given_files is None else self._given_files
        target = WinRMRestoreTarget(
            name, files, folder, config, mode, vm_id, new_name, destination, self._import, self._find_vm, owned
        )
        # A new VM is flattened on the host after its import (its checkpoints removed, which merges them).
        target.flatten = mode == "new" and not keep_checkpoints
        return target

    def discard(self, staging_name: str, rel_paths: list[str]) -> None:
        """Remove, over SMB, the files a killed restore may have staged, then its folder."""
        folder = new_folder(self.settings.restore_dir, staging_name)
        files = self._open_files() if self._given_files is None else self._given_files
        try:
            failed = discard_staged(self.host_name, files, folder, rel_paths)
            if not failed and not remove_staged_folders(self.host_name, files, folder, rel_paths):
                raise HostError(self.host_name, OPERATION, f"the staging folder {folder} is left (not empty)")
        finally:
            if self._given_files is None:
                files.close()
        if failed:
            raise HostError(self.host_name, OPERATION, f"{failed} staged file(s) left in {folder}")

    def volume(self, timeout: float) -> Volume | None:
        """The volume of ``restore_dir`` (restore.prepare checks the same one)."""
        return self._inventory(min(timeout, self.settings.timeout)).facts.volume_for(self.settings.restore_dir)

    def _import(self, arguments: dict) -> ImportResult:
        # Compare-VM copies the disks into place and Test-VHD reads them: the long deadline.
        try:
            return parse_import(self._call("restore.import", arguments, self.settings.long_timeout), self.host_name)
        except HostError as err:
            log.info("%s", err)
            raise

    def _find_vm(self, vm_id: str) -> VM:
        for vm in self._inventory(self.settings.timeout).vms:
            if vm.id == vm_id:
                return vm
        raise NotFoundError(self.host_name, OPERATION, f"the imported VM {vm_id} is not in the inventory")


def check_in_place(host_name: str, vm_id: str | None, vms: list[VM]) -> VM:
    """The VM an in-place restore replaces the disks of: it exists, is Off, has no checkpoints."""
    current = next((vm for vm in vms if vm.id == vm_id), None)
    if current is None:
        raise NotFoundError(host_name, OPERATION, f"no VM with id {vm_id}")
    if current.state != "Off":
        message = f"VM {current.name!r} is {current.state}: turn it off before restoring over it"
        raise HostError(host_name, OPERATION, message, kind="state")
    if current.checkpoints:
        # Only the disks are replaced here: checkpoints of the VM would point into a chain that is gone.
        raise HostError(
            host_name,
            OPERATION,
            f"VM {current.name!r} has {len(current.checkpoints)} checkpoint(s): an in-place restore on a "
            "WinRM host replaces only its disks, which they depend on; delete them first, or restore as a new VM",
            kind="state",
        )
    return current


def disk_names(files: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Disk files by name (what restore.import replaces in place; a point names its files
    relative to the VM's folder), from their host paths."""
    return [(PureWindowsPath(path).name, size) for path, size in files]


__all__ = [
    "WinRMRestoreTarget",
    "WinRMRestores",
    "check_in_place",
    "disk_names",
    "check_new_name",
    "config_file",
    "discard_staged",
    "remove_staged_folders",
    "staged_folders",
    "host_path",
    "new_folder",
    "space_error",
    "vm_home",
]
