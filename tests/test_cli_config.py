"""`hvtui config schema` and `hvtui config check [PATH]`: checking a file starts nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hvtui.cli import main
from hvtui.errors import EXIT_OK, EXIT_USAGE
from hvtui.paths import Paths

BAD = "hosts:\n  - {name: a, kind: lab, port: 5}\n  - {name: b, kind: lan}\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_schema_prints_the_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "config", "schema")
    assert code == EXIT_OK
    schema = json.loads(out)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert "WinRMHostModel" in schema["$defs"]


def test_schema_does_not_depend_on_the_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    code, out, err = run(capsys, "--config", str(bad), "config", "schema")
    assert "ConfigModel" in json.loads(out)["$defs"]
    assert code == EXIT_OK and err == ""


def test_check_valid_file(capsys: pytest.CaptureFixture[str], repo_root: Path, paths: Paths) -> None:
    example = repo_root / "config.example.yaml"
    code, out, _err = run(capsys, "config", "check", str(example))
    assert code == EXIT_OK
    assert out.strip() == f"ok: {example} (given as PATH): 5 hosts (1 lab, 4 winrm), 4 repositories"
    assert not paths.lab_dir.exists()  # nothing was built


def test_check_lists_every_mistake(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    code, out, err = run(capsys, "config", "check", str(bad))
    assert code == EXIT_USAGE and out == ""
    lines = err.splitlines()
    assert lines == [
        f"checked: {bad} (given as PATH)",
        f"{bad}: 2 errors",
        f"{bad}:2: hosts[0].port: only valid for kind: winrm",
        f"{bad}:3: hosts[1].kind: expected a host kind (lab, winrm), found 'lan'; did you mean 'lab'?",
    ]

    # --config names the file as for every other command.
    code, _out, err = run(capsys, "--config", str(bad), "config", "check")
    assert code == EXIT_USAGE and err.splitlines()[0] == f"checked: {bad} (given with --config)"


def test_check_without_path_uses_the_file_hvtui_would_use(capsys: pytest.CaptureFixture[str], paths: Paths) -> None:
    code, out, _err = run(capsys, "config", "check")
    assert code == EXIT_OK and out.startswith("no config file found") and "built-in demo lab" in out
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    (paths.config_dir / "config.yaml").write_text("hosts:\n  - {name: a, kind: lab}\n")
    code, out, _err = run(capsys, "config", "check")
    assert code == EXIT_OK
    assert out.strip() == f"ok: {paths.config_dir / 'config.yaml'} (in the user config directory): 1 host (1 lab), 1 repository"
    assert not paths.lab_dir.exists()


def test_check_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _out, err = run(capsys, "config", "check", str(tmp_path / "nope.yaml"))
    assert code == EXIT_USAGE and "config file not found" in err


def test_check_in_a_real_process(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    env = {**os.environ, "HVTUI_CONFIG": str(bad)}
    result = subprocess.run(
        [sys.executable, "-m", "hvtui", "config", "check"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert result.returncode == EXIT_USAGE
    assert f"checked: {bad} (named by $HVTUI_CONFIG)" in result.stderr
    assert f"{bad}:3: hosts[1].kind" in result.stderr and "Traceback" not in result.stderr
