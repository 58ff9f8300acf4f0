"""A real backup job in a child process, stopped at an engine phase and killed with SIGKILL.

Shared by the job tests on the file-backed test host and on the lab: the child builds its
core with ``<module>.<factory>(root, paths)`` and backs up ``vm_id`` through the job manager.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from test_jobs import DEADLINE, _wait_for

TESTS_DIR = Path(__file__).parent

CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from hvtui.jobs import JobKind
    from hvtui.paths import Paths
    import {module} as t

    core = t.{factory}(Path({root!r}), Paths.default())
    core.backups.progress_interval = 0
    real = core.jobs.kind("backup")

    # The real backup, whose progress callback stops the job thread (forever) when the
    # engine enters phase {phase!r} (once {min_done} bytes are done in it), so the parent
    # can kill this process right there; with {forward!r} the job sees that event first.
    def build(job):
        run = real.build(job)

        def stopping(progress, cancel):
            def on_progress(event):
                if event.phase == {phase!r} and event.done >= {min_done}:
                    if {forward!r}:
                        progress(event)  # the journal shows what happened before the kill
                    Path({marker!r}).write_text(event.phase)
                    while True:
                        time.sleep(1)
                progress(event)

            return run(on_progress, cancel)

        return stopping

    core.jobs.register_kind(JobKind("backup", build=build, before_resume=real.before_resume))
    job = core.jobs.submit_backup({host!r} or t.HOST, {vm_id!r}, vm_name={vm_name!r})
    print(job.id, flush=True)
    core.jobs.wait(job.id)
    """
)


def kill_backup_at(
    phase: str,
    *,
    module: str,
    factory: str,
    root: Path,
    vm_id: str,
    vm_name: str,
    marker: Path,
    host: str | None = None,
    min_done: int = 0,
    forward: bool = False,
) -> str:
    """Run the child until its backup reaches ``phase`` (with ``min_done`` bytes done in it),
    SIGKILL it, return the job id.  ``forward``: the job gets that event before the stop (it does
    whenever ``min_done`` is set).  ``host``: the VM's host, else ``<module>.HOST``.  The child
    inherits this process's environment: the same XDG directories, journal and repository."""
    script = CHILD.format(
        tests=str(TESTS_DIR), module=module, factory=factory, root=str(root), host=host,
        phase=phase, min_done=min_done, forward=forward or bool(min_done), marker=str(marker), vm_id=vm_id,
        vm_name=vm_name,
    )  # fmt: skip
    return kill_child_at_marker(script, marker, "start its backup", f"reach phase {phase} in its backup")


def kill_child_at_marker(script: str, marker: Path, starting: str, reaching: str) -> str:
    """Run ``script`` in a child that prints its job id, then writes ``marker`` and waits to be
    killed; SIGKILL it there and return the job id.  ``starting`` and ``reaching`` say, for a
    failure, what the child did not do."""
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        job_id = child.stdout.readline().strip()
        assert job_id, f"the child did not {starting}"
        # Ends early when the child dies first (a crash would show as its exit code).
        _wait_for(lambda: marker.exists() or child.poll() is not None)
        assert marker.exists(), f"the child did not {reaching} (exit code {child.poll()})"
    finally:
        child.kill()  # a failed assertion must not leave a child holding the lab and the repository
        child.wait(DEADLINE)
    assert child.returncode == -signal.SIGKILL
    return job_id


RESTORE_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from hvtui.jobs import JobKind
    from hvtui.paths import Paths
    import {module} as t

    core = t.{factory}(Path({root!r}), Paths.default())
    core.backups.progress_interval = 0
    real = core.jobs.kind("restore")

    def on_disk():
        return sum(p.stat().st_blocks * 512 for p in Path({directory!r}).rglob("*") if p.is_file())

    # The real restore into a directory, stopped (forever) once {min_on_disk} bytes of it sit
    # on disk, so the parent can kill this process right there.  Not the progress's "done": it
    # counts the holes skipped (nothing written), which the workers' write-ahead hides unless loaded.
    def build(job):
        run = real.build(job)

        def stopping(progress, cancel):
            def on_progress(event):
                progress(event)
                if event.phase == "restore" and on_disk() >= {min_on_disk}:
                    Path({marker!r}).write_text(event.phase)
                    while True:
                        time.sleep(1)

            return run(on_progress, cancel)

        return stopping

    core.jobs.register_kind(JobKind("restore", build=build, before_resume=real.before_resume,
                                    on_dismiss=real.on_dismiss, leftovers=real.leftovers))
    job = core.jobs.submit_restore({point!r}, "directory", directory={directory!r})
    print(job.id, flush=True)
    core.jobs.wait(job.id)
    """
)


def kill_restore_at(
    *, module: str, factory: str, root: Path, point: str, directory: Path, marker: Path, min_on_disk: int
) -> str:
    """Run a child restoring ``point`` into ``directory`` until ``min_on_disk`` bytes sit on disk
    under ``directory``, SIGKILL it, return the job id (same environment: journal, repository, lab)."""
    script = RESTORE_CHILD.format(
        tests=str(TESTS_DIR), module=module, factory=factory, root=str(root), point=point,
        directory=str(directory), marker=str(marker), min_on_disk=min_on_disk,
    )  # fmt: skip
    return kill_child_at_marker(script, marker, "start its restore", f"get {min_on_disk} bytes on disk into its restore")
