"""Encrypted format-2 repositories: key slots, sealed blobs and objects, keyed chunk ids.

Backup, restore (every mode, byte-identical), cancel and the rest also run on an encrypted
repository in test_engine_backup.py (its ``repo`` fixture's ``v2-encrypted`` case).  This
file checks what encryption adds: nothing readable at rest, a wrong passphrase, key slots,
tampering of every kind of object detected and named, prune's repacking, and kill -9.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

import hvtui.engine.packindex as packindex
from hvtui.clock import FixedClock
from hvtui.config import Retention
from hvtui.engine import keys
from hvtui.engine.backup import run_backup
from hvtui.engine.errors import RepositoryDamaged
from hvtui.engine.manifest import ManifestError
from hvtui.engine.packfile import FOOTER, PackDamaged, read_trailer
from hvtui.engine.prune import run_prune
from hvtui.engine.repair import plan_config_repair
from hvtui.engine.repository import Repository
from hvtui.engine.restore import restore_to_directory
from hvtui.engine.verify import run_verify
from hvtui.errors import RepositoryError
from hvtui.hosts.lab import disk as vdisk
from hvtui.hosts.lab.host import LabHost

sys.path.insert(0, str(Path(__file__).parent))
from kill_support import kill_child_at_marker  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
CS = 64 * KiB
PASS = "correct horse battery staple"
MARKER = b"HVTUI-GUEST-MARKER-7f3a"


pytestmark = pytest.mark.usefixtures("fast_kdf")  # a cheap scrypt for new key slots (conftest)


def open_enc(path: Path, passphrase: str = PASS, create: bool = True) -> Repository:
    repo = Repository.open(path, create=create, chunk_size=CS, encrypt=True, passphrase=lambda: passphrase)
    repo.store.pack_size = 256 * KiB  # type: ignore[union-attr]  # several packs per backup
    return repo


@pytest.fixture
def lab(tmp_path: Path) -> tuple[LabHost, str]:
    host = LabHost.create(tmp_path / "lab" / "lab-a", "lab-a", FixedClock())
    vm_id = host.add_vm("web01", state="Off", disk_sizes=(8 * MiB,), fsync=False)
    for i in range(6):  # the guest writes a marker beside random data (stored raw, so readable if plain)
        host.write_guest_data(vm_id, 0, i * MiB, MARKER * 100 + os.urandom(200 * KiB))
    return host, vm_id


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def disk_bytes(host: LabHost, vm_id: str) -> bytes:
    return host.read_disk(vm_id, 0, 0, 8 * MiB)


def restored_disk(repo: Repository, point: str, out: Path) -> bytes:
    restore_to_directory(repo, point, out)
    return vdisk.read_logical(out / "web01.vhdx", 0, 8 * MiB)


def test_nothing_the_guest_wrote_and_no_plain_chunk_id_is_readable_at_rest(lab: tuple[LabHost, str], tmp_path: Path) -> None:
    host, vm_id = lab
    plain = Repository.open(tmp_path / "plain", create=True, chunk_size=CS, version=2)
    run_backup(plain, host, vm_id, "full")
    assert any(MARKER in f.read_bytes() for f in all_files(plain.root))  # the check can see a leak

    repo = open_enc(tmp_path / "enc")
    point = run_backup(repo, host, vm_id, "full").point_id
    run_verify(repo)  # writes verified/<point>.json too
    files = all_files(repo.root)
    assert any(f.parent.name == "packs" or f.parent.parent.name == "packs" for f in files)
    sha_ids = set()
    for digest in repo.load_point(point).chunk_ids():
        data = repo.store.get(digest)
        sha = hashlib.sha256(data).digest()
        assert digest != sha  # keyed: the storage cannot confirm a guess of a chunk's content
        sha_ids |= {sha, sha.hex().encode()}
    for f in files:
        content = f.read_bytes()
        assert MARKER not in content, f
        assert b"web01" not in content and b"lab-a" not in content, f  # manifests, indexes, records sealed
        assert not any(s in content for s in sha_ids), f
    config = json.loads((repo.root / "config.json").read_text())
    assert config["version"] == 2 and config["hash"] == "hmac-sha256"
    assert config["encryption"] == {"cipher": "aes-256-gcm", "chunk_id": "hmac-sha256", "keys": "keys"}
    assert restored_disk(Repository.open(repo.root, passphrase=lambda: PASS), point, tmp_path / "out") == disk_bytes(host, vm_id)


def test_a_wrong_or_missing_passphrase_is_one_clear_error(tmp_path: Path) -> None:
    open_enc(tmp_path / "repo")
    with pytest.raises(keys.WrongPassphrase, match=r"wrong passphrase for repository default at .*: no key slot opens with it$"):
        Repository.open(tmp_path / "repo", passphrase=lambda: "not it")
    with pytest.raises(RepositoryError, match="is encrypted: its passphrase is needed"):
        Repository.open(tmp_path / "repo")
    asked: list[int] = []
    Repository.open(tmp_path / "repo", passphrase=lambda: asked.append(1) or PASS)
    assert asked == [1]
    plain = Repository.open(tmp_path / "plain", create=True, version=2)
    assert Repository.open(plain.root, passphrase=lambda: pytest.fail("a plain repository asks for no passphrase"))


def test_a_damaged_or_foreign_key_file_is_named(tmp_path: Path) -> None:
    repo = open_enc(tmp_path / "repo")
    (key_file,) = all_files(repo.root / "keys")
    original = key_file.read_bytes()
    doc = json.loads(original)
    doc["wrapped"] = doc["wrapped"][:-4] + ("AAAA" if doc["wrapped"][-4:] != "AAAA" else "BBBB")
    key_file.write_text(json.dumps(doc))
    with pytest.raises(keys.KeyFileDamaged, match=rf"key file keys/{key_file.name} is damaged \(its checksum does not match"):
        Repository.open(repo.root, passphrase=lambda: PASS)
    key_file.write_bytes(b"{not json")
    with pytest.raises(keys.KeyFileDamaged, match=rf"key file keys/{key_file.name} is damaged \(not valid JSON\)"):
        Repository.open(repo.root, passphrase=lambda: PASS)
    other = open_enc(tmp_path / "other")
    (foreign,) = all_files(other.root / "keys")
    key_file.unlink()
    shutil.copy(foreign, repo.root / "keys" / foreign.name)
    with pytest.raises(keys.KeyFileDamaged, match=rf"keys/{foreign.name} belongs to another repository"):
        Repository.open(repo.root, passphrase=lambda: PASS)
    (repo.root / "keys" / foreign.name).unlink()
    with pytest.raises(keys.KeyFileDamaged, match="holds no key file: its data cannot be read"):
        Repository.open(repo.root, passphrase=lambda: PASS)
    key_file.write_bytes(original)
    assert Repository.open(repo.root, passphrase=lambda: PASS).encrypted


def test_key_slots_rotate_a_passphrase_without_touching_the_data(lab: tuple[LabHost, str], tmp_path: Path) -> None:
    host, vm_id = lab
    repo = open_enc(tmp_path / "repo")
    point = run_backup(repo, host, vm_id, "full").point_id
    packs_before = {p: p.read_bytes() for p in all_files(repo.root / "packs")}
    (first,) = keys.list_slots(repo.root, repo.id)
    assert repo.cipher is not None
    second = keys.add_slot(repo.root, repo.id, repo.cipher, "new passphrase")
    assert {s.slot for s in keys.list_slots(repo.root, repo.id)} == {first.slot, second}
    assert keys.list_slots(repo.root, repo.id)[0].kdf["n"] == 1 << 12  # the parameters are recorded per slot
    keys.remove_slot(repo.root, repo.id, first.slot)
    with pytest.raises(keys.WrongPassphrase):
        Repository.open(repo.root, passphrase=lambda: PASS)
    rotated = Repository.open(repo.root, passphrase=lambda: "new passphrase")
    assert restored_disk(rotated, point, tmp_path / "out") == disk_bytes(host, vm_id)
    assert {p: p.read_bytes() for p in all_files(repo.root / "packs")} == packs_before  # no data re-encrypted
    with pytest.raises(RepositoryError, match=f"key slot {second} is the repository's last usable key"):
        keys.remove_slot(repo.root, repo.id, second)
    with pytest.raises(RepositoryError, match="no key slot 'nope'"):
        keys.remove_slot(repo.root, repo.id, "nope")
    assert len(keys.list_slots(repo.root, repo.id)) == 1


def _first_blob(repo: Repository, point: str) -> tuple[bytes, str, int, int]:
    digest = sorted(repo.load_point(point).chunk_ids())[0]
    pack_id, offset, length = repo.store.location(digest)  # type: ignore[union-attr]
    return digest, pack_id, offset, length


def test_a_tampered_or_swapped_blob_is_named_never_decoded(lab: tuple[LabHost, str], tmp_path: Path) -> None:
    host, vm_id = lab
    repo = open_enc(tmp_path / "repo")
    point = run_backup(repo, host, vm_id, "full").point_id
    digest, pack_id, offset, length = _first_blob(repo, point)
    pack = repo.store.pack_path(pack_id)  # type: ignore[union-attr]
    data = bytearray(pack.read_bytes())
    data[offset + length // 2] ^= 0x01
    pack.write_bytes(bytes(data))
    fresh = Repository.open(repo.root, passphrase=lambda: PASS)
    with pytest.raises(RepositoryDamaged, match=rf"{digest.hex()[:16]}.*does not authenticate.*pack {pack_id[:16]}, offset {offset}"):
        restore_to_directory(fresh, point, tmp_path / "out")
    assert not (tmp_path / "out" / "web01.vhdx").exists()
    report = run_verify(fresh, repair=False)
    assert [(p.chunk, p.points) for p in report.chunk_problems] == [(digest.hex(), [point])]
    assert "does not authenticate" in report.chunk_problems[0].problem
    assert [(v["vm_name"], v["points"]) for v in report.affected_vms] == [("web01", [point])]

    # Two blobs of the same size swapped inside a pack: each is refused, by its own id.
    data[offset + length // 2] ^= 0x01
    pack.write_bytes(bytes(data))
    entries = sorted(read_trailer(pack, pack_id, fresh.cipher), key=lambda e: e.offset)
    a, b = next((x, y) for x in entries for y in entries if x.offset < y.offset and x.length == y.length)
    swapped = bytearray(data)
    swapped[a.offset : a.offset + a.length] = data[b.offset : b.offset + b.length]
    swapped[b.offset : b.offset + b.length] = data[a.offset : a.offset + a.length]
    pack.write_bytes(bytes(swapped))
    report = run_verify(Repository.open(repo.root, passphrase=lambda: PASS), repair=False)
    assert sorted(p.chunk for p in report.chunk_problems) == sorted([a.digest.hex(), b.digest.hex()])


def test_a_tampered_trailer_index_or_point_index_is_named_and_the_data_still_reads(
    lab: tuple[LabHost, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    host, vm_id = lab
    repo = open_enc(tmp_path / "repo")
    point = run_backup(repo, host, vm_id, "full").point_id
    expected = disk_bytes(host, vm_id)
    _digest, pack_id, _offset, _length = _first_blob(repo, point)
    pack = repo.store.pack_path(pack_id)  # type: ignore[union-attr]

    # A sealed trailer altered, its checksum made to match: it does not authenticate.
    original = pack.read_bytes()
    data = bytearray(original)
    count, _sum, magic = FOOTER.unpack(data[-FOOTER.size :])
    body_len = count * 44 + 28
    body = bytearray(data[-FOOTER.size - body_len : -FOOTER.size])
    body[20] ^= 0x01
    data[-FOOTER.size - body_len : -FOOTER.size] = body
    data[-FOOTER.size :] = FOOTER.pack(count, hashlib.sha256(bytes(body)).digest(), magic)
    pack.write_bytes(bytes(data))
    with pytest.raises(PackDamaged, match="its trailer does not authenticate"):
        read_trailer(pack, pack_id, repo.cipher)
    report = run_verify(Repository.open(repo.root, passphrase=lambda: PASS))
    assert [p["pack"] for p in report.pack_problems] == [pack_id]
    assert "does not authenticate" in report.pack_problems[0]["problem"]

    # An index file altered, and one renamed: each is named, and the packs' trailers stand in
    # (read by a machine without the local index cache).
    pack.write_bytes(original)
    (index,) = sorted(p for p in (repo.root / "index").iterdir() if p.name != "points.json")
    cache = packindex.default_cache_dir() / f"{repo.id}.json"
    assert cache.exists()
    sealed = bytearray(index.read_bytes())
    sealed[-5] ^= 0x01
    index.write_bytes(bytes(sealed))
    cache.unlink()
    with caplog.at_level(logging.WARNING):
        fresh = Repository.open(repo.root, passphrase=lambda: PASS)
        state = fresh.store.index.current()  # type: ignore[union-attr]
    assert "does not authenticate" in state.damaged_indexes[index.name]
    assert index.name in caplog.text
    renamed = index.with_name("0" * 64 + ".json")
    sealed[-5] ^= 0x01
    renamed.write_bytes(bytes(sealed))
    index.unlink()
    cache.unlink(missing_ok=True)
    state = Repository.open(repo.root, passphrase=lambda: PASS).store.index.current()  # type: ignore[union-attr]
    assert "does not authenticate" in state.damaged_indexes[renamed.name]  # bound to its name

    # The point index altered: rebuilt from the manifests, with a warning naming it.
    points_index = repo.root / "index" / "points.json"
    points_index.write_bytes(points_index.read_bytes()[:-1] + b"\x00")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        summaries, bad = Repository.open(repo.root, passphrase=lambda: PASS).point_summaries()
    assert [s.id for s in summaries] == [point] and bad == []
    assert "points.json" in caplog.text and "does not authenticate" in caplog.text
    assert restored_disk(Repository.open(repo.root, passphrase=lambda: PASS), point, tmp_path / "out") == expected


def test_a_tampered_or_moved_manifest_is_named(lab: tuple[LabHost, str], tmp_path: Path) -> None:
    host, vm_id = lab
    repo = open_enc(tmp_path / "repo")
    first = run_backup(repo, host, vm_id, "full").point_id
    host.write_guest_data(vm_id, 0, 0, os.urandom(64 * KiB))
    second = run_backup(repo, host, vm_id, "incremental").point_id
    path = repo.point_path(second)
    sealed = bytearray(path.read_bytes())
    sealed[len(sealed) // 2] ^= 0x01
    path.write_bytes(bytes(sealed))
    fresh = Repository.open(repo.root, passphrase=lambda: PASS)
    with pytest.raises(ManifestError, match=rf"restore point {second}: manifest is damaged \(points/{second}.json does not authenticate"):
        fresh.load_point(second)
    report = run_verify(fresh)
    assert [m["point"] for m in report.damaged_manifests] == [second]
    # A good manifest copied under another point's name does not pass for that point.
    path.write_bytes(repo.point_path(first).read_bytes())
    with pytest.raises(ManifestError, match="does not authenticate"):
        Repository.open(repo.root, passphrase=lambda: PASS).load_point(second)


def test_prune_repacks_an_encrypted_repository_and_every_kept_point_verifies(lab: tuple[LabHost, str], tmp_path: Path) -> None:
    host, vm_id = lab
    repo = open_enc(tmp_path / "repo")
    run_backup(repo, host, vm_id, "full")
    for i in range(6):  # most of the data changes: the first point's packs become mostly dead
        host.write_guest_data(vm_id, 0, i * MiB, os.urandom(200 * KiB))
    kept = run_backup(repo, host, vm_id, "incremental").point_id
    expected = disk_bytes(host, vm_id)
    old_packs = set(all_files(repo.root / "packs"))
    result = run_prune(repo, Retention(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0))
    assert result.points_removed == 1 and result.chunks_removed > 0 and result.bytes_freed > 0
    new_packs = set(all_files(repo.root / "packs"))
    assert new_packs - old_packs, "a partly live pack was rewritten into a new one"
    fresh = Repository.open(repo.root, passphrase=lambda: PASS)
    report = run_verify(fresh)  # full: every chunk read, opened, decompressed, re-hashed with the id key
    assert report.ok and report.chunks_read == report.chunks_checked > 0
    for pack in new_packs - old_packs:
        assert read_trailer(pack, pack.name, fresh.cipher)  # sealed trailers, for the repacked ones too
    assert restored_disk(fresh, kept, tmp_path / "out") == expected


BACKUP_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import hvtui.engine.backup as backup
    from hvtui.clock import SystemClock
    from hvtui.engine.repository import Repository
    from hvtui.hosts.lab.host import LabHost

    host = LabHost.open(Path({lab!r}), "lab-a", SystemClock())
    repo = Repository.open(Path({repo!r}), passphrase=lambda: {passphrase!r})
    repo.store.pack_size = 256 * 1024  # publish packs often, so the kill finds some stored
    print("started", flush=True)

    def progress(event):
        if event.phase == "backup" and event.bytes_stored >= {stored}:
            Path({marker!r}).write_text("here")
            while True:
                time.sleep(1)

    backup.run_backup(repo, host, {vm_id!r}, "full", progress=progress, progress_interval=0)
    """
)


