"""Every fault gives its own readable error, naming the host and the operation."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from wsman_server import (
    PASSWORD_ENV,
    Answer,
    BlackholeServer,
    MemoryBackend,
    WSManServer,
    clixml_error,
    document_answer,
    failure_answer,
    free_port,
    make_winrm_host,
    raw_answer,
    server,
)

from hvtui.errors import HostError, NotFoundError

MISSING_VM = "00000000-0000-0000-0000-00000000dead"

__all__ = ["server"]  # the loopback server fixture, shared from wsman_server


@pytest.fixture
def backend() -> MemoryBackend:
    estate = MemoryBackend()
    estate.add_vm("web01")
    return estate


def web_id(backend: MemoryBackend) -> str:
    return next(iter(backend.vms))


def failure_of(call, *args) -> HostError:
    with pytest.raises(HostError) as info:
        call(*args)
    return info.value


def answer_with(server: WSManServer, answer: Answer) -> None:
    server.faults.respond = lambda op, args: answer


# -- reaching the host ----------------------------------------------------------------------------
def test_connection_refused_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "pw")
    err = failure_of(make_winrm_host(free_port(), "hv-down").inventory, 5.0)
    assert err.kind == "unreachable"
    assert str(err).startswith("hv-down: inventory: host unreachable: 127.0.0.1:")
    assert "onnection refused" in str(err)


def test_unknown_name_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "pw")
    err = failure_of(make_winrm_host(5985, "hv-typo", address="hvtui-no-such-host.invalid").inventory, 5.0)
    assert err.kind == "unreachable"
    assert str(err).startswith("hv-typo: inventory: host unreachable: hvtui-no-such-host.invalid:5985: ")


def test_wrong_password_is_an_authentication_error(server: WSManServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "not-the-password")
    err = failure_of(make_winrm_host(server.port, "hv-auth").inventory, 5.0)
    assert err.kind == "auth"
    assert str(err).startswith("hv-auth: inventory: authentication refused by 127.0.0.1:")
    assert "(HTTP 401)" in str(err)
    assert server.unauthorized_requests == 1 and server.commands == []


def test_a_401_from_the_server_side_is_an_authentication_error(server: WSManServer) -> None:
    server.faults.unauthorized = True
    err = failure_of(make_winrm_host(server.port).create_checkpoint, web_id(server.backend), "x", "Standard")  # type: ignore[attr-defined]
    assert (err.kind, err.operation) == ("auth", "create checkpoint")


def test_missing_password_source_names_the_variable(monkeypatch: pytest.MonkeyPatch, server: WSManServer) -> None:
    monkeypatch.delenv(PASSWORD_ENV)
    err = failure_of(make_winrm_host(server.port, "hv-nopw").inventory, 5.0)
    assert err.kind == "auth"
    assert str(err).startswith("hv-nopw: inventory: ")
    assert f"environment variable {PASSWORD_ENV} is not set" in str(err)
    assert server.actions == []


# -- TLS ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hvtui loopback")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture
def https_server(
    backend: MemoryBackend, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[WSManServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    srv = WSManServer(backend, ssl_context=context).start()
    monkeypatch.setenv(PASSWORD_ENV, srv.password)
    yield srv
    srv.stop()


def test_https_with_the_ca_bundle_works_without_any_test_allowance(
    https_server: WSManServer, certificate: tuple[Path, Path]
) -> None:
    host = make_winrm_host(https_server.port, scheme="https", test_transport=False, ca_bundle=certificate[0])
    assert [vm.name for vm in host.inventory(5.0).vms] == ["web01"]
    host.close()


def test_an_untrusted_certificate_is_a_tls_failure(https_server: WSManServer) -> None:
    host = make_winrm_host(https_server.port, "hv-tls", scheme="https", test_transport=False)
    err = failure_of(host.inventory, 5.0)
    assert err.kind == "tls"
    assert str(err).startswith(f"hv-tls: inventory: TLS failure talking to 127.0.0.1:{https_server.port}: ")
    assert "certificate verify failed" in str(err)
    assert https_server.actions == []


def test_a_host_name_mismatch_is_named_in_full(https_server: WSManServer, certificate: tuple[Path, Path]) -> None:
    """The certificate is trusted but names 127.0.0.1 only: the message says which name it lacks."""
    host = make_winrm_host(
        https_server.port, "hv-tls", address="localhost", scheme="https", test_transport=False, ca_bundle=certificate[0]
    )
    err = failure_of(host.inventory, 5.0)
    assert err.kind == "tls"
    assert "certificate verify failed: Hostname mismatch, certificate is not valid for 'localhost'. (check" in str(err)
    assert https_server.actions == []


def test_https_to_a_plain_http_port_is_a_tls_failure(server: WSManServer) -> None:
    host = make_winrm_host(server.port, "hv-tls", scheme="https", test_transport=False)
    err = failure_of(host.inventory, 5.0)
    assert err.kind == "tls"
    assert str(err).startswith("hv-tls: inventory: TLS failure")


# -- refused configurations (checked here too, whatever the config layer did) -------------------------
@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"transport": "basic", "allow_http": True}, "transport basic over plain HTTP would not encrypt messages"),
        ({"transport": "ntlm", "allow_http": False}, "plain HTTP needs allow_http: true"),
        ({"transport": "certificate", "allow_http": True}, "transport certificate over plain HTTP"),
        ({"transport": "telnet"}, "transport 'telnet' is not supported"),
    ],
)
def test_insecure_settings_are_refused_before_connecting(server: WSManServer, settings: dict, message: str) -> None:
    host = make_winrm_host(server.port, "hv-insecure", test_transport=False, **settings)
    err = failure_of(host.inventory, 5.0)
    assert err.kind == "config"
    assert str(err).startswith("hv-insecure: inventory: ")
    assert message in str(err)
    assert server.actions == []


def test_certificate_transport_needs_both_files(server: WSManServer) -> None:
    host = make_winrm_host(server.port, scheme="https", transport="certificate", test_transport=False)
    err = failure_of(host.inventory, 5.0)
    assert err.kind == "config" and "needs cert_pem and cert_key_pem" in str(err)


# -- time-outs (short deadlines; nothing sleeps to age anything) -----------------------------------------
def test_an_answer_slower_than_the_deadline_is_a_timeout(server: WSManServer) -> None:
    server.faults.delay = 30.0
    host = make_winrm_host(server.port, "hv-slow", timeout=1.5, operation_timeout=1.0)
    err = failure_of(host.inventory, 1.5)
    assert err.kind == "timeout"
    assert str(err) == (
        "hv-slow: inventory: no answer before our deadline (1.5s for this call): the host is unreachable or overloaded"
    )


def test_a_host_that_times_out_every_receive_forever(server: WSManServer) -> None:
    server.faults.never_answer = True
    host = make_winrm_host(server.port, "hv-stuck", timeout=1.5)
    err = failure_of(host.inventory, 1.5)
    assert err.kind == "timeout" and "no answer before our deadline" in str(err)
    assert server.actions.count("Receive") >= 1  # it really was waiting on Receives, retried


def test_a_host_that_accepts_tcp_and_never_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "pw")
    with BlackholeServer() as blackhole:
        host = make_winrm_host(blackhole.port, "hv-hole", timeout=1.0)
        started = time.monotonic()
        err = failure_of(host.inventory, 1.0)
        elapsed = time.monotonic() - started
        assert blackhole.connections >= 1
    assert err.kind == "timeout" and str(err).startswith("hv-hole: inventory: no answer before our deadline")
    assert elapsed < 10  # pywinrm alone would wait its 11 s read timeout (and retry Receives forever)


def test_an_http_server_that_hangs_on_a_request(server: WSManServer) -> None:
    server.faults.hang_http = True
    err = failure_of(make_winrm_host(server.port, "hv-hang", timeout=1.0).inventory, 1.0)
    assert err.kind == "timeout"


def test_the_host_recovers_after_a_timeout(server: WSManServer) -> None:
    host = make_winrm_host(server.port, timeout=1.2)
    server.faults.never_answer = True
    failure_of(host.inventory, 1.2)
    server.faults.never_answer = False
    assert len(host.inventory(5.0).vms) == 1  # a fresh shell: the stuck one was abandoned
    deadline = time.monotonic() + 5
    while server.shells_deleted < 1 and time.monotonic() < deadline:
        time.sleep(0.02)  # the abandoned shell is deleted in the background
    assert server.shells_deleted >= 1
    host.close()


# -- what the script reported -------------------------------------------------------------------------
def test_module_missing(server: WSManServer) -> None:
    answer_with(
        server,
        failure_answer(
            "The term 'Hyper-V\\Get-VM' is not recognized as the name of a cmdlet, function, script file, or operable program.",
            "CommandNotFoundException",
        ),
    )
    err = failure_of(make_winrm_host(server.port, "hv-nohv").inventory, 5.0)
    assert err.kind == "module-missing"
    assert str(err).startswith("hv-nohv: inventory: the Hyper-V PowerShell module is not available on the host")
    assert "is not recognized" in str(err)


def test_module_missing_from_our_own_check(server: WSManServer) -> None:
    answer_with(
        server, failure_answer("The Hyper-V PowerShell module is not installed on this host", "HvtuiModuleMissing")
    )
    assert failure_of(make_winrm_host(server.port).inventory, 5.0).kind == "module-missing"


def test_vm_not_found(server: WSManServer) -> None:
    host = make_winrm_host(server.port, "hv-nf")
    with pytest.raises(NotFoundError) as info:
        host.create_checkpoint(MISSING_VM, "x", "Standard")
    assert str(info.value).startswith(
        "hv-nf: create checkpoint: VM not found: Hyper-V was unable to find a virtual machine"
    )
    assert info.value.kind == "not-found"


def test_checkpoint_not_found(server: WSManServer, backend: MemoryBackend) -> None:
    host = make_winrm_host(server.port, "hv-nf")
    for call, label in (
        (lambda: host.apply_checkpoint(web_id(backend), MISSING_VM), "apply checkpoint"),
        (lambda: host.remove_checkpoint(web_id(backend), MISSING_VM), "remove checkpoint"),
        (lambda: host.rename_checkpoint(web_id(backend), MISSING_VM, "n"), "rename checkpoint"),
    ):
        with pytest.raises(NotFoundError) as info:
            call()
        assert str(info.value).startswith(f"hv-nf: {label}: checkpoint not found: Unable to find a snapshot")


def test_access_denied(server: WSManServer) -> None:
    answer_with(
        server,
        failure_answer(
            "You do not have the required permission to complete this task.",
            "AccessDenied,Microsoft.HyperV.PowerShell.Commands.GetVM",
        ),
    )
    err = failure_of(make_winrm_host(server.port, "hv-deny").inventory, 5.0)
    assert err.kind == "access-denied"
    assert str(err).startswith("hv-deny: inventory: access denied (the account needs Hyper-V Administrators")


def test_any_other_failure_keeps_its_message_and_id(server: WSManServer, backend: MemoryBackend) -> None:
    answer_with(server, failure_answer("Checkpoints are disabled for VM web01", "HvtuiCheckpointsDisabled"))
    err = failure_of(make_winrm_host(server.port, "hv").create_checkpoint, web_id(backend), None, "Standard")
    assert err.kind == "failed"
    assert str(err) == "hv: create checkpoint: Checkpoints are disabled for VM web01 [HvtuiCheckpointsDisabled]"


def test_malformed_json(server: WSManServer) -> None:
    answer_with(server, raw_answer('{"ok": true, "host": {"name": "HV01",'))
    err = failure_of(make_winrm_host(server.port, "hv-bad").inventory, 5.0)
    assert err.kind == "protocol"
    assert str(err).startswith("hv-bad: inventory: the result document is not valid JSON (")


def test_a_document_missing_its_markers(server: WSManServer) -> None:
    answer_with(server, Answer(b'{"ok": true}\r\n', b"", 0))
    err = failure_of(make_winrm_host(server.port, "hv-bad").inventory, 5.0)
    assert err.kind == "protocol" and "no result document" in str(err)


def test_an_empty_document(server: WSManServer) -> None:
    answer_with(server, raw_answer(""))
    err = failure_of(make_winrm_host(server.port, "hv-bad").inventory, 5.0)
    assert err.kind == "protocol" and str(err) == "hv-bad: inventory: the result document is empty"


def test_a_crash_without_a_document_reports_standard_error(server: WSManServer) -> None:
    answer_with(server, Answer(b"", clixml_error("powershell : Access to the path is denied.\nAt line:1"), 1))
    err = failure_of(make_winrm_host(server.port, "hv-crash").inventory, 5.0)
    assert err.kind == "failed"
    assert str(err) == (
        "hv-crash: inventory: the script failed with exit code 1 and wrote no result: "
        "powershell : Access to the path is denied. At line:1"
    )


def test_success_is_decided_by_exit_code_and_document(server: WSManServer, backend: MemoryBackend) -> None:
    doc = {"ok": True, "host": backend.facts, "vms": []}
    answer_with(server, document_answer(doc, exit_code=1))
    err = failure_of(make_winrm_host(server.port, "hv").inventory, 5.0)
    assert err.kind == "failed" and "reported success but exited with code 1" in str(err)

    answer_with(server, document_answer({"ok": False, "error": "boom", "fqid": "X"}, exit_code=0))
    assert str(failure_of(make_winrm_host(server.port, "hv").inventory, 5.0)) == "hv: inventory: boom [X]"


def test_noise_on_stderr_does_not_make_a_failure(server: WSManServer, backend: MemoryBackend) -> None:
    doc = {"ok": True, "host": backend.facts, "vms": []}
    answer_with(server, document_answer(doc, stderr=clixml_error("WARNING: something chatty")))
    assert make_winrm_host(server.port).inventory(5.0).vms == ()


def test_a_malformed_field_names_the_field(server: WSManServer, backend: MemoryBackend) -> None:
    vm = dict(next(iter(backend.vms.values())), state=32785)  # a critical state: value differs by version
    answer_with(server, document_answer({"ok": True, "host": backend.facts, "vms": [vm]}))
    err = failure_of(make_winrm_host(server.port, "hv").inventory, 5.0)
    assert err.kind == "protocol"
    assert str(err).startswith(
        "hv: inventory: vms[0].state: expected a VM state name, or one of the stable integer values"
    )


def test_a_create_answer_without_its_checkpoint(server: WSManServer, backend: MemoryBackend) -> None:
    answer_with(server, document_answer({"ok": True}))
    err = failure_of(make_winrm_host(server.port, "hv").create_checkpoint, web_id(backend), "x", "Standard")
    assert (
        str(err) == "hv: create checkpoint: document.checkpoint: expected a value, found nothing (the field is missing)"
    )


def test_an_unknown_checkpoint_type_is_refused_locally(server: WSManServer, backend: MemoryBackend) -> None:
    err = failure_of(make_winrm_host(server.port, "hv").create_checkpoint, web_id(backend), "x", "Replica")
    assert "cannot create a 'Replica' checkpoint" in str(err)
    assert server.commands == []


def test_backup_asks_the_host_and_a_restore_checks_its_arguments_first(server: WSManServer, backend: MemoryBackend) -> None:
    host = make_winrm_host(server.port, "hv")
    # Backups are offered now (hosts/winrm/backup.py): the host is asked, and this one refuses.
    err = failure_of(host.open_backup_source, web_id(backend))
    assert err.operation == "backup.begin" and err.kind != "unsupported"
    assert "backup.begin" in server.ops()
    # Restores are offered (tests/test_winrm_restore.py); one without a name is refused before any file moves.
    err = failure_of(host.prepare_restore, {}, "new")
    assert str(err) == "hv: restore: a restore as a new VM needs a name for it"
    assert "restore.prepare" not in server.ops()
