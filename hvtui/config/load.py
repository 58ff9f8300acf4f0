"""``load_config``: the file -> the typed ``Config``.

The YAML is composed into nodes (``hvtui.config.document``), read against the models
(``hvtui.config.walk``, ``hvtui.config.models``), then converted section by section
(``load_hosts``, ``load_policy`` and the small sections below).  Every mistake is
collected; a file with any raises one ``ConfigError`` listing them all.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import replace
from pathlib import Path

import yaml
from msgspec import UNSET

from hvtui.config.document import Document, Located, SafeLoader, describe, syntax_error
from hvtui.config.errors import did_you_mean
from hvtui.config.load_hosts import convert_hosts
from hvtui.config.load_notify import convert_notifications
from hvtui.config.load_policy import check_policy_names, convert_policy
from hvtui.config.load_s3 import convert_s3
from hvtui.config.load_schedules import convert_schedules
from hvtui.config.models import ConfigModel
from hvtui.config.settings import (
    DEFAULT_COMPRESSION,
    DEFAULT_FORMAT,
    DEFAULT_PACK_SIZE_MIB,
    DEFAULT_ZSTD_LEVEL,
    Config,
    JobsConfig,
    LabConfig,
    NotificationConfig,
    RepositoryConfig,
    Retention,
    SecretSource,
    UIConfig,
    builtin_repository,
)
from hvtui.config.walk import Read, duration_seconds, first_of_each_name, read_model
from hvtui.errors import ConfigError
from hvtui.paths import Paths

# A config is a few KiB; thousands of hosts fit in well under this.  Reading and checking
# a 33 MB file took 67 s and 2.1 GB, so anything bigger is refused before it is parsed.
MAX_CONFIG_BYTES = 1024 * 1024
log = logging.getLogger(__name__)


def load_config(path: Path, paths: Paths | None = None) -> Config:
    """Read and validate a config file; ``ConfigError`` names the line and key of every mistake."""
    path = Path(path).expanduser().absolute()
    paths = paths or Paths.default()
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            raw = fh.read(MAX_CONFIG_BYTES + 1)  # the file could grow between fstat and read
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file: {err.strerror or err}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: the config file is {max(st.st_size, len(raw))} bytes, more than the {MAX_CONFIG_BYTES} "
            "bytes a config may be; is this the right file?"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: the file is not UTF-8 text") from None
    loader = SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as err:
            raise syntax_error(path, err) from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: YAML syntax error: {err}") from None
        if root is None:
            raise ConfigError(
                f"{path}:1: the file is empty; expected a mapping of settings such as 'hosts:' "
                "(see config.example.yaml), or remove the file to use the built-in demo lab"
            )
        doc = Document(path, loader)
        config = _read_config(doc, Located(root, ""), paths)
        doc.problems.raise_if_any()
        check_command_safety(path, st, config)
        for warning in config.warnings():
            log.warning("config: %s", warning)
        return config
    finally:
        loader.dispose()


def check_command_safety(path: Path, st: os.stat_result, config: Config) -> None:
    """Refuse a config that others could change while it makes hvtui run a command.

    A ``password_command`` runs as whoever starts hvtui: a file writable by other users, or
    owned by someone else, would let them run anything as that user (ssh refuses such
    files for the same reason).  Configs without a command are not affected.
    """
    commands = [(f"host {h.name!r}", h.line) for h in config.hosts if h.winrm is not None and h.winrm.password.command]
    commands += [(f"notification {n.name!r}", n.line) for n in config.notifications if _notification_command(n)]
    if not commands:
        return
    problems = []
    if st.st_uid != os.getuid():
        problems.append(f"is owned by another user (uid {st.st_uid}, you are uid {os.getuid()}): chown it to yourself")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problems.append(f"is writable by {'others' if st.st_mode & stat.S_IWOTH else 'its group'}: run chmod go-w {path}")
    if problems:
        first, line = commands[0]
        where = f"line {line}" if line else "its hosts"
        raise ConfigError(
            f"{path}: refusing this config file: it sets password_command ({first}, {where}), a command "
            f"hvtui runs as you, and the file {' and '.join(problems)}; anyone who can change it could make hvtui "
            "run any command"
        )


def _notification_command(notification: NotificationConfig) -> bool:
    email, webhook = notification.email, notification.webhook
    if email is not None:
        return bool(email.password.command)
    assert webhook is not None
    return bool(webhook.url and webhook.url.command) or any(source.command for _, source in webhook.headers)


def _read_config(doc: Document, root: Located, paths: Paths) -> Config:
    if not isinstance(root.node, yaml.MappingNode):
        raise ConfigError(
            f"{doc.file}:{root.line}: expected a mapping of settings (hosts:, policy:, ...), found {describe(root.node)}"
        )
    top = read_model(doc, root, ConfigModel)
    hosts_read = top.keys.get("hosts")
    before = len(doc.problems)
    hosts = convert_hosts(doc, hosts_read)
    hosts_clean = len(doc.problems) == before and (hosts_read is None or hosts_read.ok)
    repositories = _repositories(doc, top.keys.get("repositories"), paths)
    policy = convert_policy(doc, top.keys.get("policy"))
    if hosts and hosts_clean and "policy" in top.keys and top.keys["policy"].data is not None:
        check_policy_names(doc, top.keys["policy"], hosts)
    notifications_read = top.keys.get("notifications")
    notification_names = tuple(
        str(item.keys["name"].data)
        for item in (notifications_read.items if notifications_read is not None and isinstance(notifications_read.data, list) else ())
        if "name" in item.keys and item.keys["name"].ok
    )
    schedules, notes = convert_schedules(
        doc, top.keys.get("schedules"), repositories, hosts if hosts_clean else (), notification_names
    )
    return Config(
        source=doc.file,
        hosts=hosts,
        read_only=_value(top, "read_only", False),
        log_level=_value(top, "log_level", "info"),
        lab=_lab(doc, top.keys.get("lab")),
        policy=policy,
        repositories=repositories,
        jobs=_jobs(top.keys.get("jobs")),
        ui=_ui(top.keys.get("ui")),
        notifications=convert_notifications(doc, notifications_read),
        schedules=schedules,
        notes=notes,
    )


def _value(section: Read, key: str, default: object) -> object:
    entry = section.keys.get(key)
    return entry.data if entry is not None and entry.ok else default


# -- repositories, jobs, ui, lab ----------------------------------------------------------------


def _repositories(doc: Document, section: Read | None, paths: Paths) -> tuple[RepositoryConfig, ...]:
    if section is None or section.data is None or not isinstance(section.data, list):
        return (builtin_repository(paths),)
    repositories: list[RepositoryConfig] = []
    read_items: list[Read] = []  # the entry each of repositories was read from
    defaults: list[Read] = []
    for item in first_of_each_name(doc, section.items, "repository"):
        if item.model is None:
            continue
        s3 = None
        if "s3" in item.keys:
            s3 = convert_s3(doc, item, item.keys["s3"])
            if s3 is None:
                continue
            where = paths.repository_working_dir(item.model.name)
        elif "path" in item.keys:
            where = doc.resolve_path(item.model.path)
        else:
            doc.report(item.at, "missing required key 'path' (the repository's directory), or s3: for a repository in a bucket")
            continue
        if item.model.default is True:
            defaults.append(item.keys["default"])
        retention = _retention(doc, item.keys["retention"]) if "retention" in item.keys else Retention()
        read_items.append(item)
        repositories.append(
            RepositoryConfig(
                name=item.model.name,
                path=where,
                default=item.model.default is True,
                retention=retention,
                # a bucket holds format 2
                format=item.model.format if s3 is None and isinstance(item.model.format, int) else DEFAULT_FORMAT,
                pack_size_mib=item.model.pack_size_mib if isinstance(item.model.pack_size_mib, int) else DEFAULT_PACK_SIZE_MIB,
                compression=item.model.compression if isinstance(item.model.compression, str) else DEFAULT_COMPRESSION,
                zstd_level=item.model.zstd_level if isinstance(item.model.zstd_level, int) else DEFAULT_ZSTD_LEVEL,
                passphrase=_passphrase_source(doc, item),
                copy_to=item.model.copy_to if isinstance(item.model.copy_to, str) else None,
                s3=s3,
            )
        )
    names = {r.name for r in repositories}
    for item, repository in zip(read_items, repositories, strict=True):
        if repository.copy_to is None:
            continue
        if repository.copy_to == repository.name:
            doc.report(item.where("copy_to"), "copy_to names the repository itself; name another one")
        elif repository.copy_to not in names:
            hint = did_you_mean(repository.copy_to, sorted(names), "repositories")
            doc.report(item.where("copy_to"), f"no repository is named '{repository.copy_to}'{hint}")
    if not section.items:
        return (builtin_repository(paths),)
    if len(defaults) > 1:
        doc.report(defaults[1].at, f"only one repository may be the default (another is marked on line {defaults[0].at.line})")
    if not defaults and section.ok:
        if len(repositories) > 1:
            doc.report(section.at, "several repositories and none marked default: true; mark one of them")
        elif repositories:
            repositories[0] = replace(repositories[0], default=True)
    return tuple(repositories)


def _passphrase_source(doc: Document, item: Read) -> SecretSource:
    """Where an encrypted repository's passphrase comes from: at most one source."""
    model = item.model
    given = [key for key in ("passphrase_env", "passphrase_command") if key in item.keys]
    if model.passphrase_prompt is True:
        given.append("passphrase_prompt")
    if len(given) > 1:
        doc.report(item.where(given[1]), f"only one passphrase source may be set, found {' and '.join(given)}")
    return SecretSource(
        env=model.passphrase_env if isinstance(model.passphrase_env, str) else None,
        command=model.passphrase_command if isinstance(model.passphrase_command, str) else None,
        prompt=model.passphrase_prompt is True,
    )