@pytest.mark.slow
def test_kill_9_during_an_encrypted_backup_leaves_no_damaged_point(lab: tuple[LabHost, str], tmp_path: Path) -> None:
    host, vm_id = lab
    repo = open_enc(tmp_path / "repo")
    first = run_backup(repo, host, vm_id, "full").point_id
    for i in range(6):
        host.write_guest_data(vm_id, 0, i * MiB + 300 * KiB, os.urandom(300 * KiB))
    marker = tmp_path / "marker"
    script = BACKUP_CHILD.format(
        lab=str(host.root), repo=str(repo.root), passphrase=PASS, vm_id=vm_id, stored=512 * KiB, marker=str(marker)
    )
    kill_child_at_marker(script, marker, "start", "store data in its backup")
    fresh = Repository.open(repo.root, passphrase=lambda: PASS)
    report = run_verify(fresh)
    assert report.ok and fresh.point_ids() == [first], report.lines()  # 0 damaged points
    present = set(fresh.store.iter_ids())  # what the killed backup published, from its sealed trailers
    result = run_backup(fresh, host, vm_id, "full")
    referenced = fresh.load_point(result.point_id).chunk_ids()
    assert result.new_chunks == len(referenced - present)  # nothing stored twice
    assert run_verify(Repository.open(repo.root, passphrase=lambda: PASS)).ok
    assert restored_disk(fresh, result.point_id, tmp_path / "out") == disk_bytes(host, vm_id)


def test_repair_refuses_to_rebuild_the_config_of_an_encrypted_repository(lab: tuple[LabHost, str], tmp_path: Path) -> None:
    host, vm_id = lab
    repo = open_enc(tmp_path / "repo")
    run_backup(repo, host, vm_id, "full")
    config = (repo.root / "config.json").read_bytes()
    (repo.root / "config.json").unlink()
    with pytest.raises(RepositoryError, match="is encrypted .* cannot be rebuilt by repair-repository; put back a copy"):
        plan_config_repair(repo.root)
    assert not (repo.root / "config.json").exists()
    (repo.root / "config.json").write_bytes(config)
    assert Repository.open(repo.root, passphrase=lambda: PASS).point_ids()
