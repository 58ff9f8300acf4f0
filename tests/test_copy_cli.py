"""`hvtui copy` as the operator meets it (in-process CLI, real lab, real files): the points the
target lacks are copied through a job, into an encrypted format-2 repository and back, only
missing chunks sent, the target's retention applied after, refused read-only, audited."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from hvtui.audit import AuditLog
from hvtui.engine.repository import Repository

sys.path.insert(0, str(Path(__file__).parent))
from test_backup_integrity import backup, estate, hvtui, lab_host  # noqa: E402, F401 - estate is a fixture

PASSPHRASE = "offsite pass phrase"


@pytest.fixture
def two_repos(estate: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:  # noqa: F811
    monkeypatch.setenv("HVTUI_TEST_OFFSITE", PASSPHRASE)
    with open(estate["config"], "a") as fh:
        fh.write(
            f"""  - name: offsite
    path: {tmp_path / "offsite"}
    passphrase_env: HVTUI_TEST_OFFSITE
    retention:
      keep_last: 2
      keep_hourly: 0
      keep_daily: 0
      keep_weekly: 0
      keep_monthly: 0
      keep_yearly: 0
"""
        )
    return {**estate, "offsite": tmp_path / "offsite"}


def audit_of(estate: dict, action: str) -> list[dict]:  # noqa: F811
    return [e for e in AuditLog(estate["paths"].audit_log).read() if e["action"] == action]


def restored(estate: dict, capsys: pytest.CaptureFixture[str], repo: str, point: str, where: Path) -> dict[str, bytes]:  # noqa: F811
    code, _, err = hvtui(estate, capsys, "restore", "app01", "--repo", repo, "--point", point, "--to", str(where), "--yes")
    assert code == 0, err
    return {p.name: p.read_bytes() for p in where.rglob("*") if p.is_file()}


def test_copy_to_an_encrypted_repository_sends_only_what_is_missing_and_applies_its_retention(
    two_repos: dict, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    estate = two_repos  # noqa: F811
    first = backup(estate, capsys, "--mode", "full")["point_id"]

    code, _, err = hvtui(estate, capsys, "--read-only", "copy", "--from", "main", "--to", "offsite")
    assert code == 4 and "read-only" in err
    assert not (estate["offsite"] / "config.json").exists()

    code, out, err = hvtui(estate, capsys, "copy", "--from", "main", "--to", "offsite", "app01", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["copied"] == [first] and doc["reids_chunks"] and doc["chunks_sent"] > 0
    offsite = Repository.open(estate["offsite"], "offsite", passphrase=lambda: PASSPHRASE)
    assert offsite.encrypted and offsite.point_ids() == [first]
    assert restored(estate, capsys, "offsite", first, tmp_path / "a") == restored(estate, capsys, "main", first, tmp_path / "b")

    # A second point shares most chunks: only the changed ones are sent.
    lab_host(estate).write_guest_data(estate["vm_id"], 0, 0, b"changed after the first point " * 1000)
    second = backup(estate, capsys)["point_id"]
    code, out, err = hvtui(estate, capsys, "copy", "--from", "main", "--to", "offsite", "--json")
    assert code == 0, err
    doc2 = json.loads(out)
    assert doc2["copied"] == [second] and doc2["present"] == [first]
    assert 0 < doc2["chunks_sent"] < doc["chunks_sent"] and doc2["chunks_present"] > 0

    # The target keeps its own 2 points: a third copy removes the oldest there, not in main.
    lab_host(estate).write_guest_data(estate["vm_id"], 0, 4096, b"third " * 1000)
    third = backup(estate, capsys)["point_id"]
    code, out, err = hvtui(estate, capsys, "copy", "--from", "main", "--to", "offsite")
    assert code == 0, err
    assert f"retention removed point {first} from offsite" in out
    assert sorted(Repository.open(estate["offsite"], passphrase=lambda: PASSPHRASE).point_ids()) == sorted([second, third])
    assert first in Repository.open(estate["repo"]).point_ids()
    # ... and the next copy does not bring the point the target's retention removed back.
    code, out, err = hvtui(estate, capsys, "copy", "--from", "main", "--to", "offsite", "--json")
    assert code == 0, err
    assert json.loads(out)["copied"] == [] and json.loads(out)["skipped"] == [first]

    # Each copy ran as a job: the job list shows them, with what they did.
    code, out, err = hvtui(estate, capsys, "jobs", "--json")
    assert code == 0, err
    copies = [j for j in json.loads(out) if j["kind"] == "copy"]
    assert len(copies) == 4 and {j["state"] for j in copies} == {"succeeded"}
    assert [j["summary"]["copied"] for j in copies if j["summary"]["copied"]] == [[first], [second], [third]]
    entries = audit_of(estate, "copy")
    assert [e["result"] for e in entries] == ["refused", "ok", "ok", "ok", "ok"]
    assert entries[1]["host"] == "repository:offsite" and entries[1]["args"]["copied"] == [first]
    assert [e["args"]["removed"] for e in audit_of(estate, "copy.retention")] == [[first]]


def test_copy_names_what_is_wrong(two_repos: dict, capsys: pytest.CaptureFixture[str]) -> None:
    estate = two_repos  # noqa: F811
    backup(estate, capsys, "--mode", "full")
    code, _, err = hvtui(estate, capsys, "copy", "--from", "main", "--to", "nowhere")
    assert code == 2 and "nowhere" in err
    code, _, err = hvtui(estate, capsys, "copy", "--from", "main", "--to", "main")
    assert code != 0 and "same repository" in err
    code, _, err = hvtui(estate, capsys, "copy", "--from", "main", "--to", "offsite", "db99")
    assert code == 1 and "holds no restore point of db99" in err
    assert "Traceback" not in err


def test_a_repository_with_copy_to_copies_each_new_point_after_the_backup(
    two_repos: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    estate = two_repos  # noqa: F811
    text = estate["config"].read_text().replace("    default: true\n", "    default: true\n    copy_to: offsite\n", 1)
    estate["config"].write_text(text)
    doc = backup(estate, capsys, "--mode", "full")
    assert doc["ok"] and doc["copy_to"] == "offsite"
    assert doc["copy"]["state"] == "succeeded" and doc["copy"]["summary"]["copied"] == [doc["point_id"]]
    offsite = Repository.open(estate["offsite"], passphrase=lambda: PASSPHRASE)
    assert offsite.point_ids() == [doc["point_id"]]
    code, out, err = hvtui(estate, capsys, "backup", "app01")
    assert code == 0, err
    assert "copied to offsite: 1 restore point(s) copied from main to offsite" in out
    assert len(Repository.open(estate["offsite"], passphrase=lambda: PASSPHRASE).point_ids()) == 2

    # The copy failing (no passphrase for the target) is a failure of the command, the point stays.
    os.environ.pop("HVTUI_TEST_OFFSITE")
    code, out, err = hvtui(estate, capsys, "backup", "app01")
    assert code == 1 and "the backup succeeded, but its copy to offsite failed" in err and "passphrase" in err
    assert len(Repository.open(estate["repo"]).point_ids()) == 3


def test_copy_to_must_name_another_configured_repository(two_repos: dict, capsys: pytest.CaptureFixture[str]) -> None:
    estate = two_repos  # noqa: F811
    config = estate["config"].read_text()
    estate["config"].write_text(config.replace("    default: true\n", "    default: true\n    copy_to: ofsite\n", 1))
    code, _, err = hvtui(estate, capsys, "points")
    assert code == 2 and "copy_to: no repository is named 'ofsite'; did you mean 'offsite'?" in err
    estate["config"].write_text(config.replace("    default: true\n", "    default: true\n    copy_to: main\n", 1))
    code, _, err = hvtui(estate, capsys, "points")
    assert code == 2 and "copy_to names the repository itself" in err


def test_check_reports_no_offsite_copy_until_the_newest_point_is_copied(
    two_repos: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    estate = two_repos  # noqa: F811
    text = estate["config"].read_text().replace("    default: true\n", "    default: true\n    copy_to: offsite\n", 1)
    estate["config"].write_text(text)

    def offsite_findings() -> list[dict]:
        code, out, _ = hvtui(estate, capsys, "check", "--json")
        assert code in (0, 1, 2), out
        return [f for f in json.loads(out)["findings"] if f["rule"] == "no-offsite-copy"]

    assert offsite_findings() == []  # never backed up: nothing to copy
    os.environ.pop("HVTUI_TEST_OFFSITE")  # the copy after the backup fails: no copy exists
    code, _, err = hvtui(estate, capsys, "backup", "app01")
    assert code == 1, err
    assert offsite_findings() == []  # younger than policy.no_offsite_copy's warn (1 day)
    # The point as if taken two days ago (its manifest rewritten, still valid).
    repo = Repository.open(estate["repo"])
    (point_id,) = repo.point_ids()
    point = repo.load_point(point_id)
    repo.commit_point(dataclasses.replace(point, time=point.time - timedelta(days=2)))
    (finding,) = offsite_findings()
    assert finding["vm_name"] == "app01" and finding["severity"] == "WARN"
    assert finding["message"].startswith("newest restore point (2 days old) has no copy in offsite")
    os.environ["HVTUI_TEST_OFFSITE"] = PASSPHRASE
    code, _, err = hvtui(estate, capsys, "copy", "--from", "main", "--to", "offsite")
    assert code == 0, err
    assert offsite_findings() == []


def test_copy_read_back_is_an_option_and_the_result_and_audit_say_which_check_ran(
    two_repos: dict, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hvtui.engine import copy as engine_copy

    estate = two_repos  # noqa: F811
    spans_checked: list[int] = []
    real_check = engine_copy._check_span
    monkeypatch.setattr(engine_copy, "_check_span", lambda store, span: spans_checked.append(len(span)) or real_check(store, span))
    first = backup(estate, capsys, "--mode", "full")["point_id"]
    code, out, err = hvtui(estate, capsys, "copy", "--from", "main", "--to", "offsite")
    assert code == 0, err
    # A folder checks nothing it is given: without --read-back the copy still reads back what it wrote.
    assert "on arrival: every chunk read back from the target and checked" in out and spans_checked
    assert audit_of(estate, "copy")[-1]["args"]["arrival_check"] == "read-back"
    assert "read_back" not in audit_of(estate, "copy")[-1]["args"]
    spans_checked.clear()

    lab_host(estate).write_guest_data(estate["vm_id"], 0, 0, b"changed before the read-back copy " * 1000)
    second = backup(estate, capsys)["point_id"]
    code, out, err = hvtui(estate, capsys, "copy", "--from", "main", "--to", "offsite", "--read-back", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["copied"] == [second] and doc["arrival_check"] == "read-back" and spans_checked
    entry = audit_of(estate, "copy")[-1]
    assert entry["result"] == "ok" and entry["args"]["read_back"] is True and entry["args"]["arrival_check"] == "read-back"
    offsite = Repository.open(estate["offsite"], "offsite", passphrase=lambda: PASSPHRASE)
    assert sorted(offsite.point_ids()) == sorted([first, second])  # ids sort by second, then at random within one
