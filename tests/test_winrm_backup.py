"""Backups of a VM on a WinRM host: backup.begin -> the frozen files read over SMB3 -> backup.end,
over the loopback WS-Management server answering from a lab host (real VHDX files) whose folder
lies inside a real Samba share (tests/samba_support.py): the WinRM host reads the frozen files
through the SMB3 RemoteFiles its ``smb:`` settings build, counted by ``wsman_backup.CountingFiles``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from lab_support import add_vm, make_host  # noqa: E402
from samba_support import SambaServer  # noqa: E402
from wsman_backup import CountingFiles, LabBackupBackend  # noqa: E402
from wsman_server import PASSWORD_ENV, WSManServer, make_winrm_host  # noqa: E402

from hvtui.config import SecretSource, SmbSettings  # noqa: E402
from hvtui.engine.backup import run_backup  # noqa: E402
from hvtui.engine.repository import Repository  # noqa: E402
from hvtui.engine.restore import restore_to_directory  # noqa: E402
from hvtui.errors import HostError  # noqa: E402
from hvtui.hosts.lab.disk import read_logical  # noqa: E402
from hvtui.hosts.lab.host import LabHost  # noqa: E402
from hvtui.hosts.lab.state import RCT_DIR  # noqa: E402
from hvtui.hosts.smb import SmbRemoteFiles  # noqa: E402
from hvtui.hosts.winrm.backup import rel_path_for  # noqa: E402

MiB = 1 << 20
FIXED = 4 * MiB  # VHDX header section, log, metadata and BAT: re-read by every incremental
SMB_PASSWORD_ENV = "HVTUI_TEST_SMB_PASSWORD"


class Rig:
    """A lab host inside the Samba share, served over WinRM; a WinRM host whose D:\\ is the share."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, samba: SambaServer, vm_name: str = "vm1") -> None:
        self.lab: LabHost = make_host(samba.folder, "lab-t1")
        self.vm_id = add_vm(self.lab, name=vm_name, blocks=24)
        self.backend = LabBackupBackend(self.lab, samba.folder)
        self.server = WSManServer(self.backend).start()
        self.samba = samba
        monkeypatch.setenv(PASSWORD_ENV, self.server.password)
        monkeypatch.setenv(SMB_PASSWORD_ENV, samba.password)
        smb = SmbSettings(
            shares=(("D:\\", samba.unc()),),
            port=samba.port,
            username=samba.username,
            password=SecretSource(env=SMB_PASSWORD_ENV),
            timeout=5.0,
        )
        self.host = make_winrm_host(self.server.port, "hv-test", long_timeout=30.0, timeout=30.0, smb=smb)
        smb_files = self.host.files()  # what the host's config builds: SMB3 through the smb: settings
        assert isinstance(smb_files, SmbRemoteFiles)
        self.share = CountingFiles(smb_files)
        self.host.remote_files = self.share
        self.repo = Repository.open(tmp_path / "repo", create=True)
        self.tmp_path = tmp_path

    def close(self) -> None:
        self.host.close()
        self.server.stop()

    def recovery(self) -> list[str]:
        return [cp.name for cp in self.lab.vm(self.vm_id).checkpoints if cp.type == "Recovery"]

    def disk_path(self) -> Path:
        return Path(self.lab.vm(self.vm_id).disks[0].path)

    def restored_disk(self, point_id: str, name: str) -> Path:
        out = self.tmp_path / f"out-{point_id}"
        restore_to_directory(self.repo, point_id, out)
        return out / name


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, samba_server: SambaServer):  # noqa: ANN201
    r = Rig(tmp_path, monkeypatch, samba_server)
    yield r
    r.close()


