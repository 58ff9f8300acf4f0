"""The typed config every layer reads: frozen dataclasses, built by ``hvtui.config.load``
from the file (its shape is declared in ``hvtui.config.models``) or in code (tests, the
built-in demo lab)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hvtui.config.schedules import ScheduleConfig
from hvtui.paths import Paths

DAY = 86400.0
HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class SecretSource:
    """Where a secret comes from; never the secret itself."""

    env: str | None = None  # name of an environment variable
    command: str | None = None  # a command whose stdout (stripped) is the secret
    prompt: bool = False  # ask interactively at connect time

    @property
    def configured(self) -> bool:
        return bool(self.env or self.command or self.prompt)


DEFAULT_RESTORE_DIR = "D:\\hvtui-restore"


@dataclass(frozen=True, slots=True)
class SmbSettings:
    """How a WinRM host's files travel (SMB3, ``hvtui.hosts.smb``); read from its ``smb:`` block."""

    # Host path prefix -> UNC folder, e.g. ("D:\\VMs", "\\\\hv01\\VMs$"); empty = the admin shares C$ and D$.
    shares: tuple[tuple[str, str], ...] = ()
    port: int = 445
    username: str | None = None  # None: the host's WinRM user name and password
    password: SecretSource | None = None
    encrypt: bool = True  # False still requires signing
    rate_limit: int | None = None  # bytes per second read from this host; None: unlimited
    read_ahead: int = 4  # reads (and writes) in flight per open file
    timeout: float = 30.0  # connecting and each request


@dataclass(frozen=True, slots=True)
class WinRMSettings:
    address: str
    port: int = 5986
    scheme: str = "https"  # https or http
    transport: str = "ntlm"  # ntlm, kerberos, credssp, certificate, basic
    username: str | None = None
    password: SecretSource = field(default_factory=SecretSource)
    ca_bundle: Path | None = None
    verify_tls: bool = True
    allow_http: bool = False  # plain HTTP only with this, and only with message encryption
    cert_pem: Path | None = None  # certificate transport
    cert_key_pem: Path | None = None
    timeout: float = 30.0  # deadline of one call (inventory, checkpoint create/rename)
    operation_timeout: float = 20.0  # WS-Man OperationTimeout; kept below read timeout
    long_timeout: float = 3600.0  # deadline of a merge or apply
    commands_per_shell: int = 50  # recycle the shell after this many commands
    consistency: str = "prefer-application"  # backups' checkpoint: prefer-application, application or crash
    restore_dir: str = DEFAULT_RESTORE_DIR  # the host's folder restores stage in (new VMs go beside it)
    smb: SmbSettings = field(default_factory=SmbSettings)

    @property
    def endpoint(self) -> str:
        """The WS-Management URL, e.g. ``https://hv01.corp.example:5986/wsman``."""
        host = f"[{self.address}]" if ":" in self.address and not self.address.startswith("[") else self.address
        return f"{self.scheme}://{host}:{self.port}/wsman"


