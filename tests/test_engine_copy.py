"""`hvtui copy` in the engine: points copied between any two repositories (format 1 / 2, plain /
encrypted), only missing chunks sent, manifest last, resumable after SIGKILL."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from hvtui.config import Retention
from hvtui.engine.backup import run_backup
from hvtui.engine.copy import copy_points, plan_copy
from hvtui.engine.repository import Repository
from hvtui.engine.restore import restore_to_directory
from hvtui.engine.verify import run_verify
from hvtui.errors import Cancelled, RepositoryError
from hvtui.events import CancelToken, Progress

sys.path.insert(0, str(Path(__file__).parent))
from engine_support import DirHost, flip_last_byte_of_chunk, read_tree  # noqa: E402
from kill_support import TESTS_DIR, kill_child_at_marker  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
CS = 64 * KiB
DISK = "Virtual Hard Disks/web01.vhdx"


def everything(_point: object) -> bool:
    return True


@pytest.fixture
def source(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Repository, dict[str, dict[str, bytes]]]:
    """A format-1 repository (or the format an ``indirect`` parameter asks for) with a full and an
    incremental point of one VM, and what each restores to."""
    host = DirHost(tmp_path / "host")
    host.add_vm("vm1", "web01")
    host.create_disk("vm1", DISK, 8 * MiB, seed=5, data_mib=4)
    repo = Repository.open(tmp_path / "src", create=True, chunk_size=CS, version=getattr(request, "param", 1))
    expected = {}
    point = run_backup(repo, host, "vm1", "full").point_id
    expected[point] = read_tree(host.vm_dir("vm1"))
    host.write("vm1", DISK, 2 * MiB, os.urandom(256 * KiB))
    point = run_backup(repo, host, "vm1", "incremental").point_id
    expected[point] = read_tree(host.vm_dir("vm1"))
    return repo, expected


def check_points(repo: Repository, expected: dict[str, dict[str, bytes]], out: Path) -> None:
    assert sorted(repo.point_ids()) == sorted(expected)
    for n, (point, tree) in enumerate(sorted(expected.items())):
        restore_to_directory(repo, point, out / str(n))
        assert read_tree(out / str(n)) == tree, point
    report = run_verify(repo, record=False)
    assert report.ok, [p.describe() for p in report.chunk_problems]


def test_copy_into_an_encrypted_v2_repository_re_ids_and_seals_every_chunk(source, tmp_path: Path) -> None:
    src, expected = source
    target = Repository.open(tmp_path / "dst", create=True, chunk_size=CS, passphrase=lambda: "pass phrase", encrypt=True)
    points, present, skipped = plan_copy(src, target, everything)
    assert sorted(p.id for p in points) == sorted(expected) and present == [] and skipped == []
    result = copy_points(src, target, points)
    assert sorted(result.copied) == sorted(expected)
    assert result.reids
    unique = {c for p in points for c in p.chunk_ids()}
    assert result.chunks_sent == len(unique)
    reopened = Repository.open(target.root, passphrase=lambda: "pass phrase")
    check_points(reopened, expected, tmp_path / "out")
    # Keyed ids: no chunk id of the plain source appears in the target's manifests.
    copied_ids = set().union(*(reopened.load_point(p).chunk_ids() for p in expected))
    assert copied_ids and not copied_ids & unique
    # A second copy finds everything there and sends nothing.
    again, present, _ = plan_copy(src, reopened, everything)
    assert again == [] and sorted(present) == sorted(expected)


def test_copy_back_from_encrypted_to_a_v1_repository_is_byte_identical(source, tmp_path: Path) -> None:
    src, expected = source
    enc = Repository.open(tmp_path / "enc", create=True, chunk_size=CS, passphrase=lambda: "pw", encrypt=True)
    copy_points(src, enc, plan_copy(src, enc, everything)[0])
    back = Repository.open(tmp_path / "back", create=True, chunk_size=CS)
    result = copy_points(enc, back, plan_copy(enc, back, everything)[0])
    assert result.reids and sorted(result.copied) == sorted(expected)
    check_points(Repository.open(back.root), expected, tmp_path / "out")
    # Back under the plain scheme, the ids are the source's own SHA-256 ids again.
    assert {c for p in expected for c in back.load_point(p).chunk_ids()} == {
        c for p in expected for c in src.load_point(p).chunk_ids()
    }


def test_copy_sends_only_the_chunks_the_target_lacks(source, tmp_path: Path) -> None:
    src, expected = source
    first, second = (p.id for p in src.load_points()[0])  # the full, then the incremental
    target = Repository.open(tmp_path / "dst", create=True, chunk_size=CS, version=2)
    one = copy_points(src, target, [src.load_point(first)])
    assert one.copied == [first]
    rest, present, _ = plan_copy(src, target, everything)
    assert [p.id for p in rest] == [second] and present == [first]
    two = copy_points(src, target, rest)
    new_in_second = src.load_point(second).chunk_ids() - src.load_point(first).chunk_ids()
    assert two.chunks_sent == len(new_in_second)
    assert two.chunks_present == len(src.load_point(second).chunk_ids()) - len(new_in_second)
    check_points(Repository.open(target.root), expected, tmp_path / "out")


@pytest.mark.parametrize("source", [1, 2], indirect=True)  # a chunk file; a blob in a pack
def test_a_damaged_source_chunk_stops_the_copy_before_the_manifest(source, tmp_path: Path) -> None:
    src, expected = source
    first = sorted(expected)[0]
    digest = sorted(src.load_point(first).chunk_ids())[0]
    flip_last_byte_of_chunk(src, digest)
    target = Repository.open(tmp_path / "dst", create=True, chunk_size=CS)
    with pytest.raises(RepositoryError, match=rf"restore point {first} cannot be copied: chunk {digest.hex()[:16]}"):
        copy_points(src, target, [src.load_point(first)])
    assert target.point_ids() == []


def test_differing_chunk_sizes_are_refused(source, tmp_path: Path) -> None:
    src, _expected = source
    target = Repository.open(tmp_path / "dst", create=True, chunk_size=2 * CS)
    with pytest.raises(RepositoryError, match="their chunk sizes differ"):
        plan_copy(src, target, everything)


def test_points_the_target_retention_would_drop_at_once_are_not_copied(source, tmp_path: Path) -> None:
    src, _expected = source
    older, newer = (p.id for p in src.load_points()[0])  # oldest first
    target = Repository.open(tmp_path / "dst", create=True, chunk_size=CS)
    points, _present, skipped = plan_copy(src, target, everything, Retention(keep_last=1))
    assert [p.id for p in points] == [newer] and skipped == [older]


KILL_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from hvtui.engine import copy as engine_copy
    from hvtui.engine.copy import copy_points, plan_copy
    from hvtui.engine.repository import Repository

    engine_copy.BATCH_BYTES = 64 * 1024  # publish every chunk file: many batches in a small copy
    src = Repository.open(Path({src!r}))
    dst = Repository.open(Path({dst!r}))
    if dst.version == 2:
        dst.store.pack_size = 128 * 1024  # many packs from a small copy
    print("started", flush=True)

    def on_progress(event):
        if event.phase == "copy" and event.bytes_stored >= {stop_at}:
            Path({marker!r}).write_text("copying")
            while True:
                time.sleep(1)

    copy_points(src, dst, plan_copy(src, dst, lambda p: True)[0], progress=on_progress, progress_interval=0)
    """
)


