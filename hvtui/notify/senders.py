"""Delivery: e-mail through ``smtplib`` (STARTTLS or implicit TLS, verified, AUTH) and webhooks
through ``urllib`` (a timeout per attempt, retries with backoff on 5xx, 429 and network errors).

A failure is a ``DeliveryError`` saying what went wrong in the words an admin acts on (the name
did not resolve, the connection was refused, the certificate is not trusted, the log-on was
rejected, the HTTP status).  Messages name the server as scheme://host:port, never a webhook's
path (it often holds a token) and never a password.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

from hvtui import __version__
from hvtui.config.settings import EmailSettings
from hvtui.errors import HvtuiError
from hvtui.notify.render import one_line

# Statuses worth another attempt: the server is busy or broken for now, not refusing this message.
RETRIED_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class DeliveryError(HvtuiError):
    """A message could not be delivered; ``str()`` says why, without a secret."""


def tls_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """Verified TLS: the system's CAs, or only ``ca_bundle``'s when one is given."""
    try:
        return ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    except (OSError, ssl.SSLError) as err:
        raise DeliveryError(f"cannot read the CA bundle {ca_bundle}: {getattr(err, 'strerror', None) or err}") from None


# -- e-mail -------------------------------------------------------------------------------------


def send_email(settings: EmailSettings, message: EmailMessage, password: str | None) -> None:
    """Deliver ``message`` through the configured SMTP server, or raise ``DeliveryError``."""
    where = f"SMTP server {settings.host}:{settings.port}"
    try:
        _deliver(settings, message, password)
    except smtplib.SMTPAuthenticationError as err:
        raise DeliveryError(f"{where} rejected the log-on of {settings.username!r} (AUTH): {_reply(err)}") from None
    except smtplib.SMTPNotSupportedError as err:
        raise DeliveryError(f"{where}: {err}") from None
    except smtplib.SMTPRecipientsRefused as err:
        refused = "; ".join(f"{address} ({_code_text(code, text)})" for address, (code, text) in err.recipients.items())
        raise DeliveryError(f"{where} refused every recipient: {refused}") from None
    except smtplib.SMTPSenderRefused as err:
        raise DeliveryError(f"{where} refused the sender {err.sender}: {_reply(err)}") from None
    except smtplib.SMTPResponseException as err:
        raise DeliveryError(f"{where} refused the message: {_reply(err)}") from None
    except smtplib.SMTPServerDisconnected as err:
        raise DeliveryError(f"{where} closed the connection unexpectedly ({one_line(str(err)) or 'no reason given'})") from None
    except smtplib.SMTPException as err:  # e.g. no AUTH mechanism both sides know
        raise DeliveryError(f"{where}: {one_line(str(err))}") from None
    except OSError as err:
        raise DeliveryError(network_problem(err, where, settings.host, settings.timeout)) from None


def _deliver(settings: EmailSettings, message: EmailMessage, password: str | None) -> None:
    context = tls_context(settings.ca_bundle) if settings.security != "none" else None
    smtp: smtplib.SMTP
    if settings.security == "tls":
        smtp = smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout, context=context)
    else:
        smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    with smtp:
        smtp.ehlo()
        if settings.security == "starttls":
            if not smtp.has_extn("starttls"):
                raise smtplib.SMTPNotSupportedError(
                    "the server does not offer STARTTLS; for implicit TLS (usually port 465) set tls: true"
                )
            smtp.starttls(context=context)
            smtp.ehlo()
        if settings.username is not None:
            if not smtp.has_extn("auth"):
                raise smtplib.SMTPNotSupportedError("the server offers no AUTH, so the username cannot log on")
            smtp.login(settings.username, password or "")
        smtp.send_message(message)


def _code_text(code: int, text: bytes | str) -> str:
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"{code} {one_line(text)}"


def _reply(err: smtplib.SMTPResponseException) -> str:
    return _code_text(err.smtp_code, err.smtp_error)


def network_problem(err: OSError, where: str, host: str, timeout: float) -> str:
    """The words for a failure to reach a server: DNS, refused, timeout, TLS verification."""
    if isinstance(err, socket.gaierror):
        return f"{where}: the name {host} does not resolve (DNS: {err.strerror or err})"
    if isinstance(err, ConnectionRefusedError):
        return f"{where} refused the connection (is the server running and the port right?)"
    if isinstance(err, TimeoutError | socket.timeout):
        return f"{where} did not answer within {timeout:g}s"
    if isinstance(err, ssl.SSLCertVerificationError):
        return (
            f"{where}: its TLS certificate is not trusted ({err.verify_message or err.reason}); "
            "if it is signed by your own CA, give that CA as ca_bundle:"
        )
    if isinstance(err, ssl.SSLError):
        return f"{where}: the TLS handshake failed ({err.reason or one_line(str(err))}); is it a TLS port?"
    if isinstance(err, ConnectionResetError):
        return f"{where} reset the connection"
    return f"{where}: cannot connect ({err.strerror or one_line(str(err))})"


# -- webhooks -----------------------------------------------------------------------------------


def endpoint_of(url: str) -> str:
    """``scheme://host:port`` of ``url``: what a message may name (the path may hold a token)."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = "?"
    host = parts.hostname or "?"
    return f"{parts.scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def post_webhook(
    url: str,
    payload: bytes,
    timeout: float,
    retries: int,
    ca_bundle: Path | None,
    sleep: Callable[[float], None],
    backoff: float,
    headers: dict[str, str] | None = None,
) -> int:
    """POST ``payload`` (JSON) to ``url``; returns the number of attempts it took.

    ``headers`` are extra headers (their values are secrets: never in a message).  Retries
    ``retries`` times after a network error, a timeout or a status in RETRIED_STATUSES,
    waiting ``backoff``, 2x, 4x... seconds between attempts; raises ``DeliveryError`` with the
    last attempt's problem.
    """
    where = f"webhook {endpoint_of(url)}"
    context = tls_context(ca_bundle) if urlsplit(url).scheme == "https" else None
    request = urllib.request.Request(
        url,
        data=payload,
        method="POST",
        headers={**(headers or {}), "Content-Type": "application/json; charset=utf-8", "User-Agent": f"hvtui/{__version__}"},
    )
    attempts = retries + 1
    for attempt in range(1, attempts + 1):
        retry, problem = _attempt(request, context, timeout, where, urlsplit(url).hostname or "?")
        if problem is None:
            return attempt
        if not retry or attempt == attempts:
            tries = f" (after {attempt} attempts)" if attempt > 1 else ""
            raise DeliveryError(problem + tries)
        sleep(backoff * 2 ** (attempt - 1))
    raise AssertionError("unreachable")  # pragma: no cover


def _attempt(request: urllib.request.Request, context: ssl.SSLContext | None, timeout: float, where: str, host: str) -> tuple[bool, str | None]:
    """(worth retrying, problem) of one POST; problem None: delivered."""
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            response.read(65536)
            return False, None
    except urllib.error.HTTPError as err:
        detail = ""
        with contextlib.suppress(OSError):
            detail = one_line(err.read(300).decode("utf-8", "replace"), 120)
        text = f"{where} answered HTTP {err.code} {one_line(err.reason if isinstance(err.reason, str) else '', 60)}".rstrip()
        return err.code in RETRIED_STATUSES, text + (f": {detail}" if detail else "")
    except urllib.error.URLError as err:
        reason = err.reason
        if isinstance(reason, OSError):
            return True, network_problem(reason, where, host, timeout)
        return True, f"{where}: {one_line(str(reason))}"
    except OSError as err:  # a timeout or reset while reading the answer
        return True, network_problem(err, where, host, timeout)
    except ValueError:  # http.client refuses a malformed header or URL (its message quotes the value: not shown)
        return False, f"{where}: the request could not be built (a malformed header value or URL)"
