"""What the WinRM restore and round-trip rigs share: a lab host's folder inside the real Samba
share as the WinRM host's ``D:\\`` (its ``smb:`` settings), the loopback WS-Management server and
the repository, and the checks on restored disks (their bytes, qemu-img)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from samba_support import SambaServer
from wsman_server import PASSWORD_ENV, WSManServer

from hvtui.config import SecretSource, SmbSettings
from hvtui.engine.repository import Repository
from hvtui.engine.restore import restore_to_directory
from hvtui.hosts.winrm.host import WinRMHost

MiB = 1 << 20
SMB_PASSWORD_ENV = "HVTUI_TEST_SMB_PASSWORD"


def disk_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix in (".vhdx", ".avhdx")}


def qemu_check(path: Path) -> None:
    assert shutil.which("qemu-img"), "qemu-img is needed (.ci/run installs qemu-utils)"
    subprocess.run(["qemu-img", "check", str(path)], check=True, capture_output=True)


def share_settings(samba: SambaServer, folder: str, monkeypatch: pytest.MonkeyPatch) -> SmbSettings:
    """The WinRM host's ``smb:`` block: its ``D:\\`` is ``folder`` of the Samba share (encryption
    required, the password from the environment)."""
    monkeypatch.setenv(SMB_PASSWORD_ENV, samba.password)
    return SmbSettings(
        shares=(("D:\\", samba.unc(folder)),),
        port=samba.port,
        username=samba.username,
        password=SecretSource(env=SMB_PASSWORD_ENV),
        timeout=5.0,
    )


class WinRMRig:
    """The loopback WS-Management server (started) and a repository; a rig adds its hosts."""

    winrm: WinRMHost  # the host talking to ``server``, set by the rig

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: WSManServer) -> None:
        self.server = server.start()
        monkeypatch.setenv(PASSWORD_ENV, self.server.password)
        self.repo = Repository.open(tmp_path / "repo", create=True)
        self.tmp = tmp_path

    def close(self) -> None:
        self.winrm.close()
        self.server.stop()

    def expected(self, point: str) -> dict[str, bytes]:
        """The point's disk files as a plain folder restore gives them (no flattening)."""
        out = self.tmp / f"expected-{point}"
        restore_to_directory(self.repo, point, out)
        return disk_files(out)
