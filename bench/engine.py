"""Engine benchmark: puzzles/s of the reference, the fast core and two outside solvers, side by side.

For each Sudoku file in ``data/sudoku/``, a set of DIMACS colouring graphs (k = chromatic
number) and the QCP grids, one run measures:

- the reference model (plain Python, the definition; a small sample by time budget),
- the fast core at batch 1 (one instance per ``FastEngine.solve`` call: the per-request path),
- the fast core on whole files in batches of up to 4096 (default threads: one per core),
- python-sat Glucose 4, incremental (CNF built once per program, givens as assumptions),
- OR-tools CP-SAT with one worker (a per-core figure),

plus mean nodes and synchronous sweeps per instance from the fast core (the cycle model). Every answer is
checked: fast core rows against the reference and the batch-1 path bit for bit, every solution for
validity, unique solutions against the file, SAT/UNSAT agreement between solvers. A failed check is
printed, written to the report and makes the exit status 1.

With ``--tdoku CHECKOUT`` (a clone of github.com/t-dillon/tdoku; never vendored) it also builds tdoku and
compares the fast core with it per core, side by side, on the three Sudoku files (``bench/_tdoku.py``).

Run ``python bench/engine.py`` from the repository root (``make bench``); ``--quick`` is the smoke-test
size. The Markdown report goes to ``--out`` with the machine, versions, commit and command.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository root importable for `bench`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fpgacsp.problems import (
    coloring_program,
    load_dimacs,
    load_puzzle_file,
    load_qcp,
    parse_sudoku,
    qcp_domains,
    qcp_program,
    sudoku_domains,
    sudoku_program,
)
from fpgacsp_proto.bitset import singleton_values
from fpgacsp_proto.isa import Program, Status
from fpgacspd.engine import BatchResult, FastEngine, SolveOptions, compile_program, reference_solve_batch

from bench import _tdoku
from bench._report import REPO, git_commit, machine, versions
from bench.baselines import Answer, CpSatBaseline, GlucoseBaseline, Outcome, check_assignment, givens_of

DEFAULT_DATA = REPO / "data"
MAX_BATCH = 4096
CHROMATIC = {  # from data/README.md
    "myciel6": 7,
    "queen6_6": 7,
    "queen7_7": 7,
    "queen8_8": 9,
    "huck": 11,
    "jean": 10,
    "miles250": 8,
    "games120": 9,
}
RESULT_FIELDS = ("domains", "status", "nodes", "solutions", "sweeps")


@dataclass(frozen=True)
class Settings:
    """Sizes of one run; ``--quick`` shrinks every one of them."""

    budget: float  # seconds per measurement
    sudoku_limit: int | None  # puzzles per Sudoku file (None: whole file)
    graphs: tuple[str, ...]
    qcp_per_size: int | None
    node_limit: int  # colouring and QCP
    ref_max_nodes: int  # the reference skips instances the fast core needed more nodes for
    seed: int = 0

    @property
    def min_seconds(self) -> float:
        """A measurement that has covered its whole sample still runs this long (repeats), for stable timing."""
        return self.budget / 5


FULL = Settings(5.0, None, tuple(CHROMATIC), None, 100_000, 2_000)
QUICK = Settings(0.25, 200, ("huck", "jean"), 5, 20_000, 300)


@dataclass
class InstanceSet:
    """Instances of one program: what every solver runs, and what a correct answer must look like."""

    name: str
    program: Program
    domains: np.ndarray  # uint64[B, N]
    expected: list[np.ndarray | None]  # the unique solution where the data file knows it
    must_be_sat: bool  # every instance has a solution (Sudoku files, colouring with k = chi)
    options: SolveOptions
    incremental_sat: bool = True  # False: no givens, Glucose gets a fresh solver per instance
    givens: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        d = self.program.domain_size
        self.givens = np.stack([givens_of(row, d) for row in self.domains])

    @property
    def size(self) -> int:
        return len(self.domains)


@dataclass
class Rate:
    """One measurement: instances solved in how many seconds; ``sample`` is how many distinct ones."""

    count: int = 0
    seconds: float = 0.0
    sample: int = 0
    skipped: int = 0  # instances left out (reference: above the node cap)
    limits: int = 0  # answers that ran out of budget
    extra: str = ""

    @property
    def per_s(self) -> float | None:
        return self.count / self.seconds if self.count and self.seconds > 0 else None


@dataclass
class SetResult:
    name: str
    size: int
    options: SolveOptions
    batch: int
    rates: dict[str, Rate]
    fast: BatchResult
    failures: list[str]


# --- instance sets -------------------------------------------------------------------------------------


def sudoku_sets(data: Path, limit: int | None) -> list[InstanceSet]:
    out = []
    for path in sorted((data / "sudoku").glob("*.csv")):
        records = load_puzzle_file(path, limit=limit)
        grids = np.stack([parse_sudoku(r.puzzle) for r in records])
        expected = [parse_sudoku(r.solution) if r.solution and r.nsol == 1 else None for r in records]
        must = all(r.nsol is None or r.nsol >= 1 for r in records)
        out.append(
            InstanceSet(f"sudoku/{path.stem}", sudoku_program(), sudoku_domains(grids), expected, must, SolveOptions())
        )
    return out


def coloring_sets(data: Path, graphs: Sequence[str], node_limit: int) -> list[InstanceSet]:
    out = []
    for name in graphs:
        graph = load_dimacs(data / "coloring" / f"{name}.col")
        k = CHROMATIC[name]
        program = coloring_program(graph, k)
        doms = np.full((1, graph.num_vertices), (1 << k) - 1, dtype=np.uint64)
        opts = SolveOptions(node_limit=node_limit)
        out.append(InstanceSet(f"coloring/{name} k={k}", program, doms, [None], True, opts, incremental_sat=False))
    return out


def qcp_sets(data: Path, per_size: int | None, node_limit: int) -> list[InstanceSet]:
    instances = load_qcp(data / "qcp" / "qcp_grids.txt")
    out = []
    for n in sorted({i.n for i in instances}):
        grids = [i.grid for i in instances if i.n == n][:per_size]
        doms = qcp_domains(np.stack(grids))
        opts = SolveOptions(node_limit=node_limit)
        out.append(InstanceSet(f"qcp/n={n}", qcp_program(n), doms, [None] * len(grids), False, opts))
    return out


# --- measurement ---------------------------------------------------------------------------------------


def timed_loop(
    step: Callable[[int], None], order: Sequence[int], settings: Settings, min_count: int, repeat: bool
) -> Rate:
    """Run ``step`` over ``order`` until the budget is spent, on at least ``min_count`` distinct instances.

    A set done before the budget is gone round again (``repeat``) until ``min_seconds`` and ``min_count``
    solves, for a timing above the clock's noise, but never past the budget: repeats add no information.
    Only a stateless solver may repeat; an incremental one would re-solve what it has learned.
    """
    rate = Rate()
    if not order:
        return rate
    start = time.perf_counter()
    while True:
        step(order[rate.count % len(order)])
        rate.count += 1
        rate.seconds = time.perf_counter() - start
        covered = rate.count >= len(order)
        if covered and (not repeat or rate.seconds >= settings.budget):
            break
        if rate.count >= min_count and (
            rate.seconds >= settings.budget or (covered and rate.seconds >= settings.min_seconds)
        ):
            break
    rate.sample = min(rate.count, len(order))
    return rate


def measure_fast_batch(engine: FastEngine, s: InstanceSet, settings: Settings) -> tuple[Rate, BatchResult]:
    """Whole set in batches of up to 4096, whole passes until ``min_seconds`` have gone by."""
    cp = compile_program(s.program)
    chunks = [s.domains[i : i + MAX_BATCH] for i in range(0, s.size, MAX_BATCH)]
    rate = Rate(sample=s.size)
    parts: list[BatchResult] = []
    start = time.perf_counter()
    while rate.count == 0 or rate.seconds < settings.min_seconds:
        parts = [engine.solve(cp, chunk, options=s.options) for chunk in chunks]
        rate.count += s.size
        rate.seconds = time.perf_counter() - start
    merged = BatchResult(*(np.concatenate([getattr(p, f) for p in parts]) for f in RESULT_FIELDS))
    return rate, merged


def measure_set(s: InstanceSet, engines: tuple[FastEngine, FastEngine], settings: Settings) -> SetResult:
    """All five measurements on one set, then every check."""
    single, batched = engines
    rates: dict[str, Rate] = {}
    rates["fast_batch"], fast = measure_fast_batch(batched, s, settings)
    order = np.random.default_rng(settings.seed).permutation(s.size).tolist()
    ref_order = [i for i in order if fast.nodes[i] <= settings.ref_max_nodes]

    ref_rows: dict[int, BatchResult] = {}
    rates["reference"] = timed_loop(
        lambda i: ref_rows.__setitem__(i, reference_solve_batch(s.program, s.domains[i : i + 1], options=s.options)),
        ref_order, settings, min_count=1, repeat=True,
    )  # fmt: skip
    rates["reference"].skipped = s.size - len(ref_order)

    cp = compile_program(s.program)
    one_rows: dict[int, BatchResult] = {}
    rates["fast_1"] = timed_loop(
        lambda i: one_rows.__setitem__(i, single.solve(cp, s.domains[i : i + 1], options=s.options)),
        order, settings, min_count=20, repeat=True,
    )  # fmt: skip

    build = time.perf_counter()
    glucose = GlucoseBaseline(s.program, incremental=s.incremental_sat)
    build = time.perf_counter() - build
    sat: dict[int, Answer] = {}
    rates["glucose"] = timed_loop(
        lambda i: sat.__setitem__(i, glucose.solve(s.givens[i])), order, settings, 20, repeat=not s.incremental_sat
    )
    glucose.close()
    use = "one solver for all, givens as assumptions" if s.incremental_sat else "loaded into a fresh solver per solve"
    rates["glucose"].extra = f"CNF of {len(glucose.clauses):,} clauses built once in {build:.2f} s, {use}"

    cpsat_solver = CpSatBaseline(s.program)
    cps: dict[int, Answer] = {}
    rates["cpsat"] = timed_loop(lambda i: cps.__setitem__(i, cpsat_solver.solve(s.givens[i])), order, settings, 5, True)

    failures = check_fast(s, fast) + check_same(s, fast, ref_rows, "reference") + check_same(s, fast, one_rows, "B=1")
    for key, answers in (("glucose", sat), ("cpsat", cps)):
        rates[key].limits = sum(a.outcome == Outcome.LIMIT for a in answers.values())
        failures += check_answers(s, fast, answers, key)
    return SetResult(s.name, s.size, s.options, min(s.size, MAX_BATCH), rates, fast, failures)


# --- checks --------------------------------------------------------------------------------------------


def check_fast(s: InstanceSet, fast: BatchResult) -> list[str]:
    """Every fast-core answer: a valid solution, the file's solution when unique, SOLVED where one must exist."""
    out = []
    values = singleton_values(fast.domains)
    for i in range(s.size):
        status = Status(int(fast.status[i]))
        if status == Status.SOLVED:
            why = check_assignment(s.program, values[i], s.givens[i])
            exp = s.expected[i]
            if why is None and exp is not None and not np.array_equal(values[i], exp):
                why = "differs from the file's unique solution"
            if why:
                out.append(f"{s.name}[{i}] fast core: {why}")
        elif s.must_be_sat and status != Status.LIMIT:
            out.append(f"{s.name}[{i}] fast core: {status.name} on a satisfiable instance")
        elif status not in (Status.UNSAT, Status.LIMIT):
            out.append(f"{s.name}[{i}] fast core: unexpected status {status.name} in SOLVE mode")
    return out


