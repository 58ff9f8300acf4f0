"""The object-store backends: a local folder and S3 (a real SeaweedFS server on 127.0.0.1).

Every behaviour the repository relies on is checked on both: byte ranges, atomic replace,
put-if-absent with racing writers, listings by prefix, hostile keys. S3 faults the store only
shows under load (503 SlowDown, 500, clock skew, a full quota) are injected by a proxy in front
of the real server; the others (wrong keys, a missing bucket, a dead server) are real.
"""

from __future__ import annotations

import io
import os
import subprocess
import threading
import uuid
from pathlib import Path

import pytest
from seaweed_support import ACCESS_KEY, BUCKET, SECRET_KEY, FaultProxy, s3_error, seaweed_server

from hvtui.config.s3 import endpoint_problem
from hvtui.engine.backends.base import Backend, BackendError, ObjectExists, ObjectMissing
from hvtui.engine.backends.local import LocalBackend
from hvtui.engine.backends.s3 import MULTIPART_THRESHOLD, S3Backend, S3Settings, check_endpoint


def s3_settings(endpoint: str, **overrides: object) -> S3Settings:
    values: dict = {
        "endpoint": endpoint, "bucket": BUCKET, "prefix": f"t-{uuid.uuid4().hex[:8]}", "region": "us-east-1",
        "access_key": ACCESS_KEY, "secret_key": SECRET_KEY, "max_attempts": 3, "connect_timeout": 2.0, "read_timeout": 10.0,
    }
    values.update(overrides)
    return S3Settings(**values)


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        return LocalBackend(tmp_path)
    server = request.getfixturevalue("seaweed")
    return S3Backend(s3_settings(server.endpoint))


def test_put_get_ranges_list_delete(backend: Backend) -> None:
    data = os.urandom(300_000)
    backend.put("packs/ab/abcd.pack", data)
    backend.put("index/0001.idx", b"index")
    assert backend.get("packs/ab/abcd.pack") == data
    assert backend.get("packs/ab/abcd.pack", 1000, 5000) == data[1000:6000]
    assert backend.get("packs/ab/abcd.pack", len(data) - 10, 100) == data[-10:]  # short at the end
    assert backend.get("packs/ab/abcd.pack", 299_990) == data[299_990:]
    assert backend.stat("packs/ab/abcd.pack").size == len(data)
    assert backend.stat("packs/ab/none.pack") is None
    assert {(o.key, o.size) for o in backend.list("packs/")} == {("packs/ab/abcd.pack", len(data))}
    assert {o.key for o in backend.list()} == {"packs/ab/abcd.pack", "index/0001.idx"}
    backend.put("index/0001.idx", b"replaced")
    assert backend.get("index/0001.idx") == b"replaced"
    backend.delete("index/0001.idx")
    backend.delete("index/0001.idx")  # already gone: no error
    with pytest.raises(ObjectMissing, match="index/0001.idx does not exist"):
        backend.get("index/0001.idx")
    assert [o.key for o in backend.list("index/")] == []


def test_put_accepts_a_stream(backend: Backend) -> None:
    data = os.urandom(70_000)
    backend.put("packs/00/stream.pack", io.BytesIO(data))
    assert backend.get("packs/00/stream.pack") == data


def test_put_if_absent_lets_exactly_one_racing_writer_win(backend: Backend) -> None:
    backend.put_if_absent("manifests/p1.json", b"first")
    with pytest.raises(ObjectExists, match="manifests/p1.json already exists"):
        backend.put_if_absent("manifests/p1.json", b"second")
    assert backend.get("manifests/p1.json") == b"first"

    winners: list[int] = []
    losers: list[int] = []
    start = threading.Barrier(8)

    def write(n: int) -> None:
        start.wait()
        try:
            backend.put_if_absent("manifests/race.json", f"writer {n}".encode())
            winners.append(n)
        except ObjectExists:
            losers.append(n)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1 and len(losers) == 7
    assert backend.get("manifests/race.json") == f"writer {winners[0]}".encode()


@pytest.mark.parametrize("key", ["../escape", "/abs", "a//b", "a/./b", "a\\b", "", "nul\0"])
def test_hostile_keys_are_refused(backend: Backend, key: str) -> None:
    with pytest.raises(BackendError, match="unsafe object name"):
        backend.put(key, b"x")
    with pytest.raises(BackendError, match="unsafe object name"):
        backend.get(key)


