"""A process opening a change window, killed with SIGKILL in the middle (right after the host
took a VM's checkpoint, before the window recorded it): the window says what was done and
what was not, the job is listed as interrupted, and resuming it finishes the window without a
second checkpoint of the VM whose checkpoint the killed run had taken."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from changes_support import build_estate, checkpoint_names, config_text, lab
from kill_support import TESTS_DIR, kill_child_at_marker

from hvtui.audit import AuditLog
from hvtui.cli import main
from hvtui.paths import Paths

NAME = "pre-patch"

CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from hvtui.paths import Paths
    from hvtui.jobs.kinds.change import submit_change_open
    import changes_support as t

    core = t.make_core(Path({root!r}), Paths.default())
    real = core.actions.create
    taken = []

    # The real checkpoint; on the second VM this process stops (forever) once the host took
    # it and before the window records it, so the parent kills it right there.
    def create(*args, **kwargs):
        checkpoint = real(*args, **kwargs)
        taken.append(checkpoint)
        if len(taken) == 2:
            Path({marker!r}).write_text(checkpoint.id)
            while True:
                time.sleep(1)
        return checkpoint

    core.actions.create = create
    vms = [core.inventory.find_vm(name) for name in ("web1", "web2", "sql1")]
    job = submit_change_open(core.jobs, {name!r}, vms, "Standard", "CHG-1")
    print(job.id, flush=True)
    core.jobs.wait(job.id)
    """
)


def test_a_killed_open_is_reported_and_resumes_without_a_second_checkpoint(tmp_path: Path, paths: Paths, capsys) -> None:
    vms = build_estate(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(config_text(tmp_path))
    marker = tmp_path / "stopped"
    script = CHILD.format(tests=str(TESTS_DIR), root=str(tmp_path), marker=str(marker), name=NAME)
    job_id = kill_child_at_marker(script, marker, "submit its job", "reach the second checkpoint")
    orphan = marker.read_text()

    # What the window says after the kill: web1 done, web2 and sql1 not (web2's checkpoint exists).
    assert main(["--config", str(config), "change", "show", NAME, "--json"]) == 0
    window = json.loads(capsys.readouterr().out)["window"]
    assert {vm["vm_name"]: vm["state"] for vm in window["vms"]} == {"web1": "open", "web2": "pending", "sql1": "pending"}
    assert checkpoint_names(tmp_path, *vms["web2"]) == [NAME]
    assert checkpoint_names(tmp_path, *vms["sql1"]) == []

    assert main(["--config", str(config), "jobs"]) == 0
    assert f"{job_id}  INTERRUPTED  change-open" in capsys.readouterr().out

    assert main(["--config", str(config), "jobs", "resume", job_id]) == 0
    assert "2 of 2 VMs checkpointed" in capsys.readouterr().out
    assert main(["--config", str(config), "change", "show", NAME, "--json"]) == 0
    window = json.loads(capsys.readouterr().out)["window"]
    by_name = {vm["vm_name"]: vm for vm in window["vms"]}
    assert {name: vm["state"] for name, vm in by_name.items()} == {"web1": "open", "web2": "open", "sql1": "open"}
    assert by_name["web2"]["checkpoint_id"] == orphan  # kept, not taken twice
    for name in ("web1", "web2", "sql1"):
        assert checkpoint_names(tmp_path, *vms[name]) == [NAME]
    assert [cp.id for cp in lab(tmp_path, vms["web2"][0]).vm(vms["web2"][1]).checkpoints] == [orphan]
    adopted = [e for e in AuditLog(paths.audit_log).read() if e["action"] == "change.open"]
    assert [(e["vm"], e["args"]["checkpoint_id"], e["args"]["window"]) for e in adopted] == [("web2", orphan, NAME)]
