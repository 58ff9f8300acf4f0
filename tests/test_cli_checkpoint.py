"""`hvtui checkpoint ...`: confirmations (default No, --yes, no terminal), refusals
(read-only given before or after the subcommand, per host, merge headroom), checkpoint
names resolved or rejected as ambiguous, and audit entries for each outcome."""

from __future__ import annotations

import dataclasses
import io

import pytest
from sprawl_support import DAY, HOUR, GiB, MiB, StubHost, linear_vm, make_core, make_facts

from hvtui.cli import build_parser, main
from hvtui.core import Core, Options
from hvtui.errors import HvtuiError, ReadOnlyError, RefusedError
from hvtui.paths import Paths


class Terminal(io.StringIO):
    """Standard input that claims to be a terminal, with the user's answer queued."""

    def isatty(self) -> bool:
        return True


def run(core: Core, *argv: str) -> int:
    args = build_parser().parse_args(["checkpoint", *argv])
    return args.handler(args, core)


@pytest.fixture
def estate(paths: Paths):
    vm = linear_vm("sql01", ages=(10 * DAY, 5 * DAY, HOUR), diff_sizes=(300 * MiB, 200 * MiB, 100 * MiB))
    host = StubHost("hv01", [vm])
    other = StubHost("hv02", [linear_vm("web01", host="hv02", ages=(DAY,))], read_only=True)
    return make_core([host, other], paths), host, vm


def results(core: Core) -> list[tuple[str, str]]:
    return [(e["action"], e["result"]) for e in core.audit.read()]


def test_remove_prints_the_plan_and_defaults_to_no(estate, monkeypatch, capsys) -> None:
    core, host, vm = estate
    monkeypatch.setattr("sys.stdin", Terminal("\n"))  # the user just presses enter
    assert run(core, "remove", "--host", "hv01", "--vm", "sql01", "--checkpoint", "sql01 cp1") == 1
    captured = capsys.readouterr()
    assert "Delete checkpoint 'sql01 cp1' of VM 'sql01' on host 'hv01'." in captured.out
    assert "300.0 MiB" in captured.out and "Not confirmed: nothing changed." in captured.out
    assert "[y/N]" in captured.err
    assert host.calls == []
    assert results(core) == [("checkpoint.remove", "declined")]


@pytest.mark.parametrize("answer", ["y\n", "YES\n"])
def test_remove_goes_ahead_when_the_user_says_yes(estate, monkeypatch, capsys, answer: str) -> None:
    core, host, vm = estate
    monkeypatch.setattr("sys.stdin", Terminal(answer))
    assert run(core, "remove", "--vm", "sql01", "--checkpoint", "sql01 cp3") == 0
    assert host.calls == [("remove", vm.id, vm.checkpoints[2].id, False)]
    assert "Deleted checkpoint 'sql01 cp3'" in capsys.readouterr().out
    assert results(core) == [("checkpoint.remove", "ok")]


def test_without_a_terminal_and_without_yes_it_is_refused(estate) -> None:
    core, host, vm = estate
    with pytest.raises(RefusedError, match="--yes"):
        run(core, "remove", "--vm", "sql01", "--checkpoint", "sql01 cp1")
    with pytest.raises(RefusedError, match="--yes"):
        run(core, "apply", "--vm", "sql01", "--checkpoint", "sql01 cp1")
    assert host.calls == []
    assert results(core) == [("checkpoint.remove", "refused"), ("checkpoint.apply", "refused")]


def test_yes_skips_the_question(estate, capsys) -> None:
    core, host, vm = estate
    assert run(core, "remove", "--vm", "sql01", "--checkpoint", vm.checkpoints[1].id, "--subtree", "--yes") == 0
    assert host.calls == [("remove", vm.id, vm.checkpoints[1].id, True)]
    assert "Deleted 2 checkpoints" in capsys.readouterr().out


def test_apply_with_checkpoint_first(estate, capsys) -> None:
    core, host, vm = estate
    assert run(core, "apply", "--vm", "sql01", "--checkpoint", "sql01 cp1", "--checkpoint-first", "-y") == 0
    out = capsys.readouterr().out
    assert "keeps the VM's current state" in out and "Saved the previous state as checkpoint" in out
    assert [c[0] for c in host.calls] == ["create", "apply"]
    assert results(core) == [("checkpoint.create", "ok"), ("checkpoint.apply", "ok")]


def test_apply_plan_warns_the_state_is_lost(estate, capsys) -> None:
    core, _host, _vm = estate
    run(core, "apply", "--vm", "sql01", "--checkpoint", "sql01 cp2", "--yes")
    assert "current state is LOST" in capsys.readouterr().out


