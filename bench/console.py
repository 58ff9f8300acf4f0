"""Benchmark: the console's speed and memory on the demo lab and on 5,000 VMs.

Usage::

    python bench/console.py               # 5 runs of each figure
    python bench/console.py --runs 3      # quicker
    python bench/console.py --keep DIR    # keep (and reuse) the labs under DIR

Figures (medians; the target is printed next to each, nothing is asserted):

* first paint, demo lab: from spawning ``python -m hvtui`` in a pseudo-terminal (120x40)
  to the first byte of output that shows a VM row: interpreter start, imports, config,
  app, first inventory refresh and the frame that paints it.  Target < 0.5 s.  The first
  run is a warm-up (page cache, bytecode cache) and is not counted.
* with the lab's ``scale`` profile (5,000 VMs over 25 hosts), in one process running the
  app headless at 160x50:

  - full refresh: from asking for a refresh to the repainted table (every host read,
    the policy evaluated, rows prepared, changed cells updated; hosts' answers are shown
    as they arrive, this is until the last).  Target < 1 s.
  - filter keystroke: from a key event entering the app (as the terminal driver sends
    it) to the repainted table, over a typed-and-erased filter.  Target < 100 ms.  The worst case (back to all
    5,000 rows) is printed too, and the same re-fill through Textual's stock DataTable
    (``clear`` + ``add_row``) for comparison.
  - peak RSS of that process (``ru_maxrss``).  Target < 200 MB.

Creating the labs is not timed (``hvtui lab init`` does it once in real use).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import resource
import select
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

DEMO_VM_MARKER = b"app01"  # a VM row of the demo lab: its name in the painted output


# -- labs -----------------------------------------------------------------------------------------
def make_lab(root: Path, profile: str) -> tuple[Path, float]:
    from hvtui.clock import SystemClock
    from hvtui.hosts.lab.estate import init_lab, read_lab_info

    lab = root / f"lab-{profile}"
    info = read_lab_info(lab) if lab.exists() else None
    if info is not None and info.get("profile") == profile:
        return lab, 0.0
    started = time.perf_counter()
    init_lab(lab, profile, SystemClock(), force=True)
    return lab, time.perf_counter() - started


def child_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"), ("XDG_STATE_HOME", "state")):
        (root / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(root / sub)
    env.pop("HVTUI_CONFIG", None)
    # A real install has compiled bytecode; a sandbox that disables writing it would make
    # every start compile hvtui from source (~0.15 s).  The warm-up run writes the caches.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(TERM="xterm-256color", COLORTERM="truecolor", PYTHONPATH=str(REPO_ROOT))
    return env


# -- first paint in a real pseudo-terminal -----------------------------------------------------------
def first_paint(lab: Path, root: Path, columns: int = 120, rows: int = 40, timeout: float = 30.0) -> tuple[float, int]:
    """Seconds from spawn to the first painted VM row, and the child's peak RSS (KiB)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hvtui", "--lab-dir", str(lab)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=child_env(root),
        start_new_session=True,
        close_fds=True,
    )
    os.close(slave)
    seen = b""
    everything = b""
    painted: float | None = None
    deadline = started + timeout
    exited = None
    try:
        while time.perf_counter() < deadline and painted is None:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    chunk = b""
                seen += chunk
                everything = (everything + chunk)[-20000:]
                if DEMO_VM_MARKER in seen:
                    painted = time.perf_counter() - started
                    break
                seen = seen[-64:]  # a name split across two reads is still found
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                exited = usage
                break
        if exited is None:
            with contextlib.suppress(OSError):
                os.write(master, b"q")
            # Drain until it exits (it must not block on a full pty buffer).
            end = time.perf_counter() + 10
            while time.perf_counter() < end and exited is None:
                ready, _, _ = select.select([master], [], [], 0.05)
                if ready:
                    with contextlib.suppress(OSError):
                        os.read(master, 65536)
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    exited = usage
            if exited is None:
                proc.kill()
                _pid, _status, exited = os.wait4(proc.pid, 0)
        proc.returncode = 0  # reaped here: keep Popen from trying again
        if painted is None:
            print("    no VM row was painted; the console wrote:", everything[-1500:].decode("utf-8", "replace"))
            return float("nan"), exited.ru_maxrss
        return painted, exited.ru_maxrss
    finally:
        os.close(master)


