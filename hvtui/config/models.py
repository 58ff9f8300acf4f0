"""The config file's schema, declared once as typed models (msgspec ``Struct``s).

Each model is one mapping of ``config.yaml``: its keys, their types and ranges (``Meta``),
what a mistake message calls them (``Meta(extra={"what": ...})``) and the hint for a
missing key.  ``hvtui.config.walk`` reads the YAML against these models (collecting every
mistake, with its line); ``hvtui.config.load`` turns the result into the typed config
(``hvtui.config.settings``) and applies the rules between keys; ``config_json_schema()``
exports the same models for editors (``hvtui config schema``).

Why msgspec and not pydantic: measured on this machine (import + first model, warm,
median of 7 runs), msgspec 0.23 takes ~18 ms and pydantic 2.14 ~89 ms.  The config is
read before the console's first paint (budget 0.5 s), and msgspec gives what is needed
here: typed frozen models, constraints, JSON Schema export.  Its validation stops at the
first error and knows no line numbers, so the walker produces the messages and
``msgspec.convert`` is the final gate on each mapping.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

import msgspec
from msgspec import UNSET, Meta, UnsetType

from hvtui.config.fields import (
    ENV_NAME_PATTERN,
    NAME_PATTERN,
    PLAIN_PASSWORD_MESSAGE,
    VM_KEY_PATTERN,
    Duration,
    Model,
    Size,
    boolean,
    choice,
    collection,
    described,
    duration,
    integer,
    name,
    path,
    percent,
    text,
)
from hvtui.config.notify_models import EmailModel, NotificationModel
from hvtui.config.s3 import S3_REFUSED_KEYS, S3Model
from hvtui.config.schedule_models import ScheduleModel
from hvtui.config.smb import SmbModel

HOST_KINDS = ("lab", "winrm")
WINRM_SCHEMES = ("https", "http")
WINRM_TRANSPORTS = ("ntlm", "kerberos", "credssp", "certificate", "basic")
# A backup's Recovery checkpoint: through VSS in the guest, falling back to crash-consistent (the
# default), application-consistent or failing, or crash-consistent.
BACKUP_CONSISTENCY = ("prefer-application", "application", "crash")
# Transports that authenticate with a username and password from a SecretSource.
PASSWORD_TRANSPORTS = ("ntlm", "credssp", "basic")
# Transports that encrypt the message body themselves, so plain HTTP does not expose it.
MESSAGE_ENCRYPTING_TRANSPORTS = ("ntlm", "kerberos", "credssp")
LAB_PROFILES = ("demo", "bench", "scale")
LOG_LEVELS = ("debug", "info", "warning", "error")
# Sprawl rule ids (issue 3; the same as hvtui.policy.RULES); exemptions may name one of them.
RULE_IDS = (
    "checkpoint-age",
    "recovery-checkpoint-left",
    "checkpoint-count",
    "chain-depth",
    "differencing-size",
    "merge-headroom",
    "running-on-avhdx",
    "stray-disk-file",
    "disk-unreadable",
    "checkpoint-not-backup",
    "host-unreachable",
    "change-window-open",
    "backup-overdue",
    "no-offsite-copy",
)
HYPERV_CHECKPOINT_LIMIT = 50

# -- hosts ----------------------------------------------------------------------------------

HostName = Annotated[
    str, Meta(pattern=NAME_PATTERN), described("The host's name in the console.", kind="name", what="a host name", missing="the host's name in the console")
]


class HostModel(Model, tag_field="kind", kw_only=True):
    """A host; ``kind`` (lab or winrm) decides which keys it takes."""

    name: HostName
    group: text("a group name", "Policy group: policy.groups.<group> applies to its VMs.") | None | UnsetType = UNSET
    read_only: boolean("Refuse every change to this host.") | UnsetType = UNSET


class LabHostModel(HostModel, tag="lab"):
    """A host of the embedded lab (simulated Hyper-V hosts under the lab directory)."""


class WinRMHostModel(HostModel, tag="winrm", kw_only=True):
    """A Hyper-V host reached over WinRM (WS-Management)."""

    address: text(
        "a DNS name or IP address",
        "The host's DNS name or IP address (no scheme, port or path).",
        missing="the host's DNS name or IP address",
        pattern=r"^[^/\s]+$",
        pattern_hint=" (give scheme: and port: as their own keys)",
    )
    port: integer(1, 65535, "Default 5986 for https, 5985 for http.") | UnsetType = UNSET
    scheme: choice(WINRM_SCHEMES, "a scheme", "https (default), or http with allow_http: true.") | UnsetType = UNSET
    transport: choice(WINRM_TRANSPORTS, "a transport", "Authentication; default ntlm.") | UnsetType = UNSET
    username: text("a user name", "Needed by ntlm, credssp and basic, e.g. 'CORP\\\\svc-hvtui'.") | UnsetType = UNSET
    password_env: Annotated[
        str,
        Meta(pattern=ENV_NAME_PATTERN),
        described("The environment variable holding the password.", kind="envname", what="an environment variable name"),
    ] | UnsetType = UNSET
    password_command: text("a command line", "A command printing the password on its first line.", kind="command") | UnsetType = UNSET
    password_prompt: boolean("Ask for the password when connecting.") | UnsetType = UNSET
    ca_bundle: path("CA bundle (PEM) to verify the host's certificate; https only.", must_exist=True) | None | UnsetType = UNSET
    verify_tls: boolean("Verify the host's TLS certificate (default true).") | UnsetType = UNSET
    allow_http: boolean("Allow scheme: http (only with ntlm, kerberos or credssp).") | UnsetType = UNSET
    cert_pem: path("Client certificate (PEM), transport: certificate.", must_exist=True) | UnsetType = UNSET
    cert_key_pem: path("Client certificate key (PEM), transport: certificate.", must_exist=True) | UnsetType = UNSET
    timeout: duration("Deadline of one call (default 30s)", minimum=2.0) | UnsetType = UNSET
    operation_timeout: duration("WS-Management OperationTimeout, below timeout", minimum=1.0) | UnsetType = UNSET
    long_timeout: duration("Deadline of a merge or apply (default 1h, at least timeout)") | UnsetType = UNSET
    commands_per_shell: integer(1, 10000, "Recycle the remote shell after this many commands.") | UnsetType = UNSET
    consistency: choice(
        BACKUP_CONSISTENCY,
        "a backup consistency",
        "Backups' checkpoint: prefer-application (default; crash-consistent with a warning when the guest "
        "cannot do VSS), application (fail instead) or crash.",
    ) | UnsetType = UNSET
    restore_dir: text(
        "a local folder of the host",
        "Where restores to this host stage their files (default D:\\hvtui-restore).",
        pattern=r'^[A-Za-z]:\\(?!(?:.*\\)?\.\.(?:\\|$))[^/:*?"<>|\x00-\x1f]*$',
        pattern_hint=r" (a drive, then folders without '..': D:\hvtui-restore)",
    ) | UnsetType = UNSET
    smb: collection(SmbModel, "the SMB settings (a mapping)", "How the host's VM files are read and written (SMB3).") | UnsetType = UNSET


WINRM_KEYS = tuple(f.name for f in msgspec.structs.fields(WinRMHostModel) if f.name not in ("name", "group", "read_only"))
# Keys known but refused, with the reason (the JSON Schema refuses them as unknown keys).
REFUSED_KEYS: dict[type, dict[str, str]] = {
    LabHostModel: {"password": PLAIN_PASSWORD_MESSAGE, **{key: "only valid for kind: winrm" for key in WINRM_KEYS}},
    WinRMHostModel: {"password": PLAIN_PASSWORD_MESSAGE},
    EmailModel: {"password": PLAIN_PASSWORD_MESSAGE},
}
PLAIN_PASSPHRASE_MESSAGE = (
    "a plain-text passphrase is not accepted in the config file; use passphrase_env (an environment "
    "variable's name), passphrase_command (a command that prints it) or passphrase_prompt: true"
)
HostItem = Annotated[
    Union[LabHostModel, WinRMHostModel],  # noqa: UP007
    described("A host.", what="a host (a mapping with name:, kind: and its settings)", missing_tag="lab or winrm", tag_what="a host kind"),
]


# -- policy ---------------------------------------------------------------------------------

Count = integer(0, HYPERV_CHECKPOINT_LIMIT, "A number of checkpoints.")
Depth = integer(0, 1000, "A chain depth.")


class AgePair(Model):
    warn: Duration | UnsetType = UNSET
    crit: Duration | UnsetType = UNSET


class CountLimits(Model):
    warn: Count | UnsetType = UNSET
    crit: Count | UnsetType = UNSET
    limit: integer(1, HYPERV_CHECKPOINT_LIMIT, "Always critical at or above (Hyper-V stops at 50).") | UnsetType = UNSET


class DepthPair(Model):
    warn: Depth | UnsetType = UNSET
    crit: Depth | UnsetType = UNSET


class DifferencingSize(Model):
    warn_percent: percent(0.1, 1000, "Of the base disks' virtual size.") | UnsetType = UNSET
    warn_bytes: Size | None | UnsetType = UNSET


class MergeHeadroom(Model):
    min_free_percent: percent(0, 100, "A merge must leave this much of the volume free.") | UnsetType = UNSET


class BackupAge(Model):
    crit: Duration | UnsetType = UNSET


class CheckpointNotBackup(Model):
    """checkpoint-not-backup warns first; critical once the VM's oldest checkpoint is this old."""

    crit: Duration | UnsetType = UNSET


