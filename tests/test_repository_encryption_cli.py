"""Encrypted repositories through the CLI and the console: `repo init --encrypt`, the
passphrase from the config's secret sources, `repo key list|add|remove`, `repo info`, the
console's passphrase dialog."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hvtui.backups.repositories import RepositoryList
from hvtui.clock import FixedClock
from hvtui.config import Config, RepositoryConfig, SecretSource
from hvtui.engine import keys
from hvtui.engine.backup import run_backup
from hvtui.engine.repository import Repository
from hvtui.errors import Cancelled, RepositoryError
from hvtui.hosts.lab import disk as vdisk
from hvtui.hosts.lab.host import LabHost
from hvtui.paths import Paths
from hvtui.tui.screens.dialogs import TextDialog

sys.path.insert(0, str(Path(__file__).parent))
from tui_support import SIZE, make_app, make_core, screen_text  # noqa: E402

MiB = 1024 * 1024
PASS = "vault passphrase 1"
MARKER = b"GUEST-WROTE-THIS-MARKER"


def _lab(tmp_path: Path) -> tuple[LabHost, str]:
    host = LabHost.create(tmp_path / "lab" / "lab-a", "lab-a", FixedClock())
    vm_id = host.add_vm("db01", state="Off", disk_sizes=(16 * MiB,), fsync=False)
    host.write_guest_data(vm_id, 0, 3 * MiB, MARKER * 1000 + os.urandom(MiB))
    return host, vm_id


def test_an_encrypted_repository_through_the_cli(tmp_path: Path, paths: Paths) -> None:
    host, vm_id = _lab(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""
hosts:
  - name: lab-a
    kind: lab
repositories:
  - name: vault
    default: true
    path: {tmp_path / "repo"}
    passphrase_env: VAULT_PASS
    retention:
      keep_last: 2
"""
    )
    env = {**os.environ, "VAULT_PASS": PASS}

    def hvtui(*args: str, passphrase: str | None = PASS, new: str | None = None) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "hvtui", "--config", str(config), "--lab-dir", str(tmp_path / "lab"), *args]
        run_env = {k: v for k, v in env.items() if k != "VAULT_PASS"}
        if passphrase is not None:
            run_env["VAULT_PASS"] = passphrase
        if new is not None:
            run_env["NEW_PASS"] = new
        return subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300, env=run_env)

    made = hvtui("repo", "init", "vault", "--json")
    assert made.returncode == 0, made.stderr
    doc = json.loads(made.stdout)
    assert (doc["format"], doc["encrypted"], len(doc["key_slots"])) == (2, True, 1)
    first_slot = doc["key_slots"][0]["slot"]
    assert doc["key_slots"][0]["kdf"] == {"name": "scrypt", "n": 2**17, "r": 8, "p": 1}
    assert hvtui("backup", "db01", "--json").returncode == 0
    host.write_guest_data(vm_id, 0, 8 * MiB, os.urandom(256 * 1024))
    second = hvtui("backup", "db01", "--json")
    assert second.returncode == 0 and json.loads(second.stdout)["mode"] == "incremental"
    for f in (tmp_path / "repo").rglob("*"):
        assert not f.is_file() or MARKER not in f.read_bytes(), f
    assert len(json.loads(hvtui("points", "db01", "--json").stdout)["points"]) == 2
    verified = hvtui("verify", "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"] is True
    sample = json.loads(hvtui("verify", "--read-data", "50", "--json").stdout)
    assert sample["ok"] is True and 0 < sample["chunks_read"] < sample["chunks_checked"]
    out = tmp_path / "out"
    assert hvtui("restore", "db01", "--to", str(out), "--json").returncode == 0
    assert vdisk.read_logical(out / "db01.vhdx", 0, 16 * MiB) == host.read_disk(vm_id, 0, 0, 16 * MiB)

    # A wrong passphrase: one clear line, no traceback, never the passphrase itself.
    wrong = hvtui("points", "db01", passphrase="not the passphrase")
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert "wrong passphrase for repository vault" in wrong.stderr and "not the passphrase" not in wrong.stderr
    info = hvtui("repo", "info", "vault", passphrase="not the passphrase")
    assert info.returncode == 0 and "LOCKED: wrong passphrase" in info.stdout and f"key slot {first_slot}" in info.stdout
    shown = hvtui("repo", "info", "vault")
    assert "encrypted (AES-256-GCM), 1 key slot" in shown.stdout and "2 restore points" in shown.stdout

    # Key slots: add one from an environment variable, remove the first after a confirmation.
    assert hvtui("--read-only", "repo", "key", "add", "vault", "--new-passphrase-env", "NEW_PASS", new="second pass").returncode == 4
    added = hvtui("repo", "key", "add", "vault", "--new-passphrase-env", "NEW_PASS", "--json", new="second passphrase")
    assert added.returncode == 0, added.stderr
    new_slot = json.loads(added.stdout)["slot"]
    listed = json.loads(hvtui("repo", "key", "list", "vault", "--json", passphrase=None).stdout)["key_slots"]
    assert {s["slot"] for s in listed} == {first_slot, new_slot}
    unconfirmed = hvtui("repo", "key", "remove", "vault", first_slot)
    assert unconfirmed.returncode == 4 and "no terminal to ask on" in unconfirmed.stderr
    assert hvtui("--read-only", "repo", "key", "remove", "vault", first_slot, "--yes").returncode == 4
    removed = hvtui("repo", "key", "remove", "vault", first_slot, "--yes", passphrase="second passphrase")
    assert removed.returncode == 0, removed.stderr
    assert hvtui("points", "db01").returncode == 1  # the first passphrase no longer opens it
    assert hvtui("points", "db01", passphrase="second passphrase").returncode == 0
    last = hvtui("repo", "key", "remove", "vault", new_slot, "--yes", passphrase="second passphrase")
    assert last.returncode == 1 and "last usable key" in last.stderr
    audit = [json.loads(line) for line in paths.audit_log.read_text().splitlines()]
    actions = [(a["action"], a["result"]) for a in audit if a["action"].startswith("repo.")]
    assert ("repo.init", "ok") in actions and ("repo.key.add", "ok") in actions and ("repo.key.remove", "ok") in actions
    assert ("repo.key.add", "refused") in actions and ("repo.key.remove", "refused") in actions
    assert ("repo.key.remove", "failed") in actions
    assert PASS not in paths.audit_log.read_text() and "second passphrase" not in paths.audit_log.read_text()

    # No passphrase source and no terminal: init --encrypt is refused before anything is made.
    config.write_text(config.read_text().replace("    passphrase_env: VAULT_PASS\n", ""))
    (tmp_path / "other").mkdir()
    config.write_text(config.read_text() + f"  - name: other\n    path: {tmp_path / 'other'}\n")
    refused = hvtui("repo", "init", "other", "--encrypt")
    assert refused.returncode == 4 and "no terminal to ask on" in refused.stderr
    assert os.listdir(tmp_path / "other") == []
    locked = hvtui("points", "db01", "--repo", "vault")
    assert locked.returncode == 1 and "nobody to ask for its passphrase" in locked.stderr