def test_full_then_incremental_read_through_the_data_path_restore_the_guest_content(rig: Rig) -> None:
    before = read_logical(rig.disk_path())
    full = run_backup(rig.repo, rig.host, rig.vm_id, "full")
    assert full.mode == "full" and rig.recovery() == []  # the checkpoint became a reference point
    assert rig.share.bytes_read >= full.read_bytes > 0
    assert read_logical(rig.restored_disk(full.point_id, "vm1.vhdx")) == before
    ops = [c.op for c in rig.server.commands]
    assert ops.count("backup.begin") == 1 and ops.count("backup.end") == 1
    assert rig.backend.faults.end_calls[-1]["outcome"] == "success"
    manifest = rig.repo.load_point(full.point_id)
    assert manifest.vm_config["kind"] == "winrm"
    disk_entry = next(f for f in manifest.files if f.path == "vm1.vhdx")
    assert disk_entry.change_id and not disk_entry.change_id.startswith("pending:")  # the RCT id backup.end named

    changed = 0
    for block in (2, 11):
        rig.lab.write_guest_data(rig.vm_id, 0, block * MiB, bytes([block]) * MiB)
        changed += MiB
    after = read_logical(rig.disk_path())
    read_before = rig.share.bytes_read
    inc = run_backup(rig.repo, rig.host, rig.vm_id, "incremental")
    over_share = rig.share.bytes_read - read_before
    assert inc.mode == "incremental" and inc.whole_reads == [] and inc.files_changed_ranges >= 1
    assert [c.op for c in rig.server.commands].count("backup.changes") >= 1
    config_bytes = sum(f.size for f in rig.repo.load_point(inc.point_id).files if not f.path.endswith("vhdx"))
    # Parsing the frozen VHDX (headers, BAT) goes through the share too: all of it is counted.
    assert over_share <= 2 * changed + FIXED + config_bytes, (over_share, changed)
    assert over_share < full.read_bytes / 3
    assert read_logical(rig.restored_disk(inc.point_id, "vm1.vhdx")) == after
    assert rig.recovery() == []


def test_reference_points_no_later_backup_needs_are_retired(rig: Rig) -> None:
    first = run_backup(rig.repo, rig.host, rig.vm_id, "full")
    run_backup(rig.repo, rig.host, rig.vm_id, "incremental")
    assert rig.backend.faults.retired == []  # the first point's reference point: the parent of the second
    run_backup(rig.repo, rig.host, rig.vm_id, "incremental")
    assert first.point_id
    assert rig.backend.faults.retired == [f"rp-{rig.backend.faults.end_calls[0]['checkpoint_id']}"]
    assert [p["id"] for p in rig.backend.reference_points[rig.vm_id]] == [
        f"rp-{call['checkpoint_id']}" for call in rig.backend.faults.end_calls[1:]
    ]


def test_an_invalid_rct_id_reads_the_disk_whole_and_says_why(rig: Rig) -> None:
    run_backup(rig.repo, rig.host, rig.vm_id, "full")
    rig.lab.write_guest_data(rig.vm_id, 0, 3 * MiB, b"\x05" * 4096)
    for log in (rig.lab.root / RCT_DIR).iterdir():
        log.unlink()  # the host forgot its change tracking (a re-imported VM)
    after = read_logical(rig.disk_path())
    inc = run_backup(rig.repo, rig.host, rig.vm_id, "incremental")
    assert [w.split(": ")[:2] for w in inc.whole_reads] == [["vm1.vhdx", "rct-invalid"]]
    assert read_logical(rig.restored_disk(inc.point_id, "vm1.vhdx")) == after


def test_the_share_going_away_mid_backup_fails_cleanly(rig: Rig) -> None:
    run_backup(rig.repo, rig.host, rig.vm_id, "full")
    points = rig.repo.point_ids()
    rig.lab.write_guest_data(rig.vm_id, 0, 0, b"\x01" * MiB)
    start = rig.share.bytes_read

    def stop_samba(total: int) -> None:
        if total - start >= 2 * MiB and rig.samba.process is not None and rig.samba.process.poll() is None:
            rig.samba.stop()  # smbd goes away in the middle of the reads

    rig.share.on_read = stop_samba
    with pytest.raises(HostError) as caught:
        run_backup(rig.repo, rig.host, rig.vm_id, "full")
    assert caught.value.kind == "smb-lost", caught.value
    assert rig.backend.faults.end_calls[-1]["outcome"] == "failed"  # the checkpoint was released
    assert rig.recovery() == []
    assert rig.repo.point_ids() == points  # no partial point
    rig.share.on_read = None
    rig.samba.start()
    again = run_backup(rig.repo, rig.host, rig.vm_id, "incremental")  # the repository took no harm
    assert again.mode == "incremental"


def _fail_at_first_read(rig: Rig) -> None:
    def fail(_total: int) -> None:
        raise HostError("hv-test", "smb read", "the share went away", kind="smb-lost")

    rig.share.on_read = fail


