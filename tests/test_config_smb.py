"""A WinRM host's ``smb:`` block (issue 19 §2): share map, credentials, encryption, rate limit."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hvtui.config import SecretSource, SmbSettings, load_config
from hvtui.config.units import parse_rate
from hvtui.errors import ConfigError
from hvtui.paths import Paths

HOST = """
hosts:
  - name: hv01
    kind: winrm
    address: hv01.corp.example
    username: 'CORP\\svc'
    password_env: HV01_PASSWORD
"""


def load_smb(tmp_path: Path, block: str) -> SmbSettings:
    path = tmp_path / "config.yaml"
    path.write_text(HOST + textwrap.indent(textwrap.dedent(block), "    "), encoding="utf-8")
    host = load_config(path).hosts[0]
    assert host.winrm is not None
    return host.winrm.smb


def test_example_config_documents_the_smb_block(repo_root: Path, paths: Paths) -> None:
    config = load_config(repo_root / "config.example.yaml", paths)
    hv01 = config.host("hv01") if hasattr(config, "host") else next(h for h in config.hosts if h.name == "hv01")
    assert hv01.winrm is not None
    smb = hv01.winrm.smb
    assert smb.shares == (("C:\\", "\\\\hv01.corp.example\\C$"), ("D:\\", "\\\\hv01.corp.example\\D$"))
    assert (smb.port, smb.encrypt, smb.rate_limit, smb.read_ahead, smb.timeout) == (445, True, 200_000_000, 4, 30.0)
    assert smb.username is None and smb.password is None
    hv02 = next(h for h in config.hosts if h.name == "hv02")
    assert hv02.winrm is not None and hv02.winrm.smb == SmbSettings()


def test_a_host_without_the_block_gets_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(HOST, encoding="utf-8")
    host = load_config(path).hosts[0]
    assert host.winrm is not None
    assert host.winrm.smb == SmbSettings()
    assert (SmbSettings().encrypt, SmbSettings().port, SmbSettings().rate_limit) == (True, 445, None)


def test_the_block_with_its_own_user_shares_and_limit(tmp_path: Path) -> None:
    smb = load_smb(
        tmp_path,
        """
        smb:
          shares: {'d:/VMs/': '\\\\fs01\\VMs$\\hv01\\', 'C:\\': '\\\\hv01\\C$'}
          port: 1445
          username: 'CORP\\files'
          password_command: pass show smb
          encrypt: false
          rate_limit: 1.5GiB/s
          read_ahead: 8
          timeout: 1m
        """,
    )
    assert smb.shares == (("D:\\VMs", "\\\\fs01\\VMs$\\hv01"), ("C:\\", "\\\\hv01\\C$"))
    assert smb.username == "CORP\\files" and smb.password == SecretSource(command="pass show smb")
    assert (smb.port, smb.encrypt, smb.rate_limit, smb.read_ahead, smb.timeout) == (1445, False, int(1.5 * 1024**3), 8, 60.0)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("smb:\n  shares: {'VMs': '\\\\hv01\\D$'}\n", "hosts[0].smb.shares.VMs: expected a host path such as 'D:\\' or 'D:\\VMs' as the key"),
        ("smb:\n  shares: {'D:\\': 'D$'}\n", "hosts[0].smb.shares[\"D:\\\"]: expected a UNC path such as '\\\\hv01\\D$', found 'D$'"),
        ("smb:\n  rate_limit: fast\n", "hosts[0].smb.rate_limit: expected a rate such as 200MB/s"),
        ("smb:\n  rate_limit: 0\n", "hosts[0].smb.rate_limit"),
        ("smb:\n  encrypt: maybe\n", "hosts[0].smb.encrypt"),
        ("smb:\n  colour: red\n", "hosts[0].smb.colour: unknown key"),
        ("smb:\n  read_ahead: 100\n", "hosts[0].smb.read_ahead"),
        ("smb:\n  username: bob\n", "smb: username needs a password source"),
        ("smb:\n  password_env: SMB_PW\n", "an SMB password source needs smb: username"),
        ("smb:\n  username: bob\n  password_env: A\n  password_command: b\n", "only one SMB password source may be set"),
        ("smb:\n  password: hunter2\n", "hosts[0].smb.password: unknown key"),
        ("smb:\n  shares: {'D:\\VMs': '\\\\a\\b', 'd:/vms/': '\\\\a\\c'}\n", "the host path D:\\VMs is mapped twice"),
        ("smb: yes\n", "hosts[0].smb: expected the SMB settings (a mapping)"),
    ],
)
def test_mistakes_name_the_key_and_what_is_expected(tmp_path: Path, block: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_smb(tmp_path, block)
    assert message in str(caught.value), str(caught.value)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(("text", "rate"), [("200MB/s", 200_000_000), ("1GiB/s", 1024**3), ("64k", 65536), ("1000 / s", 1000)])
def test_parse_rate(text: str, rate: int) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["fast", "200MB/h", "/s", ""])
def test_parse_rate_refuses(text: str) -> None:
    assert parse_rate(text) is None
