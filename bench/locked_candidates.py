"""Prototype for ISA v1.1: what locked-candidate (box-line) reasoning would do to node counts. Not ISA v1.

The search of ``fpgacspd.engine.reference.solve`` (same branching: fewest values, lowest index, lowest value
first; same node counting) run twice on the same puzzles: once with ISA v1's propagation alone, and once with a
prototype propagator added, ``LOCKED(A, B)`` for two exact ALLDIFF units that meet in a set I (for 9x9 Sudoku:
each box with each of the 3 rows and 3 columns through it, 54 pairs):

- a value with no place left in A outside I must sit in I (A is exact: every value appears in it), so it is
  removed from B outside I; and the same with A and B swapped.

Both are two OR-reductions and two masks per pair, bit-parallel, as cheap as one ALLDIFF's first pass. The fixpoint
of monotone propagators does not depend on their order, so running ISA v1 to its fixpoint, then the pairs, until
nothing changes, gives the node counts a combined synchronous sweep would (not its sweep counts, which this
prototype does not model). The ISA v1 run is checked against the fast core's own node counts, puzzle by puzzle, so
the prototype's search is the engine's.

Run ``python bench/locked_candidates.py [--puzzles N]`` from the repository root (whole files: about 15 min); it
prints a table and writes ``bench/results/locked_candidates.md``. docs/locked_candidates.md discusses it.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable for `bench`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from fpgacsp.problems import load_puzzle_file, parse_sudoku, sudoku_domains, sudoku_program
from fpgacsp_proto.isa import Program
from fpgacspd.engine import FastEngine, reference

from bench._report import REPO, git_commit, machine

FILES = ("magictour_top1465", "forum_hardest_1106", "kaggle_10k")
Pair = tuple[tuple[int, ...], tuple[int, ...]]  # (A outside I, B outside I)
Propagate = Callable[[Sequence[int]], tuple[int, ...] | None]


def box_line_pairs(box: int = 3) -> list[Pair]:
    """For a box-size ``box`` Sudoku: every box with every row and column through it, as the cells outside I."""
    n = box * box
    pairs = []
    for br in range(box):
        for bc in range(box):
            cells = {(r, c) for r in range(br * box, br * box + box) for c in range(bc * box, bc * box + box)}
            lines = [{(r, c) for c in range(n)} for r in range(br * box, br * box + box)]
            lines += [{(r, c) for r in range(n)} for c in range(bc * box, bc * box + box)]
            for line in lines:
                a, b = cells - line, line - cells
                pairs.append((tuple(r * n + c for r, c in sorted(a)), tuple(r * n + c for r, c in sorted(b))))
    return pairs


def locked(doms: list[int], pairs: Sequence[Pair], full: int) -> bool:
    """Apply every pair once on ``doms`` in place; False on a conflict (an emptied domain)."""
    for a, b in pairs:
        out_a = 0
        for v in a:
            out_a |= doms[v]
        out_b = 0
        for v in b:
            out_b |= doms[v]
        must_a = full & ~out_a  # values whose only places in A are in I
        must_b = full & ~out_b
        for v in b:
            doms[v] &= ~must_a
            if doms[v] == 0:
                return False
        for v in a:
            doms[v] &= ~must_b
            if doms[v] == 0:
                return False
    return True


def propagator(program: Program, pairs: Sequence[Pair]) -> Propagate:
    full = (1 << program.domain_size) - 1

    def propagate(domains: Sequence[int]) -> tuple[int, ...] | None:
        doms = tuple(domains)
        while True:
            fix, _ = reference.propagate(program, doms)
            if fix is None:
                return None
            if not pairs:
                return fix
            new = list(fix)
            if not locked(new, pairs, full):
                return None
            if tuple(new) == fix:
                return fix
            doms = tuple(new)

    return propagate


def count_nodes(domains: Sequence[int], propagate: Propagate) -> int:
    """``reference.solve``'s search to the first solution, with ``propagate`` for the fixpoints: its node count."""
    nodes = 0
    stack = [tuple(domains)]
    while stack:
        node = stack.pop()
        nodes += 1
        fix = propagate(node)
        if fix is None:
            continue
        if all(reference.is_singleton(d) for d in fix):
            return nodes
        var, val = reference.branch_choice(fix, None)
        right = list(fix)
        right[var] &= ~(1 << val)
        left = list(fix)
        left[var] = 1 << val
        stack.append(tuple(right))
        stack.append(tuple(left))
    return nodes


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--puzzles", type=int, default=None, help="only the first N puzzles of each file (default: all)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "locked_candidates.md")
    args = p.parse_args(argv)
    program, pairs = sudoku_program(), box_line_pairs()
    plain, with_locked = propagator(program, ()), propagator(program, pairs)
    engine = FastEngine(threads=1)
    rows, mismatches, started = [], 0, time.perf_counter()
    for name in FILES:
        records = load_puzzle_file(REPO / "data" / "sudoku" / f"{name}.csv", args.puzzles)
        domains = sudoku_domains(np.stack([parse_sudoku(r.puzzle) for r in records]))
        engine_nodes = engine.solve(program, domains).nodes
        v1, v11 = [], []
        for i, row in enumerate(domains):
            doms = [int(x) for x in row]
            v1.append(count_nodes(doms, plain))
            v11.append(count_nodes(doms, with_locked))
            mismatches += v1[-1] != int(engine_nodes[i])
        rows.append((name, len(records), statistics.mean(v1), statistics.mean(v11), statistics.median(v11)))
        print(f"  {name}: done ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    engine.close()
    out = [
        "# Locked candidates (box-line) for ISA v1.1: node counts of a prototype",
        "",
        f"- Date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {machine()}",
        f"- Commit: {git_commit()}",
        f"- Command: `python bench/locked_candidates.py{'' if args.puzzles is None else f' --puzzles {args.puzzles}'}`",
        f"- {'Every puzzle' if args.puzzles is None else f'The first {args.puzzles} puzzles'} of each file, to the "
        "first solution, the engine's search and branching; "
        "ISA v1 node counts checked against the fast core puzzle by puzzle: "
        + ("all equal" if mismatches == 0 else f"{mismatches} DIFFER"),
        "",
        "| set | puzzles | nodes / puzzle, ISA v1 | with LOCKED (54 box-line pairs) | ratio | median with LOCKED |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, n, a, b, med in rows:
        out.append(f"| sudoku/{name} | {n} | {a:.1f} | {b:.1f} | {b / a:.2f} | {med:g} |")
    text = "\n".join(out) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
