"""`hvtui notify test NAME` and `hvtui notify list` against real servers on 127.0.0.1: the test
message arrives, a failure says exactly why with exit code 1 (never a traceback, never a secret),
an unknown name is a usage error with a suggestion, and the failure is listed afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from notify_support import SMTP_PASSWORD, Reply, make_certificate, smtp_server, webhook_server

from hvtui.cli import main
from hvtui.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE

PASSWORD_ENV = "HVTUI_TEST_SMTP_PASSWORD"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


def config(tmp_path: Path, smtp_port: int, hook_port: int, ca: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""
notifications:
  - name: ops-mail
    email:
      to: [ops@example.com]
      from: hvtui@jump01.example.com
      smtp: "127.0.0.1:{smtp_port}"
      username: hvtui
      password_env: {PASSWORD_ENV}
      ca_bundle: {ca}
      timeout: 10s
  - name: chat
    webhook: {{url: "http://127.0.0.1:{hook_port}/hooks/T0KEN", format: slack, retries: 1}}
    on: [failure]
""",
        encoding="utf-8",
    )
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_notify_test_sends_a_test_message_by_email(
    tmp_path: Path, certificate: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, SMTP_PASSWORD)
    with smtp_server(certificate) as (port, box), webhook_server() as hook:
        code, out, err = run(capsys, "--config", str(config(tmp_path, port, hook.port, certificate[0])), "notify", "test", "ops-mail")
    assert (code, err) == (EXIT_OK, "")
    assert out == f"Sent a test message to ops-mail (e-mail to ops@example.com via 127.0.0.1:{port}, starttls).\n"
    [message] = box.messages
    assert message["Subject"] == "[hvtui] OK: schedule notify-test - no VMs"
    assert "A test message from `hvtui notify test ops-mail`: no backup ran." in message.get_content()


def test_notify_test_says_why_the_log_on_failed_and_notify_list_shows_it(
    tmp_path: Path, certificate: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "not-the-Passw0rd")
    with smtp_server(certificate) as (port, box), webhook_server() as hook:
        path = config(tmp_path, port, hook.port, certificate[0])
        code, out, err = run(capsys, "--config", str(path), "notify", "test", "ops-mail")
    assert (code, out) == (EXIT_FAILED, "") and box.messages == []
    assert err.startswith(
        f"hvtui: error: notification ops-mail (email): SMTP server 127.0.0.1:{port} rejected the log-on of 'hvtui' (AUTH): 535"
    )
    assert "Traceback" not in err and "not-the-Passw0rd" not in err
    code, out, _ = run(capsys, "--config", str(path), "notify", "list")
    assert code == EXIT_OK
    rows = out.splitlines()
    assert rows[0].split() == ["NAME", "TARGET", "ON", "LAST", "FAILURE"]
    assert rows[1].startswith("ops-mail") and "warning,failure,missed" in rows[1] and "rejected the log-on" in rows[1]
    assert rows[2].startswith("chat") and f"slack webhook http://127.0.0.1:{hook.port}" in rows[2] and rows[2].rstrip().endswith("-")
    assert "T0KEN" not in out


def test_notify_test_names_the_http_status_of_a_webhook(
    tmp_path: Path, certificate: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with webhook_server() as hook:
        hook.script = [Reply(502), Reply(502)]
        code, out, err = run(capsys, "--config", str(config(tmp_path, 2525, hook.port, certificate[0])), "notify", "test", "chat")
    assert code == EXIT_FAILED and len(hook.requests) == 2  # on: [failure] does not stop a test message
    assert err == f"hvtui: error: notification chat (webhook): webhook http://127.0.0.1:{hook.port} answered HTTP 502 Bad Gateway: ok (after 2 attempts)\n"
    assert hook.json()["text"] == "[hvtui] OK: schedule notify-test - no VMs"


def test_an_unknown_notification_is_a_usage_error_with_a_suggestion(
    tmp_path: Path, certificate: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "--config", str(config(tmp_path, 2525, 2526, certificate[0])), "notify", "test", "ops-mial")
    assert (code, err) == (EXIT_USAGE, "hvtui: no notification named 'ops-mial'; did you mean 'ops-mail'?\n")


def test_notify_test_in_a_real_process_against_a_server_that_is_down(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    from notify_support import free_port

    path = config(tmp_path, free_port(), free_port(), certificate[0])
    env = {**os.environ, PASSWORD_ENV: SMTP_PASSWORD}
    result = subprocess.run(
        [sys.executable, "-m", "hvtui", "--config", str(path), "notify", "test", "ops-mail"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )
    assert result.returncode == EXIT_FAILED and result.stdout == ""
    assert result.stderr.startswith("hvtui: error: notification ops-mail (email): SMTP server 127.0.0.1:")
    assert "refused the connection (is the server running and the port right?)" in result.stderr
