"""`hvtui jobs`: list, dismiss and resume journal jobs from a shell (real journal files)."""

from __future__ import annotations

import fcntl
import io
import json
import os
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from rich.cells import cell_len

from hvtui.cli import main
from hvtui.commands.progress import ProgressLine
from hvtui.events import Progress
from hvtui.journal import JobJournal
from hvtui.paths import Paths


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def journal(paths: Paths) -> JobJournal:
    journal = JobJournal(paths.job_journal)
    owner = {"pid": dead_pid(), "proc_start": "1"}
    for index in range(25):
        job_id = f"done{index:04d}"
        journal.append("submitted", job_id, at=f"2026-11-24T10:{index:02d}:00+00:00", kind="backup", host="hv1",
                       vm_id="vm-1", vm_name="web01", params={"mode": "incremental"}, **owner)
        journal.append("started", job_id, at=f"2026-11-24T10:{index:02d}:01+00:00", **owner)
        journal.append("finished", job_id, at=f"2026-11-24T10:{index:02d}:31+00:00", state="succeeded",
                       summary={"point_id": f"p{index}", "bytes_new": 1048576})
    journal.append("submitted", "fa11ed00", at="2026-11-24T11:00:00+00:00", kind="backup", host="hv2", vm_id="vm-9",
                   vm_name="db01", params={"mode": "full"}, **owner)
    journal.append("finished", "fa11ed00", at="2026-11-24T11:00:05+00:00", state="failed",
                   error="repository 'offsite' is full", error_kind="repository")
    # The oldest entry: a backup whose console was killed (kept in the listing however old).
    journal.append("submitted", "c0ffee00", at="2026-11-24T09:00:00+00:00", kind="restore", host="hv1", vm_id="vm-2",
                   vm_name="app01", params={"point_id": "p0", "target": "new", "new_name": "app01-restored"}, **owner)
    journal.append("started", "c0ffee00", at="2026-11-24T09:00:01+00:00", **owner)
    return journal


def test_jobs_lists_recent_and_interrupted(journal: JobJournal, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "STATE", "KIND", "MODE", "HOST", "VM", "SUBMITTED", "TOOK", "RESULT"]
    assert "c0ffee00  INTERRUPTED  restore" in out
    assert "fa11ed00  failed" in out and "repository 'offsite' is full" in out
    assert "done0024  succeeded" in out and "p24, 1.0 MiB new" in out
    assert "done0005" not in out and "done0006" in out  # only the newest 20, plus the interrupted one
    assert "1 job was interrupted: `hvtui jobs resume ID`" in out
    assert "(6 older finished jobs not shown; --all lists them)" in out


