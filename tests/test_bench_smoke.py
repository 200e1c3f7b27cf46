"""Smoke test of the engine benchmark and unit checks of its outside baselines.

The benchmark's numbers are only worth recording if its machinery is right: every Sudoku file gets a row
with real figures, the baselines' encodings accept exactly the valid solutions, and the checks that would
flag a wrong answer actually run. ``--quick`` keeps the end-to-end run within a minute.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fpgacsp.problems import (
    coloring_program,
    load_dimacs,
    load_puzzle_file,
    parse_sudoku,
    sudoku_domains,
    sudoku_program,
)
from fpgacsp.problems.coloring import Graph
from fpgacsp_proto.isa import AllDiff, Neq, make_program

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
sys.path.insert(0, str(REPO))  # `bench` is a folder of the repository, not an installed distribution

from bench.baselines import (  # noqa: E402
    CpSatBaseline,
    GlucoseBaseline,
    Outcome,
    check_assignment,
    cnf_clauses,
    givens_of,
)

RATE_COLUMNS = ("reference /s", "fast B=1 /s", "fast batch /s", "Glucose /s", "CP-SAT /s")
PUZZLE = "4...3.......6..8..........1....5..9..8....6...7.2........1.27..5.3....4.9........"
SOLUTION = "468931527751624839392578461134756298289413675675289314846192753513867942927345186"


def table_rows(text: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The first Markdown table of the report: its header and its rows keyed by set name."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) != len(header):
            break  # the next table starts
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return header, rows


def number(cell: str) -> float:
    return float(cell.replace(",", "").removesuffix("x"))


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    out = tmp_path_factory.mktemp("bench") / "engine.md"
    proc = subprocess.run(
        [sys.executable, "bench/engine.py", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"benchmark failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return out.read_text(encoding="utf-8"), proc.stdout


def test_quick_run_has_a_numeric_row_per_sudoku_file(quick_report: tuple[str, str]) -> None:
    text, _ = quick_report
    header, rows = table_rows(text)
    files = sorted(p.stem for p in (DATA / "sudoku").glob("*.csv"))
    assert len(files) >= 4
    for stem in files:
        row = rows[f"sudoku/{stem}"]
        for col in RATE_COLUMNS:
            assert number(row[col]) > 0, (stem, col, row[col])
        assert number(row["nodes / inst."]) >= 1
        assert number(row["sweeps / inst."]) >= number(row["nodes / inst."])  # at least one sweep per node
        assert number(row["fast batch ÷ Glucose"]) > 0
        assert row["checks"] == "ok"
        assert row["fast core status"].startswith("SOLVED ")
    assert any(name.startswith("coloring/") for name in rows)
    assert any(name.startswith("qcp/") for name in rows)
    assert set(RATE_COLUMNS) <= set(header)


def test_quick_report_header_and_targets(quick_report: tuple[str, str]) -> None:
    text, stdout = quick_report
    for key in ("- Date:", "- Machine:", "- Software:", "- Commit:", "- Command: `python bench/engine.py --quick"):
        assert key in text
    assert "numba" in text and "python-sat" in text and "ortools" in text
    targets = [line for line in text.splitlines() if "**met**" in line or "**not met**" in line]
    assert any("magictour_top1465" in t and "20,000" in t for t in targets)
    assert any("forum_hardest_1106" in t and "3,000" in t for t in targets)
    assert sum("100x Glucose" in t for t in targets) >= 4
    assert "none: every check passed" in text
    assert table_rows(stdout)[1].keys() == table_rows(text)[1].keys()  # the same table went to stdout


# --- baselines -----------------------------------------------------------------------------------------


def test_baselines_solve_a_sudoku_and_agree_with_the_file() -> None:
    program = sudoku_program()
    grid = parse_sudoku(PUZZLE)
    givens = givens_of(sudoku_domains(grid)[0], 9)
    assert np.array_equal(givens, grid)
    want = parse_sudoku(SOLUTION)
    glucose = GlucoseBaseline(program)
    try:
        for _ in range(2):  # the second call reuses the solver: assumptions, not added clauses
            answer = glucose.solve(givens)
            assert answer.outcome == Outcome.SAT and answer.values is not None
            assert np.array_equal(answer.values, want)
        blank = glucose.solve(np.full(81, -1))  # earlier givens must not stick
        assert blank.outcome == Outcome.SAT and blank.values is not None
        assert check_assignment(program, blank.values) is None
    finally:
        glucose.close()
    answer = CpSatBaseline(program).solve(givens)
    assert answer.outcome == Outcome.SAT and answer.values is not None
    assert np.array_equal(answer.values, want)


def test_baselines_report_unsat() -> None:
    program = sudoku_program()
    givens = np.full(81, -1)
    givens[0] = givens[1] = 4  # two equal digits in one row
    assert GlucoseBaseline(program).solve(givens).outcome == Outcome.UNSAT
    assert CpSatBaseline(program).solve(givens).outcome == Outcome.UNSAT


def test_neq_offsets_and_colouring() -> None:
    # x0 != x1 + 1 and x1 != x0 + 1 over {0, 1} with x0 != x1: only (0, 0)/(1, 1) survive the offsets,
    # and those break x0 != x1, so it is UNSAT; without the plain NEQ, equal values are the answers.
    strict = make_program(2, 2, [Neq(0, 1, 1), Neq(1, 0, 1), Neq(0, 1, 0)])
    assert GlucoseBaseline(strict, incremental=False).solve(np.full(2, -1)).outcome == Outcome.UNSAT
    assert CpSatBaseline(strict).solve(np.full(2, -1)).outcome == Outcome.UNSAT
    loose = make_program(2, 2, [Neq(0, 1, 1), Neq(1, 0, 1)])
    answer = GlucoseBaseline(loose, incremental=False).solve(np.full(2, -1))
    assert answer.values is not None and answer.values[0] == answer.values[1]
    graph = load_dimacs(DATA / "coloring" / "huck.col")
    for k, outcome in ((11, Outcome.SAT), (3, Outcome.UNSAT)):
        program = coloring_program(graph, k)
        answer = GlucoseBaseline(program, incremental=False).solve(np.full(graph.num_vertices, -1))
        assert answer.outcome == outcome
        if answer.values is not None:
            assert check_assignment(program, answer.values) is None


def test_check_assignment_finds_violations() -> None:
    program = make_program(3, 3, [AllDiff((0, 1, 2), exact=True), Neq(0, 2, 1)])
    assert check_assignment(program, np.array([0, 1, 2])) is None
    assert "ALLDIFF" in (check_assignment(program, np.array([0, 0, 2])) or "")
    assert "NEQ" in (check_assignment(program, np.array([2, 0, 1])) or "")
    assert "given" in (check_assignment(program, np.array([0, 1, 2]), np.array([1, -1, -1])) or "")
    assert "outside" in (check_assignment(program, np.array([0, 1, 3])) or "")


def test_cnf_size_and_partial_domains() -> None:
    graph = Graph.from_edges(3, [(0, 1), (1, 2)])
    # per vertex: 1 at-least-one + 3 at-most-one pairs; per edge: one clause per colour
    assert len(cnf_clauses(coloring_program(graph, 3))) == 3 * 4 + 2 * 3
    with pytest.raises(ValueError, match="neither a singleton nor full"):
        givens_of(np.array([0b011, 0b111], dtype=np.uint64), 3)


FAKE_TDOKU = r"""
#include <tdoku.h>
#include <cstring>
// Stands in for tdoku's solver: "solves" a puzzle by writing '1' into every blank, one guess each.
extern "C" size_t TdokuSolverDpllTriadSimd(const char *input, size_t, uint32_t, char *solution, size_t *guesses) {
    for (int i = 0; i < 81; ++i) solution[i] = input[i] == '.' ? '1' : input[i];
    *guesses = 1;
    return 1;
}
"""


def test_the_tdoku_driver_builds_against_a_checkout_and_reports_rates_and_answers(tmp_path: Path) -> None:
    from bench import _tdoku

    checkout = tmp_path / "tdoku"
    (checkout / "src").mkdir(parents=True)
    (checkout / "include").mkdir()
    (checkout / "include" / "tdoku.h").write_text(
        '#include <cstddef>\n#include <cstdint>\nextern "C" size_t TdokuSolverDpllTriadSimd(const char *, size_t, '
        "uint32_t, char *, size_t *);\n"
    )
    (checkout / "src" / "solver_dpll_triad_simd.cc").write_text(FAKE_TDOKU)
    (checkout / "src" / "util.cc").write_text("// tdoku's helpers: nothing needed by the fake\n")
    binary = _tdoku.build(checkout, tmp_path / "build")
    puzzles = ["." * 80 + "5", "2" + "." * 80]
    rate, guesses, solutions = _tdoku.tdoku_rate(binary, "".join(p + "\n" for p in puzzles), 0.05, 0)
    assert rate > 0 and guesses == 1.0
    assert solutions == ["1" * 80 + "5", "2" + "1" * 80]
    with pytest.raises(_tdoku.TdokuError, match="not a tdoku checkout"):
        _tdoku.build(tmp_path / "nothing-here")


def test_the_locked_candidates_prototype_searches_as_the_engine_and_applies_box_line_rules() -> None:
    from fpgacspd.engine import FastEngine

    from bench import locked_candidates as lc

    pairs = lc.box_line_pairs()
    assert len(pairs) == 54 and all(len(a) == len(b) == 6 and not set(a) & set(b) for a, b in pairs)
    # box 0 with row 0: if value 1 (bit 0) has no place in the box outside row 0, row 0 outside the box loses it
    full = (1 << 9) - 1
    doms = [full] * 81
    a, b = next(p for p in pairs if 0 not in p[0] and 3 in p[1] and 9 in p[0])  # box 0 / row 0
    for v in a:
        doms[v] = full & ~1
    assert lc.locked(doms, [(a, b)], full)
    assert all(doms[v] == full & ~1 for v in b) and all(doms[v] == full for v in (0, 1, 2))
    program = sudoku_program()
    records = load_puzzle_file(DATA / "sudoku" / "magictour_top1465.csv", 3)
    domains = sudoku_domains(np.stack([parse_sudoku(r.puzzle) for r in records]))
    engine = FastEngine(threads=1)
    try:
        want = engine.solve(program, domains).nodes
    finally:
        engine.close()
    plain, with_locked = lc.propagator(program, ()), lc.propagator(program, pairs)
    rows = [[int(x) for x in row] for row in domains]
    assert [lc.count_nodes(d, plain) for d in rows] == want.tolist()  # the prototype's search is the engine's
    assert sum(lc.count_nodes(d, with_locked) for d in rows) < int(want.sum())  # and the pairs cut nodes
