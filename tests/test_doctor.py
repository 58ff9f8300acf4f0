"""`hvtui doctor` (issue 19 §5): each step from this machine to a host, in order, the first
failure named with what to do — against the loopback WS-Management server over HTTPS and a real
Samba smbd, with a closed port, a bad certificate, a wrong password and the other faults."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from samba_support import SambaServer, free_port
from test_winrm_faults import certificate  # the module-scoped loopback certificate fixture
from wsman_server import MemoryBackend, WSManServer, failure_answer

from hvtui.cli import main

__all__ = ["certificate"]

PASSWORD_ENV = "HVTUI_DOCTOR_PASSWORD"
STEPS = [
    "address resolves",
    "port open",
    "TLS certificate valid for the name",
    "credentials accepted",
    "PowerShell and the Hyper-V module present",
    "VMs listable",
    "SMB share for D:\\ (\\\\127.0.0.1\\share) reachable, encrypted and readable",
    "free space on the host's volumes",
]


@pytest.fixture
def backend() -> MemoryBackend:
    estate = MemoryBackend()
    estate.add_vm("web01")
    estate.add_vm("sql01")
    return estate


@pytest.fixture
def https_server(backend: MemoryBackend, certificate: tuple[Path, Path], samba_server: SambaServer) -> Iterator[WSManServer]:
    """WinRM over HTTPS whose account is also the SMB account (SMB uses the WinRM credentials by default)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    server = WSManServer(backend, username=samba_server.username, password=samba_server.password, ssl_context=context).start()
    yield server
    server.stop()


