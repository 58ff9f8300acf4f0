"""A repository's objects in an S3-compatible bucket (AWS S3, Ceph RGW, MinIO, SeaweedFS, ...).

boto3 does the protocol: signing, retries with exponential backoff and jitter on throttling
(503 SlowDown), 5xx and dropped connections (botocore's "standard" retry mode), multipart
uploads for large objects, ranged GETs. This module chooses safe settings, refuses unsafe
endpoints, and turns the storage's refusals into one clear message each.

Third-party servers reject or mangle boto3's default flexible checksums (boto3 >= 1.36), so
those are sent and checked only when an operation requires them. Instead every PUT (a whole
object, and each part of a multipart upload) carries Content-MD5, which every S3-compatible
store checks: a body that changed on the way is refused (BadDigest) and nothing is stored, so
what a put acknowledges is what was sent ("verified on arrival" by the store itself). What is
read back is the repository's business (every blob is hashed or authenticated).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hvtui.config.s3 import endpoint_problem
from hvtui.engine.backends.base import (
    Backend,
    BackendError,
    ObjectExists,
    ObjectInfo,
    ObjectMissing,
    Payload,
    check_key,
)

MULTIPART_THRESHOLD = 16 * 1024 * 1024
MULTIPART_CHUNK = 16 * 1024 * 1024
_AUTH_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken", "InvalidSecurity"}
_QUOTA_CODES = {"QuotaExceeded", "XMinioStorageFull", "InsufficientStorage", "StorageFull", "XAmzContentSHA256Mismatch_Quota"}


@dataclass(frozen=True, slots=True)
class S3Settings:
    endpoint: str | None  # None: AWS's endpoint for the region
    bucket: str
    prefix: str = ""
    region: str | None = None
    access_key: str | None = None  # None (both): the standard AWS credential chain
    secret_key: str | None = None
    ca_bundle: str | None = None
    storage_class: str | None = None  # applied to pack objects only
    insecure_http: bool = False
    max_attempts: int = 8
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_pool_connections: int = 16

    def __repr__(self) -> str:  # never show the secret, even in a debugger's repr of a traceback
        return f"S3Settings(endpoint={self.endpoint!r}, bucket={self.bucket!r}, prefix={self.prefix!r})"


def check_endpoint(endpoint: str | None, insecure_http: bool) -> None:
    """Refuse an endpoint that would send the repository's traffic in the clear.

    The rule is the config's (``config.s3.endpoint_problem``), checked again here because a
    backend may be made from settings that never went through a config file."""
    if endpoint is None:
        return
    problem = endpoint_problem(endpoint, insecure_http)
    if problem is not None:
        raise BackendError(endpoint, problem, kind="config")


class S3Backend(Backend):
    verifies_puts = True  # every PUT carries Content-MD5: the store refuses a body not as sent

    def __init__(self, settings: S3Settings) -> None:
        check_endpoint(settings.endpoint, settings.insecure_http)
        self.settings = settings
        prefix = settings.prefix.strip("/")
        self._prefix = f"{prefix}/" if prefix else ""
        self.where = f"s3://{settings.bucket}/{prefix}".rstrip("/")
        import boto3  # lazily: a third of a second, paid only by repositories on S3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        config = Config(
            region_name=settings.region,
            retries={"mode": "standard", "total_max_attempts": settings.max_attempts},
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            max_pool_connections=settings.max_pool_connections,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"},
        )
        session = boto3.session.Session(
            aws_access_key_id=settings.access_key,
            aws_secret_access_key=settings.secret_key,
            region_name=settings.region,
        )
        self._client = session.client(
            "s3", endpoint_url=settings.endpoint, config=config, verify=settings.ca_bundle or True
        )
        # Every PutObject and UploadPart, ours and those boto3's transfer manager makes (files,
        # multipart parts), gets its Content-MD5 here, from the body about to be sent.
        for operation in ("PutObject", "UploadPart"):
            self._client.meta.events.register(f"before-call.s3.{operation}", _add_content_md5)
        self._transfer = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD,
            multipart_chunksize=MULTIPART_CHUNK,
            # Parts of one object at once; packobjects.UPLOAD_WORKERS objects upload at once, so
            # up to 3 x 4 requests: within max_pool_connections (16).
            max_concurrency=4,
            use_threads=True,
        )

    # -- the interface ------------------------------------------------------------------
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        with self._errors("list", prefix or "/"):
            for page in paginator.paginate(Bucket=self.settings.bucket, Prefix=self._prefix + prefix):
                for item in page.get("Contents", ()):
                    key = item["Key"][len(self._prefix):]
                    if key:
                        yield ObjectInfo(key, int(item["Size"]))

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        kwargs: dict[str, Any] = {"Bucket": self.settings.bucket, "Key": self._key(key)}
        if length is not None:
            if length <= 0:
                return b""
            kwargs["Range"] = f"bytes={offset}-{offset + length - 1}"
        elif offset:
            kwargs["Range"] = f"bytes={offset}-"
        with self._errors("get", key):
            try:
                answer = self._client.get_object(**kwargs)
            except self._client.exceptions.ClientError as err:
                if _status(err) == 416:  # a range starting at or past the end
                    return b""
                raise
            return answer["Body"].read()

    def put(self, key: str, data: Payload) -> None:
        extra = self._extra_args(key)
        with self._errors("put", key):
            if isinstance(data, bytes | bytearray | memoryview) and len(data) < MULTIPART_THRESHOLD:
                self._client.put_object(Bucket=self.settings.bucket, Key=self._key(key), Body=bytes(data), **extra)
                return
            path = getattr(data, "name", None)
            if isinstance(path, str) and os.path.isfile(path) and data.tell() == 0:  # type: ignore[union-attr]
                # By name, boto3 reads each part from the file as it sends it; from a file object it
                # would hold whole parts in memory (several per upload, for several uploads at once).
                self._client.upload_file(path, self.settings.bucket, self._key(key), ExtraArgs=extra or None, Config=self._transfer)
                return
            body = io.BytesIO(data) if isinstance(data, bytes | bytearray | memoryview) else data
            self._client.upload_fileobj(body, self.settings.bucket, self._key(key), ExtraArgs=extra or None, Config=self._transfer)

    def put_if_absent(self, key: str, data: Payload) -> None:
        body = bytes(data) if isinstance(data, bytes | bytearray | memoryview) else data.read()
        extra = self._extra_args(key)
        for _attempt in range(3):
            with self._errors("put", key):
                try:
                    self._client.put_object(
                        Bucket=self.settings.bucket, Key=self._key(key), Body=body, IfNoneMatch="*", **extra
                    )
                    return
                except self._client.exceptions.ClientError as err:
                    code = _code(err)
                    if code == "PreconditionFailed" or _status(err) == 412:
                        raise ObjectExists(self.where, key) from None
                    if code == "ConditionalRequestConflict":  # AWS: a racing write; try again
                        continue
                    raise
        raise BackendError(self.where, f"put {key}: the storage kept reporting a conflicting write")

    def delete(self, key: str) -> None:
        with self._errors("delete", key):
            self._client.delete_object(Bucket=self.settings.bucket, Key=self._key(key))

    def stat(self, key: str) -> ObjectInfo | None:
        with self._errors("stat", key):
            try:
                head = self._client.head_object(Bucket=self.settings.bucket, Key=self._key(key))
            except self._client.exceptions.ClientError as err:
                if _status(err) == 404:
                    return None
                raise
            return ObjectInfo(key, int(head["ContentLength"]))

    def check_bucket(self) -> None:
        """Fail now, with one clear message, when the bucket or the credentials are wrong."""
        with self._errors("open", "/"):
            self._client.head_bucket(Bucket=self.settings.bucket)

    def close(self) -> None:
        self._client.close()

    # -- helpers ------------------------------------------------------------------------
    def _key(self, key: str) -> str:
        return self._prefix + check_key(self.where, key)

    def _extra_args(self, key: str) -> dict[str, Any]:
        if self.settings.storage_class and key.startswith("packs/"):
            return {"StorageClass": self.settings.storage_class}
        return {}

    def _errors(self, operation: str, key: str) -> _ErrorMapper:
        return _ErrorMapper(self, operation, key)


def content_md5(body: bytes) -> str:
    """The Content-MD5 header of a body: base64 of its MD5 (RFC 1864)."""
    return base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode("ascii")


def _add_content_md5(params: dict[str, Any], **_kwargs: Any) -> None:
    """botocore's before-call hook: a PUT without Content-MD5 gets one from its body (bytes, or a
    seekable file object such as the transfer manager's part of a file, read and rewound)."""
    headers = params.setdefault("headers", {})
    body = params.get("body")
    if body is None or any(name.lower() == "content-md5" for name in headers):
        return
    if isinstance(body, bytes | bytearray):
        headers["Content-MD5"] = content_md5(bytes(body))
        return
    start = body.tell()
    digest = hashlib.md5(usedforsecurity=False)
    for block in iter(lambda: body.read(1024 * 1024), b""):
        digest.update(block)
    body.seek(start)
    headers["Content-MD5"] = base64.b64encode(digest.digest()).decode("ascii")


