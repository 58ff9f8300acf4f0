"""``notifications:`` in the config: e-mail and webhook targets, their rules, and mistakes
refused with the file, the line, the key and what was expected."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from hvtui.config import load_config
from hvtui.config.notify_models import NOTIFY_EVENTS
from hvtui.config.settings import SecretSource
from hvtui.errors import ConfigError
from hvtui.notify.report import EVENTS


def write(directory: Path, text: str) -> Path:
    path = directory / "config.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def test_config_events_are_the_reports_events() -> None:
    assert NOTIFY_EVENTS == EVENTS


def test_email_and_webhook_targets_load_with_their_defaults(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    config = load_config(
        write(
            tmp_path,
            """
            notifications:
              - name: ops-mail
                email:
                  to: [ops@example.com, lead@example.com]
                  from: hvtui@jump01
                  smtp: smtp.example.com:587
                  username: hvtui
                  password_env: HVTUI_SMTP_PASSWORD
                  ca_bundle: ca.pem
              - name: smtps
                email: {to: [a@example.com], from: b@example.com, smtp: "mail.example.com:465"}
                on: [success, failure]
              - name: chat
                webhook: {url: "https://chat.example.com/hooks/abc", format: slack}
                on: [failure, missed]
              - name: local-hook
                webhook: {url: "http://127.0.0.1:8080/x", timeout: 3s, retries: 0}
              - name: teams
                webhook: {url_env: TEAMS_URL, format: teams, headers: {Authorization: {env: TEAMS_AUTH}, X-Key: {command: pass x}}}
            """,
        )
    )
    mail, smtps, chat, local, teams = config.notifications
    assert mail.kind == "email" and mail.on == ("warning", "failure", "missed")
    assert mail.email is not None
    assert mail.email.to == ("ops@example.com", "lead@example.com") and mail.email.sender == "hvtui@jump01"
    assert (mail.email.host, mail.email.port, mail.email.security) == ("smtp.example.com", 587, "starttls")
    assert mail.email.password == SecretSource(env="HVTUI_SMTP_PASSWORD") and mail.email.ca_bundle == bundle
    assert smtps.email is not None and smtps.email.security == "tls" and smtps.on == ("success", "failure")
    assert chat.webhook is not None and chat.webhook.format == "slack" and chat.webhook.plain_url == "https://chat.example.com/hooks/abc"
    assert local.webhook is not None and (local.webhook.timeout, local.webhook.retries, local.webhook.format) == (3.0, 0, "json")
    assert teams.webhook is not None and teams.webhook.url == SecretSource(env="TEAMS_URL") and teams.webhook.plain_url is None
    assert teams.webhook.headers == (("Authorization", SecretSource(env="TEAMS_AUTH")), ("X-Key", SecretSource(command="pass x")))
    assert config.notification("chat") is chat and config.notification("nope") is None


def test_a_bare_on_key_is_the_word_not_yaml_1_1_true(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, "notifications:\n  - name: n\n    webhook: {url: 'https://h.example/x'}\n    on: [success]\n")
    )
    assert config.notifications[0].on == ("success",)


MAIL = "notifications:\n  - name: m\n    email: {to: [a@example.com], from: b@example.com, smtp: 'smtp.example.com:587'%s}\n"
HOOK = "notifications:\n  - name: h\n    webhook: {url: 'https://h.example/x'%s}\n"

MISTAKES = [
    pytest.param("notifications:\n  - name: n\n", 2, "notifications[0]: a notification needs exactly one of email: or webhook:", id="neither"),
    pytest.param(
        "notifications:\n  - name: n\n    email: {to: [a@b.c], from: b@b.c, smtp: 'h:25'}\n    webhook: {url: 'https://h/x'}\n",
        4,
        "notifications[0].webhook: a notification is either email: or webhook:, not both",
        id="both",
    ),
    pytest.param(HOOK % ", format: slak", 3, "expected a webhook format (slack, teams, json), found 'slak'; did you mean 'slack'?", id="format-typo"),
    pytest.param(HOOK % ", formt: slack", 3, "notifications[0].webhook.formt: unknown key; did you mean 'format'?", id="key-typo"),
    pytest.param(
        "notifications:\n  - name: h\n    webhook: {url: 'http://chat.example.com/hook'}\n",
        3,
        "plain http:// to chat.example.com would send the report (and any token in the URL) unencrypted",
        id="plain-http",
    ),
    pytest.param(HOOK % ", url_env: U", 3, "only one of url, url_env and url_command may be set, found url and url_env", id="two-urls"),
    pytest.param("notifications:\n  - name: h\n    webhook: {format: json}\n", 3, "missing required key 'url'", id="no-url"),
    pytest.param(MAIL % ", password: hunter2", 3, "a plain-text password is not accepted in the config file", id="plain-password"),
    pytest.param(MAIL % ", username: u", 3, "username is set but no password source", id="user-without-password"),
    pytest.param(MAIL % ", password_env: P", 3, "a password source is set but no username", id="password-without-user"),
    pytest.param(MAIL % ", username: u, password_env: P, password_prompt: true", 3, "only one password source may be set", id="two-passwords"),
    pytest.param(
        MAIL % ", starttls: false, username: u, password_env: P", 3, "starttls: false would send the SMTP password unencrypted", id="auth-plain"
    ),
    pytest.param(MAIL % ", starttls: true, tls: true", 3, "starttls: true and tls: true exclude each other", id="tls-twice"),
    pytest.param(
        "notifications:\n  - name: m\n    email: {to: [a@b.c], from: b@b.c, smtp: smtp.example.com}\n",
        3,
        "notifications[0].email.smtp: expected host:port, found 'smtp.example.com' (e.g. \"smtp.example.com:587\")",
        id="smtp-without-port",
    ),
    pytest.param(MAIL.replace("smtp.example.com:587", "smtp.example.com:70000") % "", 3, "expected a port from 1 to 65535", id="port"),
    pytest.param(MAIL.replace("[a@example.com]", "[ops]") % "", 3, "notifications[0].email.to[0]: expected an e-mail address", id="address"),
    pytest.param(HOOK % "" + "    on: [failure, mised]\n", 4, "did you mean 'missed'?", id="event-typo"),
    pytest.param(HOOK % "" + "    on: []\n", 4, "on: is empty, so this notification is never sent", id="no-events"),
    pytest.param(HOOK % ", headers: {Authorization: {env: A, command: b}}", 3, "a header's value needs exactly one of env:", id="header-two-sources"),
    pytest.param(HOOK % ", headers: {Content-Type: {env: A}}", 3, "the Content-Type header is set by hvtui", id="header-set-by-hvtui"),
    pytest.param(HOOK % ", headers: {'Bad Header': {env: A}}", 3, "expected an HTTP header name as the key", id="header-name"),
    pytest.param(HOOK % ", headers: {Authorization: 'Bearer hunter2'}", 3, "a header value is not accepted in plain text", id="header-plain-value"),
    pytest.param(HOOK % "" + "  - name: h\n    webhook: {url: 'https://h/y'}\n", 4, "duplicate notification name 'h' (first defined on line 2)", id="dup"),
]


@pytest.mark.parametrize(("text", "line", "message"), MISTAKES)
def test_notification_mistakes_name_the_line_and_key(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = str(caught.value)
    assert error.startswith(f"{path}:{line}: "), error
    assert message in error, error
    assert "hunter2" not in error


def test_plain_http_is_allowed_to_loopback_or_with_insecure_http(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
            notifications:
              - {name: a, webhook: {url: "http://localhost:9000/x"}}
              - {name: b, webhook: {url: "http://[::1]:9000/x"}}
              - {name: c, webhook: {url: "http://chat.internal/x", insecure_http: true}}
            """,
        )
    )
    assert [n.name for n in config.notifications] == ["a", "b", "c"]


def test_the_url_of_a_refused_webhook_is_not_repeated(tmp_path: Path) -> None:
    path = write(tmp_path, "notifications:\n  - name: h\n    webhook: {url: 'http://chat.example.com/hooks/T0KEN-123'}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "T0KEN-123" not in str(caught.value)


def test_a_notification_password_command_in_a_group_writable_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, MAIL % ", username: u, password_command: 'pass show smtp'")
    os.chmod(path, 0o664)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "notification 'm'" in str(caught.value) and "writable by its group" in str(caught.value)


def test_unencrypted_targets_are_warned_about_at_load(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        notifications:
          - {name: relay, email: {to: [a@example.com], from: b@example.com, smtp: "relay.example.com:25", starttls: false}}
          - {name: hook, webhook: {url: "http://chat.internal/x", insecure_http: true}}
          - {name: fine, webhook: {url: "https://chat.example.com/x"}}
        """,
    )
    assert load_config(path).warnings() == [
        f"{path}:2: notification relay: starttls is false: its e-mail goes unencrypted",
        f"{path}:3: notification hook: insecure_http: its reports go over plain HTTP",
    ]
