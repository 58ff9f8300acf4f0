"""The schema of ``notifications:`` (issue 22): where a schedule run's report is sent.

Each notification is exactly one of ``email:`` or ``webhook:`` (checked by
``hvtui.config.load_notify``, which also holds the rules between keys), plus ``on:``, the
run events it is sent for.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import UNSET, Meta, UnsetType

from hvtui.config.fields import (
    ENV_NAME_PATTERN,
    NAME_PATTERN,
    Model,
    boolean,
    choice,
    collection,
    described,
    duration,
    integer,
    path,
    text,
)

# The same as hvtui.notify.report.EVENTS (the config layer cannot import the services; a test
# keeps the two equal).
NOTIFY_EVENTS = ("success", "warning", "failure", "missed")
DEFAULT_NOTIFY_EVENTS = ("warning", "failure", "missed")
WEBHOOK_FORMATS = ("slack", "teams", "json")
# host:port, the host a DNS name, an IPv4 address or a bracketed IPv6 address.
SMTP_ADDRESS_PATTERN = r"^(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]@]+):[0-9]{1,5}$"
MAIL_ADDRESS_PATTERN = r"^[^@\s<>,;]+@[^@\s<>,;]+$"
URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#]+"
HEADER_NAME_PATTERN = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"

EnvName = Annotated[
    str, Meta(pattern=ENV_NAME_PATTERN), described("An environment variable's name.", kind="envname", what="an environment variable name")
]
MailAddress = text("an e-mail address", "An e-mail address, e.g. ops@example.com.", pattern=MAIL_ADDRESS_PATTERN)
NotifyEvent = choice(NOTIFY_EVENTS, "a run event", "success, warning, failure or missed.")


class EmailModel(Model, kw_only=True):
    """E-mail through an SMTP server; TLS (STARTTLS or implicit) verified by default."""

    to: collection(list[MailAddress], "a list of e-mail addresses", "Recipients.")
    from_: MailAddress = msgspec.field(name="from")
    smtp: text(
        "host:port",
        'The SMTP server, e.g. "smtp.example.com:587".',
        pattern=SMTP_ADDRESS_PATTERN,
        pattern_hint=' (e.g. "smtp.example.com:587")',
        missing='the SMTP server as "host:port"',
    )
    starttls: boolean("Upgrade the connection with STARTTLS (default: true unless the port is 465).") | UnsetType = UNSET
    tls: boolean("Implicit TLS from the first byte (SMTPS, usually port 465).") | UnsetType = UNSET
    username: text("a user name", "Log on to the SMTP server (AUTH) as this user.") | UnsetType = UNSET
    password_env: EnvName | UnsetType = UNSET
    password_command: text("a command line", "A command printing the password on its first line.", kind="command") | UnsetType = UNSET
    password_prompt: boolean("Ask for the password when sending (interactive runs only).") | UnsetType = UNSET
    ca_bundle: path("CA bundle (PEM) to verify the server's certificate.", must_exist=True) | UnsetType = UNSET
    timeout: duration("Deadline of the connection and of each reply (default 30s)", minimum=1.0) | UnsetType = UNSET


class HeaderSecretModel(Model, kw_only=True):
    """A header's value from a secret source (an API token): exactly one of env: or command:."""

    env: EnvName | UnsetType = UNSET
    command: text("a command line", "A command printing the value on its first line.", kind="command") | UnsetType = UNSET


HeaderValue = Annotated[
    HeaderSecretModel,
    described(
        "The header's value from a secret source.",
        what="{env: VARIABLE} or {command: ...}",
        plain_secret="a header value is not accepted in plain text (it is usually a token); "
        "give {env: VARIABLE} or {command: a command that prints it}",
    ),
]
HeaderName = Annotated[str, Meta(pattern=HEADER_NAME_PATTERN), described("An HTTP header name.", what="an HTTP header name as the key")]


class WebhookModel(Model, kw_only=True):
    """A JSON POST to a chat or monitoring webhook; HTTPS verified by default."""

    url: text("an http(s) URL", "The webhook's URL.", pattern=URL_PATTERN) | UnsetType = UNSET
    url_env: EnvName | UnsetType = UNSET
    url_command: text("a command line", "A command printing the URL (webhook URLs often hold a token).", kind="command") | UnsetType = UNSET
    format: choice(WEBHOOK_FORMATS, "a webhook format", "The body: slack, teams or json (default json).") | UnsetType = UNSET
    timeout: duration("Deadline of one attempt (default 10s)", minimum=1.0) | UnsetType = UNSET
    retries: integer(0, 10, "Attempts after the first, with backoff (default 3).") | UnsetType = UNSET
    ca_bundle: path("CA bundle (PEM) to verify the server's certificate.", must_exist=True) | UnsetType = UNSET
    insecure_http: boolean("Allow a plain http:// URL to a host other than this machine.") | UnsetType = UNSET
    headers: collection(
        dict[HeaderName, HeaderValue], "a mapping of header name to {env: ...} or {command: ...}", "Extra headers, from secret sources."
    ) | UnsetType = UNSET


class NotificationModel(Model, kw_only=True):
    """Where a schedule's report goes: exactly one of email: or webhook:."""

    name: Annotated[
        str,
        Meta(pattern=NAME_PATTERN),
        described("How a schedule's notify: names it.", kind="name", what="a notification name", missing="how a schedule's notify: names it"),
    ]
    email: EmailModel | UnsetType = UNSET
    webhook: WebhookModel | UnsetType = UNSET
    on: collection(list[NotifyEvent], "a list of run events", "Events sent (default failure, missed, warning).") | UnsetType = UNSET
