"""A restore target without a local staging folder (a WinRM host writing over SMB) gets every
file through its own ``open_file``: the bytes arrive identical, holes included, and a failure
in the middle aborts the target."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from hvtui.engine.backup import run_backup
from hvtui.engine.repository import Repository
from hvtui.engine.restore import restore_to_host
from hvtui.errors import HostError

sys.path.insert(0, str(Path(__file__).parent))
from engine_support import DirHost, DirTarget, read_tree  # noqa: E402

MiB = 1024 * 1024
DISK = "Virtual Hard Disks/web01.vhdx"


class SeekWriteOnly(io.RawIOBase):
    """The writer RemoteFiles promises: write, seek, close (no truncate); counts its writes."""

    def __init__(self, path: Path, log: list[tuple[str, int, int]], fail_after: int | None) -> None:
        self._fh = open(path, "xb")  # noqa: SIM115 - closed in close()
        self._path = path
        self._log = log
        self._fail_after = fail_after

    def writable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if self._fail_after is not None and sum(n for _, _, n in self._log) >= self._fail_after:
            raise HostError("dirhost", "restore", f"the share went away writing {self._path.name}", kind="smb-lost")
        self._log.append((self._path.name, self._fh.tell(), len(data)))
        return self._fh.write(data)

    def truncate(self, size: int | None = None) -> int:
        raise AssertionError("RemoteFiles writers have no truncate")

    def close(self) -> None:
        self._fh.close()
        super().close()


class StreamTarget(DirTarget):
    """DirTarget's commit and abort, but files only through ``open_file``."""

    def __init__(self, *args: object, fail_after: int | None = None) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.folder = self.staging_dir
        self.staging_dir = None  # type: ignore[assignment]
        self.writes: list[tuple[str, int, int]] = []
        self.fail_after = fail_after
        self.aborted = False

    def open_file(self, rel_path: str) -> SeekWriteOnly:
        path = self.folder.joinpath(*rel_path.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return SeekWriteOnly(path, self.writes, self.fail_after)

    def commit(self):  # noqa: ANN201
        self.staging_dir = self.folder
        return super().commit()

    def abort(self) -> None:
        self.aborted = True
        self.staging_dir = self.folder
        super().abort()


class StreamHost(DirHost):
    def __init__(self, root: Path, fail_after: int | None = None) -> None:
        super().__init__(root)
        self.fail_after = fail_after
        self.targets: list[StreamTarget] = []
        self.write_bytes: list[int] = []

    def prepare_restore(self, config, mode, vm_id=None, new_name=None, keep_checkpoints=True, write_bytes=0, staging_name=None):  # noqa: ANN001, ANN201
        self.write_bytes.append(write_bytes)
        target = StreamTarget(self, config, mode, vm_id, new_name, fail_after=self.fail_after)
        self.targets.append(target)
        return target


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository.open(tmp_path / "repo", create=True, chunk_size=MiB)


def make_host(root: Path, fail_after: int | None = None) -> StreamHost:
    host = StreamHost(root, fail_after)
    host.add_vm("vm1", "web01")
    # data only in the first 4 MiB of a 16 MiB disk: the file ends in a hole
    path = host.create_disk("vm1", DISK, 16 * MiB, seed=3, data_mib=0)
    with open(path, "r+b") as fh:
        fh.write(bytes(range(256)) * (4 * MiB // 256))
    return host


def test_a_point_restored_through_open_file_is_byte_identical_holes_included(tmp_path: Path, repo: Repository) -> None:
    host = make_host(tmp_path / "host")
    original = read_tree(host.vm_dir("vm1"))
    point = run_backup(repo, host, "vm1", "full").point_id
    result = restore_to_host(repo, point, host, "new", new_name="copy")
    assert read_tree(host.vm_dir(result.vm_id)) == original
    assert result.hole_bytes >= 12 * MiB
    # nothing written past the data but the last byte that gives the file its size
    disk_writes = [(offset, n) for name, offset, n in host.targets[0].writes if name == "web01.vhdx"]
    assert disk_writes[-1] == (16 * MiB - 1, 1)
    assert sum(n for offset, n in disk_writes) == 4 * MiB + 1
    assert host.write_bytes == [result.written_bytes]  # the host was told what would be written


def test_a_writer_failing_mid_file_aborts_the_target(tmp_path: Path, repo: Repository) -> None:
    host = make_host(tmp_path / "host", fail_after=MiB)
    point = run_backup(repo, host, "vm1", "full").point_id
    with pytest.raises(HostError, match="the share went away") as info:
        restore_to_host(repo, point, host, "new", new_name="copy")
    assert info.value.kind == "smb-lost"
    assert host.targets[0].aborted and not host.targets[0].folder.exists()
    assert sorted(p.name for p in (host.root / "vms").iterdir()) == ["vm1"]