def check_same(s: InstanceSet, fast: BatchResult, rows: dict[int, BatchResult], label: str) -> list[str]:
    """The reference and the batch-1 path must match the batched fast core bit for bit."""
    out = []
    for i, r in rows.items():
        bad = [f for f in RESULT_FIELDS if not np.array_equal(getattr(r, f)[0], getattr(fast, f)[i])]
        if bad:
            out.append(f"{s.name}[{i}] {label} differs from the batched fast core in {', '.join(bad)}")
    return out


def check_answers(s: InstanceSet, fast: BatchResult, answers: dict[int, Answer], label: str) -> list[str]:
    """A baseline's answer: valid, the file's unique solution, and the same SAT/UNSAT verdict as the fast core."""
    out = []
    for i, a in answers.items():
        status = Status(int(fast.status[i]))
        if a.outcome == Outcome.SAT and a.values is not None:
            why = check_assignment(s.program, a.values, s.givens[i])
            exp = s.expected[i]
            if why is None and exp is not None and not np.array_equal(a.values, exp):
                why = "differs from the file's unique solution"
            if why is None and status == Status.UNSAT:
                why = "SAT where the fast core says UNSAT"
            if why:
                out.append(f"{s.name}[{i}] {label}: {why}")
        elif a.outcome == Outcome.UNSAT and status == Status.SOLVED:
            out.append(f"{s.name}[{i}] {label}: UNSAT where the fast core found a solution")
    return out