async def test_the_console_asks_for_the_passphrase_in_a_dialog(tmp_path: Path, paths: Paths, monkeypatch) -> None:
    monkeypatch.setattr(keys, "SCRYPT_N", 1 << 12)
    host, vm_id = _lab(tmp_path)
    repo = Repository.open(tmp_path / "repo", create=True, encrypt=True, passphrase=lambda: PASS)
    point = run_backup(repo, host, vm_id, "full")
    config = dataclasses.replace(
        Config.lab_default(),
        repositories=(RepositoryConfig("vault", tmp_path / "repo", default=True, passphrase=SecretSource(prompt=True)),),
    )
    core = make_core(tmp_path / "lab", paths, config=config)
    app = make_app(core)
    core.secret_prompter = app.prompt_secret  # as run_console does
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(200):  # the refresh worker opens the repository and asks through the dialog
            await pilot.pause(0.02)
            if isinstance(app.screen, TextDialog) and "passphrase of repository vault" in screen_text(app):
                break
        assert isinstance(app.screen, TextDialog), screen_text(app)
        await pilot.press(*PASS)
        await pilot.pause()
        assert PASS not in screen_text(app)  # a password field
        await pilot.press("enter")
        for _ in range(200):
            await pilot.pause(0.02)
            if not isinstance(app.screen, TextDialog):
                break
        assert not isinstance(app.screen, TextDialog)
        done = threading.Event()
        found: list[object] = []

        def ask() -> None:  # from a worker thread, as the console does: unlocked once, not asked again
            found.append(core.backups.latest_point("lab-a", vm_id))
            done.set()

        threading.Thread(target=ask).start()
        for _ in range(200):
            await pilot.pause(0.02)
            if done.is_set():
                break
        assert not isinstance(app.screen, TextDialog)
        assert found and getattr(found[0], "id", None) == point.point_id


def test_a_failed_unlock_is_said_again_without_asking_again(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(keys, "SCRYPT_N", 1 << 12)
    Repository.open(tmp_path / "repo", create=True, encrypt=True, passphrase=lambda: PASS)
    configs = [RepositoryConfig("vault", tmp_path / "repo", default=True, passphrase=SecretSource(prompt=True))]
    asked: list[str] = []

    def answering(answer: str | None):  # noqa: ANN202
        def prompt(text: str) -> str:
            asked.append(text)
            if answer is None:
                raise Cancelled("password prompt cancelled")
            return answer

        return lambda: prompt

    wrong = RepositoryList(configs, tmp_path / "default", prompter=answering("not it"))
    with pytest.raises(keys.WrongPassphrase):
        wrong.open_repository("vault")
    for _ in range(3):  # the console checks every VM's last backup: one dialog, not one per VM
        with pytest.raises(RepositoryError, match=r"wrong passphrase .*\(not asked again until hvtui restarts\)"):
            wrong.open_repository("vault")
    assert asked == ["passphrase of repository vault: "]

    cancelled = RepositoryList(configs, tmp_path / "default", prompter=answering(None))
    with pytest.raises(Cancelled):
        cancelled.open_repository("vault")
    with pytest.raises(RepositoryError, match="the passphrase of repository vault was not given"):
        cancelled.open_repository("vault")
    assert len(asked) == 2

    right = RepositoryList(configs, tmp_path / "default", prompter=answering(PASS))
    assert right.open_repository("vault") is right.open_repository("vault")  # unlocked once, then kept
    assert len(asked) == 3
