"""`hvtui repo locks NAME [--clear-stale] [--json]` on a folder repository and on one in a real
SeaweedFS bucket: every record listed (who, what, since, heartbeat, stale or not); clearing
removes only the records whose holder is gone, is refused read-only, and is audited."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from seaweed_support import BUCKET
from test_s3_repository_cli import offsite  # noqa: F401 - a fixture

from hvtui.audit import AuditLog
from hvtui.commands.output import EXIT_REFUSED
from hvtui.engine.fsutil import boot_id, hostname

sys.path.insert(0, str(Path(__file__).parent))
from test_backup_integrity import backup, estate, hvtui  # noqa: E402, F401 - estate is a fixture

pytestmark = pytest.mark.usefixtures("fast_kdf")  # a cheap scrypt for new key slots (conftest)

DEAD = "dddddddddddddddd"  # a backup whose process on this machine is gone
FAR = "ffffffffffffffff"  # a restore on another machine, its heartbeat fresh: maybe alive
EXPIRED = "eeeeeeeeeeeeeeee"  # a verify on another machine whose heartbeat stopped long ago


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def records(now: float) -> dict[str, dict]:
    common = {"boot_id": None, "process_start": None}
    return {
        DEAD: {
            **common, "id": DEAD, "kind": "shared", "operation": "backup", "detail": "lab01/app01", "pid": dead_pid(),
            "hostname": hostname(), "boot_id": boot_id(), "created": now - 600, "refreshed": now - 300, "expires": now + 1500,
        },
        FAR: {
            **common, "id": FAR, "kind": "shared", "operation": "restore", "detail": "hv02/web01", "pid": 77,
            "hostname": "far-away", "created": now - 120, "refreshed": now - 60, "expires": now + 1740,
        },
        EXPIRED: {
            **common, "id": EXPIRED, "kind": "exclusive", "operation": "prune", "detail": "", "pid": 88,
            "hostname": "far-away", "created": now - 7200, "refreshed": now - 7200, "expires": now - 5400,
        },
    }  # fmt: skip


def check_listing_then_clearing(env: dict, capsys: pytest.CaptureFixture[str], name: str, ids: Callable[[], set[str]]) -> None:
    code, out, err = hvtui(env, capsys, "repo", "locks", name, "--json")
    assert code == 0, err
    listed = {lock["id"]: lock for lock in json.loads(out)["locks"]}
    assert set(listed) == {DEAD, FAR, EXPIRED}
    assert listed[DEAD]["stale"] and listed[DEAD]["stale_reason"] == "its process is gone"
    assert (listed[DEAD]["operation"], listed[DEAD]["detail"], listed[DEAD]["hostname"]) == ("backup", "lab01/app01", hostname())
    assert not listed[FAR]["stale"] and listed[FAR]["stale_reason"] is None
    assert listed[EXPIRED]["stale"] and listed[EXPIRED]["stale_reason"].startswith("expired: its heartbeat stopped 2 h ago")
    assert listed[FAR]["since"] < listed[FAR]["heartbeat"]

    code, out, err = hvtui(env, capsys, "repo", "locks", name)
    assert code == 0, err
    assert f"{name}: 3 lock records (2 stale: `hvtui repo locks {name} --clear-stale` removes them)" in out
    assert f"{FAR}: shared restore hv02/web01 by pid 77 on far-away, since " in out and out.count(": held") == 1

    code, out, err = hvtui(env, capsys, "--read-only", "repo", "locks", name, "--clear-stale")
    assert code == EXIT_REFUSED and "refused" in err
    assert ids() == {DEAD, FAR, EXPIRED}

    code, out, err = hvtui(env, capsys, "repo", "locks", name, "--clear-stale", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert len(result["cleared"]) == 2 and any("prune (pid 88 on far-away" in line for line in result["cleared"])
    assert [lock["id"] for lock in result["locks"]] == [FAR]
    assert ids() == {FAR}  # the maybe-live holder's record is never touched

    audit = [e for e in AuditLog(env["paths"].audit_log).read() if e["action"] == "repo.locks.clear"]
    assert [(e["host"], e["result"]) for e in audit] == [(f"repository:{name}", "refused"), (f"repository:{name}", "ok")]
    assert audit[1]["args"]["cleared"] == result["cleared"]


def test_locks_of_a_folder_repository(estate: dict, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    backup(estate, capsys, "--mode", "full")
    locks = Path(estate["config"]).parent / "repo" / "locks"
    for record_id, doc in records(time.time()).items():
        (locks / f"{record_id}.json").write_text(json.dumps(doc))
    check_listing_then_clearing(estate, capsys, "main", lambda: {p.stem for p in locks.glob("*.json")})


def test_locks_of_a_repository_in_a_bucket(offsite: dict, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    code, _, err = hvtui(offsite, capsys, "repo", "init", "offsite")
    assert code == 0, err
    client, prefix = offsite["client"], offsite["prefix"]
    for record_id, doc in records(time.time()).items():
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/locks/{record_id}.json", Body=json.dumps(doc).encode())

    def ids() -> set[str]:
        listed = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/locks/").get("Contents", ())
        return {item["Key"].rsplit("/", 1)[1].removesuffix(".json") for item in listed}

    check_listing_then_clearing(offsite, capsys, "offsite", ids)
