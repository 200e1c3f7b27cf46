"""``make rtl-solve FILE=puzzles.csv OUT=rtl.csv``: a puzzle file through the simulated RTL engine.

Writes the CSV ``fpgacsp solve`` writes (``puzzle,result,status,nodes,solutions``, one line per puzzle, in input
order), so the RTL and the simulator (or a daemon) can be compared on anyone's data with ``diff``:

    fpgacsp solve data/sudoku/serg_benchmark.csv --target local --max-solutions 2 --out sim.csv
    make rtl-solve FILE=data/sudoku/serg_benchmark.csv OUT=rtl.csv ARGS="--max-solutions 2"
    diff sim.csv rtl.csv

The engine is the one of ``fpga_bitstream/rtl`` built with Verilator at the puzzle size's configuration (9x9:
``SUDOKU9``, 27 ALLDIFF lanes), driven by the same testbench as its cosimulation. ``--cycles`` also writes each
puzzle's engine cycles and sweeps; the summary on stderr gives cycles per puzzle and, at ``--clock-mhz``, the
projected puzzles per second of one engine.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import sim  # noqa: E402
from cases import Case, params_env, write_cases  # noqa: E402
from fpgacsp.cli import Outcome, format_line  # noqa: E402
from fpgacsp.problems.sudoku import (  # noqa: E402
    PuzzleRecord,
    box_for_cells,
    load_puzzle_file,
    parse_sudoku,
    sudoku_domains,
    sudoku_program,
)
from fpgacsp_proto.bitset import singleton_values  # noqa: E402
from fpgacsp_proto.encoding import encode_program  # noqa: E402
from fpgacsp_proto.isa import Mode, Status  # noqa: E402
from fpgacspd.rtl import SUDOKU9, EngineParams  # noqa: E402


def engine_for(side: int) -> EngineParams:
    """The configuration for side x side grids: one ALLDIFF lane per row, column and box."""
    if side == 9:
        return SUDOKU9
    return EngineParams(
        num_vars=side * side, domain_width=side, constraints=3 * side, lanes=3 * side, max_scope=side, kinds=1
    )


def solve_file(
    records: list[PuzzleRecord], mode: Mode, node_limit: int, max_solutions: int
) -> list[tuple[Outcome, int, int]]:
    """(outcome, cycles, sweeps) of each record, in order; one engine build and run per grid size."""
    grids = [parse_sudoku(r.puzzle) for r in records]
    results: list[tuple[Outcome, int, int] | None] = [None] * len(records)
    for side in sorted({math.isqrt(len(g)) for g in grids}):
        idx = [i for i, g in enumerate(grids) if len(g) == side * side]
        program = encode_program(sudoku_program(box_for_cells(side * side))).hex()
        cases = [
            Case(
                f"puzzle {i}",
                program,
                [int(w) for w in sudoku_domains(grids[i][None, :])[0]],
                None,
                int(mode),
                node_limit,
                max_solutions,
                [],
                -1,
                -1,
                -1,
                -1,
                -1,
            )
            for i in idx
        ]
        params = engine_for(side)
        with tempfile.TemporaryDirectory(prefix="fcsp-rtl-solve-") as tmp:
            outcomes_file = Path(tmp) / "outcomes.json"
            env = {
                "FCSP_CASES_FILE": str(write_cases(Path(tmp) / "cases.json", cases)),
                "FCSP_OUTCOMES_FILE": str(outcomes_file),
                **params_env(params),
            }
            sim.run("fcsp_engine", "rtl_solve_cocotb", HERE, params.verilog_parameters(), env)
            outcomes = json.loads(outcomes_file.read_text())
        for i, got in zip(idx, outcomes, strict=True):
            values = singleton_values(np.array([got["domains"]], dtype=np.uint64))[0]
            oc = Outcome(Status(got["status"]), got["nodes"], got["solutions"], values)
            results[i] = (oc, got["cycles"], got["sweeps"])
    return [r for r in results if r is not None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rtl_solve", description=__doc__.split("\n\n")[0])
    parser.add_argument("file", help="puzzle file (tdoku lines or puzzle,solution CSV, as fpgacsp solve reads)")
    parser.add_argument(
        "--out", required=True, help="CSV to write (puzzle,result,status,nodes,solutions); - for stdout"
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first N puzzles")
    parser.add_argument("--mode", choices=["solve", "propagate"], default="solve")
    parser.add_argument("--node-limit", type=int, default=1_000_000)
    parser.add_argument("--max-solutions", type=int, default=1)
    parser.add_argument("--cycles", default=None, help="also write puzzle,cycles,sweeps to this CSV")
    parser.add_argument("--clock-mhz", type=float, default=100.0, help="clock for the projected puzzles/s")
    args = parser.parse_args(argv)
    records = load_puzzle_file(args.file, args.limit)
    if not records:
        parser.error(f"{args.file}: no puzzles found")
    mode = Mode.SOLVE if args.mode == "solve" else Mode.PROPAGATE
    results = solve_file(records, mode, args.node_limit, args.max_solutions)
    lines = [format_line(rec, oc) + "\n" for rec, (oc, _, _) in zip(records, results, strict=True)]
    if args.out == "-":
        sys.stdout.writelines(lines)
    else:
        Path(args.out).write_text("".join(lines))
    if args.cycles:
        Path(args.cycles).write_text(
            "puzzle,cycles,sweeps\n"
            + "".join(f"{r.puzzle},{c},{s}\n" for r, (_, c, s) in zip(records, results, strict=True))
        )
    cycles = [c for _, c, _ in results]
    mean = statistics.fmean(cycles)
    print(
        f"rtl_solve: {len(records)} puzzles from {args.file}; cycles per puzzle: mean {mean:,.0f}, median "
        f"{statistics.median(cycles):,.0f}, max {max(cycles):,}; at {args.clock_mhz:g} MHz one engine solves "
        f"{args.clock_mhz * 1e6 / mean:,.0f} puzzles/s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
