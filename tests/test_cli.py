"""The CLI foundation through ``hvtui.cli.main``: --version, info, global options before and
after the subcommand, one-line errors with the right exit codes, logs to the file only."""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from pathlib import Path

import pytest

import hvtui
import hvtui.commands.info
from hvtui.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from hvtui.errors import HvtuiError
from hvtui.logsetup import register_secret
from hvtui.paths import Paths

CONFIG = """\
hosts:
  - name: hv01
    kind: winrm
    address: hv01.corp.example
    username: svc
    password_env: HV01_PASSWORD
    group: prod
  - name: lab-a
    kind: lab
repositories:
  - {name: nas, path: /mnt/nas/hvtui}
  - {name: local, path: /srv/hvtui, default: true}
ui:
  theme: hvtui-light
log_level: warning
"""


# setup_logging changes process-wide state: every test here puts it back.
pytestmark = pytest.mark.usefixtures("restore_logging")


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "hvtui.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--version")
    assert code == EXIT_OK
    assert out.strip() == f"hvtui {hvtui.__version__}"
    assert err == ""


def test_info_without_config_names_the_builtin_lab_and_every_path(capsys: pytest.CaptureFixture[str], paths: Paths) -> None:
    code, out, err = run(capsys, "info")
    assert code == EXIT_OK and err == ""
    assert "none — built-in demo lab" in out
    for path in (paths.lab_dir, paths.data_dir, paths.state_dir, paths.log_file, paths.audit_log, paths.job_journal,
                 paths.default_repository, paths.user_themes_dir):
        assert str(path) in out, path
    assert f"hvtui {hvtui.__version__}" not in out and hvtui.__version__ in out
    assert "Theme:" in out and "hvtui-dark" in out
    assert "Read-only:   no" in out
    assert not paths.lab_dir.exists()  # info never builds the lab or contacts a host


def test_info_json_with_config(capsys: pytest.CaptureFixture[str], paths: Paths, config_file: Path) -> None:
    code, out, _err = run(capsys, "--config", str(config_file), "info", "--json")
    assert code == EXIT_OK
    info = json.loads(out)
    assert info["version"] == hvtui.__version__
    assert info["config_file"] == str(config_file)
    assert info["builtin_lab"] is False
    assert info["hosts"] == [{"name": "hv01", "kind": "winrm", "group": "prod"}, {"name": "lab-a", "kind": "lab", "group": None}]
    assert info["default_repository"] == {"name": "local", "path": "/srv/hvtui"}
    assert [repo["name"] for repo in info["repositories"]] == ["nas", "local"]
    assert info["theme"] == "hvtui-light"
    assert info["log_level"] == "warning"  # from the config
    assert info["log_file"] == str(paths.log_file) and info["audit_log"] == str(paths.audit_log)
    assert info["job_journal"] == str(paths.job_journal) and info["lab_dir"] == str(paths.lab_dir)
    assert info["themes_dirs"]["user"] == str(paths.user_themes_dir)
    assert info["themes_dirs"]["builtin"].endswith("themes")
    assert info["read_only"] is False


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "{cfg}", "--read-only", "--theme", "mono", "--log-level", "debug", "--lab-dir", "{lab}", "info", "--json"],
        ["info", "--json", "--config", "{cfg}", "--read-only", "--theme", "mono", "--log-level", "debug", "--lab-dir", "{lab}"],
        ["--config", "{cfg}", "--theme", "mono", "info", "--read-only", "--json", "--log-level", "debug", "--lab-dir", "{lab}"],
    ],
    ids=["before", "after", "mixed"],
)
def test_global_options_before_and_after_the_subcommand(
    capsys: pytest.CaptureFixture[str], config_file: Path, tmp_path: Path, argv: list[str]
) -> None:
    lab = tmp_path / "my-lab"
    code, out, _err = run(capsys, *(arg.format(cfg=config_file, lab=lab) for arg in argv))
    assert code == EXIT_OK
    info = json.loads(out)
    assert info["config_file"] == str(config_file)
    assert info["read_only"] is True and info["read_only_source"] == "--read-only"
    assert info["theme"] == "mono"
    assert info["log_level"] == "debug"  # --log-level beats the config's warning
    assert info["lab_dir"] == str(lab)