@dataclass(frozen=True, slots=True)
class HostConfig:
    name: str
    kind: str  # lab or winrm
    group: str | None = None
    read_only: bool = False
    winrm: WinRMSettings | None = None  # set when kind == winrm
    line: int | None = None  # where the host is defined in the config file

    @property
    def tls_unverified(self) -> bool:
        """HTTPS with ``verify_tls: false``: anyone on the path can pose as the host (pywinrm says nothing)."""
        return self.winrm is not None and self.winrm.scheme == "https" and not self.winrm.verify_tls


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Sprawl policy thresholds; durations in seconds, sizes in bytes."""

    checkpoint_age_warn: float = 3 * DAY
    checkpoint_age_crit: float = 7 * DAY
    recovery_age_warn: float = 1 * HOUR
    recovery_age_crit: float = 1 * DAY
    change_window_warn: float = 2 * DAY  # a change window still open (change-window-open)
    change_window_crit: float = 7 * DAY
    count_warn: int = 3  # warn above
    count_crit: int = 10  # crit above
    count_limit: int = 45  # always crit at or above (Hyper-V's hard limit is 50)
    depth_warn: int = 3  # warn above
    depth_crit: int = 8  # crit above
    differencing_warn_percent: float = 20.0  # of the base disks' virtual size
    differencing_warn_bytes: int | None = None  # or above this absolute size
    merge_min_free_percent: float = 5.0  # a merge must leave at least this much of the volume free
    backup_max_age: float = 7 * DAY  # checkpoint-not-backup
    # checkpoint-not-backup: a warning while the VM's oldest checkpoint is younger, then critical
    not_backup_crit: float = 1 * HOUR
    # backup-overdue: how long past a schedule's promise (interval + window) a VM's newest
    # point may be before a warning (the run's own duration), and before it is critical
    backup_overdue_warn: float = 1 * HOUR
    backup_overdue_crit: float = 1 * DAY
    # no-offsite-copy: how long a VM's newest point may lack a copy in a copy_to target
    no_offsite_copy_warn: float = 1 * DAY
    no_offsite_copy_crit: float = 3 * DAY
    replica_alerts: bool = False  # replica checkpoint types raise nothing by default


@dataclass(frozen=True, slots=True)
class Exemption:
    """Silences matching findings; they stay visible, marked exempt with the reason."""

    vm: str = "*"  # glob on "host/vm" or "vm"
    checkpoint: str | None = None  # glob on checkpoint name
    rule: str | None = None  # only this rule; None = every rule
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    defaults: Thresholds = field(default_factory=Thresholds)
    groups: dict[str, Thresholds] = field(default_factory=dict)  # full Thresholds, overrides merged at load
    vms: dict[str, Thresholds] = field(default_factory=dict)  # key: "host/vm" or "vm"
    exemptions: tuple[Exemption, ...] = ()

    def thresholds_for(self, host: str, vm: str, group: str | None) -> Thresholds:
        """Per-VM beats per-group beats defaults."""
        for key in (f"{host}/{vm}", vm):
            if key in self.vms:
                return self.vms[key]
        if group is not None and group in self.groups:
            return self.groups[group]
        return self.defaults


@dataclass(frozen=True, slots=True)
class Retention:
    keep_last: int = 7
    keep_hourly: int = 0
    keep_daily: int = 7
    keep_weekly: int = 4
    keep_monthly: int = 6
    keep_yearly: int = 0


@dataclass(frozen=True, slots=True)
class S3RepositoryConfig:
    """A repository in an S3-compatible bucket; the keys are where to find them, never them."""

    bucket: str
    endpoint: str | None = None  # None: AWS's endpoint for the region
    prefix: str = ""
    region: str | None = None
    access_key: SecretSource | None = None  # None (with secret_key): the standard AWS credential chain
    secret_key: SecretSource | None = None
    ca_bundle: Path | None = None
    storage_class: str | None = None
    insecure_http: bool = False

    @property
    def where(self) -> str:
        prefix = self.prefix.strip("/")
        return f"s3://{self.bucket}/{prefix}".rstrip("/")


# What a new repository gets unless its config entry (or the command) says otherwise; the engine
# makes a repository without a config the same way.
DEFAULT_FORMAT = 2  # packs and indexes; encrypted when a passphrase is set
DEFAULT_PACK_SIZE_MIB = 32
DEFAULT_COMPRESSION = "lz4"
# Level 3 is zstd's own default (and restic's): on the bench's data 20 % smaller than lz4 and
# smaller than restic's repository, for ~1.3x lz4's CPU; level 6 costs 2.5x more CPU for
# half a percent (docs/repository-format.md, "Compression").
DEFAULT_ZSTD_LEVEL = 3


@dataclass(frozen=True, slots=True)
class RepositoryConfig:
    name: str
    path: Path
    default: bool = False
    retention: Retention = field(default_factory=Retention)
    format: int = DEFAULT_FORMAT  # the format a repository created here gets (an existing one says its own)
    pack_size_mib: int = DEFAULT_PACK_SIZE_MIB  # format 2 only
    compression: str = DEFAULT_COMPRESSION  # what new chunks are written with: lz4 or zstd (every codec is read)
    zstd_level: int = DEFAULT_ZSTD_LEVEL
    # An encrypted repository's passphrase; set: a repository created here is encrypted (format 2)
    passphrase: SecretSource = field(default_factory=SecretSource)
    copy_to: str | None = None  # a repository each successful backup into this one is copied to
    # In a bucket (``path`` is then this machine's working folder for it); None: in the folder ``path``
    s3: S3RepositoryConfig | None = None

    @property
    def where(self) -> str:
        """Where the repository lives, as the user names it: its folder or ``s3://bucket/prefix``."""
        return self.s3.where if self.s3 is not None else str(self.path)


@dataclass(frozen=True, slots=True)
class JobsConfig:
    max_concurrent: int = 2
    per_host: int = 1


@dataclass(frozen=True, slots=True)
class UIConfig:
    theme: str = "hvtui-dark"
    refresh_seconds: float = 5.0  # auto-refresh; polls never overlap
    mouse: bool = True


@dataclass(frozen=True, slots=True)
class LabConfig:
    dir: Path | None = None  # None: <user data dir>/lab
    profile: str = "demo"


