"""A repository's ``s3:`` block: the model (read by ``hvtui.config.load_s3``), and the rule on plain-http endpoints (shared with the engine's S3 backend,
which checks it again when it connects).

::

    repositories:
      - name: offsite
        s3:
          endpoint: https://s3.eu-central-1.amazonaws.com   # any S3-compatible endpoint; default: AWS's for the region
          bucket: hvtui-backups
          prefix: site-a                         # optional: the repository's objects live under it
          region: eu-central-1
          access_key_env: AWS_ACCESS_KEY_ID      # or access_key_command; both absent: the AWS credential chain
          secret_key_env: AWS_SECRET_ACCESS_KEY  # or secret_key_command
          ca_bundle: ~/corp-ca.pem               # optional; TLS is verified by default
          storage_class: STANDARD_IA             # optional, pack objects only
          insecure_http: false                   # true accepts plain http to a host that is not this machine
        passphrase_env: HVTUI_OFFSITE_PASSPHRASE # required: encryption is mandatory on object storage
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any
from urllib.parse import urlsplit

from msgspec import UNSET, Meta, UnsetType

from hvtui.config.fields import ENV_NAME_PATTERN, Model, boolean, described, path, text

PLAIN_KEY_MESSAGE = (
    "S3 keys are not accepted in the config file; use {key}_env (an environment variable's name) or "
    "{key}_command (a command that prints it), or neither for the standard AWS credential chain"
)
# A bucket name is one path segment; each store has its own finer rules and says so itself.
BUCKET_PATTERN = r"^[^/\s]+$"


def _env(description: str) -> Any:
    return Annotated[str, Meta(pattern=ENV_NAME_PATTERN), described(description, kind="envname", what="an environment variable name")]


class S3Model(Model, kw_only=True):
    """Where the repository's objects live: an S3-compatible bucket."""

    endpoint: text("an http(s) URL", "The S3 endpoint, such as https://s3.eu-central-1.amazonaws.com (default: AWS's for the region).") | UnsetType = UNSET
    bucket: Annotated[
        str,
        Meta(pattern=BUCKET_PATTERN),
        described("The bucket (it must exist).", kind="text", what="a bucket name (no '/' or spaces)", missing="the bucket that holds the repository"),
    ]
    prefix: text("a key prefix", "The folder in the bucket the repository lives under (default: the bucket's root).") | UnsetType = UNSET
    region: text("a region name", "The bucket's region, such as eu-central-1.") | UnsetType = UNSET
    access_key_env: _env("The environment variable holding the access key id.") | UnsetType = UNSET
    access_key_command: text("a command line", "A command printing the access key id on its first line.", kind="command") | UnsetType = UNSET
    secret_key_env: _env("The environment variable holding the secret access key.") | UnsetType = UNSET
    secret_key_command: text("a command line", "A command printing the secret access key on its first line.", kind="command") | UnsetType = UNSET
    ca_bundle: path("A PEM file of the certificate authorities to trust (default: the system's).") | UnsetType = UNSET
    storage_class: text("a storage class", "The storage class of pack objects, such as STANDARD_IA (default: the bucket's).") | UnsetType = UNSET
    insecure_http: boolean("Accept plain http to a host that is not this machine (default false).") | UnsetType = UNSET


S3_REFUSED_KEYS = {
    "access_key": PLAIN_KEY_MESSAGE.format(key="access_key"),
    "secret_key": PLAIN_KEY_MESSAGE.format(key="secret_key"),
}


def endpoint_problem(endpoint: str, insecure_http: bool) -> str | None:
    """Why ``endpoint`` may not be used (None: it may).

    Plain http is accepted for a loopback host (a test server, a local gateway) or when the
    repository says ``insecure_http: true``: anything else would send backups and credentials
    in the clear."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "the endpoint must be an http(s) URL such as https://s3.example.com"
    if parts.scheme == "http" and not insecure_http and not is_loopback(parts.hostname):
        return (
            "plain http to a host that is not this machine would send backups and credentials unencrypted; "
            "use https, or set insecure_http: true on the repository to accept that"
        )
    return None


def is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False