class ThresholdsModel(Model):
    """Sprawl thresholds; as an override (groups, vms) only the keys given change."""

    checkpoint_age: AgePair | UnsetType = UNSET
    recovery_checkpoint_age: AgePair | UnsetType = UNSET
    change_window_age: AgePair | UnsetType = UNSET
    checkpoint_count: CountLimits | UnsetType = UNSET
    chain_depth: DepthPair | UnsetType = UNSET
    differencing_size: DifferencingSize | UnsetType = UNSET
    merge_headroom: MergeHeadroom | UnsetType = UNSET
    backup_age: BackupAge | UnsetType = UNSET
    checkpoint_not_backup: CheckpointNotBackup | UnsetType = UNSET
    backup_overdue: AgePair | UnsetType = UNSET
    no_offsite_copy: AgePair | UnsetType = UNSET
    replica_checkpoints: boolean("Raise findings for replica checkpoints too.") | UnsetType = UNSET


class ExemptionModel(Model, kw_only=True):
    """Silences matching findings; they stay visible, marked exempt with the reason."""

    vm: text("a VM name or glob", 'Glob on "host/vm" or "vm".') | UnsetType = UNSET
    checkpoint: text("a checkpoint name or glob", "Glob on the checkpoint name.") | UnsetType = UNSET
    rule: choice(RULE_IDS, "a rule id", "Only this rule.") | UnsetType = UNSET
    reason: text(
        "the reason for the exemption", "Shown beside the exempt findings.", missing="say why these findings are exempt; it is shown beside them"
    )