@dataclass(frozen=True, slots=True)
class EmailSettings:
    to: tuple[str, ...]
    sender: str  # `from:` in the file
    host: str
    port: int
    security: str  # "starttls", "tls" (implicit, from the first byte) or "none"
    username: str | None = None
    password: SecretSource = field(default_factory=SecretSource)
    ca_bundle: Path | None = None
    timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    url: SecretSource | None = None  # url_env / url_command (the URL often holds a token)
    plain_url: str | None = None  # `url:` in the file
    format: str = "json"  # slack, teams or json
    timeout: float = 10.0
    retries: int = 3
    ca_bundle: Path | None = None
    insecure_http: bool = False
    headers: tuple[tuple[str, SecretSource], ...] = ()  # extra headers, each value from a secret source


@dataclass(frozen=True, slots=True)
class NotificationConfig:
    """Where a schedule run's report is sent, and for which run events (``on:``)."""

    name: str
    on: tuple[str, ...]
    email: EmailSettings | None = None
    webhook: WebhookSettings | None = None
    line: int | None = None

    @property
    def kind(self) -> str:
        return "email" if self.email is not None else "webhook"


@dataclass(frozen=True, slots=True)
class Config:
    source: Path | None  # the file read; None = built-in demo lab
    hosts: tuple[HostConfig, ...]
    read_only: bool = False
    log_level: str = "info"
    lab: LabConfig = field(default_factory=LabConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    repositories: tuple[RepositoryConfig, ...] = ()  # the default one under the data dir is added at load
    jobs: JobsConfig = field(default_factory=JobsConfig)
    ui: UIConfig = field(default_factory=UIConfig)
    notifications: tuple[NotificationConfig, ...] = ()
    schedules: tuple[ScheduleConfig, ...] = ()
    # What the loader found allowed but suspicious (a schedule selector matching no host).
    notes: tuple[str, ...] = ()

    @property
    def is_builtin_lab(self) -> bool:
        return self.source is None

    def tls_unverified_hosts(self) -> tuple[str, ...]:
        return tuple(host.name for host in self.hosts if host.tls_unverified)

    def warnings(self) -> list[str]:
        """What is allowed but unsafe, said whenever the config is loaded."""
        out = []
        for host in self.hosts:
            if host.tls_unverified:
                where = f"{self.source}:{host.line}: " if self.source is not None and host.line else ""
                out.append(
                    f"{where}host {host.name}: verify_tls is false: its TLS certificate is not checked, so anyone "
                    "on the network path can pose as the host and receive its credentials (give ca_bundle instead)"
                )
        for notification in self.notifications:
            where = f"{self.source}:{notification.line}: " if self.source is not None and notification.line else ""
            if notification.email is not None and notification.email.security == "none":
                out.append(f"{where}notification {notification.name}: starttls is false: its e-mail goes unencrypted")
            webhook = notification.webhook
            if webhook is not None and webhook.insecure_http and (webhook.plain_url or "").lower().startswith("http://"):
                out.append(f"{where}notification {notification.name}: insecure_http: its reports go over plain HTTP")
        out.extend(self.notes)
        return out

    def notification(self, name: str) -> NotificationConfig | None:
        for notification in self.notifications:
            if notification.name == name:
                return notification
        return None

    def schedule(self, name: str) -> ScheduleConfig | None:
        return next((schedule for schedule in self.schedules if schedule.name == name), None)

    def host(self, name: str) -> HostConfig | None:
        for host in self.hosts:
            if host.name == name:
                return host
        return None

    @classmethod
    def lab_default(cls, paths: Paths | None = None) -> Config:
        """The built-in demo lab: no file, no hosts listed (the core discovers the lab's hosts)."""
        return cls(source=None, hosts=(), repositories=(builtin_repository(paths or Paths.default()),))

    def default_repository(self) -> RepositoryConfig:
        """The repository used when none is named (``default`` under the data dir unless configured)."""
        for repository in self.repositories:
            if repository.default:
                return repository
        if self.repositories:
            return self.repositories[0]
        return builtin_repository(Paths.default())

    def repository(self, name: str) -> RepositoryConfig | None:
        for repository in self.repositories:
            if repository.name == name:
                return repository
        if name == DEFAULT_REPOSITORY_NAME and not self.repositories:
            return self.default_repository()
        return None


DEFAULT_REPOSITORY_NAME = "default"


def builtin_repository(paths: Paths) -> RepositoryConfig:
    """The repository used when the file names none: ``default`` under the data dir."""
    return RepositoryConfig(name=DEFAULT_REPOSITORY_NAME, path=paths.default_repository, default=True)