# -- 5,000 VMs, in one process -------------------------------------------------------------------------
FILTER_KEYS = ["v", "m", "1", "2", "-", "0", "backspace", "backspace", "backspace", "backspace", "backspace", "backspace"]


async def keystroke(pilot, key: str) -> float:
    """One key through the driver's path, until every handler ran and the frame is painted.

    Not ``pilot.press``: it sleeps until the process looks idle (~100 ms a key on a busy
    machine), which would measure the sleep, not the console.
    """
    from textual import events

    app = pilot.app
    started = time.perf_counter()
    event = events.Key(key, key if len(key) == 1 else None)
    event.set_sender(app)
    app._driver.send_message(event)
    for _ in range(3):  # the key, then Input.Changed, then what the filter posts
        await pilot._wait_for_screen()
    app.screen._on_timer_update()  # the frame the next screen-update tick would paint
    return time.perf_counter() - started


async def scale_figures(lab: Path, runs: int) -> dict:
    root = Path(tempfile.mkdtemp(prefix="hvtui-bench-xdg-"))
    try:
        return await _scale_figures_in(lab, runs, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def _scale_figures_in(lab: Path, runs: int, root: Path) -> dict:
    from textual.widgets import DataTable

    from hvtui.clock import SystemClock
    from hvtui.config import Config
    from hvtui.core import Core
    from hvtui.paths import Paths
    from hvtui.tui.app import HvtuiApp
    from hvtui.tui.screens.vms import VmsScreen

    paths = Paths(root / "config", root / "data", root / "state")
    core = Core(Config.lab_default(), paths, clock=SystemClock(), lab_dir=lab)
    app = HvtuiApp(core, poll_automatically=False)
    out: dict = {}
    started = time.perf_counter()
    async with app.run_test(size=(160, 50)) as pilot:
        # Hosts' answers are shown as they arrive: wait for the whole first refresh.
        while app.snapshot is None or app.is_polling:
            await asyncio.sleep(0.005)
        await pilot.pause()
        out["first_paint_scale"] = time.perf_counter() - started
        screen = app.screen
        assert isinstance(screen, VmsScreen)
        out["vms"] = len(app.snapshot.rows)
        out["hosts"] = app.snapshot.hosts_total
        out["findings"] = len(app.snapshot.findings)

        refresh_times, inventory_times = [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            app.request_refresh()
            # To the complete refresh, not to a first partial one (answers arrive per host).
            while app.is_polling:
                await asyncio.sleep(0.002)
            await pilot.pause()
            refresh_times.append(time.perf_counter() - t0)
            inventory_times.append(app.snapshot.duration)
        out["refresh"] = refresh_times
        out["refresh_worker"] = inventory_times  # inventory + policy + rows, in the worker thread

        # Filter keystrokes: type "vm12-0" and erase it, timing each key to the repaint.
        keystrokes, counts = [], []
        for _ in range(runs):
            await pilot.press("slash")
            await pilot.pause()
            for key in FILTER_KEYS:
                keystrokes.append(await keystroke(pilot, key))
                counts.append(screen.table.row_count)
            await pilot.press("escape")
            await pilot.pause()
        out["keystroke"] = keystrokes
        out["keystroke_rows"] = counts
        # The worst key: from one row back to every row (the last backspace).
        worst = [t for t, n in zip(keystrokes, counts, strict=True) if n == out["vms"]]
        out["keystroke_to_all_rows"] = worst

        out["rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # before the comparison below
        # For comparison: the same re-fill of every row through the stock DataTable API.
        rows = [(row.key, row.texts) for row in app.snapshot.rows.values()]
        stock: DataTable = DataTable()
        await screen.mount(stock)
        for index, spec in enumerate(screen.table.specs):
            stock.add_column(spec.label, key=spec.id, width=app.snapshot.widths[spec.id] if index < 99 else None)
        stock_times = []
        for _ in range(max(1, runs // 2)):
            stock.clear()
            await pilot.pause()
            t0 = time.perf_counter()
            for key, texts in rows:
                stock.add_row(*texts, key=key)
            await pilot.pause()
            stock_times.append(time.perf_counter() - t0)
        out["stock_refill"] = stock_times
        await stock.remove()
    core.close()
    return out


# -- report ----------------------------------------------------------------------------------------------
def med(values: list[float]) -> float:
    clean = [v for v in values if v == v]  # drop NaN (a run that never painted)
    return statistics.median(clean) if clean else float("nan")


def line(label: str, value: str, target: str = "", verdict: bool | None = None) -> None:
    mark = "" if verdict is None else ("  ok" if verdict else "  MISSED")
    print(f"  {label:<46} {value:>14}   {target}{mark}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", type=Path, default=None, help="keep the labs here (and reuse them next time)")
    parser.add_argument("--scale-child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.scale_child is not None:
        print(json.dumps(asyncio.run(scale_figures(args.scale_child, args.runs))))
        return 0

    root = args.keep or Path(tempfile.mkdtemp(prefix="hvtui-bench-console-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        return run_benchmarks(args, root)
    finally:
        if args.keep is None:  # the labs are about 1 GB: never leave them behind
            shutil.rmtree(root, ignore_errors=True)


def run_benchmarks(args: argparse.Namespace, root: Path) -> int:
    print(f"hvtui console benchmark  (python {sys.version.split()[0]}, {os.cpu_count()} CPUs, runs={args.runs})")
    demo, demo_init = make_lab(root, "demo")
    scale, scale_init = make_lab(root, "scale")
    print(f"  labs under {root} (created in {demo_init:.1f} s and {scale_init:.1f} s; not part of the figures)")

    print("\nDemo lab (14 VMs, 3 hosts), `python -m hvtui` in a 120x40 pseudo-terminal")
    paints, rss = [], []
    for run in range(args.runs + 1):
        seconds, peak = first_paint(demo, root / f"xdg-{run}")
        if run:  # the first run warms the page cache and the bytecode cache
            paints.append(seconds)
            rss.append(peak)
    line("start -> first painted inventory (median)", f"{med(paints):.3f} s", "target < 0.5 s", med(paints) < 0.5)
    line("  runs", " ".join(f"{p:.2f}" for p in paints))
    line("peak RSS", f"{med(rss) / 1024:.0f} MB")

    print("\nScale lab (lab profile `scale`), app headless at 160x50, one process")
    result = subprocess.run(
        [sys.executable, __file__, "--scale-child", str(scale), "--runs", str(args.runs)],
        capture_output=True,
        text=True,
        env=child_env(root / "xdg-scale"),
        check=False,
    )
    if result.returncode != 0:
        print(result.stdout[-2000:], result.stderr[-4000:])
        return 1
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"  {figures['vms']} VMs on {figures['hosts']} hosts, {figures['findings']} findings")
    line("first complete inventory painted (after app start)", f"{figures['first_paint_scale']:.3f} s")
    refresh = med(figures["refresh"])
    line("full refresh -> repainted (median)", f"{refresh:.3f} s", "target < 1 s", refresh < 1.0)
    line("  of which in the worker (read, policy, rows)", f"{med(figures['refresh_worker']):.3f} s")
    keystroke = med(figures["keystroke"])
    line("filter keystroke -> repainted (median)", f"{keystroke * 1000:.1f} ms", "target < 100 ms", keystroke < 0.1)
    line("  slowest keystroke", f"{max(figures['keystroke']) * 1000:.1f} ms")
    to_all = med(figures["keystroke_to_all_rows"])
    line("  keystroke back to all rows (median)", f"{to_all * 1000:.1f} ms", "target < 100 ms", to_all < 0.1)
    stock = med(figures["stock_refill"])
    line("  same re-fill via stock DataTable add_row", f"{stock * 1000:.0f} ms", f"{stock / to_all:.0f}x slower" if to_all else "")
    rss_mb = figures["rss_kib"] / 1024
    line("peak RSS", f"{rss_mb:.0f} MB", "target < 200 MB", rss_mb < 200)
    rows = sorted(set(figures["keystroke_rows"]))
    print(f"  (filter steps showed {rows[0]}..{rows[-1]} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
