"""A large file's reads spread over two SMB connections (lanes) to a real Samba smbd: smbprotocol
decrypts a connection's answers on one thread and smbd serves a connection from one process, so
one connection caps a full backup.  The bytes stay identical, small reads stay on one connection,
a lost lane reconnects while the other carries on, a lane that cannot connect leaves its reads to
the first."""

from __future__ import annotations

import errno
import os
import threading
import time

import pytest
import smbprotocol.open
from samba_support import SambaServer
from test_smb_faults import big_file, smb_files

from hvtui.errors import HostError
from hvtui.hosts.smb import SmbReader, SmbRemoteFiles

MiB = 1024 * 1024


def read_all(reader: SmbReader, piece: int = 3 * MiB + 5) -> bytes:
    return b"".join(iter(lambda: reader.read(piece), b""))


def test_a_large_read_spreads_over_two_connections_with_identical_bytes(samba_server: SambaServer) -> None:
    data = big_file(samba_server, "disk.vhdx", 48 * MiB)
    with smb_files(samba_server) as remote, remote.open_read("D:\\disk.vhdx") as reader:
        assert isinstance(reader, SmbReader) and remote.connections == 2
        start = reader.read(8 * MiB)  # the first read-ahead sets the second lane up
        for setting_up in list(reader._connecting.values()):
            setting_up.join(10)
        before = list(reader.lane_bytes)
        assert start + read_all(reader) == data
        assert sum(reader.lane_bytes) == len(data) == reader.bytes_fetched  # nothing fetched twice
        after = [now - then for now, then in zip(reader.lane_bytes, before, strict=True)]
        assert min(after) >= 12 * MiB  # once both are ready, chunks take turns: each carries a fair share
        assert remote.open_connections == 2
    assert remote.open_connections == 0  # closed with the files object