def write_config(
    tmp_path: Path,
    port: int,
    samba: SambaServer,
    ca_bundle: Path | None,
    address: str = "127.0.0.1",
    smb_extra: str = "",
) -> Path:
    ca_line = f"    ca_bundle: {ca_bundle}\n" if ca_bundle else ""
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""hosts:
  - name: hv01
    kind: winrm
    address: {address}
    port: {port}
    transport: basic
    username: {samba.username}
    password_env: {PASSWORD_ENV}
{ca_line}    timeout: 5s
    smb:
      shares: {{'D:\\': '\\\\127.0.0.1\\share'}}
      port: {samba.port}
      timeout: 5s
{smb_extra}""",
        encoding="utf-8",
    )
    return path


def doctor_json(capsys: pytest.CaptureFixture[str], config: Path, *hosts: str) -> tuple[int, dict]:
    code = main(["--config", str(config), "doctor", *hosts, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)["hosts"][0]


def statuses(report: dict) -> list[tuple[str, str]]:
    return [(check["name"], check["status"]) for check in report["checks"]]


@pytest.fixture
def good_password(monkeypatch: pytest.MonkeyPatch, samba_server: SambaServer) -> None:
    monkeypatch.setenv(PASSWORD_ENV, samba_server.password)


def test_a_healthy_host_passes_every_check_in_order(
    tmp_path: Path, https_server: WSManServer, samba_server: SambaServer, certificate, good_password, capsys
) -> None:
    config = write_config(tmp_path, https_server.port, samba_server, certificate[0])
    code, report = doctor_json(capsys, config, "hv01")
    assert code == 0, report
    assert statuses(report) == [(step, "ok") for step in STEPS]
    assert report["ok"] is True and report["first_failure"] is None
    details = {check["name"]: check["detail"] for check in report["checks"]}
    assert details["VMs listable"] == "2 VMs"
    assert details["TLS certificate valid for the name"].endswith("certificate valid for 127.0.0.1")
    assert details[STEPS[6]].startswith("SMB 3.1.1, encrypted (AES-128-GCM); ")
    assert https_server.ops() == ["inventory"]  # the wire contract's own operation; doctor adds none

    assert main(["--config", str(config), "doctor"]) == 0
    text = capsys.readouterr().out
    assert "hv01 (winrm)" in text and "[ok  ] VMs listable: 2 VMs" in text and "-> every check passed" in text


def test_a_closed_port_fails_there_and_runs_nothing_after(tmp_path: Path, samba_server: SambaServer, good_password, capsys) -> None:
    config = write_config(tmp_path, free_port(), samba_server, None)
    code, report = doctor_json(capsys, config)
    assert code == 1
    assert statuses(report) == [(STEPS[0], "ok"), (STEPS[1], "failed"), *((step, "not run") for step in STEPS[2:])]
    failed = report["checks"][1]
    assert report["first_failure"] == "port open"
    assert "refused" in failed["detail"].lower() and "firewall" in failed["fix"]


def test_a_name_that_does_not_resolve(tmp_path: Path, samba_server: SambaServer, good_password, capsys) -> None:
    config = write_config(tmp_path, 5986, samba_server, None, address="hvtui-no-such-host.invalid")
    code, report = doctor_json(capsys, config)
    assert code == 1 and report["first_failure"] == "address resolves"
    assert "hvtui-no-such-host.invalid does not resolve" in report["checks"][0]["detail"]
    assert "address:" in report["checks"][0]["fix"]


def test_an_untrusted_certificate_fails_the_tls_check(
    tmp_path: Path, https_server: WSManServer, samba_server: SambaServer, good_password, capsys
) -> None:
    config = write_config(tmp_path, https_server.port, samba_server, None)  # no ca_bundle: not trusted
    code, report = doctor_json(capsys, config)
    assert code == 1 and report["first_failure"] == STEPS[2]
    tls = report["checks"][2]
    assert tls["detail"].startswith("certificate verify failed") and "ca_bundle" in tls["fix"]
    assert https_server.ops() == []  # no credentials were sent to a host that could not prove who it is


def test_a_certificate_for_another_name_fails_the_tls_check(
    tmp_path: Path, https_server: WSManServer, samba_server: SambaServer, certificate, good_password, capsys
) -> None:
    config = write_config(tmp_path, https_server.port, samba_server, certificate[0], address="localhost")
    code, report = doctor_json(capsys, config)
    assert code == 1 and report["first_failure"] == STEPS[2]
    assert "localhost" in report["checks"][2]["detail"] and "issued for localhost" in report["checks"][2]["fix"]


def test_a_wrong_password_fails_the_credentials_check(
    tmp_path: Path, https_server: WSManServer, samba_server: SambaServer, certificate, monkeypatch, capsys
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "not-the-password")
    config = write_config(tmp_path, https_server.port, samba_server, certificate[0])
    code, report = doctor_json(capsys, config)
    assert code == 1
    assert statuses(report)[:4] == [(STEPS[0], "ok"), (STEPS[1], "ok"), (STEPS[2], "ok"), (STEPS[3], "failed")]
    assert "authentication refused" in report["checks"][3]["detail"]
    assert "LocalAccountTokenFilterPolicy" in report["checks"][3]["fix"]
    assert "not-the-password" not in json.dumps(report)


def test_a_missing_hyper_v_module_fails_its_check(
    tmp_path: Path, https_server: WSManServer, samba_server: SambaServer, certificate, good_password, capsys
) -> None:
    https_server.faults.respond = lambda op, args: failure_answer("The term 'Hyper-V\\Get-VM' is not recognized", "CommandNotFoundException")
    code, report = doctor_json(capsys, write_config(tmp_path, https_server.port, samba_server, certificate[0]))
    assert code == 1 and report["first_failure"] == STEPS[4]
    assert statuses(report)[3] == (STEPS[3], "ok")
    assert "Install-WindowsFeature Hyper-V-PowerShell" in report["checks"][4]["fix"]


def test_an_account_outside_hyper_v_administrators_cannot_list_vms(
    tmp_path: Path, https_server: WSManServer, samba_server: SambaServer, certificate, good_password, capsys
) -> None:
    https_server.faults.respond = lambda op, args: failure_answer("You do not have the required permission", "HvtuiAccessDenied")
    code, report = doctor_json(capsys, write_config(tmp_path, https_server.port, samba_server, certificate[0]))
    assert code == 1 and report["first_failure"] == STEPS[5]
    assert "Hyper-V Administrators" in report["checks"][5]["fix"]


def test_a_share_without_encryption_fails_the_smb_check(
    tmp_path: Path, https_server: WSManServer, samba_server: SambaServer, certificate, good_password, capsys
) -> None:
    plain = samba_server.start_second(encrypt=False)
    config = write_config(tmp_path, https_server.port, plain, certificate[0])
    code, report = doctor_json(capsys, config)
    assert code == 1 and report["first_failure"] == STEPS[6]
    smb = report["checks"][6]
    assert "cannot encrypt" in smb["detail"] and "SMB encryption" in smb["fix"]
    assert statuses(report)[7] == (STEPS[7], "not run")

    allowed = write_config(tmp_path, https_server.port, plain, certificate[0], smb_extra="      encrypt: false\n")
    code, report = doctor_json(capsys, allowed)
    assert code == 0  # a warning, not a failure: the config says so
    smb = report["checks"][6]
    assert smb["status"] == "warning" and smb["detail"].startswith("SMB 3.1.1, signed, not encrypted")


def test_a_missing_share_fails_the_smb_check(
    tmp_path: Path, https_server: WSManServer, samba_server: SambaServer, certificate, good_password, capsys
) -> None:
    config = write_config(tmp_path, https_server.port, samba_server, certificate[0])
    config.write_text(config.read_text().replace("\\\\127.0.0.1\\share", "\\\\127.0.0.1\\VMs$"))
    code, report = doctor_json(capsys, config)
    assert code == 1 and report["first_failure"].startswith("SMB share for D:\\ (\\\\127.0.0.1\\VMs$)")
    assert "does not exist" in next(c for c in report["checks"] if c["status"] == "failed")["detail"]


def test_a_nearly_full_volume_fails_the_free_space_check(
    tmp_path: Path, backend: MemoryBackend, https_server: WSManServer, samba_server: SambaServer, certificate, good_password, capsys
) -> None:
    backend.facts["volumes"] = [
        {"path": "C:\\", "label": "", "size": 100 << 30, "free": 40 << 30},
        {"path": "D:\\", "label": "VMs", "size": 2 << 40, "free": 20 << 30},
    ]
    code, report = doctor_json(capsys, write_config(tmp_path, https_server.port, samba_server, certificate[0]))
    assert code == 1 and report["first_failure"] == STEPS[7]
    check = report["checks"][7]
    assert "D:\\ 1% free" in check["detail"] and "free space on D:\\" in check["fix"] and "C:\\" not in check["fix"]


def test_an_unknown_host_is_a_usage_error(tmp_path: Path, samba_server: SambaServer, capsys) -> None:
    config = write_config(tmp_path, 5986, samba_server, None)
    assert main(["--config", str(config), "doctor", "hv99"]) == 2
    assert "unknown host 'hv99'" in capsys.readouterr().err


def test_lab_hosts_are_checked_too(fresh_demo_lab: Path, capsys) -> None:
    assert main(["--lab-dir", str(fresh_demo_lab), "doctor", "--json"]) == 0
    hosts = json.loads(capsys.readouterr().out)["hosts"]
    assert [h["host"] for h in hosts] == ["lab-hv01", "lab-hv02", "lab-hv03"]
    assert all(h["ok"] and h["checks"][0]["name"] == "inventory readable" for h in hosts)


def test_every_section_the_messages_point_to_exists_in_host_setup(repo_root: Path) -> None:
    import re

    headings = {
        re.sub(r"^\d+\.\s*", "", line.lstrip("#").strip())
        for line in (repo_root / "docs" / "host-setup.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("## ")
    }
    sources = [repo_root / "hvtui" / "hosts" / "doctor.py", repo_root / "hvtui" / "hosts" / "smb" / "errors.py"]
    named = {
        section
        for source in sources
        for match in re.finditer(r"\{SETUP_DOC\}, '([^']+)'(?: and '([^']+)')?", source.read_text(encoding="utf-8"))
        for section in match.groups()
        if section
    }
    assert named >= {"HTTPS listener", "Firewall", "Account", "SMB encryption", "Shares for the VM files"}
    assert named <= headings, named - headings
