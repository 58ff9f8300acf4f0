"""RemoteFiles over SMB3 against a real Samba smbd (tests/samba_support.py): the data path of a
WinRM host's backups and restores (issue 19 §2), and the errors a user can meet, each naming the
host, the path and what to fix."""

from __future__ import annotations

import os

import pytest
from samba_support import DENIED_SHARE, READONLY_SHARE, SambaServer

from hvtui.config import HostConfig, SecretSource, SmbSettings, WinRMSettings
from hvtui.errors import HostError
from hvtui.hosts.smb import SmbRemoteFiles, open_remote_files
from hvtui.hosts.winrm.host import WinRMHost


def smb_files(server: SambaServer, password: str | None = None, encrypt: bool = True, **settings) -> SmbRemoteFiles:
    """The files of host "hv01" whose D:\\ is the test share."""
    smb = SmbSettings(shares=(("D:\\", server.unc()),), port=server.port, encrypt=encrypt, timeout=10.0, **settings)
    secret = server.password if password is None else password
    return open_remote_files("hv01", server.host, smb, server.username, lambda: secret)


@pytest.fixture
def files(samba_server: SambaServer):
    remote = smb_files(samba_server)
    yield remote
    remote.close()


def test_write_then_read_round_trip_through_the_share(files: SmbRemoteFiles, samba_server: SambaServer) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    files.makedirs("D:\\VMs\\sql01")
    with files.open_write("D:\\VMs\\sql01\\disk.vhdx") as writer:
        writer.write(data[:1000])
        writer.write(data[1000:])
    assert (samba_server.folder / "VMs" / "sql01" / "disk.vhdx").read_bytes() == data
    assert files.size("d:/vms/SQL01/disk.vhdx") == len(data)  # drive letter and case as Windows takes them
    with files.open_read("D:\\VMs\\sql01\\disk.vhdx") as reader:
        assert reader.read(len(data) + 100) == data  # short only at the end of the file
        assert reader.read(10) == b""


def test_ranged_reads_and_seek(files: SmbRemoteFiles, samba_server: SambaServer) -> None:
    data = os.urandom(1024 * 1024)
    (samba_server.folder / "f.bin").write_bytes(data)
    with files.open_read("D:\\f.bin") as reader:
        assert reader.seek(5000) == 5000
        assert reader.read(100) == data[5000:5100]
        assert reader.tell() == 5100
        reader.seek(-10, os.SEEK_END)
        assert reader.read(100) == data[-10:]
        reader.seek(0)
        assert reader.read(7) == data[:7]
        reader.seek(len(data) + 50)
        assert reader.read(5) == b""


def test_readinto_fills_the_callers_buffer_across_chunks_and_seeks(files: SmbRemoteFiles, samba_server: SambaServer) -> None:
    # 4 MiB chunks: reads of 4 MiB land on whole chunks (handed over uncopied), odd sizes straddle them
    data = os.urandom(13 * 1024 * 1024 + 333)
    (samba_server.folder / "g.bin").write_bytes(data)
    with files.open_read("D:\\g.bin") as reader:
        buffer = bytearray(4 * 1024 * 1024)
        got = bytearray()
        while n := reader.readinto(buffer):
            got += buffer[:n]
        assert bytes(got) == data
        for offset, length in ((5, 4 * 1024 * 1024), (4 * 1024 * 1024 - 7, 3 * 1024 * 1024 + 11), (len(data) - 100, 4096)):
            reader.seek(offset)
            view = memoryview(bytearray(length))
            n = reader.readinto(view)
            assert bytes(view[:n]) == data[offset : offset + length] and reader.tell() == offset + n
        reader.seek(4 * 1024 * 1024)
        whole = reader.read(4 * 1024 * 1024)
        assert isinstance(whole, bytes) and whole == data[4 * 1024 * 1024 : 8 * 1024 * 1024]


def test_makedirs_is_idempotent_and_remove_tolerates_a_missing_file(files: SmbRemoteFiles, samba_server: SambaServer) -> None:
    files.makedirs("D:\\a\\b\\c")
    files.makedirs("D:\\a\\b\\c")
    assert (samba_server.folder / "a" / "b" / "c").is_dir()
    (samba_server.folder / "a" / "x.bin").write_bytes(b"x")
    files.remove("D:\\a\\x.bin")
    assert not (samba_server.folder / "a" / "x.bin").exists()
    files.remove("D:\\a\\x.bin")


