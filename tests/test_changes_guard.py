"""One step at a time on a change window, across real processes: while one `hvtui change`
process rolls a window back, a second one discarding it is refused (exit 4) with a message
naming the step, user and process that hold it, nothing changed and the refusal audited; a
holder killed with SIGKILL leaves no stale lock behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from changes_support import build_estate, checkpoint_names, config_text

from hvtui.audit import AuditLog, local_user
from hvtui.changes.guard import WindowBusyError, window_step
from hvtui.cli import main
from hvtui.paths import Paths

NAME = "pre-patch-KB5031364"

# The real CLI, paused inside its step (the window held) at its first VM until told to go on.
PAUSED_CLI = """
import sys
import hvtui.changes.service as service
report = service._report
def paused(progress, phase, *rest):
    if phase == sys.argv[1] and not paused.done:
        paused.done = True
        print("holding", flush=True)
        sys.stdin.readline()
    report(progress, phase, *rest)
paused.done = False
service._report = paused
from hvtui.cli import main
sys.exit(main(sys.argv[2:]))
"""


def hvtui(config: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hvtui", "--config", str(config), "change", *argv],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def start_paused(config: Path, step: str, *argv: str) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", PAUSED_CLI, step, "--config", str(config), "change", step, *argv],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None
    for line in holder.stdout:  # the plan comes first
        if line == "holding\n":
            return holder
    holder.wait()
    raise AssertionError(f"the {step} process ended without holding the window: {holder.stderr.read() if holder.stderr else ''}")


def test_a_second_process_is_refused_while_one_holds_the_window(tmp_path: Path, paths: Paths) -> None:
    vms = build_estate(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(config_text(tmp_path))
    assert main(["--config", str(config), "change", "open", NAME, "--vm", "web1", "--vm", "app1"]) == 0

    holder = start_paused(config, "rollback", NAME, "--yes")
    try:
        refused = hvtui(config, "discard", NAME, "--yes")
        assert refused.returncode == 4, refused.stderr
        assert (
            f"change window {NAME!r} is busy: rollback by {local_user()} (hvtui process {holder.pid}) since "
            in refused.stderr
        )
        assert "discard refused, nothing changed" in refused.stderr
        assert checkpoint_names(tmp_path, *vms["web1"]) == [NAME] and checkpoint_names(tmp_path, *vms["app1"]) == [NAME]
        audit = [(e["action"], e["vm"], e["result"]) for e in AuditLog(paths.audit_log).read() if e["action"] == "change.discard"]
        assert sorted(audit) == [("change.discard", "app1", "refused"), ("change.discard", "web1", "refused")]

        # The holder goes on and finishes its rollback; the window is free again.
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=120) == 0, holder.stderr.read() if holder.stderr else ""
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    done = hvtui(config, "discard", NAME, "--vm", "web1", "--yes")
    assert done.returncode == 0, done.stderr
    assert checkpoint_names(tmp_path, *vms["web1"]) == []


def test_a_holder_killed_with_sigkill_leaves_no_stale_lock(tmp_path: Path, paths: Paths) -> None:
    vms = build_estate(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(config_text(tmp_path))
    assert main(["--config", str(config), "change", "open", NAME, "--vm", "web1"]) == 0

    holder = start_paused(config, "discard", NAME, "--yes")
    assert hvtui(config, "rollback", NAME, "--yes").returncode == 4
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert checkpoint_names(tmp_path, *vms["web1"]) == [NAME]  # killed before it did anything
    after = hvtui(config, "discard", NAME, "--yes")
    assert after.returncode == 0, after.stderr
    assert checkpoint_names(tmp_path, *vms["web1"]) == []


def test_two_steps_in_one_process_are_refused_too(tmp_path: Path) -> None:
    # The console runs steps in worker threads: a flock is per open file, so they exclude each other too.
    with window_step(tmp_path, "w: a/b", "promote"):
        try:
            with window_step(tmp_path, "w: a/b", "discard"):
                raise AssertionError("two steps held one window")
        except WindowBusyError as err:
            assert f"promote by {local_user()} (hvtui process {os.getpid()})" in str(err)
        with window_step(tmp_path, "another window", "discard"):
            pass  # other windows are free
    with window_step(tmp_path, "w: a/b", "discard"):
        pass  # released
