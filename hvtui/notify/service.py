"""``Notifier``: sends a run report to the notifications a schedule names.

``send(report, targets)`` never raises for a delivery problem: each one is returned as a
message (for the run's record), written to the audit log and kept in the state directory
(``DeliveryState``) so the console can show it until a later message to the same target goes
through.  A message that went through is audited briefly too.  No secret reaches a message,
a log line or the audit log: passwords and webhook URLs are registered with the redactor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from hvtui.audit import RESULT_FAILED, RESULT_OK, AuditLog
from hvtui.config.load_notify import url_problem
from hvtui.config.settings import NotificationConfig, SecretSource
from hvtui.logsetup import redact, register_secret
from hvtui.notify.render import subject, text_body, webhook_payload
from hvtui.notify.report import RunReport
from hvtui.notify.senders import DeliveryError, endpoint_of, post_webhook, send_email
from hvtui.notify.state import DeliveryState
from hvtui.secrets import SecretError

log = logging.getLogger(__name__)

AUDIT_ACTION = "notify.send"
# resolve(source, what) -> the secret; hvtui.secrets.resolve_secret with the core's prompter.
SecretResolver = Callable[[SecretSource, str], str]


class Notifier:
    def __init__(
        self,
        notifications: Sequence[NotificationConfig],
        resolve_secret: SecretResolver,
        audit: AuditLog,
        state: DeliveryState,
        sleep: Callable[[float], None] = time.sleep,
        backoff: float = 1.0,
    ) -> None:
        self._by_name = {notification.name: notification for notification in notifications}
        self._resolve = resolve_secret
        self._audit = audit
        self._state = state
        self._sleep = sleep
        self._backoff = backoff

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def send(self, report: RunReport, targets: tuple[str, ...]) -> list[str]:
        """Send ``report`` to each target whose ``on:`` lists the run's event; the delivery
        errors, one line each (empty: everything sent or nothing to send)."""
        errors: list[str] = []
        for name in dict.fromkeys(targets):
            notification = self._by_name.get(name)
            if notification is None:
                problem = f"notification {name!r} is not configured (notifications: lists {', '.join(self._by_name) or 'none'})"
                errors.append(problem)
                self._record(name, report, RESULT_FAILED, problem, 0.0)
                continue
            if report.event not in notification.on:
                continue
            problem = self.deliver(notification, report)
            if problem is not None:
                errors.append(problem)
        return errors

    def deliver(self, notification: NotificationConfig, report: RunReport, action: str = AUDIT_ACTION) -> str | None:
        """Send ``report`` to one notification whatever its ``on:``; the problem, or None when sent."""
        started = time.monotonic()
        try:
            detail = self._deliver(notification, report)
        except DeliveryError as err:
            problem = redact(f"notification {notification.name} ({notification.kind}): {err}")
        except Exception as err:  # a secret source, a bug: still never the backup's failure
            log.exception("notification %s failed unexpectedly", notification.name)
            problem = redact(f"notification {notification.name} ({notification.kind}): {type(err).__name__}: {err}")
        else:
            self._record(notification.name, report, RESULT_OK, None, time.monotonic() - started, detail, action)
            return None
        log.warning("%s", problem)
        self._record(notification.name, report, RESULT_FAILED, problem, time.monotonic() - started, action=action)
        return problem

    def _deliver(self, notification: NotificationConfig, report: RunReport) -> str:
        """What was done ("to 2 recipients", "2 attempts"), for the audit line."""
        if notification.email is not None:
            email = notification.email
            password = None
            if email.username is not None:
                password = self._secret(email.password, f"SMTP password for {email.username} on {email.host}")
            send_email(email, self._message(notification, report), password)
            return f"{len(email.to)} recipient(s) via {email.host}:{email.port}"
        webhook = notification.webhook
        assert webhook is not None
        if webhook.url is not None:
            url = self._secret(webhook.url, f"webhook URL of notification {notification.name}")
            problem = url_problem(url, webhook.insecure_http)
            if problem:
                raise DeliveryError(f"the URL from {'url_env' if webhook.url.env else 'url_command'}: {problem}")
        else:
            url = webhook.plain_url or ""
        register_secret(url)  # the whole URL: its path is often the token
        headers = {}
        for header, source in webhook.headers:
            value = self._secret(source, f"header {header} of notification {notification.name}")
            if "\r" in value or "\n" in value:
                raise DeliveryError(f"the value of header {header} from its secret source holds a line break")
            headers[header] = value
        payload = webhook_payload(report, webhook.format)
        attempts = post_webhook(
            url, payload, webhook.timeout, webhook.retries, webhook.ca_bundle, self._sleep, self._backoff, headers
        )
        return f"{webhook.format} to {endpoint_of(url)}, attempt {attempts}"

    def _secret(self, source: SecretSource, what: str) -> str:
        try:
            return self._resolve(source, what)
        except SecretError as err:
            raise DeliveryError(str(err)) from None

    @staticmethod
    def _message(notification: NotificationConfig, report: RunReport) -> EmailMessage:
        email = notification.email
        assert email is not None
        # Python folds a header that fits in 78 columns only on a line of its own, which mail
        # clients show with a leading space: up to SMTP's hard limit a header stays on one line.
        message = EmailMessage(policy=email_policy.SMTP.clone(max_line_length=998))
        message["Subject"] = subject(report)
        message["From"] = email.sender
        message["To"] = ", ".join(email.to)
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = make_msgid(domain=email.sender.rpartition("@")[2] or None)
        message["X-hvtui-Event"] = report.event
        message.set_content(text_body(report))
        return message

    def _record(
        self,
        name: str,
        report: RunReport,
        result: str,
        error: str | None,
        duration: float,
        detail: str | None = None,
        action: str = AUDIT_ACTION,
    ) -> None:
        args = {"schedule": report.schedule, "run": report.run_id, "event": report.event}
        if detail:
            args["sent"] = detail
        try:
            self._audit.record(action, f"notification:{name}", None, args, result, duration, error)
        except OSError as err:
            log.error("could not write the audit log %s: %s", self._audit.path, err)
        try:
            self._state.record(name, report, error)
        except OSError as err:
            log.error("could not keep the notification state: %s", err)