def test_local_backend_leaves_no_temporary_files(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    backend.put("a/b", b"1")
    with pytest.raises(ObjectExists):
        backend.put_if_absent("a/b", b"2")
    assert list((tmp_path / "tmp").iterdir()) == []
    assert [o.key for o in backend.list()] == ["a/b"]  # tmp/ is not an object


def test_local_backend_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="repository folder does not exist"):
        LocalBackend(tmp_path / "nope")


# -- S3 specifics -----------------------------------------------------------------------


def test_large_objects_go_multipart_and_ranged_reads_work(seaweed) -> None:
    backend = S3Backend(s3_settings(seaweed.endpoint))
    data = os.urandom(MULTIPART_THRESHOLD + 5 * 1024 * 1024)
    backend.put("packs/big.pack", data)
    head = backend._client.head_object(Bucket=BUCKET, Key=backend._key("packs/big.pack"))
    assert head["ETag"].strip('"').endswith("-2")  # an S3 multipart ETag: <md5 of md5s>-<parts>
    assert backend.get("packs/big.pack", MULTIPART_THRESHOLD - 7, 14) == data[MULTIPART_THRESHOLD - 7: MULTIPART_THRESHOLD + 7]
    assert backend.get("packs/big.pack") == data


def test_a_large_file_uploads_multipart_by_its_name_not_through_memory(seaweed, tmp_path: Path) -> None:
    # A pack waiting for upload is a local file: boto3 reads its parts from the file by name as it
    # sends them (the handle given stays unread), instead of buffering whole parts of each upload.
    backend = S3Backend(s3_settings(seaweed.endpoint))
    data = os.urandom(MULTIPART_THRESHOLD + 3 * 1024 * 1024)
    (tmp_path / "pack").write_bytes(data)
    with open(tmp_path / "pack", "rb") as handle:
        backend.put("packs/from-file.pack", handle)
        assert handle.tell() == 0
    head = backend._client.head_object(Bucket=BUCKET, Key=backend._key("packs/from-file.pack"))
    assert head["ETag"].strip('"').endswith("-2") and backend.get("packs/from-file.pack") == data


def test_prefixes_keep_repositories_apart(seaweed) -> None:
    one = S3Backend(s3_settings(seaweed.endpoint, prefix="site-a"))
    two = S3Backend(s3_settings(seaweed.endpoint, prefix="site-a-old"))
    one.put("keys/k", b"a")
    two.put("keys/k", b"b")
    assert [o.key for o in one.list("keys/")] == ["keys/k"]
    assert one.get("keys/k") == b"a" and two.get("keys/k") == b"b"


def test_wrong_keys_are_one_clear_error_without_the_secret(seaweed) -> None:
    backend = S3Backend(s3_settings(seaweed.endpoint, secret_key="not-the-secret-xyz"))
    with pytest.raises(BackendError) as caught:
        backend.put("keys/k", b"x")
    assert caught.value.kind == "auth"
    assert "refused the credentials" in str(caught.value) and "access_key_env" in str(caught.value)
    assert "not-the-secret-xyz" not in str(caught.value)
    with pytest.raises(BackendError, match="refused the credentials"):
        S3Backend(s3_settings(seaweed.endpoint, access_key="AKNOBODY")).check_bucket()


def test_missing_bucket_is_named(seaweed) -> None:
    backend = S3Backend(s3_settings(seaweed.endpoint, bucket="no-such-bucket"))
    with pytest.raises(BackendError, match="the bucket 'no-such-bucket' does not exist") as caught:
        backend.put("keys/k", b"x")
    assert caught.value.kind == "bucket"


def test_plain_http_is_refused_unless_loopback_or_allowed() -> None:
    check_endpoint("http://127.0.0.1:9000", insecure_http=False)
    check_endpoint("http://[::1]:9000", insecure_http=False)
    check_endpoint("https://s3.example.com", insecure_http=False)
    check_endpoint("http://s3.example.com", insecure_http=True)
    with pytest.raises(BackendError, match="unencrypted.*insecure_http: true") as caught:
        check_endpoint("http://s3.example.com", insecure_http=False)
    assert caught.value.kind == "config"
    with pytest.raises(BackendError, match="must be an http"):
        check_endpoint("ftp://s3.example.com", insecure_http=False)
    with pytest.raises(BackendError, match="unencrypted"):
        S3Backend(S3Settings(endpoint="http://10.1.2.3:9000", bucket="b", access_key="a", secret_key="s"))


