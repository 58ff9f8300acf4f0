"""A differential (or incremental) asked for with no point to build on: the backup is a full,
and says why on the terminal, in --json `warnings`, in the job's message; `hvtui jobs` lists
the mode that was made; the console's dialog offers only "full" then."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from textual.app import App

sys.path.insert(0, str(Path(__file__).parent))
from lab_support import add_vm, make_host  # noqa: E402

from hvtui.cli import main  # noqa: E402
from hvtui.tui.screens.backup_dialog import BackupDialog, BackupTarget  # noqa: E402
from hvtui.tui.widgets.choice import ChoiceButton  # noqa: E402

HOST = "lab-t1"


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"hosts:\n  - name: {HOST}\n    kind: lab\n"
        f"repositories:\n  - name: default\n    path: {tmp_path / 'repo'}\n    default: true\n"
        f"lab:\n  dir: {tmp_path}\n"
    )
    return config


def test_a_differential_without_a_full_point_says_why_and_records_a_full(
    tmp_path: Path, paths, capsys: pytest.CaptureFixture[str]
) -> None:
    host = make_host(tmp_path, HOST)
    add_vm(host, name="vm1", blocks=4)
    config = write_config(tmp_path)

    assert main(["--config", str(config), "backup", "vm1", "--mode", "differential", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["mode"], doc["requested_mode"]) == ("full", "differential")
    (warning,) = doc["warnings"]
    assert "differential asked for" in warning and "no full restore point" in warning and "vm1" in warning

    assert main(["--config", str(config), "jobs", "--json"]) == 0
    (job,) = json.loads(capsys.readouterr().out)
    assert job["mode"] == "full"  # what was made, not what was asked

    # On the terminal: the same reason, as a warning line.
    assert main(["--config", str(config), "backup", "vm1", "--mode", "differential"]) == 0
    out = capsys.readouterr().out
    assert "differential restore point" in out and "warning:" not in out  # now there is a full to build on


def test_the_terminal_says_why_a_differential_became_a_full(tmp_path: Path, paths, capsys: pytest.CaptureFixture[str]) -> None:
    host = make_host(tmp_path, HOST)
    add_vm(host, name="vm1", blocks=4)
    config = write_config(tmp_path)
    assert main(["--config", str(config), "backup", "vm1", "--mode", "differential"]) == 0
    out = capsys.readouterr().out
    assert "full restore point" in out
    assert "warning: differential asked for, but there is no full restore point of this VM in repository default" in out


def test_an_automatic_first_backup_is_a_full_without_a_warning(tmp_path: Path, paths, capsys: pytest.CaptureFixture[str]) -> None:
    host = make_host(tmp_path, HOST)
    add_vm(host, name="vm1", blocks=4)
    config = write_config(tmp_path)
    assert main(["--config", str(config), "backup", "vm1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["mode"] == "full" and doc["warnings"] == []


class DialogApp(App):
    def __init__(self, dialog: BackupDialog) -> None:
        super().__init__()
        self.dialog = dialog

    def on_mount(self) -> None:
        self.push_screen(self.dialog)


@pytest.mark.parametrize(("points", "enabled"), [(frozenset(), ["full"]), (frozenset({"default"}), ["full", "incremental", "differential"])])
async def test_the_backup_dialog_offers_only_full_when_there_is_no_point(points: frozenset, enabled: list[str]) -> None:
    dialog = BackupDialog([BackupTarget(HOST, "id-1", "vm1", points)], ["default"], "default")
    app = DialogApp(dialog)
    async with app.run_test() as pilot:
        await pilot.pause()
        buttons = {b.id.removeprefix("mode-"): b for b in dialog.query(ChoiceButton)}
        assert [mode for mode, b in buttons.items() if not b.disabled] == enabled
        assert dialog.request.mode == ("full" if not points else "incremental")


def test_a_second_backup_of_a_vm_is_refused_naming_the_vm_not_its_id(
    tmp_path: Path, paths, capsys: pytest.CaptureFixture[str]
) -> None:
    """Everywhere a person reads it the VM has its name; its id stays in --json's fields."""
    from hvtui.engine.locks import VMLock

    host = make_host(tmp_path, HOST)
    vm_id = add_vm(host, name="vm1", blocks=4)
    config = write_config(tmp_path)
    assert main(["--config", str(config), "backup", "vm1", "--json"]) == 0  # the repository exists now
    capsys.readouterr()
    held = VMLock(tmp_path / "repo", HOST, vm_id).acquire()  # a backup of vm1 running elsewhere
    try:
        assert main(["--config", str(config), "backup", "vm1"]) == 1
        err = capsys.readouterr().err
        assert f"a backup of VM vm1 on {HOST} into this repository is already running" in err
        assert vm_id not in err
    finally:
        held.release()
