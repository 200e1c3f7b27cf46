"""Cold start: how long a new process takes before it answers, as a user meets it.

1. ``fpgacsp solve FILE`` on a one-puzzle file (``--target local``): a new process from exec to exit, the numba
   kernel loaded from its disk cache (what every run after ``make venv`` does). Target: under 1 s.
2. ``fpgacspd`` from exec to its ``ready`` log line (listeners bound, device attached, self-test passed).
   Target: under 2 s.
3. With ``--compile``: the kernel compiled from nothing (``python -m fpgacspd.engine`` with an empty
   ``NUMBA_CACHE_DIR``), what ``make venv`` does once, and then ``fpgacsp solve`` from that fresh cache.

Each is run ``--runs`` times (default 5) one after another; the table gives the median and (min-max). Where the
time of a run goes is printed below it (imports, kernel load), from ``python -X importtime`` and the CLI's own
warm-up line. Run ``python bench/cold_start.py [--compile]`` from the repository root; the report is printed and
written to ``--out`` (default ``bench/results/cold_start.md``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable for `bench`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import REPO, git_commit, machine, versions

PUZZLE = REPO / "data" / "sudoku" / "magictour_top1465.csv"
READY_TIMEOUT_S = 120.0


def one_puzzle_file(folder: Path) -> Path:
    lines = [ln for ln in PUZZLE.read_text().splitlines() if ln and not ln.startswith("#")]
    path = folder / "one.csv"
    path.write_text(lines[0] + "\n")
    return path


def fpgacsp_bin() -> str:
    return str(Path(sys.executable).with_name("fpgacsp"))


def time_solve(puzzle: Path, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Seconds from exec to exit of ``fpgacsp solve``, and the kernel load (its warm-up line) inside them."""
    start = time.perf_counter()
    done = subprocess.run([fpgacsp_bin(), "solve", str(puzzle)], capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"fpgacsp solve failed ({done.returncode}):\n{done.stderr}")
    warm = re.search(r"engine warm-up ([0-9.]+) s", done.stderr)
    return seconds, float(warm.group(1)) if warm else float("nan")


def time_daemon_ready() -> float:
    """Seconds from exec to the daemon's ``ready`` line; the daemon is then stopped."""
    cmd = [sys.executable, "-m", "fpgacspd", "--listen", "127.0.0.1:0", "--log-format", "json"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    try:
        for line in proc.stderr:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "ready":
                return time.perf_counter() - start
            if time.perf_counter() - start > READY_TIMEOUT_S:
                break
        raise RuntimeError("fpgacspd did not log ready")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def import_seconds(module: str) -> float:
    """What importing ``module`` costs a fresh interpreter (numba's own import included)."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout)


def compile_from_nothing(puzzle: Path) -> tuple[float, float, str]:
    """The install step on an empty cache, then one solve from that cache: seconds, seconds, the step's message."""
    with tempfile.TemporaryDirectory(prefix="fpgacsp-nbcache-") as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "fpgacspd.engine"], capture_output=True, text=True, env=env,
                              check=True)  # fmt: skip
        compiled = time.perf_counter() - start
        solve, _ = time_solve(puzzle, env)
    return compiled, solve, done.stderr.strip().splitlines()[0]


def spread(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=5, help="runs of each measurement")
    p.add_argument("--compile", action="store_true", help="also compile the kernel from an empty cache (slow)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "cold_start.md", help="Markdown report")
    args = p.parse_args(argv)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="fpgacsp-cold-") as folder:
        puzzle = one_puzzle_file(Path(folder))
        time_solve(puzzle)  # the page cache warm, as on any second run of a command
        solves = [time_solve(puzzle) for _ in range(args.runs)]
        ready = [time_daemon_ready() for _ in range(args.runs)]
        imports = {m: import_seconds(m) for m in ("numpy", "grpc", "numba", "fpgacsp", "fpgacspd.engine")}
        compiled = compile_from_nothing(puzzle) if args.compile else None
    walls, kernel = [s for s, _ in solves], [k for _, k in solves]
    out = [
        "# Cold start",
        "",
        f"- Date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {machine()}; load average at start {' / '.join(f'{x:.2f}' for x in load)}",
        f"- Software: {versions(('numpy', 'numba', 'grpcio'))}",
        f"- Commit: {git_commit()}",
        f"- Command: `python bench/cold_start.py{' --compile' if args.compile else ''}`",
        f"- {args.runs} runs each, one after another; cells: median (min-max) seconds",
        "",
        "| what | seconds | target |",
        "|---|---:|---|",
        f"| `fpgacsp solve` of a one-puzzle file, exec to exit (numba cache warm) | {spread(walls)} | < 1 s: "
        f"{'met' if statistics.median(walls) < 1 else 'not met'} |",
        f"| of which loading the kernel from numba's cache (the CLI's warm-up) | {spread(kernel)} | |",
        f"| `fpgacspd` exec to `ready` (self-test passed) | {spread(ready)} | < 2 s: "
        f"{'met' if statistics.median(ready) < 2 else 'not met'} |",
    ]
    if compiled is not None:
        out += [
            f"| `python -m fpgacspd.engine` on an empty cache (the install step, once) | {compiled[0]:.1f} | "
            "announced, not silent |",
            f"| then `fpgacsp solve` from that cache | {compiled[1]:.2f} | |",
        ]
    out += ["", "Imports in a fresh interpreter (seconds; nested, so they overlap):", ""]
    out += [f"- `{m}`: {s:.2f}" for m, s in imports.items()]
    if compiled is not None:
        out += ["", f"The install step's message: `{compiled[2]}`"]
    text = "\n".join(out) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
