"""Notifications delivered to real servers on 127.0.0.1: aiosmtpd with STARTTLS or implicit
TLS and AUTH, and an http.server webhook; every failure is returned, audited and kept for the
console, and never raises; no secret reaches a message, an error, the audit log or the state."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from notify_support import (
    SMTP_PASSWORD,
    SMTP_USER,
    MailBox,
    Reply,
    free_port,
    make_certificate,
    sample_report,
    server_context,
    smtp_server,
    webhook_server,
)

from hvtui.audit import AuditLog
from hvtui.config.settings import EmailSettings, NotificationConfig, SecretSource, WebhookSettings
from hvtui.notify.report import EVENTS, VMResult
from hvtui.notify.service import Notifier
from hvtui.notify.state import DeliveryState
from hvtui.secrets import resolve_secret

PASSWORD_ENV = "HVTUI_TEST_SMTP_PASSWORD"
ALL_EVENTS = EVENTS


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(autouse=True)
def smtp_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, SMTP_PASSWORD)


def mail(port: int, ca: Path | None, security: str = "starttls", name: str = "ops-mail", on: tuple[str, ...] = ALL_EVENTS) -> NotificationConfig:
    return NotificationConfig(
        name=name,
        on=on,
        email=EmailSettings(
            to=("ops@example.com", "lead@example.com"),
            sender="hvtui@jump01.example.com",
            host="127.0.0.1",
            port=port,
            security=security,
            username=SMTP_USER,
            password=SecretSource(env=PASSWORD_ENV),
            ca_bundle=ca,
            timeout=10.0,
        ),
    )


def hook(url: str, fmt: str = "json", name: str = "chat", retries: int = 3, timeout: float = 5.0, **extra: object) -> NotificationConfig:
    return NotificationConfig(
        name=name, on=ALL_EVENTS, webhook=WebhookSettings(plain_url=url, format=fmt, retries=retries, timeout=timeout, **extra)
    )


class Sent:
    """A notifier over real audit and state files, and what it slept between retries."""

    def __init__(self, tmp_path: Path, *notifications: NotificationConfig) -> None:
        self.audit = AuditLog(tmp_path / "audit.jsonl")
        self.state = DeliveryState(tmp_path / "notifications.json")
        self.sleeps: list[float] = []
        self.notifier = Notifier(
            notifications,
            lambda source, what: resolve_secret(source, what, None),
            self.audit,
            self.state,
            sleep=self.sleeps.append,
            backoff=0.01,
        )
        self.files = (tmp_path / "audit.jsonl", tmp_path / "notifications.json")

    def everything_written(self) -> str:
        return "".join(path.read_text(encoding="utf-8") for path in self.files if path.exists())


def assert_no_secret(*texts: str | bytes) -> None:
    for text in texts:
        as_text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        assert SMTP_PASSWORD not in as_text


# -- e-mail ---------------------------------------------------------------------------------------


def test_starttls_with_auth_delivers_one_message_summarising_every_vm(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    with smtp_server(certificate) as (port, box):
        sent = Sent(tmp_path, mail(port, certificate[0]))
        errors = sent.notifier.send(sample_report("failure"), ("ops-mail",))
    assert errors == []
    assert box.logins == [(SMTP_USER, True)]
    assert len(box.messages) == 1 and box.recipients == [["ops@example.com", "lead@example.com"]]
    message = box.messages[0]
    assert message["Subject"] == "[hvtui] FAILED: schedule nightly - 1 failed, 1 missed, 1 warning, 1 succeeded"
    assert message.get_content_type() == "text/plain"
    body = message.get_content()
    lines = body.splitlines()
    table = [line for line in lines if line.startswith(("failed", "missed", "warning", "succeeded"))]
    assert [line.split()[0] for line in table] == ["failed", "missed", "warning", "succeeded"]  # worst first
    assert table[0].split()[1:4] == ["lab-hv01/sql01", "full", "-"] and "disk read error on sql01.vhdx (3 runs in a row)" in table[0]
    assert "lab-hv02/dc01" in table[1] and "the window closed before it could start" in table[1]
    assert "512.0 MiB" in table[2] and "30s" in table[2] and "guest not quiesced" in table[2]
    assert "3.0 GiB" in table[3] and "12m 34s" in table[3]
    assert "- retention applied to 1 VM" in lines
    assert_no_secret(box.raw[0], sent.everything_written())
    [entry] = sent.audit.read()
    assert (entry["action"], entry["host"], entry["result"]) == ("notify.send", "notification:ops-mail", "ok")
    assert entry["args"]["run"] == "run-20261205-2200" and "2 recipient(s)" in entry["args"]["sent"]
    assert sent.state.failures() == []


def test_implicit_tls_delivers_with_the_severity_in_the_subject(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    with smtp_server(certificate, implicit_tls=True) as (port, box):
        sent = Sent(tmp_path, mail(port, certificate[0], security="tls"))
        errors = sent.notifier.send(sample_report("warning"), ("ops-mail",))
    assert errors == []
    assert box.logins == [(SMTP_USER, True)]
    assert box.messages[0]["Subject"].startswith("[hvtui] WARNING: schedule nightly")


def test_a_wrong_smtp_password_is_returned_audited_and_kept_and_never_shown(
    tmp_path: Path, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "Wr0ng-Passw0rd-xyz"
    monkeypatch.setenv(PASSWORD_ENV, wrong)
    with smtp_server(certificate) as (port, box):
        sent = Sent(tmp_path, mail(port, certificate[0]))
        errors = sent.notifier.send(sample_report(), ("ops-mail",))
    assert box.logins and all(user == SMTP_USER and not accepted for user, accepted in box.logins) and box.messages == []
    [error] = errors
    assert error.startswith(f"notification ops-mail (email): SMTP server 127.0.0.1:{port} rejected the log-on of 'hvtui' (AUTH): 535")
    [entry] = sent.audit.read()
    assert entry["result"] == "failed" and entry["error"] == error
    [failure] = sent.state.failures()
    assert (failure.notification, failure.schedule, failure.error) == ("ops-mail", "nightly", error)
    assert wrong not in sent.everything_written() and wrong not in error


def test_an_untrusted_certificate_is_refused_before_the_password_is_sent(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    with smtp_server(certificate) as (port, box):
        sent = Sent(tmp_path, mail(port, None))  # the system's CAs: the self-signed certificate is not among them
        errors = sent.notifier.send(sample_report(), ("ops-mail",))
    assert box.logins == [] and box.messages == []
    [error] = errors
    assert "its TLS certificate is not trusted (self-signed certificate)" in error and "ca_bundle" in error
    assert sent.audit.read()[0]["result"] == "failed"


def test_a_server_that_is_down_is_a_refused_connection(tmp_path: Path) -> None:
    sent = Sent(tmp_path, mail(free_port(), None), hook(f"http://127.0.0.1:{free_port()}/hook", retries=1))
    errors = sent.notifier.send(sample_report(), ("ops-mail", "chat"))
    assert len(errors) == 2
    assert "refused the connection (is the server running" in errors[0]
    assert "refused the connection" in errors[1] and errors[1].endswith("(after 2 attempts)")
    assert [entry["result"] for entry in sent.audit.read()] == ["failed", "failed"]
    assert [failure.notification for failure in sent.state.failures()] == ["ops-mail", "chat"]


def test_a_name_that_does_not_resolve_says_dns(tmp_path: Path) -> None:
    target = mail(25, None)
    assert target.email is not None
    target = replace(target, email=replace(target.email, host="smtp.nonexistent.invalid"))
    errors = Sent(tmp_path, target).notifier.send(sample_report(), ("ops-mail",))
    assert len(errors) == 1 and "the name smtp.nonexistent.invalid does not resolve (DNS" in errors[0]


def test_a_missing_password_variable_is_a_delivery_error_not_an_exception(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV)
    errors = Sent(tmp_path, mail(free_port(), None)).notifier.send(sample_report(), ("ops-mail",))
    assert errors == [f"notification ops-mail (email): SMTP password for hvtui on 127.0.0.1: environment variable {PASSWORD_ENV} is not set"]


def test_starttls_without_the_servers_support_is_named(tmp_path: Path) -> None:
    """A plain server (no STARTTLS offered): the password is never sent in clear."""
    box = MailBox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        errors = Sent(tmp_path, mail(port, None)).notifier.send(sample_report(), ("ops-mail",))
    finally:
        controller.stop()
    assert len(errors) == 1 and "the server does not offer STARTTLS" in errors[0] and box.logins == []


# -- filtering and targets ----------------------------------------------------------------------------


def test_on_filters_events_and_an_unknown_target_is_an_error(tmp_path: Path) -> None:
    with webhook_server() as server:
        url = f"http://127.0.0.1:{server.port}/hook"
        sent = Sent(tmp_path, NotificationConfig(name="failures-only", on=("failure",), webhook=WebhookSettings(plain_url=url)))
        assert sent.notifier.send(sample_report("success"), ("failures-only",)) == []
        assert server.requests == []
        assert sent.notifier.send(sample_report("failure"), ("failures-only", "failures-only")) == []
        assert len(server.requests) == 1
        errors = sent.notifier.send(sample_report("failure"), ("pager",))
    assert errors == ["notification 'pager' is not configured (notifications: lists failures-only)"]


# -- webhooks -------------------------------------------------------------------------------------


def test_slack_body_has_the_subject_and_a_line_per_vm(tmp_path: Path) -> None:
    with webhook_server() as server:
        sent = Sent(tmp_path, hook(f"http://127.0.0.1:{server.port}/services/T000/B000/XXXX", fmt="slack"))
        assert sent.notifier.send(sample_report(), ("chat",)) == []
    path, headers, _ = server.requests[0]
    assert path == "/services/T000/B000/XXXX" and headers["Content-Type"].startswith("application/json")
    body = server.json()
    assert body["text"].startswith("[hvtui] FAILED: schedule nightly")
    assert body["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": body["text"]}}
    vm_lines = body["blocks"][2]["text"]["text"].splitlines()
    assert [line.split()[0] for line in vm_lines] == ["*failed*", "*missed*", "*warning*", "*succeeded*"]
    assert "`lab-hv01/sql01`" in vm_lines[0] and "disk read error on sql01.vhdx (3 runs in a row)" in vm_lines[0]
    assert body["blocks"][-1]["elements"][0]["text"] == "retention applied to 1 VM"


def test_teams_body_is_an_adaptive_card_with_a_fact_per_vm(tmp_path: Path) -> None:
    with webhook_server() as server:
        assert Sent(tmp_path, hook(f"http://127.0.0.1:{server.port}/teams", fmt="teams")).notifier.send(sample_report("missed"), ("chat",)) == []
    body = server.json()
    [attachment] = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["body"][0]["text"].startswith("[hvtui] MISSED: schedule nightly") and card["body"][0]["color"] == "attention"
    facts = card["body"][2]["facts"]
    assert [fact["title"] for fact in facts] == ["lab-hv01/sql01", "lab-hv02/dc01", "lab-hv02/file01", "lab-hv01/web01"]
    assert facts[3]["value"] == "succeeded, incremental, 3.0 GiB, 12m 34s, -"


def test_json_body_is_the_run_report(tmp_path: Path) -> None:
    with webhook_server() as server:
        assert Sent(tmp_path, hook(f"http://127.0.0.1:{server.port}/j")).notifier.send(sample_report(), ("chat",)) == []
    body = server.json()
    report = sample_report()
    assert body["schedule"] == report.schedule and body["event"] == "failure" and body["notes"] == ["retention applied to 1 VM"]
    assert body["results"][1] == {
        "host": "lab-hv01", "vm": "sql01", "outcome": "failed", "mode": "full", "size_bytes": None, "duration_seconds": 65.0,
        "reason": "disk read error on sql01.vhdx", "point_id": None, "failures_in_a_row": 3,
    }


def test_a_500_is_retried_with_backoff_then_delivered(tmp_path: Path) -> None:
    with webhook_server() as server:
        server.script = [Reply(500, body=b"boom"), Reply(503)]
        sent = Sent(tmp_path, hook(f"http://127.0.0.1:{server.port}/h"))
        assert sent.notifier.send(sample_report(), ("chat",)) == []
    assert len(server.requests) == 3 and server.requests[0][2] == server.requests[2][2]
    assert sent.sleeps == [0.01, 0.02]
    assert "attempt 3" in sent.audit.read()[0]["args"]["sent"]


def test_a_4xx_is_not_retried_and_the_status_is_named(tmp_path: Path) -> None:
    with webhook_server() as server:
        server.script = [Reply(404, body=b"no_service")]
        sent = Sent(tmp_path, hook(f"http://127.0.0.1:{server.port}/h/T0KEN"))
        errors = sent.notifier.send(sample_report(), ("chat",))
    assert errors == [f"notification chat (webhook): webhook http://127.0.0.1:{server.port} answered HTTP 404 Not Found: no_service"]
    assert len(server.requests) == 1 and sent.sleeps == []
    assert "T0KEN" not in sent.everything_written()


def test_a_webhook_that_does_not_answer_in_time_is_a_timeout(tmp_path: Path) -> None:
    with webhook_server() as server:
        server.script = [Reply(200, delay=3.0), Reply(200, delay=3.0)]
        sent = Sent(tmp_path, hook(f"http://127.0.0.1:{server.port}/h", retries=1, timeout=1.0))
        errors = sent.notifier.send(sample_report(), ("chat",))
    assert errors == [f"notification chat (webhook): webhook http://127.0.0.1:{server.port} did not answer within 1s (after 2 attempts)"]
    assert [entry["result"] for entry in sent.audit.read()] == ["failed"]


def test_a_webhook_url_from_a_secret_source_never_appears(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with webhook_server() as server:
        monkeypatch.setenv("HOOK_URL", f"http://127.0.0.1:{server.port}/hooks/S3CRET-T0KEN")
        server.script = [Reply(500)]
        target = NotificationConfig(name="chat", on=ALL_EVENTS, webhook=WebhookSettings(url=SecretSource(env="HOOK_URL"), retries=0))
        sent = Sent(tmp_path, target)
        errors = sent.notifier.send(sample_report(), ("chat",))
    assert server.requests[0][0] == "/hooks/S3CRET-T0KEN"
    assert len(errors) == 1 and "HTTP 500" in errors[0]
    assert "S3CRET-T0KEN" not in errors[0] + sent.everything_written()


def test_a_plain_http_url_from_a_secret_source_to_another_host_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_URL", "http://chat.example.com/hooks/S3CRET")
    target = NotificationConfig(name="chat", on=ALL_EVENTS, webhook=WebhookSettings(url=SecretSource(env="HOOK_URL")))
    errors = Sent(tmp_path, target).notifier.send(sample_report(), ("chat",))
    assert len(errors) == 1 and "the URL from url_env: plain http:// to chat.example.com" in errors[0] and "S3CRET" not in errors[0]


def test_https_webhook_verifies_the_certificate(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    with webhook_server(tls=server_context(certificate)) as server:
        url = f"https://127.0.0.1:{server.port}/h"
        untrusted = Sent(tmp_path / "a", hook(url, retries=0)).notifier.send(sample_report(), ("chat",))
        trusted = Sent(tmp_path / "b", hook(url, retries=0, ca_bundle=certificate[0])).notifier.send(sample_report(), ("chat",))
    assert len(untrusted) == 1 and "its TLS certificate is not trusted" in untrusted[0]
    assert trusted == [] and len(server.requests) == 1


def test_an_unexpected_error_is_still_only_a_returned_message(tmp_path: Path) -> None:
    def broken(source: SecretSource, what: str) -> str:
        raise RuntimeError("resolver bug")

    notifier = Notifier([mail(25, None)], broken, AuditLog(tmp_path / "a.jsonl"), DeliveryState(tmp_path / "s.json"))
    assert notifier.send(sample_report(), ("ops-mail",)) == ["notification ops-mail (email): RuntimeError: resolver bug"]


def test_a_success_clears_the_kept_failure(tmp_path: Path) -> None:
    with webhook_server() as server:
        server.script = [Reply(500)]
        sent = Sent(tmp_path, hook(f"http://127.0.0.1:{server.port}/h", retries=0))
        assert len(sent.notifier.send(sample_report(), ("chat",))) == 1
        assert [failure.notification for failure in sent.state.failures()] == ["chat"]
        assert sent.notifier.send(sample_report(), ("chat",)) == []
    assert sent.state.failures() == []
    assert json.loads((tmp_path / "notifications.json").read_text())["chat"]["ok"] is True


def test_a_damaged_state_file_is_reset_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "notifications.json").write_bytes(b"\x00{not json")
    with webhook_server() as server:
        server.script = [Reply(500)]
        sent = Sent(tmp_path, hook(f"http://127.0.0.1:{server.port}/h", retries=0))
        assert len(sent.notifier.send(sample_report(), ("chat",))) == 1
    assert [failure.notification for failure in sent.state.failures()] == ["chat"]


def test_hostile_vm_names_and_reasons_cannot_reshape_a_message(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    """A VM name or reason from a host with line breaks, ESC or Slack mentions stays one line of text."""
    hostile = replace(
        sample_report(),
        results=(
            VMResult("lab-hv01", "evil\r\nBcc: victim@example.com\x1b[31m", "failed", reason="<!channel> boom\nSubject: fake"),
        ),
    )
    with smtp_server(certificate) as (port, box), webhook_server() as server:
        sent = Sent(tmp_path, mail(port, certificate[0]), hook(f"http://127.0.0.1:{server.port}/s", fmt="slack"))
        assert sent.notifier.send(hostile, ("ops-mail", "chat")) == []
    [message] = box.messages
    assert message["Bcc"] is None and box.recipients == [["ops@example.com", "lead@example.com"]]
    assert message["Subject"] == "[hvtui] FAILED: schedule nightly - 1 failed"
    [line] = [line for line in message.get_content().splitlines() if line.startswith("failed")]
    assert "lab-hv01/evil Bcc: victim@example.com [31m" in line and "<!channel> boom Subject: fake" in line
    assert "\x1b" not in message.get_content()
    slack_line = server.json()["blocks"][2]["text"]["text"]
    assert "&lt;!channel&gt; boom Subject: fake" in slack_line and "\n" not in slack_line and "\x1b" not in slack_line


def test_webhook_headers_come_from_secret_sources_and_never_appear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "Bearer tok-3xyz-SECRET")
    with webhook_server() as server:
        server.script = [Reply(401, body=b"bad token")]
        target = hook(f"http://127.0.0.1:{server.port}/h", retries=0, headers=(("Authorization", SecretSource(env="HOOK_TOKEN")),))
        sent = Sent(tmp_path, target)
        errors = sent.notifier.send(sample_report(), ("chat",))
        assert sent.notifier.send(sample_report(), ("chat",)) == []
    assert [request[1]["Authorization"] for request in server.requests] == ["Bearer tok-3xyz-SECRET"] * 2
    assert len(errors) == 1 and "answered HTTP 401 Unauthorized: bad token" in errors[0]
    assert "tok-3xyz-SECRET" not in errors[0] + sent.everything_written()


def test_a_header_value_with_a_line_break_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "x\r\nX-Injected: 1")
    with webhook_server() as server:
        target = hook(f"http://127.0.0.1:{server.port}/h", headers=(("X-Token", SecretSource(env="HOOK_TOKEN")),))
        errors = Sent(tmp_path, target).notifier.send(sample_report(), ("chat",))
    assert errors == ["notification chat (webhook): the value of header X-Token from its secret source holds a line break"]
    assert server.requests == []


class _OnlyUnknownAuth(MailBox):
    async def auth_XTOKEN(self, server: object, args: list[str]) -> None:  # noqa: N802 - aiosmtpd's hook name
        return None


def test_a_server_with_no_auth_mechanism_in_common_is_named(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    box = _OnlyUnknownAuth()
    port = free_port()
    controller = Controller(
        box, hostname="127.0.0.1", port=port, tls_context=server_context(certificate), require_starttls=True,
        auth_exclude_mechanism=["LOGIN", "PLAIN"],
    )
    controller.start()
    try:
        errors = Sent(tmp_path, mail(port, certificate[0])).notifier.send(sample_report(), ("ops-mail",))
    finally:
        controller.stop()
    assert errors == [f"notification ops-mail (email): SMTP server 127.0.0.1:{port}: No suitable authentication method found."]