def test_jobs_json_all(journal: JobJournal, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs", "--json", "--all"]) == 0
    jobs = json.loads(capsys.readouterr().out)
    assert len(jobs) == 27
    by_id = {job["id"]: job for job in jobs}
    assert by_id["c0ffee00"]["state"] == "interrupted"
    assert by_id["c0ffee00"]["params"]["new_name"] == "app01-restored"
    assert by_id["fa11ed00"]["error_kind"] == "repository"
    assert by_id["done0003"]["summary"]["point_id"] == "p3"
    assert by_id["done0003"]["duration"] == 30.0


def test_jobs_dismiss_then_no_longer_offered(journal: JobJournal, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs", "dismiss", "c0ff"]) == 0
    assert "Dismissed interrupted job c0ffee00: restore of app01 on hv1." in capsys.readouterr().out
    assert main(["jobs"]) == 0
    out = capsys.readouterr().out
    assert "c0ffee00" not in out and "was interrupted" not in out  # old, and no longer awaiting a decision
    assert main(["jobs", "--all"]) == 0
    assert "c0ffee00  interrupted, dismissed" in capsys.readouterr().out
    assert main(["jobs", "dismiss", "c0ffee00"]) == 1
    assert "not an interrupted job awaiting a decision (it is dismissed)" in capsys.readouterr().err


def test_jobs_resume_refuses_unknown_or_finished_jobs(journal: JobJournal, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs", "resume", "nosuchjob"]) == 1
    assert "no job 'nosuchjob' in " in capsys.readouterr().err
    assert main(["jobs", "resume", "fa11ed00"]) == 1
    assert "job fa11ed00 is not interrupted (it is failed); nothing to resume" in capsys.readouterr().err
    assert main(["jobs", "dismiss", "done00"]) == 1
    assert "is ambiguous" in capsys.readouterr().err


def test_jobs_reports_damaged_lines_and_lists_the_rest(journal: JobJournal, capsys: pytest.CaptureFixture[str]) -> None:
    with open(journal.path, "ab") as out:
        out.write(b'{"v":1,"event":"sub')
    assert main(["jobs", "--json", "--all"]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)) == 27
    assert "truncated last line" in captured.err and "skipped" in captured.err


def test_empty_journal(capsys: pytest.CaptureFixture[str], paths: Paths) -> None:
    assert main(["jobs"]) == 0
    assert f"No jobs in the journal ({paths.job_journal})." in capsys.readouterr().out


def test_progress_printer_on_a_pipe_writes_one_line_per_phase(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    with open(path, "w") as stream:
        printer = ProgressLine(stream, title="backup of web01")
        printer(Progress("checkpoint", "taking a Recovery checkpoint"))
        for done in range(0, 100, 10):
            printer(Progress("backup", done=done, total=100))
        printer(Progress("merge", "removing the checkpoint"))
        printer.close()
    assert path.read_text().splitlines() == [
        "backup of web01: checkpoint: taking a Recovery checkpoint",
        "backup of web01: backup",
        "backup of web01: merge: removing the checkpoint",
    ]


def test_progress_line_shows_bytes_rate_eta_and_ratios() -> None:
    line = ProgressLine.render(
        Progress("backup", current="disk0.vhdx", done=512 * 2**20, total=2**30, rate=100 * 2**20, eta=5.0, dedup_ratio=1.5, compression_ratio=2.25)
    )
    assert line == (
        "backup  [##########..........]  50%  512.0 MiB/1.0 GiB  100.0 MiB/s  ETA 5 seconds  dedup 1.50x  lz4 2.25x  disk0.vhdx"
    )


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_on_a_terminal_redraws_in_place_and_ends_its_line() -> None:
    terminal = Terminal()
    now = [100.0]
    line = ProgressLine(terminal, monotonic=lambda: now[0])
    line(Progress("backup", done=0, total=100))
    for done in range(1, 100):  # a burst within one redraw interval: not a redraw each
        line(Progress("backup", done=done, total=100))
    now[0] += 0.2  # the interval has passed: the next event is drawn
    line(Progress("backup", done=100, total=100))
    line(Progress("verify", "reading back"))  # a new phase is always drawn
    line.close()
    out = terminal.getvalue()
    assert out.count("\r\x1b[K") == 3 and "100%" in out and out.endswith("verify  reading back\n")
    assert "\n" not in out[:-1]  # one line, redrawn


def test_progress_line_fits_the_terminal_it_is_drawn_on() -> None:
    # A real pseudo-terminal 50 columns wide, while stdout may be a file (``--json > out``).
    controller, terminal_fd = os.openpty()
    fcntl.ioctl(terminal_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 50, 0, 0))
    with os.fdopen(terminal_fd, "w") as terminal:
        line = ProgressLine(terminal)
        line(Progress("backup", current="a-very-long-disk-file-name-" + "x" * 80 + ".vhdx", done=1, total=2))
        line.close()
    drawn = os.read(controller, 4096).decode().replace("\r\n", "\n")
    os.close(controller)
    text = drawn.removeprefix("\r\x1b[K").rstrip("\n")
    assert drawn.startswith("\r\x1b[K") and text.startswith("backup  [") and len(text) == 49  # never wraps


@pytest.mark.parametrize("columns", [30, 80])
def test_progress_line_counts_cells_and_fits_a_narrow_terminal(columns: int) -> None:
    controller, terminal_fd = os.openpty()
    fcntl.ioctl(terminal_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    with os.fdopen(terminal_fd, "w") as terminal:
        line = ProgressLine(terminal)
        line(Progress("backup", current="虚拟机磁盘" * 10 + ".vhdx", done=1, total=2))  # two cells a character
        line.close()
    drawn = os.read(controller, 4096).decode().replace("\r\n", "\n")
    os.close(controller)
    text = drawn.removeprefix("\r\x1b[K").rstrip("\n")
    assert text.startswith("backup") and cell_len(text) <= columns - 1  # never wraps
    assert columns < 40 or "虚拟机" in text  # the name is cut, not dropped


def test_a_disabled_progress_line_draws_nothing() -> None:
    terminal = Terminal()
    line = ProgressLine(terminal, enabled=False)
    line(Progress("backup", done=1, total=2))
    line.close()
    assert terminal.getvalue() == ""
