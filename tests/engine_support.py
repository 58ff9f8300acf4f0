"""A small host over plain files, for engine tests that must not depend on the lab.

``DirHost`` implements the ``Host`` interface for real: VMs are directories of real files,
a "Recovery checkpoint" is a marker file that exists while a ``BackupSource`` is open
(its id ``recovery-<vm id>``, its name the backup pattern, both given to the source),
writes made through ``write`` are recorded so ``changed_ranges`` answers like RCT, and
``prepare_restore`` stages files and registers a VM directory on commit.  It is a test
double (a second implementation of the interface), not a mock.

Also usable from a subprocess: ``python engine_support.py backup ROOT REPO VM MODE``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from hvtui.engine.repository import Repository
from hvtui.engine.store import compress_chunk
from hvtui.errors import HostError, NotFoundError
from hvtui.hosts.base import BackupSource, Host, HostSnapshot, RestoreTarget, SourceFile, backup_checkpoint_name
from hvtui.model import VM, Checkpoint, HostFacts

MiB = 1024 * 1024


class DirSource(BackupSource):
    def __init__(self, host: DirHost, vm_id: str) -> None:
        self.host = host
        self.vm_id = vm_id
        self.vm = host.vm(vm_id)
        self.checkpoint_id = host.recovery_id(vm_id)
        self.checkpoint_name = host.marker(vm_id).read_text()
        meta = host.meta(vm_id)
        self.config = {"name": meta["name"], "memory": meta.get("memory", 1024), "generation": 2}
        self.files = []
        vm_dir = host.vm_dir(vm_id)
        changes = host.changes(vm_id)
        for path in sorted(p for p in vm_dir.rglob("*") if p.is_file() and p.name != "vm.json"):
            rel = path.relative_to(vm_dir).as_posix()
            st = path.stat()
            record = changes.get(rel)
            self.files.append(
                SourceFile(
                    rel_path=rel,
                    size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                    identity=record["identity"] if record else f"ino:{st.st_ino}",
                    change_id=str(record["seq"]) if record else None,
                    opener=self._opener(path),
                    changes=self._changes(rel),
                )
            )
        self.closed = False

    def _opener(self, path: Path):
        def open_file() -> BinaryIO:
            gate = self.host.gate
            while gate is not None and not gate.exists():
                time.sleep(0.02)
            return open(path, "rb", buffering=0)

        return open_file

    def _changes(self, rel: str):
        def changed(since: str) -> list[tuple[int, int]] | None:
            record = self.host.changes(self.vm_id).get(rel)
            if record is None:
                return None
            try:
                since_seq = int(since)
            except ValueError:
                return None
            if since_seq < record["base"]:
                return None  # older than what the tracker remembers
            return [tuple(r[1:]) for r in record["log"] if r[0] > since_seq]

        return changed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.host.marker(self.vm_id).unlink(missing_ok=True)


class DirTarget(RestoreTarget):
    def __init__(self, host: DirHost, config: dict, mode: str, vm_id: str | None, new_name: str | None) -> None:
        self.host = host
        self.config = config
        self.mode = mode
        self.vm_id = vm_id
        self.new_name = new_name
        self.staging_dir = host.root / f"staging-{uuid.uuid4().hex[:8]}"
        self.staging_dir.mkdir()

    def commit(self) -> VM:
        if self.mode == "new":
            vm_id = uuid.uuid4().hex[:12]
            self.host.vm_dir(vm_id).parent.mkdir(parents=True, exist_ok=True)
            meta = {"name": self.new_name, "state": "Off"}
        else:
            vm_id = self.vm_id
            meta = self.host.meta(vm_id)
            shutil.rmtree(self.host.vm_dir(vm_id))
        os.rename(self.staging_dir, self.host.vm_dir(vm_id))
        (self.host.vm_dir(vm_id) / "vm.json").write_text(json.dumps(meta))
        return self.host.vm(vm_id)

    def abort(self) -> None:
        shutil.rmtree(self.staging_dir, ignore_errors=True)


class OneHost:
    """The host lookup (``hvtui.backups.guard.HostLookup``) of a single host."""

    def __init__(self, host: Host) -> None:
        self._host = host

    def host(self, name: str) -> Host:
        return self._host


class DirHost(Host):
    kind = "lab"

    def __init__(self, root: Path, name: str = "dirhost", gate: Path | None = None) -> None:
        self.root = Path(root)
        self.name = name
        self.gate = gate
        (self.root / "vms").mkdir(parents=True, exist_ok=True)
        (self.root / "checkpoints").mkdir(exist_ok=True)
        self.opened: list[str] = []

    # -- VM files --------------------------------------------------------------------
    def vm_dir(self, vm_id: str) -> Path:
        return self.root / "vms" / vm_id

    def meta(self, vm_id: str) -> dict:
        try:
            return json.loads((self.vm_dir(vm_id) / "vm.json").read_text())
        except FileNotFoundError:
            raise NotFoundError(self.name, "find VM", f"no VM {vm_id}") from None

    def marker(self, vm_id: str) -> Path:
        return self.root / "checkpoints" / f"{vm_id}.recovery"

    def changes(self, vm_id: str) -> dict:
        path = self.root / "checkpoints" / f"{vm_id}.rct.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _save_changes(self, vm_id: str, data: dict) -> None:
        (self.root / "checkpoints" / f"{vm_id}.rct.json").write_text(json.dumps(data))

    def add_vm(self, vm_id: str, name: str, state: str = "Off") -> Path:
        self.vm_dir(vm_id).mkdir(parents=True, exist_ok=True)
        (self.vm_dir(vm_id) / "vm.json").write_text(json.dumps({"name": name, "state": state}))
        return self.vm_dir(vm_id)

    def create_disk(self, vm_id: str, rel: str, size: int, seed: int, data_mib: int = 2, tracked: bool = True) -> Path:
        """A sparse file of ``size`` with ``data_mib`` MiB of mixed data at 1 MiB-aligned spots."""
        path = self.vm_dir(vm_id) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = random.Random(seed)
        with open(path, "wb") as fh:
            fh.truncate(size)
            for i in range(data_mib):
                spot = rng.randrange(0, max(1, size // MiB)) * MiB
                fh.seek(spot)
                fh.write(mixed_block(rng, min(MiB, size - spot), i))
        if tracked:
            data = self.changes(vm_id)
            data[rel] = {"identity": f"disk-{uuid.uuid4().hex[:8]}", "seq": 1, "base": 1, "log": []}
            self._save_changes(vm_id, data)
        return path

    def write(self, vm_id: str, rel: str, offset: int, payload: bytes) -> None:
        path = self.vm_dir(vm_id) / rel
        with open(path, "r+b") as fh:
            fh.seek(offset)
            fh.write(payload)
        data = self.changes(vm_id)
        if rel in data:
            record = data[rel]
            record["seq"] += 1
            record["log"].append([record["seq"], offset, len(payload)])
            self._save_changes(vm_id, data)

    # -- Host interface ---------------------------------------------------------------
    def vm(self, vm_id: str) -> VM:
        meta = self.meta(vm_id)
        return VM(host=self.name, id=vm_id, name=meta["name"], state=meta.get("state", "Off"))

    def inventory(self, timeout: float) -> HostSnapshot:
        facts = HostFacts(self.name, "test", "1", datetime.now(UTC), 2, 8 << 30)
        ids = sorted(p.name for p in (self.root / "vms").iterdir() if (p / "vm.json").exists())
        return HostSnapshot(facts, tuple(self.vm(i) for i in ids))

    def create_checkpoint(self, vm_id, name, checkpoint_type="Standard"):  # noqa: ANN001, ANN201
        raise HostError(self.name, "checkpoint", "not supported here")

    def apply_checkpoint(self, vm_id, checkpoint_id, progress=None):  # noqa: ANN001, ANN201
        raise HostError(self.name, "checkpoint", "not supported here")

    def remove_checkpoint(self, vm_id, checkpoint_id, subtree=False, progress=None, cancel=None):  # noqa: ANN001, ANN201
        if checkpoint_id == self.recovery_id(vm_id) and not subtree:
            if not self.marker(vm_id).exists():
                raise NotFoundError(self.name, "remove checkpoint", f"no checkpoint {checkpoint_id}")
            self.marker(vm_id).unlink()
            return None
        raise HostError(self.name, "checkpoint", "not supported here")

    def recovery_id(self, vm_id: str) -> str:
        return f"recovery-{vm_id}"

    def recovery_checkpoints(self, vm_id: str, timeout: float = 60.0) -> list[Checkpoint]:
        marker = self.marker(vm_id)
        if not marker.exists():
            return []
        created = datetime.fromtimestamp(marker.stat().st_mtime, UTC)
        return [Checkpoint(self.recovery_id(vm_id), marker.read_text(), "Recovery", created, None)]

    def rename_checkpoint(self, vm_id, checkpoint_id, new_name):  # noqa: ANN001, ANN201
        raise HostError(self.name, "checkpoint", "not supported here")

    def open_backup_source(self, vm_id: str, progress=None, on_checkpoint=None, **_options) -> DirSource:  # noqa: ANN001, ANN003
        name = backup_checkpoint_name(self.meta(vm_id)["name"], datetime.now(UTC))
        if on_checkpoint is not None:
            on_checkpoint(self.recovery_id(vm_id), name)  # recorded before it exists, as the lab does
        self.marker(vm_id).write_text(name)
        self.opened.append(vm_id)
        return DirSource(self, vm_id)

    def cleanup_recovery_checkpoints(self, vm_id: str) -> int:
        marker = self.marker(vm_id)
        if marker.exists():
            marker.unlink()
            return 1
        return 0

    def prepare_restore(
        self,
        config: dict,
        mode: str,
        vm_id: str | None = None,
        new_name: str | None = None,
        keep_checkpoints: bool = True,  # its VMs have no checkpoints: nothing to flatten
        write_bytes: int = 0,
        staging_name: str | None = None,
    ) -> DirTarget:
        if mode == "in_place" and self.meta(vm_id).get("state") != "Off":
            raise HostError(self.name, "restore", f"VM {vm_id} must be off to restore over it", kind="refused")
        return DirTarget(self, config, mode, vm_id, new_name)


def mixed_block(rng: random.Random, length: int, salt: int) -> bytes:
    """Half compressible text-like bytes, half random: like an OS disk."""
    half = length // 2
    text = (f"block {salt} " * (half // 8 + 1)).encode()[:half]
    return text + rng.randbytes(length - half)


def flip_last_byte_of_chunk(repo: Repository, digest: bytes) -> Path:
    """Damage one stored chunk in place, whatever the repository's format: the last byte of its
    chunk file (format 1) or of its blob inside its pack (format 2); return the file changed."""
    if repo.version == 1:
        path, last = repo.store.path(digest), -1  # type: ignore[union-attr]
    else:
        pack_id, offset, length = repo.store.location(digest)  # type: ignore[union-attr, misc]
        path, last = repo.store.pack_path(pack_id), offset + length - 1  # type: ignore[union-attr]
    blob = bytearray(path.read_bytes())
    blob[last] ^= 0xFF
    path.write_bytes(bytes(blob))
    return path


def store_chunk_again(repo: Repository, digest: bytes, data: bytes) -> None:
    """Put a chunk a verify quarantined back into the repository through its store, as a backup
    that reads the same data again would: a chunk file (format 1) or a new pack and index (2)."""
    codec, packed = compress_chunk(data)
    payload = packed if packed is not None else data
    if repo.version == 1:
        repo.store.put(digest, codec, len(data), payload, "0123456789abcdef")  # type: ignore[union-attr]
        return
    sink = repo.store.sink("0123456789abcdef", True)
    sink.add(digest, codec, len(data), payload)
    batch = sink.take(force=True)
    assert batch is not None
    repo.store.publish_pack(batch.writer)  # type: ignore[union-attr]
    repo.store.make_durable()


def read_tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "vm.json"
    }


def main(argv: list[str]) -> int:
    """Subprocess entry: ``backup HOSTROOT REPO VM MODE [GATE]``; prints one JSON line per event."""
    from hvtui.engine.backup import run_backup
    from hvtui.engine.repository import Repository

    command, root, repo_path, vm_id, mode = argv[:5]
    gate = Path(argv[5]) if len(argv) > 5 else None
    assert command == "backup"
    host = DirHost(Path(root), gate=gate)
    repo = Repository.open(Path(repo_path), create=True, chunk_size=64 * 1024)

    def progress(event) -> None:  # noqa: ANN001
        print(json.dumps({"phase": event.phase, "done": event.done, "message": event.message}), flush=True)

    result = run_backup(repo, host, vm_id, mode, progress=progress, progress_interval=0.0)
    print(json.dumps({"result": result.to_dict()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


def running_in(code: object, thread_ids: list[int] | None = None) -> bool:
    """Some thread (of ``thread_ids``, or any) is inside the function whose code object is
    ``code`` right now (waiting in it counts): how tests see a thread block where they expect."""
    frames = sys._current_frames()
    for ident in frames if thread_ids is None else thread_ids:
        frame = frames.get(ident)
        while frame is not None:
            if frame.f_code is code:
                return True
            frame = frame.f_back
    return False
