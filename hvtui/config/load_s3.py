"""A repository's ``s3:`` block as read against ``hvtui.config.s3.S3Model`` -> ``S3RepositoryConfig``,
with the rules between its keys and the repository's (keys in pairs, an endpoint that is not sent
in the clear, encryption mandatory, format 2)."""

from __future__ import annotations

from msgspec import UNSET

from hvtui.config.document import Document
from hvtui.config.s3 import S3Model, endpoint_problem
from hvtui.config.settings import S3RepositoryConfig, SecretSource
from hvtui.config.walk import Read


def convert_s3(doc: Document, repository: Read, read: Read) -> S3RepositoryConfig | None:
    """The S3 settings of one repository entry (None when the block has mistakes, all reported to ``doc``)."""
    model: S3Model | None = read.model
    if model is None:
        return None
    entry = repository.model
    ok = True
    if "path" in repository.keys:
        doc.report(repository.where("path"), "a repository lives either in a folder (path:) or in a bucket (s3:), not both")
        ok = False
    if not entry.passphrase_env and not entry.passphrase_command and entry.passphrase_prompt is not True:
        doc.report(
            read.at,
            "a repository on S3 must be encrypted (the storage is not yours): set passphrase_env, passphrase_command "
            "or passphrase_prompt: true on the repository",
        )
        ok = False
    if isinstance(entry.format, int) and entry.format != 2:
        doc.report(repository.where("format"), "a repository on S3 is always format 2 (packs); remove format: or set 2")
        ok = False
    keys = {}
    for key in ("access_key", "secret_key"):
        given = [k for k in (f"{key}_env", f"{key}_command") if k in read.keys]
        if len(given) > 1:
            doc.report(read.where(given[1]), f"only one source of the {key.replace('_', ' ')} may be set, found {' and '.join(given)}")
            ok = False
        env, command = getattr(model, f"{key}_env"), getattr(model, f"{key}_command")
        keys[key] = SecretSource(env=env or None, command=command or None) if given else None
    if (keys["access_key"] is None) != (keys["secret_key"] is None):
        have, lack = ("access_key", "secret_key") if keys["access_key"] is not None else ("secret_key", "access_key")
        doc.report(
            read.at,
            f"s3: gives a source of the {have.replace('_', ' ')} but none of the {lack.replace('_', ' ')}: set {lack}_env "
            f"or {lack}_command too (or neither, for the standard AWS credential chain)",
        )
        ok = False
    insecure_http = model.insecure_http is True
    if model.endpoint is not UNSET:
        problem = endpoint_problem(model.endpoint, insecure_http)
        if problem is not None:
            doc.report(read.where("endpoint"), problem)
            ok = False
    if model.endpoint is UNSET and model.region is UNSET:
        doc.report(read.at, "s3: needs an endpoint (any S3-compatible service) or a region (AWS S3)")
        ok = False
    if not ok:
        return None
    return S3RepositoryConfig(
        bucket=model.bucket,
        endpoint=model.endpoint if model.endpoint is not UNSET else None,
        prefix=model.prefix.strip("/") if model.prefix is not UNSET else "",
        region=model.region if model.region is not UNSET else None,
        access_key=keys["access_key"],
        secret_key=keys["secret_key"],
        ca_bundle=doc.resolve_path(model.ca_bundle) if model.ca_bundle is not UNSET else None,
        storage_class=model.storage_class if model.storage_class is not UNSET else None,
        insecure_http=insecure_http,
    )