def test_remove_folder_removes_an_empty_folder_and_keeps_one_that_holds_something(
    files: SmbRemoteFiles, samba_server: SambaServer
) -> None:
    files.makedirs("D:\\st\\empty")
    (samba_server.folder / "st" / "kept.txt").write_bytes(b"someone's")
    files.remove_folder("D:\\st\\empty")
    assert not (samba_server.folder / "st" / "empty").exists()
    files.remove_folder("D:\\st\\empty")  # already gone: no error
    with pytest.raises(HostError) as caught:
        files.remove_folder("D:\\st")
    assert caught.value.kind == "not-empty"
    assert "D:\\st" in caught.value.detail and "kept.txt" in caught.value.detail
    assert (samba_server.folder / "st" / "kept.txt").read_bytes() == b"someone's"


def test_a_missing_file_is_not_found(files: SmbRemoteFiles) -> None:
    with pytest.raises(HostError) as caught:
        files.open_read("D:\\VMs\\nothing.vhdx")
    assert caught.value.kind == "not-found"
    assert "hv01" in str(caught.value) and "D:\\VMs\\nothing.vhdx" in str(caught.value)


def test_a_path_outside_every_share_names_the_host_the_path_and_the_fix(files: SmbRemoteFiles) -> None:
    for path in ("E:\\VMs\\a.vhdx", "D:\\VMs\\..\\..\\Windows\\x", "relative\\x"):
        with pytest.raises(HostError) as caught:
            files.open_read(path)
        error = caught.value
        assert error.kind == "smb-path"
        assert error.host == "hv01" and path in str(error) and "smb: shares:" in str(error)


def test_a_wrong_password_is_an_smb_auth_error(samba_server: SambaServer) -> None:
    remote = smb_files(samba_server, password="wrong-password")
    try:
        with pytest.raises(HostError) as caught:
            remote.size("D:\\x")
    finally:
        remote.close()
    error = caught.value
    assert error.kind == "smb-auth"
    assert "hv01" in str(error) and "D:\\x" in str(error) and "smb: username" in str(error)
    assert "wrong-password" not in str(error)


def test_a_missing_share_is_an_smb_share_error(samba_server: SambaServer) -> None:
    smb = SmbSettings(shares=(("D:\\", f"\\\\{samba_server.host}\\noshare"),), port=samba_server.port, timeout=10.0)
    remote = open_remote_files("hv01", samba_server.host, smb, samba_server.username, lambda: samba_server.password)
    try:
        with pytest.raises(HostError) as caught:
            remote.open_read("D:\\VMs\\a.vhdx")
    finally:
        remote.close()
    error = caught.value
    assert error.kind == "smb-share"
    assert "\\\\127.0.0.1\\noshare" in str(error) and "D:\\VMs\\a.vhdx" in str(error) and "hv01" in str(error)


def test_a_server_without_encryption_is_refused_unless_the_config_allows_it(samba_server: SambaServer) -> None:
    plain = samba_server.start_second(encrypt=False)
    (plain.folder / "f.bin").write_bytes(b"signed, not sealed")
    refused = smb_files(plain)
    try:
        with pytest.raises(HostError) as caught:
            refused.open_read("D:\\f.bin")
    finally:
        refused.close()
    assert caught.value.kind == "smb-encryption"
    assert "encrypt: false" in str(caught.value) and "hv01" in str(caught.value) and "D:\\f.bin" in str(caught.value)

    accepted = smb_files(plain, encrypt=False)
    try:
        with accepted.open_read("D:\\f.bin") as reader:
            assert reader.read(100) == b"signed, not sealed"
    finally:
        accepted.close()


def test_default_map_is_the_admin_shares_of_the_address() -> None:
    remote = open_remote_files("hv01", "hv01.corp.example", SmbSettings(), "CORP\\svc", lambda: "pw")
    assert remote.shares.map("c:\\Windows\\x").unc == "\\\\hv01.corp.example\\C$\\Windows\\x"
    assert remote.shares.map("D:\\VMs\\a.vhdx").unc == "\\\\hv01.corp.example\\D$\\VMs\\a.vhdx"
    assert remote.shares.map("E:\\VMs\\a.vhdx") is None


def test_longest_prefix_wins() -> None:
    smb = SmbSettings(shares=(("D:\\", "\\\\hv01\\D$"), ("D:\\VMs", "\\\\fs01\\VMs$\\hv01")))
    remote = open_remote_files("hv01", "hv01", smb, "u", lambda: "pw")
    assert remote.shares.map("D:\\vms\\a\\b.vhdx").unc == "\\\\fs01\\VMs$\\hv01\\a\\b.vhdx"
    assert remote.shares.map("D:\\VMs2\\b.vhdx").unc == "\\\\hv01\\D$\\VMs2\\b.vhdx"
    assert remote.shares.map("D:\\VMs").unc == "\\\\fs01\\VMs$\\hv01"


