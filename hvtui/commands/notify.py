"""`hvtui notify test NAME`: send a test message to one notification and say exactly what went
wrong when it cannot be sent; `hvtui notify list`: the notifications and their last delivery."""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import datetime

from hvtui.commands import show
from hvtui.commands.inventory import format_table
from hvtui.config.errors import did_you_mean
from hvtui.config.settings import NotificationConfig
from hvtui.core import Core
from hvtui.errors import EXIT_OK, HvtuiError, UsageError
from hvtui.notify.report import RunReport
from hvtui.notify.senders import endpoint_of

TEST_ACTION = "notify.test"


def register(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "notify",
        parents=parents,
        help="test the notifications schedule reports are sent to",
        description="The notifications of the config (notifications:): send a test message, or list them "
        "with the outcome of the last message each one was sent.",
    )
    actions = parser.add_subparsers(dest="notify_command", metavar="ACTION", required=True)
    test = actions.add_parser(
        "test",
        parents=parents,
        help="send a test message to one notification",
        description="Send a test message to the notification NAME, whatever its on: events. Exit 0 when it "
        "was accepted by the server, 1 with the reason (DNS, refused, TLS, AUTH, HTTP status) when not.",
    )
    test.add_argument("name", metavar="NAME", help="a notification name from the config")
    test.set_defaults(handler=run_test)
    listing = actions.add_parser("list", parents=parents, help="the notifications and their last delivery")
    listing.set_defaults(handler=run_list)


def _notification(core: Core, name: str) -> NotificationConfig:
    notification = core.config.notification(name)
    if notification is None:
        names = [n.name for n in core.config.notifications]
        raise UsageError(f"no notification named {name!r}{did_you_mean(name, names, 'notifications')}")
    return notification


def test_report(name: str) -> RunReport:
    now = datetime.now().astimezone().isoformat(timespec="seconds")
    return RunReport(
        schedule="notify-test",
        run_id=f"test-{now}",
        started=now,
        finished=now,
        event="success",
        notes=(f"A test message from `hvtui notify test {name}`: no backup ran.",),
    )


def run_test(args: argparse.Namespace, core: Core) -> int:
    notification = _notification(core, args.name)
    if sys.stdin.isatty():  # password_prompt: asked here, never in a scheduled run
        core.secret_prompter = getpass.getpass
    problem = core.notifier.deliver(notification, test_report(notification.name), action=TEST_ACTION)
    if problem is not None:
        raise HvtuiError(problem)
    show(f"Sent a test message to {notification.name} ({_target(notification)}).")
    return EXIT_OK


def _target(notification: NotificationConfig) -> str:
    if notification.email is not None:
        email = notification.email
        return f"e-mail to {', '.join(email.to)} via {email.host}:{email.port}, {email.security}"
    webhook = notification.webhook
    assert webhook is not None
    if webhook.plain_url is not None:
        return f"{webhook.format} webhook {endpoint_of(webhook.plain_url)}"
    source = f"${webhook.url.env}" if webhook.url and webhook.url.env else "url_command"
    return f"{webhook.format} webhook, URL from {source}"


def run_list(args: argparse.Namespace, core: Core) -> int:
    if not core.config.notifications:
        show("No notifications are configured (notifications: in the config; see config.example.yaml).")
        return EXIT_OK
    failures = {failure.notification: failure for failure in core.notification_state.failures()}
    rows = []
    for notification in core.config.notifications:
        failure = failures.get(notification.name)
        last = f"FAILED {failure.time}: {failure.error}" if failure else "-"
        rows.append([notification.name, _target(notification), ",".join(notification.on), last])
    show(format_table(["NAME", "TARGET", "ON", "LAST FAILURE"], rows))
    return EXIT_OK
