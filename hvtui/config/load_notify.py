"""``notifications:`` as read against the models -> ``NotificationConfig``s, with the rules
between keys: exactly one of email: or webhook:, one password source, no password or
webhook over plain text to another machine, a CA bundle only where TLS is used."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from msgspec import UNSET

from hvtui.config.document import Document
from hvtui.config.notify_models import DEFAULT_NOTIFY_EVENTS, NOTIFY_EVENTS, EmailModel, WebhookModel
from hvtui.config.settings import EmailSettings, NotificationConfig, SecretSource, WebhookSettings
from hvtui.config.walk import Read, duration_seconds, first_of_each_name

IMPLICIT_TLS_PORT = 465
SET_BY_HVTUI = ("content-type", "content-length", "host", "user-agent")


def convert_notifications(doc: Document, section: Read | None) -> tuple[NotificationConfig, ...]:
    """The notifications free of mistakes (the others are reported); duplicate names are reported."""
    if section is None or not isinstance(section.data, list):
        return ()
    result: list[NotificationConfig] = []
    for item in first_of_each_name(doc, section.items, "notification"):
        if item.model is None:
            continue
        notification = _convert(doc, item)
        if notification is not None:
            result.append(notification)
    return tuple(result)


def _convert(doc: Document, item: Read) -> NotificationConfig | None:
    model = item.model
    before = len(doc.problems)
    kinds = [key for key in ("email", "webhook") if key in item.keys]
    if not kinds:
        doc.report(item.at, "a notification needs exactly one of email: or webhook:")
    elif len(kinds) > 1:
        doc.report(item.where("webhook"), "a notification is either email: or webhook:, not both; make two notifications")
    on = DEFAULT_NOTIFY_EVENTS
    if model.on is not UNSET:
        if not model.on:
            doc.report(item.where("on"), f"on: is empty, so this notification is never sent; list some of {', '.join(NOTIFY_EVENTS)}")
        on = tuple(event for event in NOTIFY_EVENTS if event in model.on)
    email = _email(doc, item.keys["email"], model.email) if model.email is not UNSET else None
    webhook = _webhook(doc, item.keys["webhook"], model.webhook) if model.webhook is not UNSET else None
    if len(doc.problems) > before:
        return None
    return NotificationConfig(name=model.name, on=on, email=email, webhook=webhook, line=item.at.line)


def _email(doc: Document, entry: Read, email: EmailModel) -> EmailSettings:
    host, _, port_text = email.smtp.rpartition(":")
    port = int(port_text)
    if not 1 <= port <= 65535:
        doc.report(entry.where("smtp"), f"expected a port from 1 to 65535 after the ':', found {port}")
    if email.tls is True and email.starttls is True:
        doc.report(entry.where("starttls"), "starttls: true and tls: true exclude each other (tls: implicit TLS, usually port 465)")
    if email.tls is True:
        security = "tls"
    elif email.starttls is True:
        security = "starttls"
    elif email.starttls is False:
        security = "tls" if email.tls is UNSET and port == IMPLICIT_TLS_PORT else "none"
    elif email.tls is False:
        security = "starttls"
    else:
        security = "tls" if port == IMPLICIT_TLS_PORT else "starttls"
    given = [key for key in ("password_env", "password_command") if key in entry.keys]
    if email.password_prompt is True:
        given.append("password_prompt")
    username = email.username if email.username is not UNSET else None
    if len(given) > 1:
        doc.report(entry.where(given[1]), f"only one password source may be set, found {' and '.join(given)}")
    if username is not None and not given:
        doc.report(entry.at, "username is set but no password source: add one of password_env, password_command or password_prompt: true")
    if given and username is None:
        doc.report(entry.where(given[0]), "a password source is set but no username; add username: (the SMTP log-on name)")
    if security == "none" and username is not None:
        doc.report(
            entry.where("starttls"),
            "starttls: false would send the SMTP password unencrypted; use starttls: true or tls: true",
        )
    ca_bundle = None
    if email.ca_bundle is not UNSET:
        if security == "none":
            doc.report(entry.where("ca_bundle"), "a CA bundle only applies with TLS (starttls: true or tls: true)")
        ca_bundle = doc.resolve_path(email.ca_bundle)
    timeout = duration_seconds(email.timeout) if email.timeout is not UNSET else 30.0
    return EmailSettings(
        to=tuple(email.to),
        sender=email.from_,
        host=host.strip("[]"),
        port=port,
        security=security,
        username=username,
        password=SecretSource(
            env=email.password_env if email.password_env is not UNSET else None,
            command=email.password_command if email.password_command is not UNSET else None,
            prompt=email.password_prompt is True,
        ),
        ca_bundle=ca_bundle,
        timeout=timeout or 30.0,
    )


def _webhook(doc: Document, entry: Read, webhook: WebhookModel) -> WebhookSettings:
    given = [key for key in ("url", "url_env", "url_command") if key in entry.keys]
    if not given:
        doc.report(entry.at, "missing required key 'url' (or url_env / url_command, for a URL that holds a token)")
    elif len(given) > 1:
        doc.report(entry.where(given[1]), f"only one of url, url_env and url_command may be set, found {' and '.join(given)}")
    insecure_http = webhook.insecure_http is True
    plain_url = webhook.url if webhook.url is not UNSET else None
    if plain_url is not None:
        problem = url_problem(plain_url, insecure_http)
        if problem:
            doc.report(entry.where("url"), problem)
        if webhook.ca_bundle is not UNSET and urlsplit(plain_url).scheme.lower() != "https":
            doc.report(entry.where("ca_bundle"), "a CA bundle only applies to an https:// URL")
    source = None
    if webhook.url_env is not UNSET or webhook.url_command is not UNSET:
        source = SecretSource(
            env=webhook.url_env if webhook.url_env is not UNSET else None,
            command=webhook.url_command if webhook.url_command is not UNSET else None,
        )
    headers = _headers(doc, entry.keys["headers"], webhook) if webhook.headers is not UNSET else ()
    timeout = duration_seconds(webhook.timeout) if webhook.timeout is not UNSET else 10.0
    return WebhookSettings(
        url=source,
        plain_url=plain_url,
        format=webhook.format if webhook.format is not UNSET else "json",
        timeout=timeout or 10.0,
        retries=webhook.retries if webhook.retries is not UNSET else 3,
        ca_bundle=doc.resolve_path(webhook.ca_bundle) if webhook.ca_bundle is not UNSET else None,
        insecure_http=insecure_http,
        headers=headers,
    )


def _headers(doc: Document, section: Read, webhook: WebhookModel) -> tuple[tuple[str, SecretSource], ...]:
    out: list[tuple[str, SecretSource]] = []
    for name, value in (webhook.headers or {}).items():
        entry = section.keys[name]
        if name.lower() in SET_BY_HVTUI:
            doc.report(entry.at, f"the {name} header is set by hvtui; remove it")
            continue
        given = [key for key in ("env", "command") if key in entry.keys]
        if len(given) != 1:
            doc.report(entry.at, "a header's value needs exactly one of env: (a variable's name) or command: (prints it)")
            continue
        out.append((name, SecretSource(env=value.env if value.env is not UNSET else None,
                                       command=value.command if value.command is not UNSET else None)))
    return tuple(out)


def url_problem(url: str, insecure_http: bool) -> str | None:
    """Why ``url`` may not be used as a webhook, or None; the message never repeats the URL
    (its path often holds a token)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as err:
        return f"not a valid URL ({err})"
    if parts.scheme.lower() not in ("http", "https") or not host:
        return "expected an http:// or https:// URL with a host name"
    if parts.scheme.lower() == "http" and not insecure_http and not is_loopback(host):
        return (
            f"plain http:// to {host} would send the report (and any token in the URL) unencrypted; "
            "use https://, or set insecure_http: true if you accept that"
        )
    return None


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