def test_a_closed_port_says_what_to_open(samba_server: SambaServer) -> None:
    from samba_support import free_port

    smb = SmbSettings(shares=(("D:\\", samba_server.unc()),), port=free_port(), timeout=5.0)
    remote = open_remote_files("hv01", samba_server.host, smb, samba_server.username, lambda: samba_server.password)
    try:
        with pytest.raises(HostError) as caught:
            remote.size("D:\\x")
    finally:
        remote.close()
    assert caught.value.kind == "smb-share"
    assert f"port {smb.port}" in str(caught.value) and "Firewall" in str(caught.value) and "TCP" in str(caught.value)


def winrm_host(server: SambaServer, smb: SmbSettings) -> WinRMHost:
    settings = WinRMSettings(address=server.host, username=server.username, password=SecretSource(env="HV01_WINRM_PW"), smb=smb)
    return WinRMHost(HostConfig(name="hv01", kind="winrm", winrm=settings))


def test_a_winrm_host_reaches_its_files_with_its_winrm_credentials(samba_server: SambaServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HV01_WINRM_PW", samba_server.password)
    (samba_server.folder / "f.bin").write_bytes(b"12345")
    host = winrm_host(samba_server, SmbSettings(shares=(("D:\\", samba_server.unc()),), port=samba_server.port))
    with host.open_remote_files() as remote:
        assert remote.size("D:\\f.bin") == 5


def test_the_smb_block_can_name_its_own_credentials(samba_server: SambaServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HV01_WINRM_PW", "the-winrm-password-smb-does-not-accept")
    monkeypatch.setenv("HV01_SMB_PW", samba_server.password)
    (samba_server.folder / "f.bin").write_bytes(b"12345")
    smb = SmbSettings(
        shares=(("D:\\", samba_server.unc()),), port=samba_server.port, username=samba_server.username, password=SecretSource(env="HV01_SMB_PW")
    )
    with winrm_host(samba_server, smb).open_remote_files() as remote:
        assert remote.size("D:\\f.bin") == 5
    without = SmbSettings(shares=(("D:\\", samba_server.unc()),), port=samba_server.port)
    with winrm_host(samba_server, without).open_remote_files() as remote, pytest.raises(HostError) as caught:
        remote.size("D:\\f.bin")
    assert caught.value.kind == "smb-auth"


def test_a_missing_smb_password_source_is_an_smb_auth_error_naming_it(samba_server: SambaServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HV01_SMB_PW", raising=False)
    monkeypatch.setenv("HV01_WINRM_PW", samba_server.password)
    smb = SmbSettings(shares=(("D:\\", samba_server.unc()),), port=samba_server.port, username="files", password=SecretSource(env="HV01_SMB_PW"))
    with winrm_host(samba_server, smb).open_remote_files() as remote, pytest.raises(HostError) as caught:
        remote.size("D:\\f.bin")
    assert caught.value.kind == "smb-auth"
    assert "environment variable HV01_SMB_PW is not set" in str(caught.value) and "hv01" in str(caught.value)


def test_a_share_that_refuses_the_account_says_which_rights_it_needs(samba_server: SambaServer) -> None:
    smb = SmbSettings(shares=(("C:\\", f"\\\\{samba_server.host}\\{DENIED_SHARE}"),), port=samba_server.port, timeout=10.0)
    remote = open_remote_files("hv01", samba_server.host, smb, samba_server.username, lambda: samba_server.password)
    with remote, pytest.raises(HostError) as caught:
        remote.open_read("C:\\Windows\\x.vhdx")
    error = caught.value
    assert error.kind == "smb-share"
    assert f"the share \\\\127.0.0.1\\{DENIED_SHARE} refused" in str(error) and "Administrators" in str(error)
    assert "C:\\Windows\\x.vhdx" in str(error) and error.host == "hv01"


def test_a_file_the_share_lets_in_but_the_account_may_not_write_is_a_plain_failure(samba_server: SambaServer) -> None:
    smb = SmbSettings(shares=(("E:\\", f"\\\\{samba_server.host}\\{READONLY_SHARE}"),), port=samba_server.port, timeout=10.0)
    remote = open_remote_files("hv01", samba_server.host, smb, samba_server.username, lambda: samba_server.password)
    with remote, pytest.raises(HostError) as caught:
        remote.open_write("E:\\restored.vhdx")
    error = caught.value
    assert error.kind == "failed"
    assert "access to E:\\restored.vhdx" in str(error) and "though the share lets it in" in str(error)
