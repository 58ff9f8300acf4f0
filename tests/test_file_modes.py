"""Owner-only files (repositories, restored disks, the log) and configs others could change.

Run with a permissive umask (0) so that only the modes hvtui asks for decide.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from hvtui.config import load_config
from hvtui.config.load import MAX_CONFIG_BYTES
from hvtui.engine.backup import run_backup
from hvtui.engine.repository import Repository
from hvtui.engine.restore import restore_to_directory
from hvtui.errors import ConfigError
from hvtui.logsetup import setup_logging
from hvtui.paths import Paths

sys.path.insert(0, str(Path(__file__).parent))
from engine_support import DirHost  # noqa: E402

MiB = 1024 * 1024
DISK = "Virtual Hard Disks/web01.vhdx"


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _others_can_read(path: Path) -> bool:
    return bool(path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH | stat.S_IWGRP | stat.S_IWOTH))


@pytest.mark.parametrize("version", [1, 2])  # chunk files; packs and index files (the default)
def test_repository_files_and_restored_disks_are_owner_only(tmp_path: Path, open_umask: None, version: int) -> None:
    host = DirHost(tmp_path / "host")
    host.add_vm("vm1", "web01")
    host.create_disk("vm1", DISK, 2 * MiB, seed=3, data_mib=1)
    repo = Repository.open(tmp_path / "repo", create=True, chunk_size=64 * 1024, version=version)
    point = run_backup(repo, host, "vm1", "full").point_id

    chunk_files = [p for sub in ("chunks", "packs", "index") for p in (repo.root / sub).rglob("*") if p.is_file()]
    assert {p.relative_to(repo.root).parts[0] for p in chunk_files} == ({"chunks"} if version == 1 else {"packs", "index"})
    for path in [*chunk_files, repo.point_path(point)]:
        assert not _others_can_read(path), f"{path} is {oct(path.stat().st_mode)}"
    for directory in {p.parent for p in chunk_files}:
        assert not _others_can_read(directory), f"{directory} is {oct(directory.stat().st_mode)}"

    out = tmp_path / "out" / "restored"
    restore_to_directory(repo, point, out)
    restored = [p for p in out.rglob("*")]
    assert any(p.is_file() for p in restored)
    for path in [out, *restored]:
        assert not _others_can_read(path), f"{path} is {oct(path.stat().st_mode)}"


def test_the_log_file_is_owner_only(tmp_path: Path, open_umask: None) -> None:
    paths = Paths(config_dir=tmp_path / "c", data_dir=tmp_path / "d", state_dir=tmp_path / "s")
    setup_logging(paths, "info")
    try:
        logging.getLogger("hvtui.test").warning("something about host hv01")
        assert paths.log_file.exists()
        assert not _others_can_read(paths.log_file), oct(paths.log_file.stat().st_mode)
    finally:
        setup_logging(Paths(config_dir=tmp_path / "c2", data_dir=tmp_path / "d2", state_dir=tmp_path / "s2"), "info")


COMMAND_HOST = """
hosts:
  - name: hv01
    kind: winrm
    address: hv01.corp.example
    username: 'CORP\\\\svc'
    password_command: pass show hv01
"""
ENV_HOST = COMMAND_HOST.replace("password_command: pass show hv01", "password_env: HV01_PASSWORD")


def _config(tmp_path: Path, text: str, mode: int) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.mark.parametrize(("mode", "why"), [(0o666, "writable by others"), (0o620, "writable by its group")])
def test_a_config_others_can_change_is_refused_when_it_runs_a_command(tmp_path: Path, mode: int, why: str) -> None:
    path = _config(tmp_path, COMMAND_HOST, mode)
    with pytest.raises(ConfigError, match=why) as info:
        load_config(path, Paths(tmp_path / "c", tmp_path / "d", tmp_path / "s"))
    message = str(info.value)
    assert "password_command" in message and "'hv01'" in message and "chmod go-w" in message
    assert "pass show" not in message  # the command itself is not repeated
    path.chmod(0o600)
    assert load_config(path, Paths(tmp_path / "c", tmp_path / "d", tmp_path / "s")).hosts[0].name == "hv01"
    # a config without a command is not affected by its mode
    other = _config(tmp_path, ENV_HOST, 0o666)
    assert load_config(other, Paths(tmp_path / "c", tmp_path / "d", tmp_path / "s")).hosts[0].name == "hv01"


@pytest.mark.skipif(os.getuid() != 0, reason="giving a file to another user needs root")
def test_a_config_owned_by_another_user_is_refused_when_it_runs_a_command(tmp_path: Path) -> None:
    path = _config(tmp_path, COMMAND_HOST, 0o644)
    os.chown(path, 4242, -1)
    with pytest.raises(ConfigError, match="owned by another user"):
        load_config(path, Paths(tmp_path / "c", tmp_path / "d", tmp_path / "s"))


def test_an_oversized_config_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    line = "# " + "x" * 78 + "\n"
    path = tmp_path / "config.yaml"
    path.write_text("hosts:\n" + line * (MAX_CONFIG_BYTES // len(line) + 1), encoding="utf-8")
    with pytest.raises(ConfigError, match="more than the 1048576 bytes a config may be"):
        load_config(path, Paths(tmp_path / "c", tmp_path / "d", tmp_path / "s"))


@pytest.mark.parametrize("version", [1, 2])  # format 2 (the default) adds packs/ and index/
def test_repository_root_and_its_folders_and_lock_files_are_owner_only(tmp_path: Path, open_umask: None, version: int) -> None:
    # They were 0755 (and the lock files 0644): anyone on the jump box could list the points,
    # whose names say which VMs are backed up and when.
    host = DirHost(tmp_path / "host")
    host.add_vm("vm1", "web01")
    host.create_disk("vm1", DISK, 2 * MiB, seed=3, data_mib=1)
    root = tmp_path / "backups" / "repo"
    repo = Repository.open(root, create=True, chunk_size=64 * 1024, version=version)
    run_backup(repo, host, "vm1", "full")
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.iterdir()]}
    for sub in ("chunks", "points", "verified", "locks", "tmp", *(("packs", "index") if version == 2 else ())):
        assert modes.pop(f"backups/repo/{sub}") == 0o700, sub
    assert modes.pop("backups/repo") == 0o700
    assert modes.pop("backups/repo/config.json") == 0o600
    assert modes == {}
    lock_files = sorted((root / "locks").iterdir())
    assert [p.name for p in lock_files if p.name == "repo.lock"] == ["repo.lock"] and len(lock_files) >= 2  # + the VM's
    for path in lock_files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name

    # A folder that lost one of its folders gets it back owner-only when opened.
    (root / "verified").rmdir()
    Repository.open(root)
    assert stat.S_IMODE((root / "verified").stat().st_mode) == 0o700
