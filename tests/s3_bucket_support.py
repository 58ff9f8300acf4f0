"""A fresh prefix of the test bucket on the session's SeaweedFS, as an ``S3Backend``: one
repository's objects per test (kept apart from seaweed_support, which the bench imports without boto3)."""

from __future__ import annotations

import uuid

from seaweed_support import ACCESS_KEY, BUCKET, SECRET_KEY, SeaweedServer

from hvtui.engine.backends.s3 import S3Backend, S3Settings


def fresh_bucket(server: SeaweedServer, label: str) -> S3Backend:
    """``label``-<random> under the test bucket, with short timeouts so a fault test fails fast."""
    return S3Backend(
        S3Settings(
            endpoint=server.endpoint, bucket=BUCKET, prefix=f"{label}-{uuid.uuid4().hex[:8]}", region="us-east-1",
            access_key=ACCESS_KEY, secret_key=SECRET_KEY, max_attempts=3, connect_timeout=2.0, read_timeout=10.0,
        )
    )
