"""A reader that closes the pipe early (`hvtui check | head -1`) does not change the exit code.

Real processes and real pipes: the parent closes its end of stdout before the child writes a
byte (the reader is gone at once), or after one line (`head -1`); the exit code must be the
one the same command gives unpiped, and nothing but the command's own messages on stderr.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

COMMANDS = (("check",), ("inventory", "--json"), ("inventory",), ("points",))


def hvtui(lab: Path, *args: str, stdout: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "hvtui", "--lab-dir", str(lab), *args]
    return subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    return proc.wait(120), err


def test_a_closed_stdout_keeps_the_exit_code_of_every_command(fresh_demo_lab: Path) -> None:
    for args in COMMANDS:
        unpiped, unpiped_err = finish(hvtui(fresh_demo_lab, *args, stdout=subprocess.DEVNULL))
        assert "Traceback" not in unpiped_err

        gone = hvtui(fresh_demo_lab, *args, stdout=subprocess.PIPE)
        assert gone.stdout is not None
        gone.stdout.close()  # the reader left before the first byte: every write meets EPIPE
        code, err = finish(gone)
        assert code == unpiped, (args, err)
        assert "Broken pipe" not in err and "Exception ignored" not in err and "Traceback" not in err

        head = hvtui(fresh_demo_lab, *args, stdout=subprocess.PIPE)
        assert head.stdout is not None
        head.stdout.readline()  # `| head -1`
        head.stdout.close()
        code, err = finish(head)
        assert code == unpiped, (args, err)
        assert "Exception ignored" not in err and "Traceback" not in err
    # check reports the demo's critical findings: 2, not 3 (UNKNOWN) or 1.
    assert finish(hvtui(fresh_demo_lab, "check", stdout=subprocess.DEVNULL))[0] == 2