class _ErrorMapper:
    """Turns botocore's exceptions into one ``BackendError`` each, naming what to fix.

    The storage's own message is shown for unexpected errors only: for refused credentials
    it may echo the access key, and a message never needs it."""

    def __init__(self, backend: S3Backend, operation: str, key: str) -> None:
        self.backend = backend
        self.operation = operation
        self.key = key

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, _tb: object) -> bool:
        if exc is None or isinstance(exc, BackendError):
            return False
        from boto3.exceptions import S3UploadFailedError
        from botocore import exceptions as boto

        if isinstance(exc, S3UploadFailedError) and isinstance(exc.__context__, Exception):
            exc = exc.__context__  # the transfer manager wraps the storage's refusal of a part or a put

        where = self.backend.where
        what = f"{self.operation} {self.key}"
        settings = self.backend.settings
        if isinstance(exc, boto.ClientError):
            code, status = _code(exc), _status(exc)
            if code in ("NoSuchKey", "404") or (status == 404 and code not in ("NoSuchBucket",)):
                raise ObjectMissing(where, self.key) from None
            if code == "NoSuchBucket":
                raise BackendError(where, f"the bucket {settings.bucket!r} does not exist at {_endpoint(settings)}: create it, or fix bucket: in the repository's config", kind="bucket") from None
            if code in ("BadDigest", "InvalidDigest"):
                raise BackendError(where, f"{what}: the storage received bytes different from those sent (Content-MD5 mismatch, {code}) and stored nothing: a fault on the way (network, proxy or this machine's memory); run the job again", kind="digest") from None
            if code == "RequestTimeTooSkewed":
                raise BackendError(where, f"{what}: the storage refused the request because this machine's clock differs too much from the server's: fix the time (NTP) on this machine", kind="clock") from None
            if code in _QUOTA_CODES or status == 507:
                raise BackendError(where, f"{what}: the storage is full or the quota is reached ({code or status}): free space, raise the quota, or prune", kind="quota") from None
            if code in _AUTH_CODES or status == 403:
                raise BackendError(where, f"{what}: the storage refused the credentials ({code or status}): check access_key_env/secret_key_env (or the AWS credential chain) and the key's permissions on the bucket", kind="auth") from None
            message = exc.response.get("Error", {}).get("Message") or code or str(status)
            raise BackendError(where, f"{what}: {code or status}: {message}") from None
        if isinstance(exc, boto.SSLError):
            raise BackendError(where, f"{what}: the TLS certificate of {_endpoint(settings)} is not trusted: give its CA in ca_bundle:", kind="tls") from None
        if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
            raise BackendError(where, "no S3 credentials: set access_key_env and secret_key_env (or *_command), or configure the AWS credential chain", kind="auth") from None
        if isinstance(exc, boto.EndpointConnectionError | boto.ConnectionClosedError | boto.ReadTimeoutError | boto.ConnectTimeoutError | boto.ConnectionError):
            raise BackendError(where, f"{what}: {_endpoint(settings)} did not answer after {settings.max_attempts} attempts: is the storage up and reachable?", kind="unreachable") from None
        if isinstance(exc, boto.BotoCoreError):
            raise BackendError(where, f"{what}: {exc}") from None
        return False


def _endpoint(settings: S3Settings) -> str:
    return settings.endpoint or f"AWS S3 ({settings.region or 'default region'})"


def _code(err: Any) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _status(err: Any) -> int:
    return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