def test_the_backend_refuses_an_endpoint_in_the_configs_words() -> None:
    # One rule (config.s3.endpoint_problem): the config check and the backend's never disagree.
    for endpoint in ("http://s3.example.com", "ftp://s3.example.com", "https://", "http://192.168.1.9:8333"):
        problem = endpoint_problem(endpoint, False)
        assert problem is not None
        with pytest.raises(BackendError) as caught:
            check_endpoint(endpoint, insecure_http=False)
        assert problem in str(caught.value)
        assert caught.value.kind == "config"


@pytest.fixture
def proxy(seaweed):
    proxy = FaultProxy(seaweed.endpoint)
    yield proxy
    proxy.close()


def _fail_first(count: int, status: int, code: str, method: str = "PUT"):
    left = {"n": count}

    def fault(m: str, _path: str):
        if m == method and left["n"] > 0:
            left["n"] -= 1
            return s3_error(status, code, "injected")
        return None

    return fault


@pytest.mark.parametrize(("status", "code"), [(503, "SlowDown"), (500, "InternalError")])
def test_throttling_and_server_errors_are_retried(proxy: FaultProxy, status: int, code: str) -> None:
    backend = S3Backend(s3_settings(proxy.endpoint, max_attempts=4))
    proxy.fault = _fail_first(2, status, code)
    backend.put("packs/r.pack", b"payload")
    assert [m for m, _ in proxy.requests].count("PUT") == 3  # two refused, the third stored
    proxy.fault = _fail_first(2, status, code, method="GET")
    assert backend.get("packs/r.pack") == b"payload"


def test_retries_give_up_with_a_clear_error(proxy: FaultProxy) -> None:
    backend = S3Backend(s3_settings(proxy.endpoint, max_attempts=2))
    proxy.fault = _fail_first(10, 503, "SlowDown")
    with pytest.raises(BackendError, match="SlowDown"):
        backend.put("packs/r.pack", b"payload")
    assert [m for m, _ in proxy.requests].count("PUT") == 2


def test_clock_skew_and_full_quota_say_what_to_fix(proxy: FaultProxy) -> None:
    backend = S3Backend(s3_settings(proxy.endpoint, max_attempts=1))
    proxy.fault = _fail_first(1, 403, "RequestTimeTooSkewed")
    with pytest.raises(BackendError, match="clock differs.*NTP") as caught:
        backend.put("packs/r.pack", b"x")
    assert caught.value.kind == "clock"
    proxy.fault = _fail_first(1, 403, "QuotaExceeded")
    with pytest.raises(BackendError, match="full or the quota is reached") as caught:
        backend.put("packs/r.pack", b"x")
    assert caught.value.kind == "quota"


def test_a_dead_server_is_unreachable_not_a_hang(tmp_path: Path) -> None:
    with seaweed_server(tmp_path / "sw", buckets=("dying",)) as server:
        backend = S3Backend(s3_settings(server.endpoint, bucket="dying", max_attempts=2))
        backend.put("keys/k", b"before")
        server.kill()
        with pytest.raises(BackendError, match="did not answer after 2 attempts") as caught:
            backend.put("keys/k2", b"after")
        assert caught.value.kind == "unreachable"


def test_tls_is_verified_by_default_and_a_ca_bundle_is_honoured(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    with seaweed_server(tmp_path / "sw", buckets=("tls",), tls=(cert, key)) as server:
        untrusted = S3Backend(s3_settings(server.https_endpoint, bucket="tls", max_attempts=1))
        with pytest.raises(BackendError, match="TLS certificate of https://127.0.0.1:.* is not trusted.*ca_bundle") as caught:
            untrusted.put("keys/k", b"x")
        assert caught.value.kind == "tls"
        trusted = S3Backend(s3_settings(server.https_endpoint, bucket="tls", ca_bundle=str(cert)))
        trusted.put("keys/k", b"x")
        assert trusted.get("keys/k") == b"x"