def test_the_first_lane_keeps_reading_while_the_second_connects(
    samba_server: SambaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = big_file(samba_server, "disk.vhdx", 48 * MiB)
    real_open_raw = SmbRemoteFiles.open_raw
    release = threading.Event()

    def slow_second_connection(self, mapped, operation, reconnecting=False, lane=0):  # noqa: ANN001, ANN202
        if lane and not release.wait(10):  # a slow server: set up only once the test says so
            raise HostError(self.host_name, operation, "the test never released the second lane", kind="smb-share")
        return real_open_raw(self, mapped, operation, reconnecting, lane)

    monkeypatch.setattr(SmbRemoteFiles, "open_raw", slow_second_connection)
    with smb_files(samba_server) as remote, remote.open_read("D:\\disk.vhdx") as reader:
        # Set up on the reader's own thread, this would wait the 10 s and give up the second lane.
        started = time.monotonic()
        head = reader.read(24 * MiB)
        assert time.monotonic() - started < 5 and reader.lane_bytes[1:] == [0]
        release.set()
        for setting_up in list(reader._connecting.values()):
            setting_up.join(10)
        assert head + read_all(reader) == data
        assert reader.lane_bytes[1] > 0 and remote.open_connections == 2


def test_a_reader_closed_while_its_second_lane_connects_closes_that_lane_too(
    samba_server: SambaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    big_file(samba_server, "disk.vhdx", 24 * MiB)
    real_open_raw = SmbRemoteFiles.open_raw
    release, opened = threading.Event(), []

    def slow_second_connection(self, mapped, operation, reconnecting=False, lane=0):  # noqa: ANN001, ANN202
        if lane:
            release.wait(10)
        raw = real_open_raw(self, mapped, operation, reconnecting, lane)
        opened.append((lane, raw))
        return raw

    monkeypatch.setattr(SmbRemoteFiles, "open_raw", slow_second_connection)
    with smb_files(samba_server) as remote:
        reader = remote.open_read("D:\\disk.vhdx")
        reader.read(8 * MiB)
        (setting_up,) = reader._connecting.values()
        reader.close()
        release.set()
        setting_up.join(10)
        assert [lane for lane, _ in opened] == [0, 1]
        assert all(raw.closed for _, raw in opened)  # the late one was closed by its own thread
        assert reader._raws[1] is None
    assert remote.open_connections == 0  # its connection went with the files object


def test_files_closed_while_a_lane_waits_to_connect_leave_no_connection_behind(
    samba_server: SambaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    big_file(samba_server, "disk.vhdx", 24 * MiB)
    real_open_raw = SmbRemoteFiles.open_raw
    release = threading.Event()

    def slow_second_connection(self, mapped, operation, reconnecting=False, lane=0):  # noqa: ANN001, ANN202
        if lane:
            release.wait(10)
        return real_open_raw(self, mapped, operation, reconnecting, lane)

    monkeypatch.setattr(SmbRemoteFiles, "open_raw", slow_second_connection)
    remote = smb_files(samba_server)
    reader = remote.open_read("D:\\disk.vhdx")
    reader.read(8 * MiB)
    (setting_up,) = reader._connecting.values()
    reader.close()
    remote.close()
    release.set()  # the lane's connection is asked for only now, of closed files: refused
    setting_up.join(10)
    assert not setting_up.is_alive() and 1 in reader._unavailable
    assert remote.open_connections == 0


def test_small_reads_stay_on_one_connection(samba_server: SambaServer) -> None:
    data = big_file(samba_server, "disk.vhdx", 8 * MiB)
    with smb_files(samba_server) as remote, remote.open_read("D:\\disk.vhdx") as reader:
        assert reader.read(64 * 1024) == data[: 64 * 1024]  # a VHDX header
        reader.seek(5 * MiB)
        assert reader.read(4096) == data[5 * MiB : 5 * MiB + 4096]
        assert reader.lane_bytes[1:] == [0] and remote.open_connections == 1


def test_a_lost_connection_among_two_is_reconnected_and_the_read_completes(
    samba_server: SambaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = big_file(samba_server, "disk.vhdx", 48 * MiB)
    real_read = smbprotocol.open.Open.read
    connections: list[object] = []  # in the order they first read
    killed: list[object] = []

    def second_lane_dies_once(self, offset, length, *args, **kwargs):  # noqa: ANN001, ANN202
        if self.connection not in connections:
            connections.append(self.connection)
        if not killed and len(connections) == 2 and self.connection is connections[1]:
            killed.append(self.connection)
            self.connection.transport.close()  # the socket really goes away under this lane
            raise OSError(errno.EBADF, "Bad file descriptor")
        return real_read(self, offset, length, *args, **kwargs)

    monkeypatch.setattr(smbprotocol.open.Open, "read", second_lane_dies_once)
    pauses: list[float] = []
    with smb_files(samba_server, sleep=pauses.append) as remote, remote.open_read("D:\\disk.vhdx") as reader:
        assert read_all(reader) == data
        assert killed and pauses == [0.2]  # one pause, for the one lost lane
        assert len(connections) == 3  # the first lane kept its connection; the second got a new one
        assert min(reader.lane_bytes) > 0 and remote.open_connections == 2


def test_a_lane_that_cannot_connect_leaves_its_reads_to_the_first(
    samba_server: SambaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = big_file(samba_server, "disk.vhdx", 24 * MiB)
    real_open_raw = SmbRemoteFiles.open_raw

    def no_second_connection(self, mapped, operation, reconnecting=False, lane=0):  # noqa: ANN001, ANN202
        if lane:
            raise HostError(self.host_name, operation, "too many connections", kind="smb-share")
        return real_open_raw(self, mapped, operation, reconnecting, lane)

    monkeypatch.setattr(SmbRemoteFiles, "open_raw", no_second_connection)
    with smb_files(samba_server) as remote, remote.open_read("D:\\disk.vhdx") as reader:
        assert read_all(reader) == data
        assert reader.lane_bytes == [len(data), 0] and remote.open_connections == 1


def test_one_connection_when_configured_so(samba_server: SambaServer) -> None:
    data = os.urandom(24 * MiB)
    (samba_server.folder / "disk.vhdx").write_bytes(data)
    from hvtui.config import SmbSettings
    from hvtui.hosts.smb import open_remote_files

    smb = SmbSettings(shares=(("D:\\", samba_server.unc()),), port=samba_server.port, timeout=10.0)
    remote = open_remote_files(
        "hv01", samba_server.host, smb, samba_server.username, lambda: samba_server.password, connections=1
    )
    with remote, remote.open_read("D:\\disk.vhdx") as reader:
        assert read_all(reader) == data and reader.lane_bytes == [len(data)] and remote.open_connections == 1