@pytest.mark.parametrize("version", [1, 2])
def test_a_copy_killed_halfway_resumes_without_re_sending_what_arrived(source, tmp_path: Path, version: int) -> None:
    src, expected = source
    target = Repository.open(tmp_path / "dst", create=True, chunk_size=CS, version=version)
    unique = {c for p in expected for c in src.load_point(p).chunk_ids()}
    marker = tmp_path / "marker"
    script = KILL_CHILD.format(tests=str(TESTS_DIR), src=str(src.root), dst=str(target.root), stop_at=20 * CS, marker=str(marker))
    kill_child_at_marker(script, marker, "start the copy", "reach the middle of the copy")
    target = Repository.open(target.root)  # as the next process finds it (format 2: packs from their trailers)
    assert target.point_ids() == []  # killed before any manifest
    arrived = {d for d in unique if target.store.has(d)}
    assert 0 < len(arrived) < len(unique)
    resumed = copy_points(src, target, plan_copy(src, target, everything)[0])
    assert sorted(resumed.copied) == sorted(expected)
    assert resumed.chunks_present == len(arrived)
    assert resumed.chunks_sent == len(unique) - len(arrived)
    check_points(Repository.open(target.root), expected, tmp_path / "out")


def test_a_cancelled_copy_leaves_no_point_and_the_next_one_completes(source, tmp_path: Path) -> None:
    src, expected = source
    target = Repository.open(tmp_path / "dst", create=True, chunk_size=CS, version=2)
    cancel = CancelToken()
    events: list[Progress] = []

    def on_progress(event: Progress) -> None:
        events.append(event)
        if event.phase == "copy" and event.done >= 10 * CS:
            cancel.cancel()

    with pytest.raises(Cancelled):
        copy_points(src, target, plan_copy(src, target, everything)[0], progress=on_progress, cancel=cancel, progress_interval=0)
    assert Repository.open(target.root).point_ids() == []
    # Progress carried a total and a rate, as the jobs view shows them.
    shown = [e for e in events if e.phase == "copy" and e.done]
    assert shown and shown[-1].total and shown[-1].rate
    resumed = copy_points(src, target, plan_copy(src, target, everything)[0])
    assert sorted(resumed.copied) == sorted(expected)
    check_points(Repository.open(target.root), expected, tmp_path / "out")
