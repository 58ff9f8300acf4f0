"""A repository in an S3 bucket as the operator meets it: configured with ``s3:``, used by every
CLI command against a real SeaweedFS (the session's ``seaweed`` fixture), the lab's VM disks
byte-identical after a round trip, nothing readable in the bucket, and each command that needs a
local folder refusing with one sentence that says why and what to do."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest
from seaweed_support import ACCESS_KEY, BUCKET, SECRET_KEY

from hvtui.audit import AuditLog
from hvtui.hosts.lab import disk as vdisk

sys.path.insert(0, str(Path(__file__).parent))
from test_backup_integrity import DISK, backup, estate, hvtui, lab_host  # noqa: E402, F401 - estate is a fixture

PASSPHRASE = "offsite pass phrase"
MARKER = b"PLAINTEXT-MARKER-the-guest-wrote-this "


pytestmark = pytest.mark.usefixtures("fast_kdf")  # a cheap scrypt for new key slots (conftest)


def s3_entry(name: str, endpoint: str, prefix: str, bucket: str = BUCKET, extra: str = "") -> str:
    return f"""  - name: {name}
    s3:
      endpoint: {endpoint}
      bucket: {bucket}
      prefix: {prefix}
      region: us-east-1
      access_key_env: HVTUI_TEST_S3_ACCESS
      secret_key_env: HVTUI_TEST_S3_SECRET
{extra}    passphrase_env: HVTUI_TEST_OFFSITE
    retention: {{keep_last: 2, keep_hourly: 0, keep_daily: 0, keep_weekly: 0, keep_monthly: 0, keep_yearly: 0}}
