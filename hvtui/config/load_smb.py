"""A WinRM host's ``smb:`` block as read against ``hvtui.config.smb.SmbModel`` -> ``SmbSettings``,
with the rules between its keys (a user name needs a password source and the other way round)."""

from __future__ import annotations

from msgspec import UNSET, UnsetType

from hvtui.config.document import Document
from hvtui.config.settings import SecretSource, SmbSettings
from hvtui.config.smb import SmbModel
from hvtui.config.walk import Read, duration_seconds, rate_bytes

PASSWORD_KEYS = ("password_env", "password_command", "password_prompt")


def normalize_host_path(path: str) -> str:
    """``d:/VMs/`` -> ``D:\\VMs``; a drive root keeps its backslash (``D:\\``)."""
    value = path.replace("/", "\\")
    value = value[0].upper() + value[1:]
    while value.endswith("\\") and len(value) > 3:
        value = value[:-1]
    return value


def convert_smb(doc: Document, read: Read | None, model: SmbModel | UnsetType) -> SmbSettings:
    """The SMB settings of one host (defaults when the block is absent); mistakes are reported to ``doc``."""
    if model is UNSET or read is None:
        return SmbSettings()
    given = [key for key in PASSWORD_KEYS if key in read.keys and not (key == "password_prompt" and model.password_prompt is False)]
    username = model.username if model.username is not UNSET else None
    password: SecretSource | None = None
    if len(given) > 1:
        doc.report(read.where(given[1]), f"only one SMB password source may be set, found {' and '.join(given)}")
    if username is not None and not given:
        doc.report(read.where("username"), "smb: username needs a password source: one of password_env, password_command or password_prompt: true")
    elif given and username is None:
        doc.report(read.where(given[0]), "an SMB password source needs smb: username (else SMB uses the WinRM user and password)")
    if given:
        password = SecretSource(
            env=model.password_env if model.password_env is not UNSET else None,
            command=model.password_command if model.password_command is not UNSET else None,
            prompt=model.password_prompt is True,
        )
    shares: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for key, unc in (model.shares if model.shares is not UNSET else {}).items():
        prefix = normalize_host_path(key)
        if prefix.casefold() in seen:
            first = seen[prefix.casefold()]
            doc.report(read.keys["shares"].where(key), f"the host path {normalize_host_path(first)} is mapped twice (as '{first}' and as '{key}')")
            continue
        seen[prefix.casefold()] = key
        shares.append((prefix, unc.rstrip("\\")))
    timeout = duration_seconds(model.timeout) if model.timeout is not UNSET else 30.0
    assert timeout is not None
    return SmbSettings(
        shares=tuple(shares),
        port=model.port if model.port is not UNSET else 445,
        username=username,
        password=password,
        encrypt=model.encrypt if model.encrypt is not UNSET else True,
        rate_limit=rate_bytes(model.rate_limit) if model.rate_limit is not UNSET else None,
        read_ahead=model.read_ahead if model.read_ahead is not UNSET else 4,
        timeout=timeout,
    )
