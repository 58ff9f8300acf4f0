"""YAML config -> typed config.

The dataclasses below are the contract every layer reads.  ``load_config`` parses with
PyYAML's safe loader, validates every key (unknown keys are errors, with a "did you
mean"), and raises ``ConfigError`` naming the file, the line, the key, what was
expected and what was found.  No config file at all gives ``Config.lab_default()``:
the built-in demo lab.
"""

from __future__ import annotations

import difflib
import math
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import yaml

from hvtui.errors import ConfigError
from hvtui.paths import Paths, env_config_path

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


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Sprawl policy thresholds; durations in seconds, sizes in bytes."""

    checkpoint_age_warn: float = 3 * DAY
    checkpoint_age_crit: float = 7 * DAY
    recovery_age_warn: float = 1 * HOUR
    recovery_age_crit: float = 1 * DAY
    count_warn: int = 3  # warn above
    count_crit: int = 10  # crit above
    count_limit: int = 45  # always crit at or above (Hyper-V's hard limit is 50)
    depth_warn: int = 3  # warn above
    depth_crit: int = 8  # crit above
    differencing_warn_percent: float = 20.0  # of the base disks' virtual size
    differencing_warn_bytes: int | None = None  # or above this absolute size
    merge_min_free_percent: float = 5.0  # a merge must leave at least this much of the volume free
    backup_max_age: float = 7 * DAY  # checkpoint-not-backup
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
class RepositoryConfig:
    name: str
    path: Path
    default: bool = False
    retention: Retention = field(default_factory=Retention)


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

    @property
    def is_builtin_lab(self) -> bool:
        return self.source is None

    def host(self, name: str) -> HostConfig | None:
        for host in self.hosts:
            if host.name == name:
                return host
        return None

    @classmethod
    def lab_default(cls, paths: Paths | None = None) -> Config:
        """The built-in demo lab: no file, no hosts listed (the core discovers the lab's hosts)."""
        return cls(source=None, hosts=(), repositories=(_builtin_repository(paths or Paths.default()),))

    def default_repository(self) -> RepositoryConfig:
        """The repository used when none is named (``default`` under the data dir unless configured)."""
        for repository in self.repositories:
            if repository.default:
                return repository
        if self.repositories:
            return self.repositories[0]
        return _builtin_repository(Paths.default())

    def repository(self, name: str) -> RepositoryConfig | None:
        for repository in self.repositories:
            if repository.name == name:
                return repository
        if name == DEFAULT_REPOSITORY_NAME and not self.repositories:
            return self.default_repository()
        return None


# ======================================================================================
# Loading and validation
# ======================================================================================
#
# The file is composed into PyYAML's node tree (safe loader: plain data, no Python
# objects) rather than loaded straight into dicts, because nodes keep their line
# numbers: every mistake is reported with the file, the line, the key path
# (``hosts[1].port``), what was expected and what was found.

HOST_KINDS = ("lab", "winrm")
WINRM_SCHEMES = ("https", "http")
WINRM_TRANSPORTS = ("ntlm", "kerberos", "credssp", "certificate", "basic")
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
)
HYPERV_CHECKPOINT_LIMIT = 50
DEFAULT_REPOSITORY_NAME = "default"

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + t for t in ("str", "int", "float", "bool", "null"))
_MERGE = _TAG + "merge"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": HOUR, "d": DAY, "w": 7 * DAY}
_PLAIN_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
# Decimal units follow IEC (GB = 10^9); bare letters are binary, as in qemu-img and dd.
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
    "t": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
    "p": 1024**5,
    "pib": 1024**5,
    "pb": 1000**5,
}
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)")
_PLAIN_PASSWORD_MESSAGE = (
    "a plain-text password is not accepted in the config file; use password_env (an environment "
    "variable's name), password_command (a command that prints it) or password_prompt: true"
)

DURATION_HELP = "a duration such as 30s, 90m, 12h, 3d, 2w or a number of seconds"
SIZE_HELP = "a size such as 500MB, 20G, 100GiB or a number of bytes"


def parse_duration(text: str) -> float | None:
    """``"3d"`` -> 259200.0; ``"1h30m"`` -> 5400.0; None when ``text`` is not a duration."""
    compact = text.strip().lower()
    if not compact:
        return None
    if _PLAIN_NUMBER_RE.fullmatch(compact):
        return float(compact)
    total, position = 0.0, 0
    for match in _DURATION_RE.finditer(compact):
        if compact[position : match.start()].strip():
            return None
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position == 0 or compact[position:].strip():
        return None
    return total


def parse_size(text: str) -> int | None:
    """``"100GiB"`` -> 107374182400; ``"500MB"`` -> 500000000; None when not a size."""
    match = _SIZE_RE.fullmatch(text.strip())
    if match is None:
        return None
    factor = _SIZE_UNITS.get(match.group(2).lower())
    if factor is None:
        return None
    return int(float(match.group(1)) * factor)


