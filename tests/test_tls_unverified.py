"""`verify_tls: false` is said out loud (pywinrm silences urllib3's warning): at load, by
`hvtui config check`, by `hvtui info`, and as a marker in the console's header."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tui_support import SIZE, make_app, make_core, screen_text, settle

from hvtui.cli import main
from hvtui.config import Config, HostConfig, WinRMSettings

WARNING = "host hv01: verify_tls is false: its TLS certificate is not checked"


def config_file(tmp_path: Path, verify_tls: bool) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""hosts:
  - name: hv01
    kind: winrm
    address: hv01.corp.example
    username: svc
    password_env: HV01_PASSWORD
    verify_tls: {str(verify_tls).lower()}
  - name: hv02
    kind: winrm
    address: hv02.corp.example
    username: svc
    password_env: HV02_PASSWORD
""",
        encoding="utf-8",
    )
    return path


def test_info_and_every_command_warn_about_an_unverified_host(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config_file(tmp_path, verify_tls=False)
    assert main(["--config", str(path), "info"]) == 0
    out, err = capsys.readouterr()
    assert f"{path}:2: {WARNING}" in err  # where it is set, so it can be fixed
    tls_line = next(line for line in out.splitlines() if line.startswith("TLS:"))
    assert "NOT VERIFIED for hv01 " in tls_line and "hv02" not in tls_line

    assert main(["--config", str(path), "info", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["tls_unverified_hosts"] == ["hv01"] and WARNING in err

    assert main(["config", "check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("ok: ") and WARNING in err


def test_verified_hosts_raise_no_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config_file(tmp_path, verify_tls=True)
    assert main(["--config", str(path), "info"]) == 0
    out, err = capsys.readouterr()
    assert "verify_tls" not in err and not any(line.startswith("TLS:") for line in out.splitlines())
    assert main(["config", "check", str(path)]) == 0
    assert "verify_tls" not in capsys.readouterr().err


async def test_the_console_header_marks_an_unverified_host(fresh_demo_lab: Path, paths) -> None:
    unverified = WinRMSettings(address="127.0.0.1", port=1, username="svc", verify_tls=False, timeout=2.0, operation_timeout=1.0)
    hosts = (HostConfig(name="lab-hv01", kind="lab"), HostConfig(name="hv01", kind="winrm", winrm=unverified))
    app = make_app(make_core(fresh_demo_lab, paths, config=Config(source=Path("test-config.yaml"), hosts=hosts)))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        header = screen_text(app).splitlines()[0]
        assert "TLS unverified: hv01" in header, header
