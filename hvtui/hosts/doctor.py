"""``hvtui doctor``: checks, from this machine, each step that hvtui needs of a host, in order,
and names the first that fails with what to do (docs/host-setup.md has the host's side).

For a WinRM host: the address resolves, the port is open, the TLS certificate is valid for the
name, the credentials are accepted, PowerShell and the Hyper-V module answer, the VMs can be
listed (all three through the wire contract's ``inventory`` operation: doctor adds no operation),
each mapped SMB share is reachable with encryption and readable, and the host's volumes have
free space.  Checks after the first failure are not run (they would only fail for the same
reason).  For a lab host, one check: its inventory reads.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, NoReturn

from hvtui.errors import HostError, HvtuiError
from hvtui.hosts.base import Host, HostSnapshot
from hvtui.hosts.smb.errors import SETUP_DOC

OK, FAILED, WARNING, NOT_RUN = "ok", "failed", "warning", "not run"


@dataclass(frozen=True, slots=True)
class Check:
    """One step: what was checked, how it went, what was seen and (when it failed) what to do."""

    name: str
    status: str  # ok, failed, warning, not run
    detail: str = ""
    fix: str = ""


@dataclass(slots=True)
class Diagnosis:
    host: str
    kind: str
    checks: list[Check] = field(default_factory=list)

    @property
    def first_failure(self) -> Check | None:
        return next((check for check in self.checks if check.status == FAILED), None)

    @property
    def ok(self) -> bool:
        return self.first_failure is None

    def to_json(self) -> dict[str, Any]:
        failure = self.first_failure
        return {
            "host": self.host,
            "kind": self.kind,
            "ok": self.ok,
            "first_failure": failure.name if failure else None,
            "checks": [asdict(check) for check in self.checks],
        }


class _Stop(Exception):
    """A check failed: the ones after it are not run."""


class _Steps:
    """Runs the checks in order, recording each; the first failure stops the rest."""

    def __init__(self, diagnosis: Diagnosis, names: list[str]) -> None:
        self.diagnosis = diagnosis
        self.pending = list(names)

    def record(self, name: str, status: str, detail: str = "", fix: str = "") -> None:
        if name in self.pending:
            self.pending.remove(name)
        self.diagnosis.checks.append(Check(name, status, detail, fix))

    def fail(self, name: str, detail: str, fix: str) -> NoReturn:
        self.record(name, FAILED, detail, fix)
        raise _Stop

    def finish(self) -> Diagnosis:
        for name in self.pending:
            self.diagnosis.checks.append(Check(name, NOT_RUN, "an earlier check failed"))
        return self.diagnosis


class Doctor:
    """Diagnoses configured hosts by name (the console and ``hvtui doctor`` share it)."""

    def __init__(self, host_lookup: Callable[[str], Host], host_names: Callable[[], Iterable[str]], min_free_percent: float = 5.0, timeout: float = 10.0) -> None:
        self._host = host_lookup
        self._names = host_names
        self.min_free_percent = min_free_percent
        self.timeout = timeout

    def host_names(self) -> list[str]:
        return list(self._names())

    def diagnose(self, name: str) -> Diagnosis:
        """Every check of host ``name`` (an unknown name raises ``ConfigError``); slow: a worker's job."""
        return diagnose(self._host(name), min_free_percent=self.min_free_percent, timeout=self.timeout)


def diagnose(host: Host, *, min_free_percent: float = 5.0, timeout: float = 10.0) -> Diagnosis:
    """Every check of ``host`` (built by the core from its config), in order."""
    from hvtui.hosts.winrm.host import WinRMHost

    if isinstance(host, WinRMHost):
        return _diagnose_winrm(host, min_free_percent, timeout)
    diagnosis = Diagnosis(host.name, host.kind)
    steps = _Steps(diagnosis, ["inventory readable"])
    try:
        snapshot = host.inventory(timeout)
    except HvtuiError as err:
        steps.record("inventory readable", FAILED, getattr(err, "detail", str(err)), "a lab host's folder must exist and be readable")
    else:
        steps.record("inventory readable", OK, f"{len(snapshot.vms)} VMs")
    return steps.finish()


# -- WinRM ------------------------------------------------------------------------------------

