"""How the WinRM settings become a pywinrm Protocol, and the transport's small helpers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import winrm.transport
from wsman_server import PASSWORD_ENV, MemoryBackend, WSManServer, make_winrm_host

from hvtui.config import SecretSource, WinRMSettings
from hvtui.errors import HostError
from hvtui.hosts.winrm.encoding import SEPARATOR, clixml_errors, operation_payload
from hvtui.hosts.winrm.transport import WinRMConnection


def connection(**settings) -> WinRMConnection:
    settings.setdefault("address", "hv01.corp.example")
    settings.setdefault("username", "CORP\\svc")
    settings.setdefault("password", SecretSource(env=PASSWORD_ENV))
    return WinRMConnection("hv01", WinRMSettings(**settings), lambda: "pw")


def test_https_on_5986_with_validation_is_the_default() -> None:
    conn = connection()
    assert conn.endpoint == "https://hv01.corp.example:5986/wsman"
    protocol = conn._new_protocol("inventory")
    transport = protocol.transport
    assert transport.auth_method == "ntlm"
    assert transport.server_cert_validation == "validate"
    assert transport.ca_trust_path is None  # not the environment's REQUESTS_CA_BUNDLE
    assert transport.proxy is None  # environment proxies are not used
    assert transport.message_encryption == "auto"  # TLS encrypts already
    assert protocol.operation_timeout_sec < protocol.read_timeout_sec


def test_a_ca_bundle_becomes_the_trust_path(tmp_path: Path) -> None:
    bundle = tmp_path / "corp-ca.pem"
    transport = connection(ca_bundle=bundle)._new_protocol("inventory").transport
    assert transport.ca_trust_path == str(bundle)
    assert connection(verify_tls=False)._new_protocol("inventory").transport.server_cert_validation == "ignore"


@pytest.mark.parametrize("name", ["ntlm", "kerberos", "credssp"])
def test_plain_http_is_only_used_with_message_encryption(name: str) -> None:
    conn = connection(scheme="http", port=5985, allow_http=True, transport=name)
    assert conn.endpoint == "http://hv01.corp.example:5985/wsman"
    transport = conn._new_protocol("inventory").transport
    assert transport.message_encryption == "always"  # pywinrm refuses to send unencrypted


def test_ipv6_literals_are_bracketed() -> None:
    assert connection(address="fd00::15").endpoint == "https://[fd00::15]:5986/wsman"


def test_timeouts_keep_operation_below_read() -> None:
    protocol = connection(operation_timeout=45.0)._new_protocol("inventory")
    assert (protocol.operation_timeout_sec, protocol.read_timeout_sec) == (45, 55)


def test_certificate_files_are_passed(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("y")
    transport = connection(transport="certificate", cert_pem=cert, cert_key_pem=key)._new_protocol("x").transport
    assert (transport.cert_pem, transport.cert_key_pem) == (str(cert), str(key))


def test_missing_certificate_files_are_a_config_error(tmp_path: Path) -> None:
    conn = connection(transport="certificate", cert_pem=tmp_path / "nope.pem", cert_key_pem=tmp_path / "nope.key")
    with pytest.raises(HostError) as info:
        conn._new_protocol("inventory")
    assert info.value.kind == "config" and "cert_pem file not found" in str(info.value)


@pytest.mark.parametrize(("name", "flag"), [("credssp", "HAVE_CREDSSP"), ("kerberos", "HAVE_KERBEROS")])
def test_a_missing_optional_transport_names_the_extra_to_install(
    name: str, flag: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(winrm.transport, flag, False)
    monkeypatch.setenv(PASSWORD_ENV, "pw")
    with WSManServer(MemoryBackend()) as server:
        host = make_winrm_host(server.port, "hv-x", scheme="https", transport=name, test_transport=False)
        with pytest.raises(HostError) as info:
            host.inventory(5.0)
    assert info.value.kind == "config"
    assert f"pip install 'pywinrm[{name}]'" in str(info.value)


def test_the_payload_is_script_separator_and_ascii_json() -> None:
    payload = operation_payload("Write-Output 'ü'", {"op": "x", "name": "‘ü’\n"})
    script, sep, args = payload.partition(SEPARATOR)
    assert sep and script.decode("utf-8") == "Write-Output 'ü'"
    assert args.isascii() and json.loads(args) == {"op": "x", "name": "‘ü’\n"}


def test_clixml_errors_keep_the_error_text_and_drop_progress() -> None:
    stderr = (
        b'#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
        b'<Obj S="progress" RefId="0"><TN RefId="0"><T>x</T></TN><MS><PR N="Record"><AV>Preparing modules</AV>'
        b'</PR></MS></Obj><S S="Error">Get-VM : denied_x000D__x000A_</S><S S="Error">At line:1_x000D__x000A_</S></Objs>'
    )
    assert clixml_errors(stderr) == "Get-VM : denied At line:1"
    assert clixml_errors(b"plain text\r\nerror") == "plain text error"