VmKey = Annotated[str, Meta(pattern=VM_KEY_PATTERN), described('"host/vm" or "vm"', what='"host/vm" or "vm" as the key')]


class PolicyModel(ThresholdsModel, kw_only=True):
    """The default thresholds, with per-group and per-VM overrides and exemptions."""

    groups: collection(dict[str, ThresholdsModel], "a mapping of group name to thresholds", "Per host group.") | UnsetType = UNSET
    vms: collection(dict[VmKey, ThresholdsModel], 'a mapping of "host/vm" or "vm" to thresholds', "Per VM.") | UnsetType = UNSET
    exempt: collection(list[ExemptionModel], "a list of exemptions", "Exemptions.") | UnsetType = UNSET


# -- repositories, jobs, ui, lab ----------------------------------------------------------------

Keep = integer(0, 100000, "How many to keep.")


class RetentionModel(Model):
    """How many backups prune keeps (restic-style); at least one keep_* above 0."""

    keep_last: Keep | UnsetType = UNSET
    keep_hourly: Keep | UnsetType = UNSET
    keep_daily: Keep | UnsetType = UNSET
    keep_weekly: Keep | UnsetType = UNSET
    keep_monthly: Keep | UnsetType = UNSET
    keep_yearly: Keep | UnsetType = UNSET