def test_hvtui_config_environment_variable(capsys: pytest.CaptureFixture[str], config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HVTUI_CONFIG", str(config_file))
    code, out, _err = run(capsys, "info", "--json")
    assert code == EXIT_OK and json.loads(out)["config_file"] == str(config_file)


def test_text_info_names_the_config_file_and_read_only(capsys: pytest.CaptureFixture[str], config_file: Path) -> None:
    code, out, _err = run(capsys, "info", "--config", str(config_file), "--read-only")
    assert code == EXIT_OK
    assert f"Config:      {config_file}" in out
    assert "2 configured (1 lab, 1 winrm)" in out
    assert "local: /srv/hvtui (default)" in out and "nas: /mnt/nas/hvtui" in out
    assert "Read-only:   yes (--read-only)" in out


def test_bad_config_exits_2_with_one_line_and_no_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, paths: Paths
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("hosts:\n  - name: hv01\n    kind: winrm\n    address: hv01\n    port: https\n", encoding="utf-8")
    code, out, err = run(capsys, "--config", str(bad), "inventory")
    assert code == EXIT_USAGE
    assert out == ""
    assert err.count("\n") == 1
    assert err == f"hvtui: {bad}:5: hosts[0].port: expected an integer 1-65535, found 'https'\n"
    assert "Traceback" not in paths.log_file.read_text()


def test_info_with_a_broken_config_still_shows_the_paths_and_the_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, paths: Paths
) -> None:
    # Broken config is exactly when "which file, which log" matters (k9s info answers too).
    bad = tmp_path / "bad.yaml"
    bad.write_text("hosts:\n  - name: hv01\n    kind: winrm\n    address: hv01\n    port: https\n", encoding="utf-8")
    code, out, err = run(capsys, "--config", str(bad), "info")
    assert code == EXIT_USAGE
    assert f"Config:      {bad} — NOT LOADED (the error is below)" in out
    assert f"Log file:    {paths.log_file}" in out and f"State dir:   {paths.state_dir}" in out
    assert f"Audit log:   {paths.audit_log}" in out and str(paths.user_themes_dir) in out
    assert err == f"hvtui: {bad}:5: hosts[0].port: expected an integer 1-65535, found 'https'\n"

    code, out, err = run(capsys, "--config", str(bad), "info", "--json")
    assert code == EXIT_USAGE
    info = json.loads(out)
    assert info["config_file"] == str(bad)
    assert info["config_error"] == f"{bad}:5: hosts[0].port: expected an integer 1-65535, found 'https'"
    assert info["log_file"] == str(paths.log_file) and info["job_journal"] == str(paths.job_journal)
    assert "hosts" not in info  # nothing that would need the config is guessed


def test_info_names_a_missing_config_from_the_environment(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "gone.yml"
    monkeypatch.setenv("HVTUI_CONFIG", str(missing))
    code, out, err = run(capsys, "info", "--json")
    assert code == EXIT_USAGE
    assert json.loads(out)["config_file"] == str(missing)
    assert err.startswith(f"hvtui: config file not found: {missing} (named by $HVTUI_CONFIG)")


def test_missing_config_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _out, err = run(capsys, "info", "--config", str(tmp_path / "nope.yaml"))
    assert code == EXIT_USAGE
    assert err.startswith("hvtui: config file not found:") and err.count("\n") == 1


def test_bad_option_value_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "--log-level", "chatty", "info")
    assert code == EXIT_USAGE
    assert "invalid choice: 'chatty'" in err


def test_unexpected_exception_prints_one_line_and_logs_the_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, paths: Paths
) -> None:
    def explode(args: argparse.Namespace, core: object) -> int:
        raise RuntimeError("boom in the handler")

    monkeypatch.setattr(hvtui.commands.info, "handle_info", explode)
    code, out, err = run(capsys, "info")
    assert code == EXIT_FAILED
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("hvtui: unexpected error: RuntimeError: boom in the handler")
    assert str(paths.log_file) in err
    assert "Traceback" not in err
    log_text = paths.log_file.read_text()
    assert "Traceback (most recent call last)" in log_text
    assert "RuntimeError: boom in the handler" in log_text
    assert "in explode" in log_text


def test_user_errors_are_one_line_and_redacted(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, paths: Paths
) -> None:
    register_secret("Pa55-leaked-by-mistake")

    def fail(args: argparse.Namespace, core: object) -> int:
        raise HvtuiError("hv01: connect: refused with password Pa55-leaked-by-mistake")

    monkeypatch.setattr(hvtui.commands.info, "handle_info", fail)
    code, _out, err = run(capsys, "info")
    assert code == EXIT_FAILED
    assert err == "hvtui: error: hv01: connect: refused with password ***\n"
    log_text = paths.log_file.read_text()
    assert "refused with password ***" in log_text
    assert "Pa55-leaked-by-mistake" not in log_text


def test_logs_go_to_the_file_never_to_the_screen(capsys: pytest.CaptureFixture[str], paths: Paths) -> None:
    code, out, err = run(capsys, "--log-level", "debug", "info", "--json")
    assert code == EXIT_OK and err == ""
    json.loads(out)  # stdout holds only the JSON document
    # After set-up, hvtui's own records, other libraries' warnings and Python warnings
    # all land in the file and nothing reaches stderr.
    logging.getLogger("hvtui.test").debug("debug record from hvtui")
    logging.getLogger("urllib3.connectionpool").warning("library warning record")
    logging.getLogger("urllib3.connectionpool").info("library info record")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("python warning record", UserWarning, stacklevel=1)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    for handler in logging.getLogger().handlers:
        handler.flush()
    log_text = paths.log_file.read_text()
    assert "debug record from hvtui" in log_text
    assert "library warning record" in log_text
    assert "library info record" not in log_text  # libraries log from warnings up only
    assert "python warning record" in log_text


def test_log_level_from_the_command_line_filters_hvtui_records(capsys: pytest.CaptureFixture[str], paths: Paths) -> None:
    assert run(capsys, "--log-level", "error", "info")[0] == EXIT_OK
    logging.getLogger("hvtui.test").warning("should be filtered at error level")
    logging.getLogger("hvtui.test").error("kept at error level")
    log_text = paths.log_file.read_text()
    assert "kept at error level" in log_text
    assert "should be filtered" not in log_text
