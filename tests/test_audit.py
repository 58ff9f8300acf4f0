"""The audit log: the line format, outcomes through the context manager, a damaged last
line, and concurrent writers."""

from __future__ import annotations

import getpass
import json
import stat
import threading
from datetime import datetime
from pathlib import Path

import pytest

from hvtui.audit import AuditLog
from hvtui.errors import Cancelled, HostError, ReadOnlyError, RefusedError


def test_record_appends_one_json_line_with_every_field(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "state" / "audit.jsonl")
    log.record("checkpoint.remove", "hv01", "sql01", {"checkpoint_id": "abc", "subtree": False}, "ok", 1.23456)
    log.record("checkpoint.create", "hv02", None, {}, "failed", 0.5, error="hv02: boom")
    lines = (tmp_path / "state" / "audit.jsonl").read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["action"] == "checkpoint.remove" and first["host"] == "hv01" and first["vm"] == "sql01"
    assert first["args"] == {"checkpoint_id": "abc", "subtree": False}
    assert first["result"] == "ok" and first["duration"] == 1.235 and "error" not in first
    assert first["user"] == getpass.getuser()
    when = datetime.fromisoformat(first["time"].replace("Z", "+00:00"))
    assert when.utcoffset().total_seconds() == 0
    assert json.loads(lines[1])["error"] == "hv02: boom"
    assert log.read() == [first, json.loads(lines[1])]
    assert stat.S_IMODE((tmp_path / "state" / "audit.jsonl").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("error", "result"),
    [
        (None, "ok"),
        (HostError("hv01", "checkpoint.remove", "merge failed"), "failed"),
        (ReadOnlyError("read-only"), "refused"),
        (RefusedError("headroom"), "refused"),
        (Cancelled(), "cancelled"),
        (ValueError("bad"), "failed"),
    ],
)
def test_action_context_records_the_outcome(tmp_path: Path, error: Exception | None, result: str) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")

    def body() -> None:
        with log.action("checkpoint.remove", "hv01", "vm-id", {"subtree": True}) as entry:
            entry.vm = "sql01"
            entry.args["bytes_to_move"] = 42
            if error is not None:
                raise error

    if error is None:
        body()
    else:
        with pytest.raises(type(error)):
            body()
    (entry,) = log.read()
    assert entry["result"] == result
    assert entry["vm"] == "sql01" and entry["args"] == {"subtree": True, "bytes_to_move": 42}
    assert entry["duration"] >= 0
    if error is None:
        assert "error" not in entry
    else:
        assert str(error) in entry["error"]


def test_damaged_last_line_is_reported_and_the_log_keeps_working(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.record("checkpoint.create", "hv01", "web01", {}, "ok", 0.1)
    with path.open("ab") as handle:
        handle.write(b'{"time": "2026-11-24T12:00:00Z", "acti')  # a crash mid-write
    entries = log.read()
    assert [e["action"] for e in entries] == ["checkpoint.create"]
    assert len(log.problems) == 1 and "last line" in log.problems[0]

    log.record("checkpoint.rename", "hv01", "web01", {}, "ok", 0.1)
    entries = log.read()
    assert [e["action"] for e in entries] == ["checkpoint.create", "checkpoint.rename"]
    assert len(log.problems) == 1 and "line 2" in log.problems[0]


def test_missing_log_reads_empty(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "none.jsonl")
    assert log.read() == [] and log.problems == []


def test_concurrent_writers_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    logs = [AuditLog(path), AuditLog(path)]  # two writers on one file, as console and CLI would be

    def write(n: int) -> None:
        for i in range(25):
            logs[n % 2].record("checkpoint.create", f"hv{n}", f"vm{i}", {"pad": "x" * 500}, "ok", 0.0)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log = AuditLog(path)
    entries = log.read()
    assert len(entries) == 200 and log.problems == []
    assert sorted({e["host"] for e in entries}) == [f"hv{n}" for n in range(8)]
