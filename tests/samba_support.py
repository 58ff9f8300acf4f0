"""A real Samba ``smbd`` for the SMB3 tests: 127.0.0.1, a free port, a self-contained smb.conf.

Recipe and pitfalls: ../shared/notes/smb.md.  Every state path lives under one short temporary
directory (smbd makes unix sockets there, and a socket path must fit in 108 bytes); smbd runs in
its own session (``start_new_session``) so that stopping it can never signal the test runner; the
SMB user is the Unix user running smbd (smbd cannot switch to another user when not root, and
the passdb entry must name an existing Unix account either way).

Debian's ``samba`` package provides ``smbd`` and ``pdbedit``; ``.ci/run`` installs it when missing.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SHARE = "share"
PASSWORD = "Smb-Test-pw1"
START_TIMEOUT = 20.0  # seconds; smbd is ready in ~0.1 s, but the machine is shared and loaded


class SambaError(RuntimeError):
    """smbd could not be set up or started (the message carries its log)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
    if found is None:
        raise SambaError(f"{name} is not installed: install Debian's samba package (apt-get install -y samba)")
    return found


def smb_conf(root: Path, port: int, encrypt: bool) -> str:
    """A self-contained smb.conf: loopback only, SMB3 only, signing mandatory, state under ``root``."""
    state = root / "state"
    return "\n".join(
        [
            "[global]",
            f"smb ports = {port}",
            "interfaces = 127.0.0.1",
            "bind interfaces only = yes",
            "disable netbios = yes",
            "server role = standalone server",
            "server min protocol = SMB3",
            "server signing = mandatory",
            f"server smb encrypt = {'required' if encrypt else 'off'}",
            f"passdb backend = tdbsam:{state}/passdb.tdb",
            f"private dir = {state}/private",
            f"lock directory = {state}/lock",
            f"state directory = {state}/state",
            f"cache directory = {state}/cache",
            f"pid directory = {state}/pid",
            f"ncalrpc dir = {state}/ncalrpc",
            f"binddns dir = {state}/binddns",
            f"log file = {root}/log.%m",
            "load printers = no",
            "printing = bsd",
            "printcap name = /dev/null",
            "disable spoolss = yes",
            "map to guest = never",
            "",
            f"[{SHARE}]",
            f"path = {root}/{SHARE}",
            "read only = no",
            "browseable = yes",
            "",
        ]
    )


@dataclass
class SambaServer:
    """One smbd: where it listens, the share and the local folder behind it, the user and password."""

    root: Path
    port: int
    encrypt: bool = True
    host: str = "127.0.0.1"
    share: str = SHARE
    username: str = field(default_factory=getpass.getuser)
    password: str = PASSWORD
    process: subprocess.Popen[bytes] | None = None
    _others: list[SambaServer] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        """The local folder the share exports."""
        return self.root / self.share

    @property
    def conf(self) -> Path:
        return self.root / "smb.conf"

    @property
    def log_path(self) -> Path:
        return self.root / "smbd.out"

    def unc(self, *parts: str) -> str:
        """``\\\\127.0.0.1\\share\\a\\b`` for ``unc("a", "b")``."""
        return "\\".join([f"\\\\{self.host}", self.share, *parts])

    def setup(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for sub in ("private", "lock", "state", "cache", "pid", "ncalrpc", "binddns"):
            (self.root / "state" / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(smb_conf(self.root, self.port, self.encrypt), encoding="utf-8")
        # pdbedit reads the new password twice from stdin (-t), each line ending in a newline.
        result = subprocess.run(
            [_tool("pdbedit"), "-s", str(self.conf), "-t", "-a", "-u", self.username],
            input=f"{self.password}\n{self.password}\n".encode(),
            capture_output=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise SambaError(f"pdbedit failed ({result.returncode}): {result.stderr.decode(errors='replace')}")

    def start(self) -> None:
        """Start smbd (again) on the same port and wait until it accepts connections."""
        if self.process is not None and self.process.poll() is None:
            return
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                # Its own session (start_new_session) already isolates it from the test runner; smbd's own
                # setsid() would then fail ("Failed to create session"), hence --no-process-group.
                [_tool("smbd"), "--foreground", "--no-process-group", "--debug-stdout", "--debuglevel=1", "-s", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SambaError(f"smbd exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise SambaError(f"smbd did not listen on {self.host}:{self.port} within {START_TIMEOUT:g}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop smbd (SIGTERM to its own process group: the per-connection children go too)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
        self._wait_port_closed()

    def kill(self) -> None:
        """SIGKILL smbd and its children at once (a server that dies, for fault tests)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        process.wait(timeout=15)
        self._wait_port_closed()

    def restart(self) -> None:
        self.stop()
        self.start()

    def _wait_port_closed(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    pass
            except OSError:
                return
            time.sleep(0.05)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def start_second(self, encrypt: bool = False) -> SambaServer:
        """Another smbd on its own port and folder (by default one that cannot encrypt); stopped
        with this one."""
        other = start_samba(encrypt=encrypt)
        self._others.append(other)
        return other

    def close(self) -> None:
        """Stop this server and every second one, and remove their directories."""
        for other in self._others:
            other.close()
        self._others.clear()
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def start_samba(encrypt: bool = True) -> SambaServer:
    """A running smbd with a fresh share and user; ``close()`` it when done."""
    # /tmp directly, not pytest's long tmp_path: smbd's socket paths must stay under 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="smb", dir="/tmp"))
    last: Exception | None = None
    for _attempt in range(3):  # the free port may be taken between probe and bind
        server = SambaServer(root=root, port=free_port(), encrypt=encrypt)
        try:
            server.setup()
            server.start()
            return server
        except SambaError as err:
            last = err
            server.stop()
    shutil.rmtree(root, ignore_errors=True)
    raise SambaError(str(last))


def reset_client_cache() -> None:
    """Drop smbprotocol's pooled connections (before a server stops, so they close cleanly)."""
    import smbclient

    smbclient.reset_connection_cache(fail_on_error=False)
