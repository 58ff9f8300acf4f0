"""Where a repository lives (backups/locations.py) as RepositoryList uses it: a bucket that is
slow to answer delays only its own users, never the opening of another repository."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from hvtui.backups import locations
from hvtui.backups.repositories import RepositoryList
from hvtui.config import RepositoryConfig, S3RepositoryConfig, SecretSource


def test_a_bucket_that_does_not_answer_does_not_hold_up_another_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked, answer = threading.Event(), threading.Event()

    def hanging_exists(self: locations.S3Bucket) -> bool:  # the storage's retries, as long as they last
        asked.set()
        answer.wait(120)
        return False

    monkeypatch.setattr(locations.S3Bucket, "exists", hanging_exists)
    monkeypatch.setattr(locations.S3Bucket, "check_missing", lambda self: None)  # an empty bucket, no data
    main = RepositoryConfig(name="main", path=tmp_path / "main", default=True)
    slow = RepositoryConfig(
        name="slow", path=tmp_path / "work" / "slow", format=2, passphrase=SecretSource(env="P"),
        s3=S3RepositoryConfig(bucket="b", endpoint="https://s3.example.com"),
    )  # fmt: skip
    repositories = RepositoryList([main, slow], tmp_path / "default")
    assert isinstance(repositories.location("slow"), locations.S3Bucket)
    assert repositories.location("slow").where == "s3://b"
    results: dict[str, object] = {}
    waiting = threading.Thread(target=lambda: results.setdefault("slow", repositories.open_repository("slow")))
    waiting.start()
    try:
        assert asked.wait(60)
        opener = threading.Thread(target=lambda: results.setdefault("main", repositories.open_repository("main", create=True)))
        opener.start()
        opener.join(60)
        assert not opener.is_alive() and results["main"] is not None and "slow" not in results
    finally:
        answer.set()
        waiting.join(60)
    assert results["slow"] is None  # nothing there: absent, not an error
