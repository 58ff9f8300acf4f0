"""A new repository is format 2 unless asked otherwise: `hvtui repo init` without --format, the first
backup into a configured folder that holds no repository yet (CLI and console), and `format: 1` /
`--format 1` still giving format 1; `repo list` and the console's `:repos` say which is which."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_tui_jobs import ready, wait_job, wait_until
from tui_support import make_app, make_core, screen_text, settle

from hvtui.clock import FixedClock
from hvtui.config import Config, RepositoryConfig
from hvtui.engine.packstore import PackStore
from hvtui.engine.repository import Repository
from hvtui.engine.store import ChunkStore
from hvtui.paths import Paths
from hvtui.tui.screens.repositories import RepositoriesScreen

sys.path.insert(0, str(Path(__file__).parent))
from test_backup_integrity import backup, estate, hvtui  # noqa: E402, F401 - estate is a fixture


def _store_of(root: Path) -> tuple[int, type]:
    """(the version config.json records, the store the engine picked for it)."""
    repo = Repository.open(root)
    return json.loads((root / "config.json").read_text())["version"], type(repo.store)


@pytest.mark.parametrize(("estate", "expected"), [(None, (2, PackStore)), (1, (1, ChunkStore))], indirect=["estate"])
def test_the_first_backup_creates_a_configured_repository_in_format_2_unless_the_entry_says_1(
    estate: dict, capsys: pytest.CaptureFixture[str], expected: tuple[int, type]  # noqa: F811
) -> None:
    assert not estate["repo"].exists()
    first = backup(estate, capsys)
    assert first["mode"] == "full"
    assert _store_of(estate["repo"]) == expected
    assert (estate["repo"] / "packs").is_dir() is (expected[0] == 2)
    code, out, err = hvtui(estate, capsys, "repo", "info", "main", "--json")
    assert code == 0, err
    assert (json.loads(out)["format"], json.loads(out)["points"]) == (expected[0], 1)


def test_repo_init_without_a_format_makes_format_2_and_format_1_only_when_asked(
    estate: dict, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    config = estate["config"]
    root = config.parent
    config.write_text(
        config.read_text()
        + f"""  - name: old
    path: {root / "old"}
    format: 1
  - name: asked
    path: {root / "asked"}
"""
    )
    made = {}
    for name, extra in (("main", ()), ("old", ()), ("asked", ("--format", "1"))):
        code, out, err = hvtui(estate, capsys, "repo", "init", name, *extra, "--json")
        assert code == 0, err
        made[name] = json.loads(out)["format"]
    assert made == {"main": 2, "old": 1, "asked": 1}
    assert _store_of(root / "repo") == (2, PackStore)
    assert _store_of(root / "old") == (1, ChunkStore) and not (root / "old" / "packs").exists()
    assert _store_of(root / "asked") == (1, ChunkStore)

    code, out, err = hvtui(estate, capsys, "repo", "list", "--json")
    assert code == 0, err
    assert [(r["name"], r["format"]) for r in json.loads(out)["repositories"]] == [("main", 2), ("old", 1), ("asked", 1)]
    code, out, _ = hvtui(estate, capsys, "repo", "list")
    assert code == 0 and "format 2, packs of 32 MiB" in out
    assert "format 1 (`hvtui repo migrate old` converts it to format 2)" in out


def test_the_init_help_says_format_2_is_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    from hvtui.cli import main

    assert main(["repo", "init", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "default: the entry's format:, else 2" in text and "1: one file per chunk" in text


async def test_the_consoles_first_backup_creates_format_2_and_repos_shows_each_format(
    fresh_demo_lab: Path, paths: Paths, tmp_path: Path
) -> None:
    main = RepositoryConfig(name="main", path=tmp_path / "main", default=True)  # no format: the default
    old = RepositoryConfig(name="old", path=tmp_path / "old", format=1)
    config = dataclasses.replace(Config.lab_default(paths), repositories=(main, old))
    core = make_core(fresh_demo_lab, paths, clock=FixedClock(), config=config)
    core.backups.progress_interval = 0
    vm = next(vm for vm in core.inventory.refresh().vms if vm.name == "test01")
    app = make_app(core)
    try:
        async with app.run_test(size=(160, 40)) as pilot:
            await ready(pilot)
            for repository in ("main", "old"):  # what the console's backup dialog submits
                job = core.jobs.submit_backup(vm.host, vm.id, "full", repository=repository, vm_name=vm.name)
                done = await wait_job(core, job.id)
                assert done.summary is not None and done.summary.get("point_id"), done.error
            assert _store_of(tmp_path / "main") == (2, PackStore)
            assert _store_of(tmp_path / "old") == (1, ChunkStore)

            await pilot.press("colon", *"repos", "enter")
            assert await wait_until(pilot, lambda: isinstance(app.screen, RepositoriesScreen) and app.screen.loaded)
            await settle(pilot)
            screen = app.screen
            assert isinstance(screen, RepositoriesScreen)
            shown = {name: screen.table.plain_row(name) for name in ("main", "old")}
            assert [(r["name"], r["format"], r["points"]) for r in shown.values()] == [("main (default)", "2", "1"), ("old", "1", "1")]
            assert "main (default)" in screen_text(app)  # the rows read are the ones on screen
    finally:
        core.close()


def test_the_engine_and_the_config_default_to_format_2(tmp_path: Path) -> None:
    assert Repository.open(tmp_path / "engine", create=True).version == 2  # no version asked
    assert Repository.open(tmp_path / "v1", create=True, version=1).version == 1
    from hvtui.config import load_config

    config = tmp_path / "config.yaml"
    config.write_text(f"repositories:\n  - name: a\n    path: {tmp_path / 'a'}\n    default: true\n  - name: b\n    path: {tmp_path / 'b'}\n    format: 1\n")
    assert [(rc.name, rc.format) for rc in load_config(config).repositories] == [("a", 2), ("b", 1)]


def test_a_repository_not_created_yet_says_what_its_first_backup_will_make_it(
    estate: dict, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    config = estate["config"]
    root = config.parent
    config.write_text(config.read_text() + f"  - name: old\n    path: {root / 'old'}\n    format: 1\n")
    code, out, err = hvtui(estate, capsys, "repo", "list", "--json")
    assert code == 0, err
    listed = {r["name"]: (r["state"], r["format"], r["creates_format"]) for r in json.loads(out)["repositories"]}
    assert listed == {"main": ("absent", None, 2), "old": ("absent", None, 1)}  # nothing there yet: no format of its own
    code, out, _ = hvtui(estate, capsys, "repo", "list")
    assert code == 0
    assert "(nothing backed up there yet; the first backup or `hvtui repo init` makes it format 2)" in out
    assert "makes it format 1)" in out


def test_the_repositories_view_shows_the_format_a_new_repository_will_get(tmp_path: Path) -> None:
    from hvtui.backups.catalog import RepositoryInfo
    from hvtui.tui.viewmodel import repository_rows

    def row_format(info: RepositoryInfo) -> str:
        overview = SimpleNamespace(info=info, last_copy=None, copies_to=None)
        return repository_rows._format(overview)  # type: ignore[arg-type]

    base = {"name": "main", "path": tmp_path, "default": True}
    assert row_format(RepositoryInfo(**base, state="absent", creates_format=2)) == "2 (new)"
    assert row_format(RepositoryInfo(**base, state="absent", creates_format=1, creates_encrypted=True)) == "1 (new)"
    assert row_format(RepositoryInfo(**base, state="ok", version=2)) == "2"
