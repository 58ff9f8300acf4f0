"""The SMB3 read path under load and faults, against a real Samba smbd (issue 19 §2): parallel
read-ahead, a busy server retried, a dead server reconnected, a share that disappears, the
per-host rate limit.  Retry pauses go through an injected ``sleep`` (no real waiting, no timed
assertion): the fault tests use it to restart the server at a known point."""

from __future__ import annotations

import errno
import os
import threading

import pytest
import smbprotocol.connection
import smbprotocol.open
from samba_support import SambaServer
from smbprotocol.exceptions import SMBOSError
from smbprotocol.header import Commands, NtStatus
from test_rate_limit import FakeTime

from hvtui.config import HostConfig, SecretSource, SmbSettings, WinRMSettings
from hvtui.errors import HostError
from hvtui.hosts.ratelimit import RateLimiter
from hvtui.hosts.smb import SmbReader, SmbRemoteFiles, SmbWriter, fastpath, open_remote_files
from hvtui.hosts.winrm.host import WinRMHost

MiB = 1024 * 1024


def smb_files(server: SambaServer, sleep=None, rate_limiter: RateLimiter | None = None, read_ahead: int = 4) -> SmbRemoteFiles:
    smb = SmbSettings(shares=(("D:\\", server.unc()),), port=server.port, timeout=10.0, read_ahead=read_ahead)
    remote = open_remote_files("hv01", server.host, smb, server.username, lambda: server.password, rate_limiter=rate_limiter)
    remote.sleep = sleep or (lambda _seconds: None)
    return remote


def big_file(server: SambaServer, name: str, size: int) -> bytes:
    data = os.urandom(size)
    (server.folder / name).write_bytes(data)
    return data


def read_as_the_pipeline_does(reader: SmbReader, chunk: int = MiB) -> bytes:
    """Everything, read into one reused buffer a chunk at a time, as the backup pipeline does."""
    piece, got = bytearray(chunk), bytearray()
    while count := reader.readinto(piece):
        got += piece[:count]
    return bytes(got)


def test_sequential_reads_keep_several_requests_in_flight(samba_server: SambaServer) -> None:
    data = big_file(samba_server, "disk.vhdx", 64 * MiB)
    with smb_files(samba_server) as remote, remote.open_read("D:\\disk.vhdx") as reader:
        assert isinstance(reader, SmbReader)
        first = reader.read(MiB)
        assert (reader.in_flight, reader.bytes_fetched) == (0, MiB)  # a first read fetches what it asks, no more
        second = reader.read(31 * MiB)
        assert reader.in_flight == 4  # 32 MiB into a sequential run: read_ahead's four 4 MiB reads queued
        rest = b"".join(iter(lambda: reader.read(3 * MiB + 5), b""))
        assert first + second + rest == data
        assert reader.bytes_fetched == len(data)  # read-ahead never fetches a byte twice or past the end
        assert reader.in_flight == 0