class RepositoryModel(Model, kw_only=True):
    """A backup repository."""

    name: Annotated[str, Meta(pattern=NAME_PATTERN), described("How --repo names it.", kind="name", what="a repository name", missing="how --repo names it")]
    path: path("The repository's directory (or s3: for a bucket).") | UnsetType = UNSET
    s3: collection(S3Model, "the S3 settings (a mapping)", "The repository lives in an S3-compatible bucket (instead of path:).") | UnsetType = UNSET
    default: boolean("The repository used when none is named.") | UnsetType = UNSET
    retention: RetentionModel | UnsetType = UNSET
    format: integer(1, 2, "On-disk format of a repository created here: 2, packs (default), or 1, a file per chunk (docs/repository-format.md).") | UnsetType = UNSET
    pack_size_mib: integer(16, 128, "Format 2: target size of a pack file in MiB (default 32).") | UnsetType = UNSET
    compression: choice(("lz4", "zstd"), "a compression", "How new chunks are compressed: lz4 (default, fastest) or zstd (smaller).") | UnsetType = UNSET
    zstd_level: integer(1, 19, "zstd level when compression is zstd (default 3).") | UnsetType = UNSET
    passphrase_env: Annotated[
        str,
        Meta(pattern=ENV_NAME_PATTERN),
        described("The environment variable holding the passphrase of an encrypted repository.", kind="envname", what="an environment variable name"),
    ] | UnsetType = UNSET
    passphrase_command: text("a command line", "A command printing the passphrase on its first line.", kind="command") | UnsetType = UNSET
    passphrase_prompt: boolean("Ask for the passphrase when the repository is opened.") | UnsetType = UNSET
    copy_to: name("a repository name", "A repository each successful backup into this one is copied to (a copy job).") | UnsetType = UNSET


REFUSED_KEYS[RepositoryModel] = {"passphrase": PLAIN_PASSPHRASE_MESSAGE}
REFUSED_KEYS[S3Model] = S3_REFUSED_KEYS


class JobsModel(Model):
    max_concurrent: integer(1, 64, "Jobs running at once (default 2).") | UnsetType = UNSET
    per_host: integer(1, 64, "Jobs running at once on one host (default 1).") | UnsetType = UNSET


class UIModel(Model):
    theme: name("a theme name", "Console theme (default hvtui-dark).") | UnsetType = UNSET
    refresh_seconds: duration("Auto-refresh interval (default 5s)", minimum=1.0) | UnsetType = UNSET
    mouse: boolean("Mouse support (default true).") | UnsetType = UNSET


class LabModel(Model):
    dir: path("Where the lab keeps its VM files (default: <user data dir>/lab).") | None | UnsetType = UNSET
    profile: choice(LAB_PROFILES, "a lab profile", "The lab's size (default demo).") | UnsetType = UNSET


class ConfigModel(Model):
    """hvtui's config.yaml (see config.example.yaml)."""

    hosts: collection(list[HostItem], "a list of hosts", "Hosts; none: the lab's hosts.") | None | UnsetType = UNSET
    policy: PolicyModel | UnsetType = UNSET
    repositories: collection(list[RepositoryModel], "a list of repositories", "Backup repositories.") | None | UnsetType = UNSET
    jobs: JobsModel | UnsetType = UNSET
    ui: UIModel | UnsetType = UNSET
    lab: LabModel | UnsetType = UNSET
    read_only: boolean("Refuse every change to hosts and repositories.") | UnsetType = UNSET
    log_level: choice(LOG_LEVELS, "a log level", "Log file verbosity (default info).") | UnsetType = UNSET
    notifications: collection(list[NotificationModel], "a list of notifications", "Where schedule reports are sent.") | None | UnsetType = UNSET
    schedules: collection(list[ScheduleModel], "a list of schedules", "Backup schedules (`hvtui schedule`).") | UnsetType = UNSET


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``config.yaml`` (draft 2020-12), for editors and the YAML language server."""
    schema = msgspec.json.schema(ConfigModel)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "hvtui config.yaml", **schema}
