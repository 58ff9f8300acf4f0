"""The tree stays ruff-clean: a lint regression fails the suite like any other."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def test_ruff_check_is_clean(repo_root: Path) -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.fail("ruff is not installed: install the [test] extra")
    result = subprocess.run([ruff, "check", "hvtui", "tests", "bench"], cwd=repo_root, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
