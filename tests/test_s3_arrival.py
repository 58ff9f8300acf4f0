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
    pending = backend._client.list_multipart_uploads(Bucket=BUCKET, Prefix=backend._key(key)).get("Uploads", [])
    assert pending == []  # a refused part's upload was aborted: no parts left taking space
    # The same put, unaltered, is stored byte for byte (the digest is right, not merely present).
    how(backend, key, data, tmp_path)
    assert backend.get(key) == data
    assert all(
        "content-md5" in {name.lower() for name in headers}
        for method, _path, headers in proxy.headers if method == "PUT"
    )


# -- a copy to S3: the store's check by default, the read-back on request ---------------------

KiB = 1024
CS = 64 * KiB
PASS = "correct horse battery staple"


@pytest.fixture
def source(tmp_path: Path):
    from hvtui.clock import FixedClock
    from hvtui.engine.backup import run_backup
    from hvtui.engine.repository import Repository
    from hvtui.hosts.lab.host import LabHost

    host = LabHost.create(tmp_path / "lab" / "lab-a", "lab-a", FixedClock())
    vm_id = host.add_vm("web01", state="Off", disk_sizes=(4 * MiB,), fsync=False)
    host.write_guest_data(vm_id, 0, 0, os.urandom(2 * MiB))
    repo = Repository.open(tmp_path / "local", create=True, chunk_size=CS, version=2)
    run_backup(repo, host, vm_id, "full")
    return repo, host, vm_id


def s3_target(proxy: FaultProxy, folder: Path, prefix: str):
    from hvtui.engine.remote_repo import open_on_backend

    backend = S3Backend(S3Settings(
        endpoint=proxy.endpoint, bucket=BUCKET, prefix=prefix, region="us-east-1", access_key=ACCESS_KEY,
        secret_key=SECRET_KEY, max_attempts=2, connect_timeout=2.0, read_timeout=20.0,
    ))
    repo = open_on_backend(backend, folder, "offsite", lambda: PASS, create=True, chunk_size=CS)
    repo.store.pack_size = 256 * KiB  # several packs
    return repo


def pack_requests(proxy: FaultProxy, method: str) -> list[str]:
    return [path for m, path in proxy.requests if m == method and "/packs/" in path]


@pytest.mark.usefixtures("fast_kdf")
def test_a_default_copy_reads_no_pack_back_and_a_read_back_copy_does(source, proxy: FaultProxy, tmp_path: Path) -> None:
    from hvtui.engine.copy import ARRIVAL_READ_BACK, ARRIVAL_STORE, copy_points, plan_copy
    from hvtui.engine.restore import restore_to_directory
    from hvtui.hosts.lab import disk as vdisk

    local, host, vm_id = source
    prefix = f"copy-{uuid.uuid4().hex[:8]}"
    target = s3_target(proxy, tmp_path / "state", prefix)
    proxy.requests.clear()
    result = copy_points(local, target, plan_copy(local, target, lambda _p: True)[0])
    sent = pack_requests(proxy, "PUT")
    assert result.copied and len(sent) >= 4 and result.arrival_check == ARRIVAL_STORE
    assert pack_requests(proxy, "GET") == []  # nothing sent was read back: the store checked each PUT
    assert result.to_dict()["arrival_check"] == ARRIVAL_STORE
    restore_to_directory(target, result.copied[0], tmp_path / "out")
    assert vdisk.read_logical(tmp_path / "out" / "web01.vhdx", 0, 4 * MiB) == host.read_disk(vm_id, 0, 0, 4 * MiB)

    again = s3_target(proxy, tmp_path / "state2", f"copy-{uuid.uuid4().hex[:8]}")
    proxy.requests.clear()
    checked = copy_points(local, again, plan_copy(local, again, lambda _p: True)[0], read_back=True)
    assert checked.arrival_check == ARRIVAL_READ_BACK and pack_requests(proxy, "GET")


@pytest.mark.usefixtures("fast_kdf")
def test_a_default_copy_refuses_a_pack_altered_on_the_way_before_any_manifest(
    source, proxy: FaultProxy, tmp_path: Path
) -> None:
    from hvtui.engine.copy import copy_points, plan_copy

    local, _host, _vm_id = source
    target = s3_target(proxy, tmp_path / "state", f"copy-{uuid.uuid4().hex[:8]}")
    proxy.mangle, flipped = flip_one_byte(lambda path: "/packs/" in path)
    with pytest.raises(RepositoryError, match=r"put packs/.*Content-MD5 mismatch.*stored nothing"):
        copy_points(local, target, plan_copy(local, target, lambda _p: True)[0])
    assert flipped and target.point_ids() == []
    assert not [p for m, p in proxy.requests if m == "PUT" and "/points/" in p]  # no manifest was sent
    assert pack_requests(proxy, "GET") == []
    # Run again, the way clean: the copy completes (what arrived earlier is not sent twice).
    done = copy_points(local, target, plan_copy(local, target, lambda _p: True)[0])
    assert len(done.copied) == 1 and target.point_ids() == done.copied
    assert [p for m, p in proxy.requests if m == "PUT" and "/points/" in p]  # the manifest's path, as seen above