"""


@pytest.fixture
def offsite(estate: dict, seaweed, monkeypatch: pytest.MonkeyPatch) -> dict:  # noqa: F811, ANN001
    monkeypatch.setenv("HVTUI_TEST_S3_ACCESS", ACCESS_KEY)
    monkeypatch.setenv("HVTUI_TEST_S3_SECRET", SECRET_KEY)
    monkeypatch.setenv("HVTUI_TEST_OFFSITE", PASSPHRASE)
    prefix = f"cli-{uuid.uuid4().hex[:8]}"
    with open(estate["config"], "a") as fh:
        fh.write(s3_entry("offsite", seaweed.endpoint, prefix))
    client = boto3.client(
        "s3", endpoint_url=seaweed.endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name="us-east-1"
    )
    return {**estate, "endpoint": seaweed.endpoint, "prefix": prefix, "client": client, "seaweed": seaweed}


def objects(env: dict) -> dict[str, bytes]:
    client, out = env["client"], {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=env["prefix"] + "/"):
        for item in page.get("Contents", ()):
            out[item["Key"]] = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
    return out


def objects_text(env: dict) -> str:
    return " ".join(objects(env))


def restored_disk(env: dict, capsys: pytest.CaptureFixture[str], repo: str, point: str, where: Path) -> bytes:
    code, _, err = hvtui(env, capsys, "restore", "app01", "--repo", repo, "--point", point, "--to", str(where), "--yes")
    assert code == 0, err
    (disk,) = where.rglob("*.vhdx")
    return vdisk.read_logical(disk, 0, DISK)


def test_every_command_works_on_a_repository_in_a_bucket(offsite: dict, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    env = offsite
    host = lab_host(env)
    host.write_guest_data(env["vm_id"], 0, 6 * 1024 * 1024, MARKER * 1000)

    code, out, err = hvtui(env, capsys, "repo", "init", "offsite", "--json")
    assert code == 0, err
    info = json.loads(out)
    assert (info["backend"], info["where"], info["endpoint"]) == ("s3", f"s3://{BUCKET}/{env['prefix']}", env["endpoint"])
    assert info["encrypted"] and info["format"] == 2 and info["points"] == 0
    assert f"{env['prefix']}/config.json" in objects(env)
    code, _, err = hvtui(env, capsys, "repo", "init", "offsite")
    assert code != 0 and "already exists (format 2); nothing changed" in err

    full = backup(env, capsys, "--repo", "offsite", "--mode", "full")
    assert full["mode"] == "full"
    host.write_guest_data(env["vm_id"], 0, 0, os.urandom(3 * 1024 * 1024))  # most of the full's pack: dead once it goes
    incremental = backup(env, capsys, "--repo", "offsite", "--mode", "incremental")
    assert incremental["mode"] == "incremental"
    code, out, err = hvtui(env, capsys, "points", "app01", "--repo", "offsite", "--json")
    assert code == 0, err
    assert [p["id"] for p in json.loads(out)["points"]] == [full["point_id"], incremental["point_id"]]

    now = lab_host(env).read_disk(env["vm_id"], 0, 0, DISK)
    assert restored_disk(env, capsys, "offsite", incremental["point_id"], tmp_path / "r1") == now
    code, out, err = hvtui(env, capsys, "verify", "--repo", "offsite", "--read-data", "100", "--json")
    assert code == 0, err + out

    # copy local -> S3: offsite's own retention (keep_last 2) then forgets the full point
    main_point = backup(env, capsys, "--mode", "full")["point_id"]
    code, out, err = hvtui(env, capsys, "copy", "--from", "main", "--to", "offsite", "--json")
    assert code == 0, err
    assert json.loads(out)["copied"] == [main_point]
    assert json.loads(out)["arrival_check"] == "store-content-md5"  # no read-back: the store checked each PUT
    assert restored_disk(env, capsys, "offsite", main_point, tmp_path / "r2") == now
    code, out, err = hvtui(env, capsys, "prune", "--repo", "offsite", "--yes", "--json")
    assert code == 0, err
    pruned = json.loads(out)  # the full's own chunks are freed: its pack is repacked
    assert full["point_id"] not in objects_text(env) and pruned["gc_skipped"] is None
    assert pruned["chunks_removed"] > 0 and pruned["bytes_freed"] > 0
    assert restored_disk(env, capsys, "offsite", incremental["point_id"], tmp_path / "r3") == now
    # ... and S3 -> local
    code, out, err = hvtui(env, capsys, "copy", "--from", "offsite", "--to", "main", "--json")
    assert code == 0, err
    assert json.loads(out)["copied"] == [incremental["point_id"]]
    assert restored_disk(env, capsys, "main", incremental["point_id"], tmp_path / "r4") == now

    code, out, err = hvtui(env, capsys, "repo", "info", "offsite", "--json")
    assert code == 0, err
    info = json.loads(out)
    stored = objects(env)
    assert info["state"] == "ok" and info["backend"] == "s3" and info["encrypted"] and len(info["key_slots"]) == 1
    assert info["points"] == 2 and info["size_bytes"] == sum(len(b) for b in stored.values())
    code, out, err = hvtui(env, capsys, "repo", "list")
    assert code == 0, err
    assert f"offsite: s3://{BUCKET}/{env['prefix']}" in out and f"backend s3 at {env['endpoint']}, format 2" in out
    assert "main (default): " in out

    # The keys and the passphrase are in no log, audit record or working-folder file.
    written = [env["paths"].log_file, env["paths"].audit_log, *env["paths"].repository_working_dir("offsite").rglob("*")]
    assert env["paths"].audit_log.is_file() and (env["paths"].repository_working_dir("offsite") / "config.json").is_file()
    for path in (p for p in written if p.is_file()):
        text = path.read_bytes()
        assert SECRET_KEY.encode() not in text and ACCESS_KEY.encode() not in text and PASSPHRASE.encode() not in text, path

    # Nothing readable at rest: the guest's marker is in no object (and it is in the local copy).
    assert any("/packs/" in p for p in stored) and not any(MARKER[:24] in blob for blob in stored.values())
    assert MARKER[:24] in now


def test_key_slots_change_in_the_bucket_and_folder_only_commands_refuse_with_the_reason(
    offsite: dict, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = offsite
    assert hvtui(env, capsys, "repo", "init", "offsite")[0] == 0
    code, out, err = hvtui(env, capsys, "repo", "key", "list", "offsite", "--json")
    assert code == 0, err
    first = [s["slot"] for s in json.loads(out)["key_slots"]]
    assert len(first) == 1
    monkeypatch.setenv("HVTUI_TEST_NEW", "another pass phrase")
    code, out, err = hvtui(env, capsys, "repo", "key", "add", "offsite", "--new-passphrase-env", "HVTUI_TEST_NEW")
    assert code == 0, err
    assert len([k for k in objects(env) if "/keys/" in k]) == 2  # the new slot is an object in the bucket
    code, _, err = hvtui(env, capsys, "repo", "key", "remove", "offsite", first[0], "--yes")
    assert code == 0, err
    assert len([k for k in objects(env) if "/keys/" in k]) == 1
    # The working folder refetches the bucket's slots at every open: the old passphrase no longer opens it.
    code, _, err = hvtui(env, capsys, "points", "--repo", "offsite")
    assert code != 0 and "wrong passphrase for repository offsite" in err
    monkeypatch.setenv("HVTUI_TEST_OFFSITE", "another pass phrase")
    code, _, err = hvtui(env, capsys, "points", "--repo", "offsite")
    assert code == 0, err
    code, _, err = hvtui(env, capsys, "repair-repository", "--repo", "offsite", "--yes")
    assert code != 0 and "repair-repository works on a repository's files in a folder" in err
    code, out, err = hvtui(env, capsys, "repo", "migrate", "offsite", "--yes")
    assert code == 0, err
    assert "format 2" in out
    monkeypatch.setenv("HVTUI_TEST_OFFSITE", "not the passphrase")
    code, _, err = hvtui(env, capsys, "points", "--repo", "offsite")
    assert code != 0 and "wrong passphrase for repository offsite" in err
    audit = [e for e in AuditLog(env["paths"].audit_log).read() if e["action"].startswith("repo.key")]
    assert [(e["action"], e["result"]) for e in audit] == [("repo.key.add", "ok"), ("repo.key.remove", "ok")]


def test_wrong_keys_and_a_missing_bucket_are_one_error_each_and_do_not_hide_the_others(
    offsite: dict, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = offsite
    with open(env["config"], "a") as fh:
        fh.write(s3_entry("nobucket", env["endpoint"], "x", bucket="no-such-bucket"))
        fh.write(s3_entry("badkeys", env["endpoint"], "y").replace("HVTUI_TEST_S3_SECRET", "HVTUI_TEST_S3_WRONG"))
    monkeypatch.setenv("HVTUI_TEST_S3_WRONG", "not-the-secret")
    backup(env, capsys, "--mode", "full")
    code, out, err = hvtui(env, capsys, "repo", "list", "--json")
    assert code == 0, err
    infos = {i["name"]: i for i in json.loads(out)["repositories"]}
    assert infos["main"]["state"] == "ok" and infos["main"]["points"] == 1
    assert infos["offsite"]["state"] == "absent"
    assert infos["nobucket"]["state"] == "unreachable" and "the bucket 'no-such-bucket' does not exist" in infos["nobucket"]["problem"]
    assert infos["badkeys"]["state"] == "unreachable" and "refused the credentials" in infos["badkeys"]["problem"]
    assert "not-the-secret" not in out + err
    code, out, err = hvtui(env, capsys, "points", "--json")
    assert [p["repository"] for p in json.loads(out)["points"]] == ["main"]
    assert "no-such-bucket" in err and "refused the credentials" in err and "not-the-secret" not in out + err


def test_a_dead_endpoint_is_named_and_the_other_repositories_still_answer(
    estate: dict, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    monkeypatch.setenv("HVTUI_TEST_S3_ACCESS", ACCESS_KEY)
    monkeypatch.setenv("HVTUI_TEST_S3_SECRET", SECRET_KEY)
    monkeypatch.setenv("HVTUI_TEST_OFFSITE", PASSPHRASE)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(estate["config"], "a") as fh:
        fh.write(s3_entry("dead", f"http://127.0.0.1:{port}", "z"))
    backup(estate, capsys, "--mode", "full")
    code, out, err = hvtui(estate, capsys, "repo", "list", "--json")
    assert code == 0, err
    infos = {i["name"]: i for i in json.loads(out)["repositories"]}
    assert infos["main"]["state"] == "ok" and infos["main"]["points"] == 1
    assert infos["dead"]["state"] == "unreachable"
    assert f"http://127.0.0.1:{port} did not answer after" in infos["dead"]["problem"]
    code, out, err = hvtui(estate, capsys, "repo", "list")
    assert code == 0, err
    assert f"dead: s3://{BUCKET}/z: UNREACHABLE: stat config.json: http://127.0.0.1:{port} did not answer after 8 attempts" in out


def test_the_config_ca_bundle_is_what_tls_trusts(
    estate: dict, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path  # noqa: F811
) -> None:
    from seaweed_support import seaweed_server

    monkeypatch.setenv("HVTUI_TEST_S3_ACCESS", ACCESS_KEY)
    monkeypatch.setenv("HVTUI_TEST_S3_SECRET", SECRET_KEY)
    monkeypatch.setenv("HVTUI_TEST_OFFSITE", PASSPHRASE)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    with seaweed_server(tmp_path / "sw", buckets=("tls",), tls=(cert, key)) as server:
        with open(estate["config"], "a") as fh:
            fh.write(s3_entry("trusted", server.https_endpoint, "t", bucket="tls", extra=f"      ca_bundle: {cert}\n"))
            fh.write(s3_entry("untrusted", server.https_endpoint, "u", bucket="tls"))
        code, out, err = hvtui(estate, capsys, "repo", "init", "trusted", "--json")
        assert code == 0, err
        assert json.loads(out)["where"] == "s3://tls/t"
        code, out, err = hvtui(estate, capsys, "repo", "list", "--json")
        assert code == 0, err
        infos = {i["name"]: i for i in json.loads(out)["repositories"]}
        assert infos["trusted"]["state"] == "ok" and infos["trusted"]["encrypted"]
        assert infos["untrusted"]["state"] == "unreachable"
        assert f"the TLS certificate of {server.https_endpoint} is not trusted: give its CA in ca_bundle:" in infos["untrusted"]["problem"]


def test_a_bucket_that_lost_its_config_is_damaged_not_empty(offsite: dict, capsys: pytest.CaptureFixture[str]) -> None:
    # config.json is published last; a bucket with points and packs but without it must not pass for an
    # empty repository in the listings, nor be created over by the next backup.
    env = offsite
    backup(env, capsys, "--repo", "offsite", "--mode", "full")
    before = {k for k in objects(env) if not k.endswith("config.json") and "/locks/" not in k}
    env["client"].delete_object(Bucket=BUCKET, Key=f"{env['prefix']}/config.json")
    code, out, err = hvtui(env, capsys, "repo", "list", "--json")
    assert code == 0, err
    info = {i["name"]: i for i in json.loads(out)["repositories"]}["offsite"]
    assert info["state"] == "damaged" and "config.json is missing" in info["problem"] and "restore points" in info["problem"]
    code, _, err = hvtui(env, capsys, "backup", "app01", "--repo", "offsite", "--mode", "full")
    assert code != 0 and "is damaged: its config.json is missing" in err
    assert f"{env['prefix']}/config.json" not in objects(env)  # nothing created over the data
    assert before <= set(objects(env))
