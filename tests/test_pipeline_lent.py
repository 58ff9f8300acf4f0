"""A source that lends its bytes (``read_view``, as the SMB reader does with the answers it
received) is hashed and compressed where the bytes lie, not copied into the pipeline's buffers:
the point is the same as from a file read the usual way, and every lent view is released."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from engine_support import DirHost, DirSource, read_tree

from hvtui.engine.backup import run_backup
from hvtui.engine.repository import Repository
from hvtui.engine.restore import restore_to_directory

KiB, MiB = 1024, 1024 * 1024


class LendingFile(io.RawIOBase):
    """A file held in memory that only lends its bytes: a copy through ``readinto`` fails the test."""

    def __init__(self, path: Path, lent: list[LendingFile]) -> None:
        super().__init__()
        self.data = bytearray(path.read_bytes())
        self.position = 0
        self.views = 0
        lent.append(self)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.position = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: len(self.data)}[whence] + offset
        return self.position

    def read_view(self, size: int) -> memoryview:
        view = memoryview(self.data)[self.position : self.position + size]
        self.position += len(view)
        self.views += 1
        return view

    def readinto(self, buffer: object) -> int:
        raise AssertionError("the pipeline copied a chunk it could have borrowed")

    def released(self) -> bool:
        """True when no view of the data is alive (a bytearray with views refuses to grow)."""
        try:
            self.data.append(0)
        except BufferError:
            return False
        self.data.pop()
        return True


@pytest.mark.parametrize("version", [1, 2])
def test_lent_chunks_make_the_same_point_and_are_all_given_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    host = DirHost(tmp_path / "host")
    host.add_vm("vm1", "web01")
    host.create_disk("vm1", "disk.vhdx", 6 * MiB, seed=7, data_mib=3)  # zero chunks between the data
    # A chunk that starts with zeros but is not all zero (the lent path looks at a chunk's start first).
    host.write("vm1", "disk.vhdx", 5 * MiB + 64 * KiB + 100, b"not zero")
    host.create_disk("vm1", "small.bin", 100 * KiB + 7, seed=8, data_mib=1)  # a short last chunk
    copied_repo = Repository.open(tmp_path / "copied", create=True, chunk_size=64 * KiB, version=version)
    copied = copied_repo.load_point(run_backup(copied_repo, host, "vm1", "full").point_id)

    lent: list[LendingFile] = []
    monkeypatch.setattr(DirSource, "_opener", lambda self, path: lambda: LendingFile(path, lent))
    repo = Repository.open(tmp_path / "lent", create=True, chunk_size=64 * KiB, version=version)
    result = run_backup(repo, host, "vm1", "full")
    point = repo.load_point(result.point_id)

    assert {f.path: f.chunks for f in point.files} == {f.path: f.chunks for f in copied.files}
    assert None in next(f for f in point.files if f.path == "disk.vhdx").chunks  # zero chunks found as such
    assert sum(f.views for f in lent) == sum(len(f.chunks) for f in point.files)  # every chunk lent, none copied
    assert lent and all(f.released() for f in lent)
    restore_to_directory(repo, result.point_id, tmp_path / "restored")
    assert read_tree(tmp_path / "restored") == read_tree(host.vm_dir("vm1"))


def test_a_lending_source_that_ends_early_fails_the_backup_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = DirHost(tmp_path / "host")
    host.add_vm("vm1", "web01")
    host.create_disk("vm1", "disk.vhdx", 2 * MiB, seed=9, data_mib=2)

    def shrunk(self: DirSource, path: Path):  # noqa: ANN202
        def open_shrunk() -> LendingFile:
            lending = LendingFile(path, [])
            del lending.data[MiB:]  # the file changed under the backup
            return lending

        return open_shrunk

    monkeypatch.setattr(DirSource, "_opener", shrunk)
    repo = Repository.open(tmp_path / "repo", create=True, chunk_size=64 * KiB)
    with pytest.raises(Exception, match=r"disk.vhdx on the source ended at 1048576 bytes, expected 2097152"):
        run_backup(repo, host, "vm1", "full")
    assert repo.load_points() == ([], [])  # no point committed