# --- report --------------------------------------------------------------------------------------------

TARGETS = {"sudoku/magictour_top1465": 20_000.0, "sudoku/forum_hardest_1106": 3_000.0}  # fast core, batch 4096
MIN_GLUCOSE_RATIO = 100.0
COLUMNS = ("reference", "fast_1", "fast_batch", "glucose", "cpsat")
COLUMN_TITLES = ("reference /s", "fast B=1 /s", "fast batch /s", "Glucose /s", "CP-SAT /s")


@dataclass(frozen=True)
class RunInfo:
    command: str
    budget: float
    quick: bool
    threads: int
    jit_seconds: float
    total_seconds: float
    load: tuple[float, float, float]


def fmt(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def glucose_ratio(r: SetResult) -> float | None:
    fast, sat = r.rates["fast_batch"].per_s, r.rates["glucose"].per_s
    return fast / sat if fast is not None and sat else None


def status_counts(fast: BatchResult) -> str:
    counts = np.bincount(fast.status, minlength=len(Status) + 1)
    return ", ".join(f"{Status(v).name} {int(counts[v]):,}" for v in range(1, len(counts)) if counts[v])


def main_table(results: Sequence[SetResult]) -> list[str]:
    head = ["set", "instances", *COLUMN_TITLES, "fast batch ÷ Glucose", "nodes / inst.", "sweeps / inst."]
    lines = ["| " + " | ".join([*head, "fast core status", "checks"]) + " |", "|---" * (len(head) + 2) + "|"]
    for r in results:
        ratio = glucose_ratio(r)
        cells = [r.name, f"{r.size:,}", *(fmt(r.rates[c].per_s) for c in COLUMNS)]
        cells += [f"{ratio:.1f}x" if ratio else "—", fmt(float(r.fast.nodes.mean())), fmt(float(r.fast.sweeps.mean()))]
        cells += [status_counts(r.fast), "ok" if not r.failures else f"FAILED ({len(r.failures)})"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def sample_cell(rate: Rate, cap: int) -> str:
    if rate.count == 0:
        return f"not run ({rate.skipped:,} left out: over {cap:,} nodes)" if rate.skipped else "not run"
    text = f"{rate.count:,} in {rate.seconds:.2f} s"
    if rate.sample != rate.count:
        text += f" ({rate.sample:,} distinct)"
    if rate.skipped:
        text += f"; {rate.skipped:,} left out (over {cap:,} nodes)"
    if rate.limits:
        text += f"; {rate.limits:,} LIMIT"
    return text


def samples_table(results: Sequence[SetResult], settings_cap: int) -> list[str]:
    head = ["set", "node limit", "batch", *(title.removesuffix(" /s") for title in COLUMN_TITLES)]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in results:
        cells = [r.name, f"{r.options.node_limit:,}", f"{r.batch:,}"]
        cells += [sample_cell(r.rates[c], settings_cap) for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def target_lines(results: Sequence[SetResult], quick: bool) -> list[str]:
    by_name = {r.name: r for r in results}
    lines = []
    for name, goal in TARGETS.items():
        got = by_name[name].rates["fast_batch"].per_s if name in by_name else None
        verdict = "met" if got is not None and got >= goal else "not met"
        lines.append(f"- {name}: fast core batch 4096 >= {goal:,.0f} puzzles/s: {fmt(got)}/s, **{verdict}**")
    for r in results:
        if r.name.startswith("sudoku/"):
            ratio = glucose_ratio(r)
            verdict = "met" if ratio is not None and ratio >= MIN_GLUCOSE_RATIO else "not met"
            shown = f"{ratio:.1f}x" if ratio is not None else "—"
            lines.append(
                f"- {r.name}: fast core batch >= {MIN_GLUCOSE_RATIO:.0f}x Glucose per puzzle: {shown}, **{verdict}**"
            )
    if quick:
        lines.append("- (quick run: truncated files and short budgets; these verdicts are not the benchmark's)")
    return lines


def render(
    results: Sequence[SetResult], run: RunInfo, settings: Settings, tdoku: Sequence[str] = (),
    tdoku_failures: Sequence[str] = (),
) -> str:  # fmt: skip
    notes = [f"- {r.name}: Glucose {r.rates['glucose'].extra}" for r in results if r.rates["glucose"].extra]
    failures = [f"- {f}" for r in results for f in r.failures] + [f"- {f}" for f in tdoku_failures]
    failures = failures or ["- none: every check passed"]
    out = [
        "# Engine benchmark" + (" (quick)" if run.quick else ""),
        "",
        f"- Date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {machine()}; load average at start {run.load[0]:.2f} / {run.load[1]:.2f} / {run.load[2]:.2f}",
        f"- Software: {versions(('numpy', 'numba', 'python-sat', 'ortools'))}",
        f"- Commit: {git_commit()}",
        f"- Command: `{run.command}`",
        f"- Time budget per measurement: {run.budget:g} s; numba warm-up {run.jit_seconds:.1f} s (not timed); "
        f"whole run {run.total_seconds:.0f} s",
        f"- Threads: fast batch {run.threads} (one per core by default), fast B=1 one (inline call), "
        "Glucose one, CP-SAT one worker (`num_workers = 1`), reference one (plain Python)",
        "",
        "Instances per second (higher is better); nodes and sweeps per instance are the fast core's over the",
        "whole set (sweeps: the cycle model). Full solve: Sudoku to the first solution, colouring with",
        "k = chromatic number, QCP with a node limit (LIMIT counted in the status column).",
        "",
        *main_table(results),
        "",
        *([*tdoku, ""] if tdoku else []),
        "## Targets",
        "",
        *target_lines(results, run.quick),
        "",
        "## Samples",
        "",
        "How many instances each figure rests on (solves in seconds; distinct instances when a stateless",
        "solver went round a small set again). The reference skips instances the fast core needed more",
        f"than {settings.ref_max_nodes:,} nodes for (node counts are the same by contract; in plain Python one",
        "such instance takes longer than a measurement's budget).",
        "",
        *samples_table(results, settings.ref_max_nodes),
        "",
        *notes,
        "",
        "## Check failures",
        "",
        *failures,
        "",
    ]
    return "\n".join(out)


# --- driver --------------------------------------------------------------------------------------------


def warm_up(engines: tuple[FastEngine, FastEngine], sets: Sequence[InstanceSet]) -> float:
    """Compile (or load from numba's cache) every kernel specialisation before any timing."""
    start = time.perf_counter()
    for s in sets:
        cp = compile_program(s.program)
        few = s.domains[: min(s.size, 16)]
        opts = SolveOptions(mode=s.options.mode, node_limit=min(s.options.node_limit, 1000))
        engines[0].solve(cp, few[:1], options=opts)
        engines[1].solve(cp, few, options=opts)
    return time.perf_counter() - start


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="small samples and short budgets (smoke test, CI)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "engine.md", help="Markdown report")
    p.add_argument("--time-budget", type=float, default=None, help="seconds per measurement (default 5, quick 0.25)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="benchmark data folder (data/ in the repository)")
    p.add_argument("--threads", type=int, default=None, help="fast core threads for batches (default: CPU count)")
    p.add_argument(
        "--tdoku",
        type=Path,
        default=None,
        metavar="CHECKOUT",
        help="a tdoku checkout (github.com/t-dillon/tdoku): build it and compare per core, side by side",
    )
    p.add_argument("--tdoku-rounds", type=int, default=3, help="interleaved rounds of the tdoku comparison")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    base = QUICK if args.quick else FULL
    settings = base if args.time_budget is None else dataclasses.replace(base, budget=args.time_budget)
    sets = sudoku_sets(args.data, settings.sudoku_limit)
    sets += coloring_sets(args.data, settings.graphs, settings.node_limit)
    sets += qcp_sets(args.data, settings.qcp_per_size, settings.node_limit)
    engines = (FastEngine(threads=1), FastEngine(threads=args.threads))
    load = os.getloadavg()
    started = time.perf_counter()
    jit = warm_up(engines, sets)
    results = []
    for s in sets:
        results.append(measure_set(s, engines, settings))
        print(f"  {s.name}: done ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    engines[1].close()
    tdoku_lines: list[str] = []
    tdoku_failures: list[str] = []
    if args.tdoku is not None:
        compared = _tdoku.measure(args.tdoku, args.data, settings.budget, args.tdoku_rounds, settings.sudoku_limit)
        tdoku_lines = _tdoku.render(compared, args.tdoku, settings.budget, args.tdoku_rounds)
        tdoku_failures = [f"tdoku: {r.wrong} wrong answers on sudoku/{n}" for n, r in compared.items() if r.wrong]
        print(f"  tdoku: done ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    command = "python bench/engine.py" + "".join(f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv))
    run = RunInfo(command, settings.budget, args.quick, engines[1].threads, jit, time.perf_counter() - started, load)
    text = render(results, run, settings, tdoku_lines, tdoku_failures)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    return 1 if any(r.failures for r in results) or tdoku_failures else 0


if __name__ == "__main__":
    sys.exit(main())
