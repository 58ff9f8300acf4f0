"""Shared fixtures: every test runs with its own XDG config/data/state directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from hvtui.paths import Paths


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Paths:
    root = tmp_path_factory.mktemp("xdg")
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"), ("XDG_STATE_HOME", "state")):
        (root / sub).mkdir()
        monkeypatch.setenv(var, str(root / sub))
    monkeypatch.delenv("HVTUI_CONFIG", raising=False)
    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")
    return Paths.default()


@pytest.fixture
def paths(isolated_dirs: Paths) -> Paths:
    return isolated_dirs


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
