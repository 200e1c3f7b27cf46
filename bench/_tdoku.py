"""The fast core per core against tdoku, side by side: ``bench/engine.py --tdoku PATH``.

tdoku (https://github.com/t-dillon/tdoku, BSD-2) is the fastest public Sudoku solver we know of. It is never
vendored: the benchmark builds it from the checkout it is given (``PATH/src/solver_dpll_triad_simd.cc`` and
``util.cc``, with ``bench/tdoku_driver.cc``, our timing loop) into ``build/tdoku/`` with the machine's C++
compiler (``$CXX``, default g++) at ``-O3 -march=native``, as tdoku's own build does.

Per Sudoku file, in each of ``rounds`` interleaved rounds: the fast core with one thread on batches of 1,024
(whole passes over the file, this process pinned to one core), then the tdoku driver pinned to the same core
(``taskset``) for the same time. Both solve to the first solution. The ratio is taken round by round and given as
median (min-max). tdoku's answers (its first pass) are checked against the file's recorded solutions. Beside
them: the fast core with one thread per core, unpinned, against one thread on the same batches (how the core
scales over cores).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fpgacsp.problems import load_puzzle_file, parse_sudoku, sudoku_domains, sudoku_program
from fpgacspd.engine import FastEngine

REPO = Path(__file__).resolve().parents[1]
DRIVER = REPO / "bench" / "tdoku_driver.cc"
BUILD = REPO / "build" / "tdoku"
SUDOKU_FILES = ("magictour_top1465", "forum_hardest_1106", "kaggle_10k")
BATCH = 1024
TARGETS = {"magictour_top1465": 0.2, "forum_hardest_1106": 0.2, "kaggle_10k": 0.3}
SCALING_TARGET = 1.8


class TdokuError(RuntimeError):
    pass


def build(checkout: Path, folder: Path | None = None) -> Path:
    """The driver linked with tdoku's solver from ``checkout``, in ``folder`` (default: one per checkout under
    ``build/tdoku``); rebuilt when a source is newer."""
    sources = [checkout / "src" / "solver_dpll_triad_simd.cc", checkout / "src" / "util.cc", DRIVER]
    missing = [str(s) for s in sources if not s.is_file()]
    if missing or not (checkout / "include" / "tdoku.h").is_file():
        raise TdokuError(
            f"--tdoku {checkout}: not a tdoku checkout (missing {', '.join(missing) or 'include/tdoku.h'})"
        )
    folder = folder or BUILD / hashlib.sha256(str(checkout.resolve()).encode()).hexdigest()[:12]
    binary = folder / "tdoku_driver"
    if binary.is_file() and all(binary.stat().st_mtime >= s.stat().st_mtime for s in sources):
        return binary
    folder.mkdir(parents=True, exist_ok=True)
    cxx = os.environ.get("CXX") or shutil.which("g++") or "c++"
    cmd = [cxx, "-O3", "-march=native", "-std=c++17", f"-I{checkout / 'include'}", f"-I{checkout / 'src'}",
           *map(str, sources), "-o", str(binary)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise TdokuError(f"building tdoku failed ({' '.join(cmd)}):\n{done.stderr[-2000:]}")
    return binary


@dataclass
class Rates:
    fast: list[float] = field(default_factory=list)  # fast core, 1 thread, pinned
    tdoku: list[float] = field(default_factory=list)  # tdoku, same core
    all_cores: list[float] = field(default_factory=list)  # fast core, one thread per core
    nodes: float = 0.0
    guesses: float = 0.0
    wrong: int = 0

    def ratios(self) -> list[float]:
        return [f / t for f, t in zip(self.fast, self.tdoku, strict=True)]

    def scaling(self) -> list[float]:
        return [a / f for a, f in zip(self.all_cores, self.fast, strict=True)]


def _fast_rate(engine: FastEngine, program: object, domains: np.ndarray, seconds: float) -> tuple[float, float]:
    start, solved, nodes = time.perf_counter(), 0, 0.0
    while True:
        for s in range(0, len(domains), BATCH):
            res = engine.solve(program, domains[s : s + BATCH])  # type: ignore[arg-type]
            solved += len(res.status)
            nodes += float(res.nodes.sum())
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return solved / elapsed, nodes / solved


def tdoku_rate(binary: Path, puzzles: str, seconds: float, core: int) -> tuple[float, float, list[str]]:
    cmd = ["taskset", "-c", str(core), str(binary), f"{seconds:g}", "--solutions"]
    done = subprocess.run(cmd, input=puzzles, capture_output=True, text=True, check=True)
    head, *solutions = done.stdout.splitlines()
    count, elapsed, guesses, _unsolved = head.split()
    return int(count) / float(elapsed), int(guesses) / int(count), solutions


def measure(checkout: Path, data: Path, seconds: float, rounds: int, limit: int | None) -> dict[str, Rates]:
    binary = build(checkout)
    program = sudoku_program()
    one, every = FastEngine(threads=1), FastEngine()
    core = sorted(os.sched_getaffinity(0))[-1]
    out: dict[str, Rates] = {}
    try:
        compiled = one.compile(program)
        for name in SUDOKU_FILES:
            records = load_puzzle_file(data / "sudoku" / f"{name}.csv", limit)
            domains = sudoku_domains(np.stack([parse_sudoku(r.puzzle) for r in records]))
            text = "".join(r.puzzle.replace("0", ".") + "\n" for r in records)
            rates = out[name] = Rates()
            one.solve(compiled, domains[:16])
            for _ in range(rounds):
                allowed = os.sched_getaffinity(0)
                os.sched_setaffinity(0, {core})
                try:
                    rate, rates.nodes = _fast_rate(one, compiled, domains, seconds)
                finally:
                    os.sched_setaffinity(0, allowed)
                rates.fast.append(rate)
                rate, rates.guesses, solutions = tdoku_rate(binary, text, seconds, core)
                rates.tdoku.append(rate)
                rates.all_cores.append(_fast_rate(every, compiled, domains, seconds)[0])
            rates.wrong = sum(
                1 for r, s in zip(records, solutions, strict=True) if r.solution and r.nsol == 1 and s != r.solution
            )
    finally:
        one.close()
        every.close()
    return out


def _spread(values: Sequence[float], fmt: str) -> str:
    return f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def render(results: dict[str, Rates], checkout: Path, seconds: float, rounds: int) -> list[str]:
    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip() or "not a git checkout"  # fmt: skip
    out = [
        "## Per core against tdoku (`--tdoku`)",
        "",
        f"tdoku from `{checkout}` ({commit}), built with `-O3 -march=native`; {rounds} interleaved rounds of "
        f"{seconds:g} s each, the fast core (1 thread, batches of {BATCH}) and tdoku pinned to the same core; cells "
        "give the median and (min-max) over the rounds, ratios taken round by round.",
        "",
        "| set | fast core, 1 core /s | tdoku, 1 core /s | fast ÷ tdoku | target | nodes / puzzle (fast) | "
        "guesses / puzzle (tdoku) | all cores ÷ 1 core | tdoku answers wrong |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        ratio = statistics.median(r.ratios())
        target = TARGETS[name]
        rates = f"{_spread(r.fast, ',.0f')} | {_spread(r.tdoku, ',.0f')} | {_spread(r.ratios(), '.3f')}"
        verdict = "met" if ratio >= target else "not met"
        out.append(
            f"| sudoku/{name} | {rates} | >= {target:g}: {verdict} | {r.nodes:.1f} | {r.guesses:.1f} | "
            f"{_spread(r.scaling(), '.2f')} | {r.wrong} |"
        )
    scaling = min(statistics.median(r.scaling()) for r in results.values())
    out += [
        "",
        f"All cores against one on large batches: at least {SCALING_TARGET:g}x, worst set "
        f"{scaling:.2f}x: {'met' if scaling >= SCALING_TARGET else 'not met'}.",
    ]
    return out