def format_duration(seconds: float) -> str:
    """The inverse of ``parse_duration`` for messages: 259200 -> ``"3d"``, 5400 -> ``"1h30m"``."""
    if seconds <= 0:
        return "0s"
    remaining = int(round(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if remaining >= size:
            parts.append(f"{remaining // size}{unit}")
            remaining %= size
    return "".join(parts) or f"{seconds:g}s"


@dataclass(frozen=True, slots=True)
class _Field:
    """One value in the file: its node (for the line) and its key path (for the message)."""

    node: yaml.Node
    path: str


def _child_path(path: str, key: str) -> str:
    if _IDENTIFIER_RE.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f'{path}["{key}"]'


class _Document:
    """The file being read: turns nodes into values and mistakes into ``ConfigError``."""

    def __init__(self, file: Path, loader: yaml.SafeLoader) -> None:
        self.file = file
        self.loader = loader
        self._entries: dict[int, dict[str, tuple[yaml.Node, yaml.Node]]] = {}

    # -- reporting -------------------------------------------------------------------
    def error(self, where: _Field | yaml.Node, message: str) -> ConfigError:
        node = where.node if isinstance(where, _Field) else where
        path = where.path if isinstance(where, _Field) else ""
        location = f"{self.file}:{node.start_mark.line + 1}"
        return ConfigError(f"{location}: {path}: {message}" if path else f"{location}: {message}")

    def expected(self, field_: _Field, what: str) -> ConfigError:
        return self.error(field_, f"expected {what}, found {self.describe(field_.node)}")

    @staticmethod
    def describe(node: yaml.Node) -> str:
        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        if isinstance(node, yaml.SequenceNode):
            return "a list"
        text = str(node.value)
        if len(text) > 60:
            text = text[:57] + "..."
        if node.tag == _STR:
            return repr(text)
        if node.tag == _NULL:
            return "nothing (an empty value)"
        kind = {_INT: "an integer", _FLOAT: "a number", _BOOL: "a boolean"}.get(node.tag, "a value")
        return f"{text} ({kind})"

    # -- structure -------------------------------------------------------------------
    def mapping(
        self,
        field_: _Field,
        allowed: Sequence[str],
        required: Sequence[str] = (),
        hints: Mapping[str, str] | None = None,
        refused: Mapping[str, str] | None = None,
    ) -> dict[str, _Field]:
        """The mapping's entries by key, refusing unknown, duplicate and missing keys.

        ``hints`` explains a missing required key; ``refused`` maps keys that are known
        but not accepted here to the reason.
        """
        entries = self.entries(field_, what="a mapping")
        refused = refused or {}
        for key, (key_node, _value) in entries.items():
            if key in allowed:
                continue
            where = _Field(key_node, _child_path(field_.path, key))
            if key in refused:
                raise self.error(where, refused[key])
            raise self.error(where, _unknown_key_message(key, allowed))
        for key in required:
            if key not in entries:
                hint = f" ({hints[key]})" if hints and key in hints else ""
                raise self.error(field_, f"missing required key '{key}'{hint}")
        return {key: _Field(value, _child_path(field_.path, key)) for key, (_node, value) in entries.items()}

    def entries(self, field_: _Field, what: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """Key -> (key node, value node) of a mapping with text keys; merge keys (``<<``) applied."""
        node = field_.node
        if not isinstance(node, yaml.MappingNode):
            raise self.expected(field_, what)
        # Flattening merges keys into the node itself, so a second look must reuse the first.
        cached = self._entries.get(id(node))
        if cached is not None:
            return cached
        seen: dict[str, yaml.Node] = {}
        for key_node, _value in node.value:
            if key_node.tag == _MERGE:
                continue
            key = self.key_text(key_node, field_.path)
            if key in seen:
                raise self.error(
                    _Field(key_node, _child_path(field_.path, key)),
                    f"duplicate key (first given on line {seen[key].start_mark.line + 1})",
                )
            seen[key] = key_node
        try:
            self.loader.flatten_mapping(node)
        except yaml.MarkedYAMLError as err:
            raise _syntax_error(self.file, err) from None
        result: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:  # merged entries first, so the mapping's own win
            result[self.key_text(key_node, field_.path)] = (key_node, value_node)
        self._entries[id(node)] = result
        return result

    def key_text(self, key_node: yaml.Node, path: str) -> str:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR:
            where = _Field(key_node, path)
            raise self.error(where, f"expected a text key, found {self.describe(key_node)}")
        return str(key_node.value)

    def sequence(self, field_: _Field, what: str) -> list[_Field]:
        if not isinstance(field_.node, yaml.SequenceNode):
            raise self.expected(field_, what)
        return [_Field(item, f"{field_.path}[{index}]") for index, item in enumerate(field_.node.value)]

    # -- scalars ---------------------------------------------------------------------
    def scalar(self, field_: _Field) -> object:
        if not isinstance(field_.node, yaml.ScalarNode):
            return field_.node  # a collection: the caller's type check rejects it
        try:
            return self.loader.construct_object(field_.node, deep=True)
        except yaml.MarkedYAMLError as err:  # e.g. an invalid !!int
            raise _syntax_error(self.file, err) from None

    def is_null(self, field_: _Field) -> bool:
        return isinstance(field_.node, yaml.ScalarNode) and field_.node.tag == _NULL

    def text(self, field_: _Field, what: str = "text") -> str:
        value = self.scalar(field_)
        if not isinstance(value, str):
            hint = " (put it in quotes if it is meant as text)" if isinstance(value, int | float) else ""
            raise self.error(field_, f"expected {what}, found {self.describe(field_.node)}{hint}")
        if not value.strip():
            raise self.error(field_, f"expected {what}, found an empty string")
        return value

    def name(self, field_: _Field, what: str) -> str:
        description = f"{what}: letters, digits, '.', '_' or '-', starting with a letter or digit, at most 63 characters"
        value = self.text(field_, description)
        if not _NAME_RE.fullmatch(value):
            raise self.expected(field_, description)
        return value

    def boolean(self, field_: _Field) -> bool:
        value = self.scalar(field_)
        if not isinstance(value, bool):
            raise self.expected(field_, "true or false")
        return value

    def integer(self, field_: _Field, low: int, high: int | None = None) -> int:
        what = f"an integer {low}-{high}" if high is not None else f"an integer of at least {low}"
        value = self.scalar(field_)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.expected(field_, what)
        if value < low or (high is not None and value > high):
            raise self.expected(field_, what)
        return value

    def number(self, field_: _Field, low: float, high: float, what: str = "a number") -> float:
        description = f"{what} from {low:g} to {high:g}"
        value = self.scalar(field_)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.expected(field_, description)
        if not low <= value <= high:
            raise self.expected(field_, description)
        return float(value)

    def duration(self, field_: _Field, minimum: float = 0.0) -> float:
        value = self.scalar(field_)
        seconds: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str):
            seconds = parse_duration(value)
        if seconds is None or not math.isfinite(seconds):
            raise self.expected(field_, DURATION_HELP)
        if seconds < minimum or (minimum == 0.0 and seconds <= 0):
            floor = f"of at least {format_duration(minimum)}" if minimum else "above zero"
            raise self.error(field_, f"expected a duration {floor}, found {self.describe(field_.node)}")
        return seconds

    def size(self, field_: _Field) -> int:
        value = self.scalar(field_)
        size: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            size = value
        elif isinstance(value, str):
            size = parse_size(value)
        if size is None:
            raise self.expected(field_, SIZE_HELP)
        if size <= 0:
            raise self.expected(field_, "a size above zero")
        return size

    def choice(self, field_: _Field, options: Sequence[str], what: str) -> str:
        value = self.scalar(field_)
        listed = ", ".join(options)
        if not isinstance(value, str) or value not in options:
            message = f"expected {what} ({listed}), found {self.describe(field_.node)}"
            if isinstance(value, str):
                close = difflib.get_close_matches(value.lower(), options, n=1, cutoff=0.6)
                if close:
                    message += f"; did you mean '{close[0]}'?"
            raise self.error(field_, message)
        return value

    def path(self, field_: _Field, must_exist: bool = False) -> Path:
        """``~`` is expanded; a relative path is taken from the config file's folder."""
        value = Path(self.text(field_, "a path")).expanduser()
        if not value.is_absolute():
            value = self.file.parent / value
        if must_exist and not value.is_file():
            raise self.error(field_, f"expected an existing file, found no file at {value}")
        return value


def _unknown_key_message(key: str, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean '{close[0]}'?"
    return f"unknown key; expected one of: {', '.join(allowed)}"


def _syntax_error(file: Path, err: yaml.MarkedYAMLError) -> ConfigError:
    # Only the parser's problem and position: its snippet of the line could hold a secret.
    mark = err.problem_mark or err.context_mark
    line = f":{mark.line + 1}" if mark is not None else ""
    where = [f"column {mark.column + 1}"] if mark is not None else []
    if err.context and err.problem:
        started = err.context_mark
        since = f" that starts on line {started.line + 1}" if started is not None and started is not mark else ""
        where.append(f"{err.context}{since}")
    problem = err.problem or err.context or "invalid YAML"
    detail = f" ({', '.join(where)})" if where else ""
    return ConfigError(f"{file}{line}: YAML syntax error: {problem}{detail}")


# -- config file discovery --------------------------------------------------------------


def config_file_candidates(cli_path: Path | None, paths: Paths) -> tuple[list[Path], str]:
    """Where the config is looked for, unchecked: the file(s) in question and where they
    came from.  ``--config``, else ``$HVTUI_CONFIG``, else ``config.yaml``/``config.yml`` in
    the user config dir (both, when both exist: an error); no file, the built-in demo lab."""
    if cli_path is not None:
        return [Path(cli_path).expanduser()], "given with --config"
    from_env = env_config_path()
    if from_env is not None:
        return [from_env], "named by $HVTUI_CONFIG"
    return [candidate for candidate in paths.default_config_candidates if candidate.exists()], "in the user config directory"


def find_config_file(cli_path: Path | None, paths: Paths) -> Path | None:
    """The config file to load (see ``config_file_candidates``); None when there is none."""
    found, origin = config_file_candidates(cli_path, paths)
    if len(found) > 1:
        names = " and ".join(str(candidate) for candidate in found)
        raise ConfigError(f"two config files found: {names}; keep one of them")
    if found:
        return _existing_config(found[0], origin)
    return None


def _existing_config(path: Path, origin: str) -> Path:
    if not path.exists():
        raise ConfigError(f"config file not found: {path} ({origin})")
    if not path.is_file():
        raise ConfigError(f"config path is not a file: {path} ({origin})")
    return path


# -- the loader ---------------------------------------------------------------------------

_TOP_KEYS = ("hosts", "policy", "repositories", "jobs", "ui", "lab", "read_only", "log_level")
_HOST_COMMON_KEYS = ("name", "kind", "group", "read_only")
_WINRM_KEYS = (
    "address",
    "port",
    "scheme",
    "transport",
    "username",
    "password_env",
    "password_command",
    "password_prompt",
    "ca_bundle",
    "verify_tls",
    "allow_http",
    "cert_pem",
    "cert_key_pem",
    "timeout",
    "operation_timeout",
    "long_timeout",
    "commands_per_shell",
)
_PASSWORD_KEYS = ("password_env", "password_command", "password_prompt")
_THRESHOLD_KEYS = (
    "checkpoint_age",
    "recovery_checkpoint_age",
    "checkpoint_count",
    "chain_depth",
    "differencing_size",
    "merge_headroom",
    "backup_age",
    "replica_checkpoints",
)
_POLICY_KEYS = (*_THRESHOLD_KEYS, "groups", "vms", "exempt")
_RETENTION_KEYS = tuple(f.name for f in fields(Retention))


def load_config(path: Path, paths: Paths | None = None) -> Config:
    """Read and validate a config file; ``ConfigError`` names the line and key of any mistake."""
    path = Path(path).expanduser().absolute()
    paths = paths or Paths.default()
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file: {err.strerror or err}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: the file is not UTF-8 text") from None
    loader = _SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as err:
            raise _syntax_error(path, err) from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: YAML syntax error: {err}") from None
        if root is None:
            raise ConfigError(
                f"{path}:1: the file is empty; expected a mapping of settings such as 'hosts:' "
                "(see config.example.yaml), or remove the file to use the built-in demo lab"
            )
        return _read_config(_Document(path, loader), _Field(root, ""), paths)
    finally:
        loader.dispose()


_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_config(doc: _Document, root: _Field, paths: Paths) -> Config:
    if not isinstance(root.node, yaml.MappingNode):
        raise doc.error(root, f"expected a mapping of settings (hosts:, policy:, ...), found {doc.describe(root.node)}")
    top = doc.mapping(root, _TOP_KEYS)
    hosts = _read_hosts(doc, top["hosts"]) if "hosts" in top and not doc.is_null(top["hosts"]) else ()
    repositories = _read_repositories(doc, top.get("repositories"), paths)
    policy = _read_policy(doc, top["policy"]) if "policy" in top else PolicyConfig()
    if hosts and "policy" in top:
        _check_policy_names(doc, top["policy"], hosts)
    return Config(
        source=doc.file,
        hosts=hosts,
        read_only=doc.boolean(top["read_only"]) if "read_only" in top else False,
        log_level=doc.choice(top["log_level"], LOG_LEVELS, "a log level") if "log_level" in top else "info",
        lab=_read_lab(doc, top["lab"]) if "lab" in top else LabConfig(),
        policy=policy,
        repositories=repositories,
        jobs=_read_jobs(doc, top["jobs"]) if "jobs" in top else JobsConfig(),
        ui=_read_ui(doc, top["ui"]) if "ui" in top else UIConfig(),
    )


# -- hosts ----------------------------------------------------------------------------------


def _read_hosts(doc: _Document, field_: _Field) -> tuple[HostConfig, ...]:
    hosts: list[HostConfig] = []
    first_line: dict[str, int] = {}
    for item in doc.sequence(field_, "a list of hosts"):
        host = _read_host(doc, item)
        if host.name in first_line:
            name_node = doc.entries(item, "a host")["name"][1]
            raise doc.error(_Field(name_node, _child_path(item.path, "name")), f"duplicate host name '{host.name}' (first defined on line {first_line[host.name]})")
        first_line[host.name] = host.line or 0
        hosts.append(host)
    return tuple(hosts)


def _read_host(doc: _Document, item: _Field) -> HostConfig:
    if not isinstance(item.node, yaml.MappingNode):
        raise doc.expected(item, "a host (a mapping with name:, kind: and its settings)")
    # Kind first: it decides which keys are allowed.
    entries = doc.entries(item, "a host")
    if "kind" not in entries:
        raise doc.error(item, "missing required key 'kind' (lab or winrm)")
    kind = doc.choice(_Field(entries["kind"][1], _child_path(item.path, "kind")), HOST_KINDS, "a host kind")
    refused = {"password": _PLAIN_PASSWORD_MESSAGE}
    if kind == "lab":
        refused.update({key: "only valid for kind: winrm" for key in _WINRM_KEYS})
        allowed: tuple[str, ...] = _HOST_COMMON_KEYS
    else:
        allowed = (*_HOST_COMMON_KEYS, *_WINRM_KEYS)
    host = doc.mapping(
        item,
        allowed,
        required=("name", "address") if kind == "winrm" else ("name",),
        hints={"name": "the host's name in the console", "address": "the host's DNS name or IP address"},
        refused=refused,
    )
    name = doc.name(host["name"], "a host name")
    group = None
    if "group" in host and not doc.is_null(host["group"]):
        group = doc.text(host["group"], "a group name")
    return HostConfig(
        name=name,
        kind=kind,
        group=group,
        read_only=doc.boolean(host["read_only"]) if "read_only" in host else False,
        winrm=_read_winrm(doc, item, host) if kind == "winrm" else None,
        line=item.node.start_mark.line + 1,
    )


def _read_winrm(doc: _Document, item: _Field, host: dict[str, _Field]) -> WinRMSettings:
    address = doc.text(host["address"], "a DNS name or IP address")
    if "://" in address or "/" in address or any(ch.isspace() for ch in address):
        raise doc.error(
            host["address"],
            f"expected a DNS name or IP address, found {address!r} (give scheme: and port: as their own keys)",
        )
    scheme = doc.choice(host["scheme"], WINRM_SCHEMES, "a scheme") if "scheme" in host else "https"
    transport = doc.choice(host["transport"], WINRM_TRANSPORTS, "a transport") if "transport" in host else "ntlm"
    allow_http = doc.boolean(host["allow_http"]) if "allow_http" in host else False
    port = doc.integer(host["port"], 1, 65535) if "port" in host else (5986 if scheme == "https" else 5985)

    if scheme == "http":
        scheme_field = host["scheme"]
        if transport == "basic":
            raise doc.error(
                host.get("transport", scheme_field),
                "basic authentication over plain HTTP would send the password unencrypted; "
                "use scheme: https, or a transport that encrypts messages (ntlm, kerberos, credssp)",
            )
        if transport == "certificate":
            raise doc.error(host.get("transport", scheme_field), "the certificate transport needs scheme: https")
        if not allow_http:
            raise doc.error(
                scheme_field,
                "plain HTTP needs allow_http: true (and then only ntlm, kerberos or credssp, "
                "which encrypt messages); use scheme: https where you can",
            )

    verify_tls = doc.boolean(host["verify_tls"]) if "verify_tls" in host else True
    ca_bundle = None
    if "ca_bundle" in host and not doc.is_null(host["ca_bundle"]):
        if scheme != "https":
            raise doc.error(host["ca_bundle"], "a CA bundle only applies to scheme: https")
        if not verify_tls:
            raise doc.error(host["ca_bundle"], "a CA bundle is given but verify_tls is false; remove one of them")
        ca_bundle = doc.path(host["ca_bundle"], must_exist=True)

    cert_pem = cert_key_pem = None
    if transport == "certificate":
        for key in ("cert_pem", "cert_key_pem"):
            if key not in host:
                raise doc.error(item, f"missing required key '{key}' (the certificate transport needs cert_pem and cert_key_pem)")
        cert_pem = doc.path(host["cert_pem"], must_exist=True)
        cert_key_pem = doc.path(host["cert_key_pem"], must_exist=True)
    else:
        for key in ("cert_pem", "cert_key_pem"):
            if key in host:
                raise doc.error(host[key], f"only used with transport: certificate (this host uses {transport})")

    username = doc.text(host["username"], "a user name") if "username" in host else None
    password = _read_password_source(doc, item, host, transport)
    if transport in PASSWORD_TRANSPORTS and username is None:
        raise doc.error(item, f"missing required key 'username' (transport {transport} logs on with a user name and password)")

    timeout = doc.duration(host["timeout"], minimum=2.0) if "timeout" in host else 30.0
    if "operation_timeout" in host:
        operation_timeout = doc.duration(host["operation_timeout"], minimum=1.0)
        if operation_timeout >= timeout:
            raise doc.error(
                host["operation_timeout"],
                f"operation_timeout ({format_duration(operation_timeout)}) must be below timeout "
                f"({format_duration(timeout)}): the HTTP read must outlast the WS-Management operation",
            )
    else:
        # Keep pywinrm's 20s/30s pair unless a shorter call deadline forces it down.
        operation_timeout = min(20.0, float(max(1, math.floor(timeout * 2 / 3))))
    if "long_timeout" in host:
        long_timeout = doc.duration(host["long_timeout"], minimum=timeout)
    else:
        long_timeout = max(3600.0, timeout)
    commands_per_shell = doc.integer(host["commands_per_shell"], 1, 10000) if "commands_per_shell" in host else 50

    return WinRMSettings(
        address=address,
        port=port,
        scheme=scheme,
        transport=transport,
        username=username,
        password=password,
        ca_bundle=ca_bundle,
        verify_tls=verify_tls,
        allow_http=allow_http,
        cert_pem=cert_pem,
        cert_key_pem=cert_key_pem,
        timeout=timeout,
        operation_timeout=operation_timeout,
        long_timeout=long_timeout,
        commands_per_shell=commands_per_shell,
    )


def _read_password_source(doc: _Document, item: _Field, host: dict[str, _Field], transport: str) -> SecretSource:
    env = command = None
    prompt = False
    given: list[str] = []
    if "password_env" in host:
        env = doc.text(host["password_env"], "an environment variable name")
        if not _ENV_NAME_RE.fullmatch(env):
            raise doc.expected(host["password_env"], "an environment variable name (letters, digits and _)")
        given.append("password_env")
    if "password_command" in host:
        command = doc.text(host["password_command"], "a command line")
        try:
            shlex.split(command)
        except ValueError as err:
            raise doc.error(host["password_command"], f"cannot split the command line: {err}") from None
        given.append("password_command")
    if "password_prompt" in host:
        prompt = doc.boolean(host["password_prompt"])
        if prompt:
            given.append("password_prompt")
    if transport not in PASSWORD_TRANSPORTS:
        if given:
            how = "the Kerberos ticket cache (run kinit)" if transport == "kerberos" else "cert_pem and cert_key_pem"
            raise doc.error(
                host[given[0]], f"transport {transport} does not use a password: it authenticates with {how}; remove {given[0]}"
            )
        return SecretSource()
    if not given:
        raise doc.error(
            item,
            f"transport {transport} needs a password source: one of password_env, password_command or password_prompt: true",
        )
    if len(given) > 1:
        raise doc.error(host[given[1]], f"only one password source may be set, found {' and '.join(given)}")
    return SecretSource(env=env, command=command, prompt=prompt)


# -- policy -----------------------------------------------------------------------------------


def _read_policy(doc: _Document, field_: _Field) -> PolicyConfig:
    policy = doc.mapping(field_, _POLICY_KEYS)
    defaults = _read_thresholds(doc, field_, policy, Thresholds())
    groups: dict[str, Thresholds] = {}
    if "groups" in policy:
        for group, (_key, value) in doc.entries(policy["groups"], "a mapping of group name to thresholds").items():
            group_field = _Field(value, _child_path(policy["groups"].path, group))
            groups[group] = _read_thresholds(doc, group_field, doc.mapping(group_field, _THRESHOLD_KEYS), defaults)
    vms: dict[str, Thresholds] = {}
    if "vms" in policy:
        for vm, (key_node, value) in doc.entries(policy["vms"], 'a mapping of "host/vm" or "vm" to thresholds').items():
            vm_field = _Field(value, _child_path(policy["vms"].path, vm))
            if vm.count("/") > 1 or vm.startswith("/") or vm.endswith("/"):
                raise doc.error(_Field(key_node, vm_field.path), 'expected "host/vm" or "vm" as the key')
            vms[vm] = _read_thresholds(doc, vm_field, doc.mapping(vm_field, _THRESHOLD_KEYS), defaults)
    exemptions = _read_exemptions(doc, policy["exempt"]) if "exempt" in policy else ()
    return PolicyConfig(defaults=defaults, groups=groups, vms=vms, exemptions=exemptions)


def _check_policy_names(doc: _Document, field_: _Field, hosts: tuple[HostConfig, ...]) -> None:
    """With hosts listed, a group or host named by the policy must exist: a typo would
    otherwise silently leave the defaults in force. (Lab hosts found at run time cannot
    be checked, so this applies only when the file lists hosts.)"""
    policy = doc.entries(field_, "a mapping")
    groups = sorted({host.group for host in hosts if host.group is not None})
    names = [host.name for host in hosts]
    if "groups" in policy:
        for group, (key_node, _value) in doc.entries(_Field(policy["groups"][1], "policy.groups"), "a mapping").items():
            if group not in groups:
                where = _Field(key_node, _child_path("policy.groups", group))
                raise doc.error(where, f"no host has group '{group}'{_did_you_mean(group, groups, 'groups')}")
    if "vms" in policy:
        for key, (key_node, _value) in doc.entries(_Field(policy["vms"][1], "policy.vms"), "a mapping").items():
            host = key.partition("/")[0] if "/" in key else None
            if host is not None and host not in names:
                where = _Field(key_node, _child_path("policy.vms", key))
                raise doc.error(where, f"no host is named '{host}'{_did_you_mean(host, names, 'hosts')}")


def _did_you_mean(value: str, known: Sequence[str], what: str) -> str:
    close = difflib.get_close_matches(value, known, n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{close[0]}'?"
    return f" (configured {what}: {', '.join(known) or 'none'})"


def _read_thresholds(doc: _Document, owner: _Field, entries: dict[str, _Field], base: Thresholds) -> Thresholds:
    """``base`` with the thresholds given in ``entries`` (a partial override) applied."""
    changes: dict[str, object] = {}

    def pair(key: str, warn_name: str, crit_name: str, read: Callable[[_Field], float]) -> None:
        if key not in entries:
            return
        sub = doc.mapping(entries[key], ("warn", "crit"))
        if "warn" in sub:
            changes[warn_name] = read(sub["warn"])
        if "crit" in sub:
            changes[crit_name] = read(sub["crit"])

    def count(field_: _Field) -> int:
        return doc.integer(field_, 0, HYPERV_CHECKPOINT_LIMIT)

    def depth(field_: _Field) -> int:
        return doc.integer(field_, 0, 1000)

    pair("checkpoint_age", "checkpoint_age_warn", "checkpoint_age_crit", doc.duration)
    pair("recovery_checkpoint_age", "recovery_age_warn", "recovery_age_crit", doc.duration)
    pair("chain_depth", "depth_warn", "depth_crit", depth)
    if "checkpoint_count" in entries:
        sub = doc.mapping(entries["checkpoint_count"], ("warn", "crit", "limit"))
        for key, name in (("warn", "count_warn"), ("crit", "count_crit"), ("limit", "count_limit")):
            if key in sub:
                changes[name] = count(sub[key]) if key != "limit" else doc.integer(sub[key], 1, HYPERV_CHECKPOINT_LIMIT)
    if "differencing_size" in entries:
        sub = doc.mapping(entries["differencing_size"], ("warn_percent", "warn_bytes"))
        if "warn_percent" in sub:
            changes["differencing_warn_percent"] = doc.number(sub["warn_percent"], 0.1, 1000, "a percentage")
        if "warn_bytes" in sub:
            changes["differencing_warn_bytes"] = None if doc.is_null(sub["warn_bytes"]) else doc.size(sub["warn_bytes"])
    if "merge_headroom" in entries:
        sub = doc.mapping(entries["merge_headroom"], ("min_free_percent",))
        if "min_free_percent" in sub:
            changes["merge_min_free_percent"] = doc.number(sub["min_free_percent"], 0, 100, "a percentage")
    if "backup_age" in entries:
        sub = doc.mapping(entries["backup_age"], ("crit",))
        if "crit" in sub:
            changes["backup_max_age"] = doc.duration(sub["crit"])
    if "replica_checkpoints" in entries:
        changes["replica_alerts"] = doc.boolean(entries["replica_checkpoints"])

    result = replace(base, **changes)  # type: ignore[arg-type]
    ordered = (
        ("checkpoint_age", result.checkpoint_age_warn, result.checkpoint_age_crit, format_duration),
        ("recovery_checkpoint_age", result.recovery_age_warn, result.recovery_age_crit, format_duration),
        ("checkpoint_count", result.count_warn, result.count_crit, str),
        ("chain_depth", result.depth_warn, result.depth_crit, str),
    )
    for key, warn, crit, show in ordered:
        if warn > crit:
            where = entries.get(key, owner)
            inherited = "" if key in entries and _sets_both(doc, entries[key]) else " (the other one inherited)"
            raise doc.error(where, f"warn ({show(warn)}) is above crit ({show(crit)}){inherited}; warn must be at most crit")
    return result


def _sets_both(doc: _Document, field_: _Field) -> bool:
    keys = doc.entries(field_, "a mapping")
    return "warn" in keys and "crit" in keys


def _read_exemptions(doc: _Document, field_: _Field) -> tuple[Exemption, ...]:
    exemptions = []
    for item in doc.sequence(field_, "a list of exemptions"):
        entry = doc.mapping(
            item,
            ("vm", "checkpoint", "rule", "reason"),
            required=("reason",),
            hints={"reason": "say why these findings are exempt; it is shown beside them"},
        )
        if not {"vm", "checkpoint", "rule"} & entry.keys():
            raise doc.error(item, "an exemption needs at least one of vm, checkpoint or rule")
        exemptions.append(
            Exemption(
                vm=doc.text(entry["vm"], "a VM name or glob") if "vm" in entry else "*",
                checkpoint=doc.text(entry["checkpoint"], "a checkpoint name or glob") if "checkpoint" in entry else None,
                rule=doc.choice(entry["rule"], RULE_IDS, "a rule id") if "rule" in entry else None,
                reason=doc.text(entry["reason"], "the reason for the exemption"),
            )
        )
    return tuple(exemptions)


# -- repositories, jobs, ui, lab ----------------------------------------------------------------


def _read_repositories(doc: _Document, field_: _Field | None, paths: Paths) -> tuple[RepositoryConfig, ...]:
    if field_ is None or doc.is_null(field_):
        return (_builtin_repository(paths),)
    repositories: list[RepositoryConfig] = []
    first_line: dict[str, int] = {}
    default_fields: list[_Field] = []
    items = doc.sequence(field_, "a list of repositories")
    for item in items:
        entry = doc.mapping(
            item,
            ("name", "path", "default", "retention"),
            required=("name", "path"),
            hints={"name": "how --repo names it", "path": "the repository's directory"},
        )
        name = doc.name(entry["name"], "a repository name")
        if name in first_line:
            raise doc.error(entry["name"], f"duplicate repository name '{name}' (first defined on line {first_line[name]})")
        first_line[name] = item.node.start_mark.line + 1
        is_default = doc.boolean(entry["default"]) if "default" in entry else False
        if is_default:
            default_fields.append(entry["default"])
        repositories.append(
            RepositoryConfig(
                name=name,
                path=doc.path(entry["path"]),
                default=is_default,
                retention=_read_retention(doc, entry["retention"]) if "retention" in entry else Retention(),
            )
        )
    if not repositories:
        return (_builtin_repository(paths),)
    if len(default_fields) > 1:
        first = default_fields[0].node.start_mark.line + 1
        raise doc.error(default_fields[1], f"only one repository may be the default (another is marked on line {first})")
    if not default_fields:
        if len(repositories) > 1:
            raise doc.error(field_, "several repositories and none marked default: true; mark one of them")
        repositories[0] = replace(repositories[0], default=True)
    return tuple(repositories)


def _builtin_repository(paths: Paths) -> RepositoryConfig:
    return RepositoryConfig(name=DEFAULT_REPOSITORY_NAME, path=paths.default_repository, default=True)


def _read_retention(doc: _Document, field_: _Field) -> Retention:
    entry = doc.mapping(field_, _RETENTION_KEYS)
    values = {key: doc.integer(entry[key], 0, 100000) for key in _RETENTION_KEYS if key in entry}
    retention = replace(Retention(), **values)
    if not any(getattr(retention, key) for key in _RETENTION_KEYS):
        raise doc.error(field_, "this retention keeps nothing (every keep_* is 0); set at least one above 0")
    return retention


def _read_jobs(doc: _Document, field_: _Field) -> JobsConfig:
    entry = doc.mapping(field_, ("max_concurrent", "per_host"))
    defaults = JobsConfig()
    return JobsConfig(
        max_concurrent=doc.integer(entry["max_concurrent"], 1, 64) if "max_concurrent" in entry else defaults.max_concurrent,
        per_host=doc.integer(entry["per_host"], 1, 64) if "per_host" in entry else defaults.per_host,
    )


def _read_ui(doc: _Document, field_: _Field) -> UIConfig:
    entry = doc.mapping(field_, ("theme", "refresh_seconds", "mouse"))
    defaults = UIConfig()
    refresh = defaults.refresh_seconds
    if "refresh_seconds" in entry:
        refresh = doc.duration(entry["refresh_seconds"], minimum=1.0)
    return UIConfig(
        theme=doc.name(entry["theme"], "a theme name") if "theme" in entry else defaults.theme,
        refresh_seconds=refresh,
        mouse=doc.boolean(entry["mouse"]) if "mouse" in entry else defaults.mouse,
    )


def _read_lab(doc: _Document, field_: _Field) -> LabConfig:
    entry = doc.mapping(field_, ("dir", "profile"))
    directory = None
    if "dir" in entry and not doc.is_null(entry["dir"]):
        directory = doc.path(entry["dir"])
    return LabConfig(
        dir=directory,
        profile=doc.choice(entry["profile"], LAB_PROFILES, "a lab profile") if "profile" in entry else LabConfig().profile,
    )