def test_create_and_rename(estate, capsys) -> None:
    core, host, vm = estate
    assert run(core, "create", "--vm", "sql01", "--name", "before patch", "--type", "Production") == 0
    assert host.calls[-1] == ("create", vm.id, "before patch", "Production")
    assert run(core, "create", "--vm", "sql01") == 0
    assert host.calls[-1] == ("create", vm.id, None, "Standard")
    assert run(core, "rename", "--vm", "sql01", "--checkpoint", "before patch", "--to", "after patch") == 0
    assert host.calls[-1][0] == "rename" and host.calls[-1][3] == "after patch"
    assert "to 'after patch'" in capsys.readouterr().out


def test_ambiguous_checkpoint_names_list_the_ids(estate) -> None:
    core, host, vm = estate
    twin = dataclasses.replace(vm.checkpoints[1], name="sql01 cp1")
    host.vms[vm.id] = dataclasses.replace(vm, checkpoints=(vm.checkpoints[0], twin, vm.checkpoints[2]))
    with pytest.raises(HvtuiError) as err:
        run(core, "remove", "--vm", "sql01", "--checkpoint", "sql01 cp1", "--yes")
    assert vm.checkpoints[0].id in str(err.value) and twin.id in str(err.value)
    assert host.calls == []


def test_merge_headroom_refuses_without_asking_and_force_overrides(paths: Paths, capsys) -> None:
    vm = linear_vm("fs02", ages=(10 * DAY,), diff_sizes=(2 * GiB,))
    size = 100 * GiB
    host = StubHost("hv03", [vm], facts=make_facts("hv03", free=int(size * 0.05) + GiB, size=size))
    core = make_core([host], paths)
    with pytest.raises(RefusedError, match="merge-headroom"):
        run(core, "remove", "--vm", "fs02", "--checkpoint", "fs02 cp1", "--yes")
    assert "NOT ENOUGH ROOM" in capsys.readouterr().out
    assert host.calls == []
    assert run(core, "remove", "--vm", "fs02", "--checkpoint", "fs02 cp1", "--yes", "--force") == 0
    assert host.calls == [("remove", vm.id, vm.checkpoints[0].id, False)]
    assert results(core) == [("checkpoint.remove", "refused"), ("checkpoint.remove", "ok")]


@pytest.mark.parametrize(
    "argv",
    [
        ("create", "--vm", "web01"),
        ("apply", "--vm", "web01", "--checkpoint", "web01 cp1", "--yes"),
        ("remove", "--vm", "web01", "--checkpoint", "web01 cp1", "--yes"),
        ("remove", "--host", "hv02", "--vm", "web01", "--checkpoint", "web01 cp1", "--yes"),
        ("rename", "--vm", "web01", "--checkpoint", "web01 cp1", "--to", "x"),
    ],
)
def test_read_only_host_refuses_every_change(estate, argv) -> None:
    core, _host, _vm = estate
    read_only_host = core.host("hv02")
    with pytest.raises(ReadOnlyError, match="hv02"):
        run(core, *argv)
    assert read_only_host.calls == []
    assert [r for _a, r in results(core)] == ["refused"]


# -- through `hvtui` itself, on the demo lab: what a script sees ----------------------------------
def hvtui(capsys, lab, *argv: str) -> tuple[int, str]:
    code = main(["--lab-dir", str(lab), "checkpoint", *argv])
    return code, capsys.readouterr().err


@pytest.mark.usefixtures("restore_logging")  # main() sets up logging
# main() runs the lab on the real clock, which lets guests write: so a lab of its own, not the shared one.
def test_bad_input_exits_2_and_the_audit_names_the_vm(fresh_demo_lab, paths: Paths, capsys) -> None:
    # Usage (2), not failure (1): the request was wrong, nothing was tried on a host.
    code, err = hvtui(capsys, fresh_demo_lab, "create", "--vm", "nosuch")
    assert code == 2 and err.startswith("hvtui: no VM 'nosuch' on any host")
    code, err = hvtui(capsys, fresh_demo_lab, "remove", "--vm", "app01", "--checkpoint", "no such cp", "--yes")
    assert code == 2 and "VM 'app01' has no checkpoint 'no such cp'" in err
    for name in ("", "x" * 101, "tab\there"):
        code, err = hvtui(capsys, fresh_demo_lab, "create", "--host", "lab-hv02", "--vm", "exch01", "--name", name)
        assert code == 2 and err.startswith("hvtui: a checkpoint name"), (name, err)
    # A failed attempt is logged under the VM's name, like a successful one, so a grep finds it.
    failed = [e for e in Core.from_options(Options(lab_dir=fresh_demo_lab), paths).audit.read() if e["result"] != "ok"]
    assert len(failed) == 3
    assert {e["vm"] for e in failed} == {"exch01"}
