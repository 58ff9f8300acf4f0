"""A failed restore to a WinRM host leaves no staging folder behind: the files it wrote are
removed over SMB3 (real Samba), then the emptied ``<restore_dir>\\hvtui-restore-<id>`` folder;
a folder that holds something the restore did not write stays, with a warning naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
from lab_support import add_vm
from test_winrm_restore import Rig, rig  # noqa: F401 - the fixture
from wsman_restore import failure

from hvtui.engine.backup import run_backup
from hvtui.engine.restore import restore_to_host
from hvtui.errors import HostError

INCOMPATIBLE = "Cannot import the restored VM: The processor of this host is not compatible (message 24004)"


def restore_root(rig: Rig) -> Path:  # noqa: F811 - the fixture, passed on
    return rig.target_lab.root / "hvtui-restore"


def test_a_failed_restore_removes_its_emptied_staging_folder_over_smb(
    rig: Rig, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    vm_id = add_vm(rig.source, "web01", blocks=3)
    point = run_backup(rig.repo, rig.source, vm_id, "full").point_id
    staged: list[Path] = []

    def import_fails(args: dict) -> dict:
        folder = rig.ops.local(args["folder"])
        assert folder is not None
        staged.append(folder)
        assert any(folder.iterdir())  # the files were written there over SMB
        return failure("incompatible", INCOMPATIBLE)

    monkeypatch.setattr(rig.ops, "import_", import_fails)
    with pytest.raises(HostError) as info:
        restore_to_host(rig.repo, point, rig.winrm, "new", new_name="copy")
    assert info.value.kind == "incompatible"
    (folder,) = staged
    assert folder.name.startswith("hvtui-restore-") and not folder.exists()
    assert restore_root(rig).is_dir() and list(restore_root(rig).iterdir()) == []  # restore_dir itself stays


def test_a_staging_folder_holding_something_else_stays_with_a_warning_naming_it(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    vm_id = add_vm(rig.source, "web01", blocks=3)
    point = run_backup(rig.repo, rig.source, vm_id, "full").point_id
    staged: list[Path] = []

    def someone_writes_then_import_fails(args: dict) -> dict:
        folder = rig.ops.local(args["folder"])
        assert folder is not None
        staged.append(folder)
        (folder / "admin-notes.txt").write_text("not hvtui's")  # a file the restore did not write
        return failure("incompatible", INCOMPATIBLE)

    monkeypatch.setattr(rig.ops, "import_", someone_writes_then_import_fails)
    with pytest.raises(HostError):
        restore_to_host(rig.repo, point, rig.winrm, "new", new_name="copy")
    (folder,) = staged
    assert [p.name for p in folder.iterdir()] == ["admin-notes.txt"]  # the restore's own files are gone
    assert (folder / "admin-notes.txt").read_text() == "not hvtui's"
    warnings = [r.getMessage() for r in caplog.records if "staging folder" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert folder.name in warnings[0] and "not empty" in warnings[0] and "admin-notes.txt" in warnings[0]