RESOLVES, PORT, TLS, CREDENTIALS, POWERSHELL, VMS, FREE = (
    "address resolves",
    "port open",
    "TLS certificate valid for the name",
    "credentials accepted",
    "PowerShell and the Hyper-V module present",
    "VMs listable",
    "free space on the host's volumes",
)


def _share_check(prefix: str, unc: str) -> str:
    return f"SMB share for {prefix} ({unc}) reachable, encrypted and readable"


def _diagnose_winrm(host: Any, min_free_percent: float, timeout: float) -> Diagnosis:
    settings = host.settings
    address, port = settings.address, settings.port
    remote = host.open_remote_files()
    shares = remote.shares.entries
    diagnosis = Diagnosis(host.name, host.kind)
    steps = _Steps(diagnosis, [RESOLVES, PORT, TLS, CREDENTIALS, POWERSHELL, VMS, *(_share_check(*e) for e in shares), FREE])
    try:
        addresses = _resolve(steps, address, port)
        _port_open(steps, address, port, addresses, timeout)
        _tls(steps, settings, timeout)
        snapshot = _inventory(steps, host, timeout)
        for prefix, unc in shares:
            _share(steps, remote, prefix, unc, settings.smb.encrypt)
        _free_space(steps, snapshot, min_free_percent)
    except _Stop:
        pass
    finally:
        remote.close()
    return steps.finish()