def _retention(doc: Document, entry: Read) -> Retention:
    given = {key: value for key, value in (entry.data or {}).items()}
    retention = replace(Retention(), **given)
    if not any(getattr(retention, key) for key in Retention.__dataclass_fields__):
        doc.report(entry.at, "this retention keeps nothing (every keep_* is 0); set at least one above 0")
    return retention


def _jobs(entry: Read | None) -> JobsConfig:
    if entry is None or entry.model is None:
        return JobsConfig()
    given = {key: getattr(entry.model, key) for key in entry.keys}
    return replace(JobsConfig(), **given)


def _ui(entry: Read | None) -> UIConfig:
    if entry is None or entry.model is None:
        return UIConfig()
    model = entry.model
    defaults = UIConfig()
    return UIConfig(
        theme=model.theme if model.theme is not UNSET else defaults.theme,
        refresh_seconds=duration_seconds(model.refresh_seconds) or 0.0 if model.refresh_seconds is not UNSET else defaults.refresh_seconds,
        mouse=model.mouse if model.mouse is not UNSET else defaults.mouse,
    )


def _lab(doc: Document, entry: Read | None) -> LabConfig:
    if entry is None or entry.model is None:
        return LabConfig()
    model = entry.model
    return LabConfig(
        dir=doc.resolve_path(model.dir) if model.dir not in (UNSET, None) else None,
        profile=model.profile if model.profile is not UNSET else LabConfig().profile,
    )
