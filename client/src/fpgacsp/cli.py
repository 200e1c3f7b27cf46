"""The ``fpgacsp`` command line: ``fpgacsp solve FILE`` solves a Sudoku puzzle file and reports.

Output (``--out``): one CSV line per puzzle, in input order, no header::

    puzzle,result,status,nodes,solutions

``result`` is written in the puzzle's own notation (its blank character, its letter case): the solution
when solved, the cells fixed at the node limit or the propagation fixpoint (blanks elsewhere) for
``limit`` and ``fixpoint``, and the puzzle itself for ``unsat`` and ``conflict``. Without ``--out`` only
the summary is printed (to stderr); ``--out -`` writes the CSV to stdout.

Exit codes: 0 success; 1 some result contradicts the solution recorded in the file (a wrong answer,
not a node-limit stop); 2 bad usage or input (unreadable file, bad line, unavailable target).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

import numpy as np
from fpgacsp_proto.bitset import singleton_values
from fpgacsp_proto.isa import Mode, Status

from ._local import DEFAULT_NODE_LIMIT, LocalSolver, Solver
from .problems.sudoku import (
    BLANKS,
    PuzzleRecord,
    box_for_cells,
    check_sudoku_solution,
    format_sudoku,
    load_puzzle_file,
    parse_sudoku,
    sudoku_domains,
    sudoku_program,
)

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE = 0, 1, 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool killed by a closed pipe
DEFAULT_BATCH = 4096


@dataclass(frozen=True)
class Outcome:
    """One puzzle's answer: status, counts, and the cell values (-1 where not fixed)."""

    status: Status
    nodes: int
    solutions: int
    values: np.ndarray


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fpgacsp`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except _UsageError as exc:
        print(f"fpgacsp: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # `fpgacsp solve F --out - | head`: the reader left; stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fpgacsp", description="fpgacsp constraint-propagation client")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    solve = sub.add_parser(
        "solve",
        help="solve a Sudoku puzzle file",
        description="Solve every puzzle of a file (tdoku one-line grids or puzzle,solution[,nsol] CSV; any size).",
        epilog="Without --out only the summary is printed (stderr); '--out -' writes the CSV lines to stdout.",
    )
    solve.add_argument("file", metavar="FILE", help="puzzle file")
    solve.add_argument("--target", default="local", help="where to solve: 'local' (in-process engine; default)")
    solve.add_argument("--mode", choices=("solve", "propagate"), default="solve", help="search or propagate only")
    solve.add_argument("--out", metavar="OUT", help="write 'puzzle,result,status,nodes,solutions' lines here")
    solve.add_argument(
        "--node-limit", type=_positive, default=DEFAULT_NODE_LIMIT, metavar="N", help="search nodes per puzzle"
    )
    solve.add_argument(
        "--max-solutions", type=_positive, default=1, metavar="K", help="count solutions up to K (2: uniqueness)"
    )
    solve.add_argument("--batch", type=_positive, default=DEFAULT_BATCH, metavar="B", help="puzzles per engine call")
    solve.add_argument("--limit", type=_positive, default=None, metavar="N", help="read only the first N puzzles")
    solve.set_defaults(func=cmd_solve)
    return parser


class _UsageError(Exception):
    """Bad input or an unavailable target: reported on one line, exit code 2."""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def cmd_solve(args: argparse.Namespace) -> int:
    """``fpgacsp solve``: load, solve in batches, write the CSV in input order, summarise."""
    solver = _make_solver(args.target)
    records = _load(args.file, args.limit)
    mode = Mode.SOLVE if args.mode == "solve" else Mode.PROPAGATE
    with _open_out(args.out) as out:  # opened first: an unwritable OUT fails before any solving
        try:
            warmup = _warm_up(solver, records, mode)
            start = time.perf_counter()
            outcomes = solve_records(solver, records, mode, args.node_limit, args.max_solutions, args.batch)
            elapsed = time.perf_counter() - start
        finally:
            solver.close()
        if out is not None:
            out.writelines(format_line(rec, oc) + "\n" for rec, oc in zip(records, outcomes, strict=True))
    report = Report.build(records, outcomes, mode, args.max_solutions)
    print(report.summary(args.file, mode, elapsed, warmup), file=sys.stderr)
    return EXIT_MISMATCH if report.contradicted else EXIT_OK


def _make_solver(target: str) -> Solver:
    if target != "local":
        raise _UsageError(
            f"--target {target!r}: only 'local' is available in this version; the daemon target arrives "
            "with the served path (fpgacspd over gRPC)"
        )
    try:
        return LocalSolver()
    except ImportError as exc:
        raise _UsageError(str(exc)) from None


def _load(path: str, limit: int | None) -> list[PuzzleRecord]:
    try:
        return load_puzzle_file(path, limit)
    except OSError as exc:
        raise _UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # PuzzleFileError names the file and line
        raise _UsageError(str(exc)) from None


@contextmanager
def _open_out(path: str | None) -> Iterator[TextIO | None]:
    """The CSV destination: None (no --out), stdout ('-'), or a file."""
    if path is None:
        yield None
        return
    if path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    try:
        f = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed below, errors become usage errors
    except OSError as exc:
        raise _UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    with f:
        yield f


def _warm_up(solver: Solver, records: Sequence[PuzzleRecord], mode: Mode) -> float:
    """Load the engine's compiled kernels on one puzzle so the timed run measures solving only."""
    if not records:
        return 0.0
    start = time.perf_counter()
    grid = parse_sudoku(records[0].puzzle)
    solver.solve(sudoku_program(box_for_cells(len(grid))), sudoku_domains(grid), mode=mode, node_limit=1)
    return time.perf_counter() - start


def solve_records(
    solver: Solver,
    records: Sequence[PuzzleRecord],
    mode: Mode,
    node_limit: int,
    max_solutions: int,
    batch: int,
) -> list[Outcome]:
    """Solve every record, ``batch`` at a time; sizes may mix (each size is its own engine call)."""
    outcomes: list[Outcome | None] = [None] * len(records)
    for lo in range(0, len(records), batch):
        groups: dict[int, list[int]] = {}
        grids = [parse_sudoku(r.puzzle) for r in records[lo : lo + batch]]
        for i, grid in enumerate(grids):
            groups.setdefault(len(grid), []).append(i)
        for cells, idx in groups.items():
            program = sudoku_program(box_for_cells(cells))
            doms = sudoku_domains(np.stack([grids[i] for i in idx]))
            res = solver.solve(program, doms, mode=mode, node_limit=node_limit, max_solutions=max_solutions)
            values = singleton_values(res.domains)
            for row, i in enumerate(idx):
                status = Status(int(res.status[row]))
                outcomes[lo + i] = Outcome(status, int(res.nodes[row]), int(res.solutions[row]), values[row])
    return [oc for oc in outcomes if oc is not None]


def format_line(rec: PuzzleRecord, oc: Outcome) -> str:
    """``puzzle,result,status,nodes,solutions`` with the result in the puzzle's notation."""
    if oc.status in (Status.UNSAT, Status.CONFLICT):
        result = rec.puzzle
    else:
        result = format_sudoku(oc.values, blank=_blank_of(rec.puzzle))
        if any(ch.islower() for ch in rec.puzzle):
            result = result.lower()
    return f"{rec.puzzle},{result},{oc.status.name.lower()},{oc.nodes},{oc.solutions}"


def _blank_of(puzzle: str) -> str:
    return next((ch for ch in puzzle if ch in BLANKS), ".")


def agrees(rec: PuzzleRecord, oc: Outcome, mode: Mode, max_solutions: int) -> bool | None:
    """Does the result agree with the file's record? None when the file records nothing for this puzzle.

    SOLVE: nsol 0 wants UNSAT; nsol 1 wants the recorded solution and a count of 1; nsol >= 2 wants a
    valid solution of the puzzle and a count of min(2, max_solutions) (the recorded solution need not be
    the first in search order); no nsol wants a valid solution. PROPAGATE: propagation is sound, so every
    fixed cell must match the recorded solution, and a puzzle without solutions must not come out SOLVED.
    """
    if rec.solution is None and rec.nsol is None:
        return None
    grid = parse_sudoku(rec.puzzle)
    box = box_for_cells(len(grid))
    if rec.nsol == 0:
        return oc.status == Status.UNSAT if mode == Mode.SOLVE else oc.status != Status.SOLVED
    recorded = parse_sudoku(rec.solution) if rec.solution is not None else None
    if mode == Mode.PROPAGATE:
        fixed = oc.values >= 0
        consistent = recorded is None or bool(np.array_equal(oc.values[fixed], recorded[fixed]))
        return oc.status != Status.CONFLICT and consistent
    if oc.status != Status.SOLVED:
        return False
    if rec.nsol == 1:
        return recorded is not None and bool(np.array_equal(oc.values, recorded)) and oc.solutions == 1
    valid = check_sudoku_solution(oc.values, box) and bool(np.all((grid < 0) | (grid == oc.values)))
    if rec.nsol is None:
        return valid
    return valid and oc.solutions == min(2, max_solutions)


@dataclass(frozen=True)
class Report:
    """Counts for the summary: statuses, nodes, and agreement with recorded solutions."""

    counts: dict[Status, int]
    total_nodes: int
    checked: int
    agreed: int
    contradicted: int

    @classmethod
    def build(cls, records: Sequence[PuzzleRecord], outcomes: Sequence[Outcome], mode: Mode, k: int) -> Report:
        counts = dict.fromkeys(Status, 0)
        checked = agreed = contradicted = 0
        for rec, oc in zip(records, outcomes, strict=True):
            counts[oc.status] += 1
            verdict = agrees(rec, oc, mode, k)
            if verdict is None:
                continue
            checked += 1
            agreed += verdict
            contradicted += not verdict and oc.status != Status.LIMIT
        return cls(counts, sum(oc.nodes for oc in outcomes), checked, agreed, contradicted)

    def summary(self, path: str, mode: Mode, elapsed: float, warmup: float) -> str:
        n = sum(self.counts.values())
        shown = [Status.SOLVED, Status.UNSAT, Status.LIMIT]
        if mode == Mode.PROPAGATE:
            shown += [Status.FIXPOINT, Status.CONFLICT]
        rate = f"{n / elapsed:.1f} puzzles/s" if n and elapsed > 0 else "n/a puzzles/s"
        mean_nodes = self.total_nodes / n if n else 0.0
        lines = [
            f"fpgacsp solve: {n} puzzles from {path} (mode {mode.name.lower()})",
            "  " + ", ".join(f"{s.name.lower()} {self.counts[s]}" for s in shown),
            f"  time {elapsed:.3f} s (engine warm-up {warmup:.3f} s not included), {rate}, mean nodes {mean_nodes:.2f}",
        ]
        if self.checked:
            line = f"  recorded solutions: {self.agreed} of {self.checked} agree"
            if self.contradicted:
                line += f", {self.contradicted} CONTRADICT the record"
            lines.append(line)
        return "\n".join(lines)