def test_backup_end_failing_once_is_retried(rig: Rig) -> None:
    _fail_at_first_read(rig)
    rig.backend.faults.end_failures = 1
    with pytest.raises(HostError):
        run_backup(rig.repo, rig.host, rig.vm_id, "full")
    assert [c["outcome"] for c in rig.backend.faults.end_calls] == ["failed", "failed"]
    assert rig.recovery() == []


def test_backup_end_failing_twice_leaves_a_named_leftover(rig: Rig) -> None:
    _fail_at_first_read(rig)
    rig.backend.faults.end_failures = 2
    with pytest.raises(HostError) as caught:
        run_backup(rig.repo, rig.host, rig.vm_id, "full")
    assert "removing the backup checkpoint failed too" in str(caught.value)
    assert "the next backup of the VM removes it" in str(caught.value)
    (leftover,) = rig.recovery()
    assert leftover.startswith("hvtui backup ")


def test_application_consistency_is_demanded_or_falls_back_with_a_warning(rig: Rig) -> None:
    rig.backend.faults.consistency_fails = True
    result = run_backup(rig.repo, rig.host, rig.vm_id, "full")
    assert any("crash-consistent" in w for w in result.warnings)
    assert rig.server.commands_for("backup.begin")[-1].arguments["consistency"] == "prefer-application"
    with pytest.raises(HostError) as caught:
        run_backup(rig.repo, rig.host, rig.vm_id, "full", consistency="application")
    assert caught.value.kind == "consistency"
    assert rig.recovery() == []


def test_hostile_vm_and_path_names_travel_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, samba_server: SambaServer) -> None:
    name = "o'brien `$(x)` \u2018smart\u2019 \u201cq\u201d"
    r = Rig(tmp_path, monkeypatch, samba_server, vm_name=name)
    try:
        result = run_backup(r.repo, r.host, r.vm_id, "full")
        assert result.vm_name == name
        config = r.repo.load_point(result.point_id).vm_config
        assert config["vm"]["name"] == name
        # The lab names the VM's folder after it: its files' host paths carry the name too.
        assert all(name in f["path"] for f in config["files"] if f["role"] == "disk")
        assert r.recovery() == []
        r.lab.write_guest_data(r.vm_id, 0, 5 * MiB, b"\x03" * 65536)
        after = read_logical(r.disk_path())
        inc = run_backup(r.repo, r.host, r.vm_id, "incremental")
        assert inc.whole_reads == [] and read_logical(r.restored_disk(inc.point_id, Path(r.disk_path()).name)) == after
        (disk_path,) = {c.arguments["disk_path"] for c in r.server.commands_for("backup.changes")}
        assert name in disk_path and disk_path == next(f["path"] for f in config["files"] if f["role"] == "disk")
    finally:
        r.close()


@pytest.mark.parametrize(
    ("path", "folder", "rel"),
    [
        ("D:\\VMs\\sql01\\sql01.vhdx", "D:\\VMs\\sql01", "sql01.vhdx"),
        ("d:\\vms\\SQL01\\Virtual Machines\\A.vmcx", "D:\\VMs\\sql01", "Virtual Machines/A.vmcx"),
        ("E:\\Disks\\data.vhdx", "D:\\VMs\\sql01", "volumes/E/Disks/data.vhdx"),
        ("D:\\VMs\\sql01b\\x.vhdx", "D:\\VMs\\sql01", "volumes/D/VMs/sql01b/x.vhdx"),
    ],
)
def test_restore_point_paths_of_host_files(path: str, folder: str, rel: str) -> None:
    assert rel_path_for(path, folder) == rel


def test_a_cancelled_backup_releases_its_checkpoint(rig: Rig) -> None:
    from hvtui.errors import Cancelled
    from hvtui.events import CancelToken

    cancel = CancelToken()

    def cancel_mid_read(total: int) -> None:
        if total >= 2 * MiB:
            cancel.cancel()

    rig.share.on_read = cancel_mid_read
    with pytest.raises(Cancelled):
        run_backup(rig.repo, rig.host, rig.vm_id, "full", cancel=cancel)
    assert [c["outcome"] for c in rig.backend.faults.end_calls] == ["failed"]
    assert rig.recovery() == [] and rig.repo.point_ids() == []
