"""The model of a WinRM host's ``smb:`` block (read by ``hvtui.config.load_smb``): how its VM files travel (SMB3, ``hvtui.hosts.smb``).

::

    smb:
      shares: {'D:\\': '\\\\hv01\\D$', 'E:\\VMs': '\\\\hv01\\VMs$'}   # default: C:\\ and D:\\ -> the admin shares
      port: 445
      username: CORP\\svc-hvtui-files      # default: the host's WinRM user name and password
      password_env: HVTUI_SMB_PASSWORD
      encrypt: true                        # false still requires signing
      rate_limit: 200MB/s                  # reads from this host; default unlimited
      read_ahead: 4                        # reads in flight per open file
"""

from __future__ import annotations

from typing import Annotated, Union

from msgspec import UNSET, Meta, UnsetType

from hvtui.config.fields import ENV_NAME_PATTERN, Model, boolean, collection, duration, integer, meta, text
from hvtui.config.units import RATE_HELP, RATE_PATTERN

# A drive-absolute Windows path (``D:\``, ``D:\VMs``); forward slashes are taken as backslashes.
HOST_PATH_PATTERN = r"^[A-Za-z]:[\\/]"
# ``\\server\share`` with an optional folder below it.
UNC_PATTERN = r"^\\\\[^\\/\s]+\\[^\\/]+(\\[^\\/]+)*\\?$"

HostPathKey = Annotated[
    str, Meta(pattern=HOST_PATH_PATTERN), meta("A host path such as D:\\VMs.", what="a host path such as 'D:\\' or 'D:\\VMs' as the key")
]
Unc = text(
    "a UNC path such as '\\\\hv01\\D$'",
    "The share (and folder) the host path is reached through.",
    pattern=UNC_PATTERN,
    pattern_hint=" (\\\\server\\share, in single quotes in YAML so the backslashes stay as written)",
)
Rate = Annotated[
    Union[Annotated[int, Meta(ge=1)], Annotated[str, Meta(pattern=RATE_PATTERN)]],  # noqa: UP007 (a runtime union of Annotated)
    meta(RATE_HELP, kind="rate"),
]


class SmbModel(Model):
    """How the host's VM files are read and written (SMB3)."""

    shares: collection(
        dict[HostPathKey, Unc], "a mapping of host path to UNC path", "Host path prefix -> UNC path; default C:\\ and D:\\ -> the admin shares."
    ) | UnsetType = UNSET
    port: integer(1, 65535, "SMB port (default 445).") | UnsetType = UNSET
    username: text("a user name", "SMB user (default: the host's WinRM user and password).") | UnsetType = UNSET
    password_env: Annotated[
        str,
        Meta(pattern=ENV_NAME_PATTERN),
        meta("The environment variable holding the SMB password.", kind="envname", what="an environment variable name"),
    ] | UnsetType = UNSET
    password_command: text("a command line", "A command printing the SMB password on its first line.", kind="command") | UnsetType = UNSET
    password_prompt: boolean("Ask for the SMB password when connecting.") | UnsetType = UNSET
    encrypt: boolean("Require SMB3 encryption (default true); false still requires signing.") | UnsetType = UNSET
    rate_limit: Rate | UnsetType = UNSET
    read_ahead: integer(1, 16, "Reads in flight per open file (default 4).") | UnsetType = UNSET
    timeout: duration("Deadline of connecting and of one request (default 30s)", minimum=1.0) | UnsetType = UNSET
