"""Verified on arrival by the store: every PUT carries Content-MD5 and the store refuses a body
that is not what was sent (BadDigest), storing nothing.

First the real SeaweedFS itself (does it enforce Content-MD5, for a whole object and for a part of
a multipart upload?), then the backend: a proxy between it and the server flips one byte of a
request's body on the way, after the client computed its digests; the put fails with a clear error
naming the object and nothing is stored under that key. SeaweedFS does not check the signed
payload hash of a plain-http request, so without Content-MD5 the altered body would be stored.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from seaweed_support import ACCESS_KEY, BUCKET, SECRET_KEY, FaultProxy

from hvtui.engine.backends.base import BackendError
from hvtui.engine.backends.s3 import MULTIPART_THRESHOLD, S3Backend, S3Settings, content_md5
from hvtui.errors import RepositoryError

MiB = 1024 * 1024


def raw_client(endpoint: str):
    import boto3

    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
        config=Config(request_checksum_calculation="when_required", response_checksum_validation="when_required",
                      s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def wrong_md5() -> str:
    return base64.b64encode(hashlib.md5(b"something else").digest()).decode()


def test_content_md5_matches_rfc_1864() -> None:
    assert content_md5(b"") == "1B2M2Y8AsgTpgAmY7PhCfg=="
    assert content_md5(b"hello") == base64.b64encode(hashlib.md5(b"hello").digest()).decode()


def test_seaweedfs_refuses_a_put_whose_content_md5_does_not_match(seaweed) -> None:
    client = raw_client(seaweed.endpoint)
    prefix = f"md5-{uuid.uuid4().hex[:8]}/"
    body = os.urandom(1000)
    with pytest.raises(ClientError) as caught:
        client.put_object(Bucket=BUCKET, Key=prefix + "whole", Body=body, ContentMD5=wrong_md5())
    assert caught.value.response["Error"]["Code"] == "BadDigest"
    client.put_object(Bucket=BUCKET, Key=prefix + "right", Body=body, ContentMD5=content_md5(body))
    # A part of a multipart upload likewise.
    upload = client.create_multipart_upload(Bucket=BUCKET, Key=prefix + "parts")["UploadId"]
    part = os.urandom(5 * MiB)
    with pytest.raises(ClientError) as caught:
        client.upload_part(Bucket=BUCKET, Key=prefix + "parts", UploadId=upload, PartNumber=1, Body=part, ContentMD5=wrong_md5())
    assert caught.value.response["Error"]["Code"] == "BadDigest"
    client.abort_multipart_upload(Bucket=BUCKET, Key=prefix + "parts", UploadId=upload)
    stored = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]
    assert stored == [prefix + "right"]
    client.close()


@pytest.fixture
def proxy(seaweed):
    proxy = FaultProxy(seaweed.endpoint)
    yield proxy
    proxy.close()


def flip_one_byte(of_paths: Callable[[str], bool]):
    """A mangler that flips the middle byte of the first PUT body whose path ``of_paths`` picks."""
    flipped: list[str] = []

    def mangle(method: str, path: str, body: bytes) -> bytes:
        if method != "PUT" or not body or flipped or not of_paths(path):
            return body
        flipped.append(path)
        changed = bytearray(body)
        changed[len(changed) // 2] ^= 0x01
        return bytes(changed)

    return mangle, flipped


def backend_via(proxy: FaultProxy) -> S3Backend:
    return S3Backend(S3Settings(
        endpoint=proxy.endpoint, bucket=BUCKET, prefix=f"arrival-{uuid.uuid4().hex[:8]}", region="us-east-1",
        access_key=ACCESS_KEY, secret_key=SECRET_KEY, max_attempts=2, connect_timeout=2.0, read_timeout=20.0,
    ))


def put_bytes(backend: S3Backend, key: str, data: bytes, _tmp: Path) -> None:
    backend.put(key, data)


def put_if_absent(backend: S3Backend, key: str, data: bytes, _tmp: Path) -> None:
    backend.put_if_absent(key, data)


def put_file(backend: S3Backend, key: str, data: bytes, tmp: Path) -> None:
    (tmp / "body").write_bytes(data)
    with open(tmp / "body", "rb") as handle:
        backend.put(key, handle)


@pytest.mark.parametrize(
    ("how", "size", "part_only"),
    [
        (put_bytes, 200_000, False),  # a manifest, an index, a small pack: one put_object
        (put_if_absent, 3000, False),  # a lock or key object, a conditional create
        (put_file, 2 * MiB, False),  # a small pack file: the transfer manager's own put_object
        (put_file, MULTIPART_THRESHOLD + 2 * MiB, True),  # a pack file, multipart: one part altered
        (put_bytes, MULTIPART_THRESHOLD + 2 * MiB, True),  # a large body from memory, multipart
    ],
    ids=["put", "put-if-absent", "small-file", "multipart-file", "multipart-bytes"],
)
def test_a_body_altered_on_the_way_is_refused_and_nothing_is_stored(
    proxy: FaultProxy, tmp_path: Path, how, size: int, part_only: bool
) -> None:
    backend = backend_via(proxy)
    key = "packs/ab/altered"
    proxy.mangle, flipped = flip_one_byte(lambda path: "partNumber=" in path if part_only else True)
    data = os.urandom(size)
    with pytest.raises(BackendError) as caught:
        how(backend, key, data, tmp_path)
    assert flipped, "the proxy altered no body"
    assert isinstance(caught.value, RepositoryError) and caught.value.kind == "digest"
    assert f"put {key}" in str(caught.value) and "stored nothing" in str(caught.value)
    assert backend.stat(key) is None
    # The same put, unaltered, is stored byte for byte (the digest is right, not merely present).
    how(backend, key, data, tmp_path)
    assert backend.get(key) == data
    assert all(
        "content-md5" in {name.lower() for name in headers}
        for method, _path, headers in proxy.headers if method == "PUT"
    )