def test_a_backup_reading_chunk_by_chunk_reads_ahead_in_whole_aligned_requests(
    samba_server: SambaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline asks for 1 MiB at a time: read-ahead must still go out as whole 4 MiB
    requests on 4 MiB boundaries (each chunk then lies in one answer), not as 1 MiB top-ups."""
    data = big_file(samba_server, "disk.vhdx", 64 * MiB)
    sent: list[tuple[int, int]] = []
    send_read = fastpath.send_read
    monkeypatch.setattr(fastpath, "send_read", lambda raw, offset, length: sent.append((offset, length)) or send_read(raw, offset, length))
    with smb_files(samba_server) as remote, remote.open_read("D:\\disk.vhdx") as reader:
        assert read_as_the_pipeline_does(reader) == data
    assert sorted(sent) == sent and sum(length for _offset, length in sent) == len(data)  # each byte asked once
    ahead = [(offset, length) for offset, length in sent if offset >= 8 * MiB]  # past the first few, as the run grows
    assert ahead and all(offset % (4 * MiB) == 0 and length == 4 * MiB for offset, length in ahead)
    assert len(sent) <= 64 // 4 + 6


def test_scattered_reads_fetch_only_what_is_asked(samba_server: SambaServer) -> None:
    """An incremental backup reads changed blocks here and there: read-ahead must not multiply that."""
    data = big_file(samba_server, "disk.vhdx", 32 * MiB)
    blocks = [(20 * MiB, 64 * 1024), (3 * MiB + 7, 4096), (31 * MiB, MiB), (0, 100)]
    with smb_files(samba_server) as remote, remote.open_read("D:\\disk.vhdx") as reader:
        for offset, length in blocks:
            reader.seek(offset)
            assert reader.read(length) == data[offset : offset + length]
        assert reader.bytes_fetched == sum(length for _offset, length in blocks)


def test_a_run_of_contiguous_blocks_fetches_at_most_half_again(samba_server: SambaServer) -> None:
    """Changed blocks side by side read as a short sequential run: the read-ahead it triggers
    stays within half of what the run read."""
    data = big_file(samba_server, "disk.vhdx", 32 * MiB)
    block = 256 * 1024
    with smb_files(samba_server) as remote, remote.open_read("D:\\disk.vhdx") as reader:
        reader.seek(4 * MiB)
        for index in range(8):
            assert reader.read(block) == data[4 * MiB + index * block : 4 * MiB + (index + 1) * block]
        reader.seek(20 * MiB)  # the next changed block is elsewhere
        assert reader.read(block) == data[20 * MiB : 20 * MiB + block]
        fetched = reader.bytes_fetched
    asked = 9 * block
    assert asked <= fetched <= asked + 8 * block // 2


def test_a_busy_server_is_asked_again(samba_server: SambaServer, monkeypatch: pytest.MonkeyPatch) -> None:
    data = big_file(samba_server, "disk.vhdx", 6 * MiB)
    real_receive = smbprotocol.connection.Connection.receive
    failures = []

    def busy_once(self, request, *args, **kwargs):  # noqa: ANN001, ANN202
        answer = real_receive(self, request, *args, **kwargs)
        if not failures and request.message["command"].get_value() == Commands.SMB2_READ:
            failures.append(request)  # the server answered this READ "busy"
            raise SMBOSError(NtStatus.STATUS_INSUFF_SERVER_RESOURCES, "disk.vhdx")
        return answer

    monkeypatch.setattr(smbprotocol.connection.Connection, "receive", busy_once)
    pauses: list[float] = []
    with smb_files(samba_server, sleep=pauses.append) as remote, remote.open_read("D:\\disk.vhdx") as reader:
        assert reader.read() == data
    assert failures and pauses == [0.2]


def test_a_server_restarted_mid_read_is_reconnected_and_the_read_completes(samba_server: SambaServer) -> None:
    data = big_file(samba_server, "disk.vhdx", 40 * MiB)
    pauses: list[float] = []
    starting = threading.Lock()  # several read workers pause at once; each must see the server listening

    def pause_and_bring_the_server_back(seconds: float) -> None:
        pauses.append(seconds)
        with starting:
            samba_server.start()  # no-op once it runs again

    with smb_files(samba_server, sleep=pause_and_bring_the_server_back) as remote, remote.open_read("D:\\disk.vhdx") as reader:
        first = reader.read(MiB)
        samba_server.kill()  # SIGKILL: connections die without a goodbye
        rest = reader.read()
    assert first + rest == data
    assert pauses  # the loss was noticed and waited out


def test_a_server_that_stays_down_ends_the_read_with_smb_lost(samba_server: SambaServer) -> None:
    big_file(samba_server, "disk.vhdx", 40 * MiB)
    pauses: list[float] = []
    with smb_files(samba_server, sleep=pauses.append) as remote, remote.open_read("D:\\disk.vhdx") as reader:
        reader.read(MiB)
        samba_server.stop()
        with pytest.raises(HostError) as caught:
            reader.read()
    error = caught.value
    assert error.kind == "smb-lost"
    assert error.host == "hv01" and "D:\\disk.vhdx" in str(error)
    assert len(pauses) >= len(remote.retry_delays)  # every pause was tried before giving up


def test_a_share_that_disappears_mid_job_is_smb_lost(samba_server: SambaServer) -> None:
    big_file(samba_server, "disk.vhdx", MiB)
    big_file(samba_server, "disk2.vhdx", MiB)
    with smb_files(samba_server) as remote:
        with remote.open_read("D:\\disk.vhdx") as reader:
            reader.read(1000)
        os.rename(samba_server.folder, samba_server.root / "gone")  # the admin removed or renamed the share's folder
        with pytest.raises(HostError) as caught:
            remote.open_read("D:\\disk2.vhdx")
    assert caught.value.kind == "smb-lost"
    assert "\\\\127.0.0.1\\share" in str(caught.value) and "went away" in str(caught.value)


def test_a_file_missing_from_a_live_share_stays_not_found(samba_server: SambaServer) -> None:
    big_file(samba_server, "disk.vhdx", 1000)
    with smb_files(samba_server) as remote:
        assert remote.size("D:\\disk.vhdx") == 1000
        with pytest.raises(HostError) as caught:
            remote.open_read("D:\\nothing.vhdx")
    assert caught.value.kind == "not-found"


def test_reads_take_their_bytes_from_the_host_rate_limit(samba_server: SambaServer) -> None:
    data = big_file(samba_server, "disk.vhdx", 10 * MiB)
    clock = FakeTime()
    bucket = RateLimiter(MiB, monotonic=clock.monotonic, sleep=clock.sleep)
    with smb_files(samba_server, rate_limiter=bucket) as remote, remote.open_read("D:\\disk.vhdx") as reader:
        assert remote.rate_limit == MiB
        assert reader.read() == data
    # 10 MiB at 1 MiB/s with a one-second burst: 9 seconds of (fake) pacing.
    assert clock.now - 1000.0 == pytest.approx(9.0)


def test_a_winrm_host_shares_one_limit_among_its_readers_and_can_be_limited(samba_server: SambaServer) -> None:
    smb = SmbSettings(shares=(("D:\\", samba_server.unc()),), port=samba_server.port, rate_limit=200_000_000)
    settings = WinRMSettings(address=samba_server.host, username="u", password=SecretSource(env="X"), smb=smb)
    host = WinRMHost(HostConfig(name="hv01", kind="winrm", winrm=settings))
    assert host.read_rate_limiter is not None and host.read_rate_limiter.rate == 200_000_000
    with host.open_remote_files() as first, host.open_remote_files() as second:
        assert first.rate_limiter is second.rate_limiter is host.read_rate_limiter
        host.limit_read_rate(50_000_000)  # --limit-rate beats the config
        assert first.rate_limit == 50_000_000
    unlimited = WinRMHost(HostConfig(name="hv02", kind="winrm", winrm=WinRMSettings(address="x", username="u", password=SecretSource(env="X"))))
    assert unlimited.read_rate_limiter is None
    assert unlimited.limit_read_rate(1000).rate == 1000


def test_writes_keep_several_requests_in_flight(samba_server: SambaServer) -> None:
    data = os.urandom(20 * MiB + 3)
    with smb_files(samba_server) as remote, remote.open_write("D:\\restored.vhdx") as writer:
        assert isinstance(writer, SmbWriter)
        writer.write(data[: 16 * MiB])
        assert writer.in_flight > 1  # four 4 MiB pieces handed to the workers; write returned at once
        writer.write(data[16 * MiB :])
        writer.flush()
        assert writer.in_flight == 0
        assert writer.tell() == len(data)
    assert (samba_server.folder / "restored.vhdx").read_bytes() == data


def test_a_server_restarted_mid_write_is_reconnected_and_the_file_completes(samba_server: SambaServer) -> None:
    data = os.urandom(24 * MiB)
    pauses: list[float] = []
    starting = threading.Lock()  # several write workers pause at once; each must see the server listening

    def pause_and_bring_the_server_back(seconds: float) -> None:
        pauses.append(seconds)
        with starting:
            samba_server.start()

    with smb_files(samba_server, sleep=pause_and_bring_the_server_back) as remote, remote.open_write("D:\\restored.vhdx") as writer:
        writer.write(data[: 8 * MiB])
        writer.flush()
        samba_server.kill()
        writer.write(data[8 * MiB :])
    assert pauses
    assert (samba_server.folder / "restored.vhdx").read_bytes() == data


def test_a_write_on_a_socket_closed_under_it_is_reconnected(samba_server: SambaServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # When smbd dies, smbprotocol closes its socket and the next send fails with a bare EBADF: that is
    # a lost session to reconnect, not an unknown "SMB error" that fails the job.
    data = os.urandom(6 * MiB)
    real_write = smbprotocol.open.Open.write
    failures = []

    def closed_socket_once(self, data, offset=0, *args, **kwargs):  # noqa: ANN001, ANN202
        if not failures:
            failures.append(offset)
            raise OSError(errno.EBADF, "Bad file descriptor")
        return real_write(self, data, offset, *args, **kwargs)

    monkeypatch.setattr(smbprotocol.open.Open, "write", closed_socket_once)
    pauses: list[float] = []
    with smb_files(samba_server, sleep=pauses.append) as remote, remote.open_write("D:\\restored.vhdx") as writer:
        writer.write(data)
    assert failures and pauses
    assert (samba_server.folder / "restored.vhdx").read_bytes() == data


def test_a_write_to_a_server_that_stays_down_is_smb_lost(samba_server: SambaServer) -> None:
    with smb_files(samba_server) as remote:
        writer = remote.open_write("D:\\restored.vhdx")
        writer.write(b"x" * MiB)
        writer.flush()
        samba_server.stop()
        writer.write(b"y" * MiB)  # queued: the error comes with the next write, flush or close
        with pytest.raises(HostError) as caught:
            writer.close()
        assert writer.closed
    assert caught.value.kind == "smb-lost" and "D:\\restored.vhdx" in str(caught.value)


def test_the_session_says_how_it_is_protected(samba_server: SambaServer) -> None:
    with smb_files(samba_server) as remote:
        remote.listdir("D:\\")
        assert remote.security("D:\\") == "SMB 3.1.1, encrypted (AES-128-GCM)"
    plain = samba_server.start_second(encrypt=False)
    smb = SmbSettings(shares=(("D:\\", plain.unc()),), port=plain.port, encrypt=False, timeout=10.0)
    with open_remote_files("hv01", plain.host, smb, plain.username, lambda: plain.password) as remote:
        remote.listdir("D:\\")
        assert remote.security("D:\\") == "SMB 3.1.1, signed, not encrypted"  # encrypt: false still signs
