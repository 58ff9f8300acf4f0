"""Real servers for the notification tests: aiosmtpd on 127.0.0.1 (STARTTLS or implicit TLS,
AUTH against one user and password) and an ``http.server`` webhook that answers a script of
statuses and delays; a self-signed certificate for 127.0.0.1 made per test session."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import http.server
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hvtui.notify.report import RunReport, VMResult

SMTP_USER = "hvtui"
SMTP_PASSWORD = "Smtp-S3cret-pw!"  # noqa: S105 - the test server's password, to assert it never leaks


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hvtui notify loopback")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def server_context(cert: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert[0]), str(cert[1]))
    return context


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class MailBox:
    """What the SMTP server received: messages, envelopes and log-on attempts."""

    messages: list[EmailMessage] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)  # (user, accepted)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        self.raw.append(envelope.original_content or envelope.content)
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))  # type: ignore[arg-type]
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = auth_data.login.decode(), auth_data.password.decode()
        accepted = user == SMTP_USER and password == SMTP_PASSWORD
        self.logins.append((user, accepted))
        return AuthResult(success=accepted, handled=False)  # not handled: aiosmtpd answers 535 itself


class _ImplicitTLSController(Controller):
    """aiosmtpd's check that the server is up connects in plain text; over implicit TLS it must
    wrap the socket in a client context (the server's own cannot connect)."""

    def _trigger_server(self) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with socket.create_connection((self.hostname, self.port), timeout=5) as raw, context.wrap_socket(raw) as sock:
            sock.recv(1024)


@contextmanager
def smtp_server(cert: tuple[Path, Path], implicit_tls: bool = False) -> Iterator[tuple[int, MailBox]]:
    """An SMTP server on 127.0.0.1 that wants TLS (STARTTLS, or implicit) and AUTH."""
    box = MailBox()
    port = free_port()
    kwargs: dict[str, Any] = {"authenticator": box.authenticate, "auth_required": True}
    if implicit_tls:
        # aiosmtpd offers AUTH after STARTTLS only unless told the connection is secure already.
        controller: Controller = _ImplicitTLSController(
            box, hostname="127.0.0.1", port=port, ssl_context=server_context(cert), **kwargs, auth_require_tls=False
        )
    else:
        controller = Controller(
            box,
            hostname="127.0.0.1",
            port=port,
            tls_context=server_context(cert),
            require_starttls=True,
            **kwargs,
        )
    controller.start()
    try:
        yield port, box
    finally:
        controller.stop()


@dataclass
class Reply:
    status: int = 200
    delay: float = 0.0  # seconds before answering (a timeout test)
    body: bytes = b"ok"


@dataclass
class Hook:
    port: int
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)  # (path, headers, body)
    script: list[Reply] = field(default_factory=list)  # answered in order; then 200

    def json(self, index: int = -1) -> Any:
        return json.loads(self.requests[index][2])


@contextmanager
def webhook_server(tls: ssl.SSLContext | None = None) -> Iterator[Hook]:
    """A real HTTP(S) server on 127.0.0.1 recording every POST and answering ``hook.script``."""
    hook = Hook(port=0)
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's hook name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                hook.requests.append((self.path, dict(self.headers.items()), body))
                reply = hook.script.pop(0) if hook.script else Reply()
            if reply.delay:
                time.sleep(reply.delay)
            try:
                self.send_response(reply.status)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
            except OSError:  # the client gave up (timeout test)
                pass

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    hook.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


def sample_report(event: str = "failure") -> RunReport:
    """A run of four VMs: one of each outcome."""
    return RunReport(
        schedule="nightly",
        run_id="run-20261205-2200",
        started="2026-12-05T22:00:00+01:00",
        finished="2026-12-05T22:41:07+01:00",
        event=event,
        results=(
            VMResult("lab-hv01", "web01", "succeeded", mode="incremental", size_bytes=3 * 1024**3, duration_seconds=754.0, point_id="p1"),
            VMResult("lab-hv01", "sql01", "failed", mode="full", duration_seconds=65.0, reason="disk read error on sql01.vhdx",
                     failures_in_a_row=3),
            VMResult("lab-hv02", "file01", "warning", mode="differential", size_bytes=512 * 1024**2, duration_seconds=30.0,
                     reason="guest not quiesced"),
            VMResult("lab-hv02", "dc01", "missed", reason="the window closed before it could start"),
        ),
        notes=("retention applied to 1 VM",),
    )