def _resolve(steps: _Steps, address: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        steps.fail(
            RESOLVES,
            f"{address} does not resolve: {getattr(err, 'strerror', None) or err}",
            "check the host's address: in the config (a DNS name this machine can resolve, or an IP address), "
            "and this machine's DNS settings",
        )
    found = sorted({str(info[4][0]) for info in infos})
    steps.record(RESOLVES, OK, f"{address} -> {', '.join(found)}")
    return found


def _port_open(steps: _Steps, address: str, port: int, addresses: list[str], timeout: float) -> None:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            pass
    except OSError as err:
        reason = "timed out" if isinstance(err, TimeoutError | socket.timeout) else (err.strerror or str(err))
        steps.fail(
            PORT,
            f"TCP {port} on {address} ({', '.join(addresses)}): {reason}",
            f"on the host, a WinRM listener must listen on {port} and the firewall allow it from this machine: "
            f"see {SETUP_DOC}, 'HTTPS listener' and 'Firewall'; check port: in the config",
        )
    steps.record(PORT, OK, f"TCP {port} accepts connections")


def _tls(steps: _Steps, settings: Any, timeout: float) -> None:
    if settings.scheme != "https":
        steps.record(TLS, WARNING, "plain HTTP (allow_http: true): the transport encrypts messages, but the host is not authenticated by a certificate")
        return
    if not settings.verify_tls:
        steps.record(TLS, WARNING, "not checked: verify_tls is false (anyone on the path can pose as the host)", "set verify_tls: true with a certificate this machine trusts")
        return
    context = ssl.create_default_context(cafile=str(settings.ca_bundle) if settings.ca_bundle else None)
    try:
        with socket.create_connection((settings.address, settings.port), timeout=timeout) as raw, context.wrap_socket(raw, server_hostname=settings.address) as tls:
            version = tls.version()
    except ssl.SSLCertVerificationError as err:
        steps.fail(
            TLS,
            f"certificate verify failed: {err.verify_message or err.reason}",
            f"give the listener a certificate issued for {settings.address} by a CA this machine trusts, or point "
            f"ca_bundle: at that CA's PEM file (see {SETUP_DOC}, 'HTTPS listener')",
        )
    except (ssl.SSLError, OSError) as err:
        steps.fail(
            TLS,
            f"TLS handshake with {settings.address}:{settings.port} failed: {getattr(err, 'reason', None) or err}",
            "check that the port is the HTTPS listener (5986), not the HTTP one (5985)",
        )
    steps.record(TLS, OK, f"{version}, certificate valid for {settings.address}")


def _inventory(steps: _Steps, host: Any, timeout: float) -> HostSnapshot:
    try:
        snapshot = host.inventory(timeout)
    except HostError as err:
        step, fix = _inventory_failure(err, host.settings)
        for passed in (CREDENTIALS, POWERSHELL, VMS):
            if passed == step:
                break
            steps.record(passed, OK)
        steps.fail(step, err.detail, fix)
    steps.record(CREDENTIALS, OK, f"{host.settings.username or 'the ticket or certificate'} ({host.settings.transport})")
    steps.record(POWERSHELL, OK, f"{snapshot.facts.os} {snapshot.facts.build}".strip())
    steps.record(VMS, OK, f"{len(snapshot.vms)} VMs")
    return snapshot


def _inventory_failure(err: HostError, settings: Any) -> tuple[str, str]:
    if err.kind in ("auth", "config"):
        return CREDENTIALS, (
            f"check username: and the password source of this host (transport {settings.transport}); for a local "
            f"account, LocalAccountTokenFilterPolicy must be 1 on the host (see {SETUP_DOC}, 'Account')"
        )
    if err.kind == "module-missing":
        return POWERSHELL, "install the Hyper-V PowerShell module on the host: Install-WindowsFeature Hyper-V-PowerShell"
    if err.kind in ("protocol",):
        return POWERSHELL, (
            "the host's answer was not what hvtui's script writes: Windows PowerShell 5.1 (powershell.exe) must run "
            f"for this account over WinRM, which needs Remote Management Users (see {SETUP_DOC}, 'Account')"
        )
    if err.kind == "access-denied":
        return VMS, f"add the account to the host's Hyper-V Administrators group (see {SETUP_DOC}, 'Account')"
    if err.kind in ("unreachable", "tls", "timeout"):
        return CREDENTIALS, "the host stopped answering during the check; run doctor again"
    return VMS, f"see the error; {SETUP_DOC} lists what the account needs"


def _share(steps: _Steps, remote: Any, prefix: str, unc: str, encrypt: bool) -> None:
    name = _share_check(prefix, unc)
    try:
        entries = len(remote.listdir(prefix))
    except HostError as err:
        steps.fail(name, err.detail, _share_fix(err.kind))
    security = remote.security(prefix)
    detail = f"{security}; {entries} entries at its root"
    if "not encrypted" in security:
        steps.record(name, WARNING, detail, "encrypt: false: VM data crosses the network readable by anyone on the path")
    else:
        steps.record(name, OK, detail)


def _share_fix(kind: str) -> str:
    return {
        "smb-auth": "SMB refused the logon: check smb: username/password (default: the WinRM ones)",
        "smb-share": f"create the share or fix smb: shares: in the config; TCP 445 must be open (see {SETUP_DOC}, 'Shares for the VM files')",
        "smb-encryption": f"turn on SMB encryption on the host (see {SETUP_DOC}, 'SMB encryption')",
        "access-denied": f"the admin shares need a local administrator (and LocalAccountTokenFilterPolicy=1 for a local account; see {SETUP_DOC})",
    }.get(kind, f"see the error and {SETUP_DOC}, 'Shares for the VM files'")


def _free_space(steps: _Steps, snapshot: HostSnapshot, min_free_percent: float) -> None:
    volumes = snapshot.facts.volumes
    if not volumes:
        steps.record(FREE, WARNING, "the host reported no volumes")
        return
    low = [v for v in volumes if v.size > 0 and v.free * 100.0 / v.size < min_free_percent]
    text = ", ".join(f"{v.path} {v.free * 100.0 / v.size:.0f}% free" for v in volumes if v.size > 0)
    if low:
        names = ", ".join(v.path for v in low)
        steps.fail(
            FREE,
            text,
            f"free space on {names}: below {min_free_percent:g}% a checkpoint merge or a restore can fill the volume",
        )
    steps.record(FREE, OK, text)


def describe(diagnosis: Diagnosis) -> str:
    """The checks as lines for a terminal, the first failure with what to do."""
    marks = {OK: "ok  ", FAILED: "FAIL", WARNING: "warn", NOT_RUN: "--  "}
    lines = [f"{diagnosis.host} ({diagnosis.kind})"]
    for check in diagnosis.checks:
        detail = f": {check.detail}" if check.detail else ""
        lines.append(f"  [{marks[check.status]}] {check.name}{detail}")
        if check.fix and check.status in (FAILED, WARNING):
            lines.append(f"         what to do: {check.fix}")
    failure = diagnosis.first_failure
    lines.append(f"  -> first failure: {failure.name}" if failure else "  -> every check passed")
    return "\n".join(lines)

