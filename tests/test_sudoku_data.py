"""Every Sudoku in data/sudoku solved by the fast core, and a sample checked against the reference.

The puzzles and solutions come from outside the project (SAT-solved, independently re-checked), so they
test the engine against ground truth rather than against itself. The 9x9 program is built here, from the
rules, so that this test does not depend on the client's problem builders.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fpgacsp_proto.isa import AllDiff, Mode, Program, Status, make_program
from fpgacspd.engine import BatchResult, FastEngine, SolveOptions, reference_solve_batch

FULL = (1 << 9) - 1
UNIQUE_FILES = ["kaggle_10k.csv", "magictour_top1465.csv", "forum_hardest_1106.csv"]
EXPECTED_COUNTS = {
    "kaggle_10k.csv": 10_000,
    "magictour_top1465.csv": 1465,
    "forum_hardest_1106.csv": 375,
    "serg_benchmark.csv": 10_000,
}


@dataclass(frozen=True)
class PuzzleSet:
    """A benchmark file as arrays: givens (-1 blank, digit k as k - 1), a recorded solution, nsol."""

    givens: np.ndarray  # int64[B, 81]
    solutions: np.ndarray  # int64[B, 81]
    nsol: np.ndarray  # int64[B]


def units() -> list[tuple[int, ...]]:
    rows = [tuple(9 * r + c for c in range(9)) for r in range(9)]
    cols = [tuple(9 * r + c for r in range(9)) for c in range(9)]
    boxes = [tuple(9 * (br + r) + bc + c for r in range(3) for c in range(3)) for br in (0, 3, 6) for bc in (0, 3, 6)]
    return rows + cols + boxes


@functools.cache
def sudoku() -> Program:
    return make_program(81, 9, [AllDiff(u, exact=True) for u in units()])


def digits(cells: list[str]) -> np.ndarray:
    """81-character strings to int64[B, 81]: '1'..'9' to 0..8, '.' (or '0') to -1."""
    raw = np.frombuffer("".join(cells).encode("ascii"), dtype=np.uint8).reshape(len(cells), 81)
    values = raw.astype(np.int64) - ord("1")
    values[(raw == ord(".")) | (raw == ord("0"))] = -1
    return values


@functools.cache
def load(path: Path) -> PuzzleSet:
    name = path.name
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    records = [ln.split(",") for ln in lines if ln and not ln.startswith("#")]
    assert all(len(r) == 3 and len(r[0]) == len(r[1]) == 81 for r in records), f"{name}: malformed line"
    return PuzzleSet(
        digits([r[0] for r in records]),
        digits([r[1] for r in records]),
        np.array([int(r[2]) for r in records], dtype=np.int64),
    )


def initial_domains(givens: np.ndarray) -> np.ndarray:
    doms = np.full(givens.shape, FULL, dtype=np.uint64)
    fixed = givens >= 0
    doms[fixed] = np.uint64(1) << givens[fixed].astype(np.uint64)
    return doms


def grid_values(res: BatchResult) -> np.ndarray:
    """Solved domains to values (int64[B, 81]); fails if any cell is not a singleton."""
    d = res.domains
    assert np.all((d != 0) & ((d & (d - np.uint64(1))) == 0)), "a solved grid has a non-singleton cell"
    return np.log2(d.astype(np.float64)).astype(np.int64)


def assert_valid_grids(values: np.ndarray, givens: np.ndarray) -> None:
    """Each unit holds every digit once, and every given is kept."""
    for unit in units():
        cells = np.sort(values[:, list(unit)], axis=1)
        assert np.array_equal(cells, np.broadcast_to(np.arange(9), cells.shape)), f"unit {unit} broken"
    fixed = givens >= 0
    assert np.array_equal(values[fixed], givens[fixed]), "a solution changed a given"


@pytest.mark.parametrize("name", sorted(EXPECTED_COUNTS))
def test_files_parse(data_dir: Path, name: str) -> None:
    s = load(data_dir / "sudoku" / name)
    assert len(s.givens) == EXPECTED_COUNTS[name]
    assert_valid_grids(s.solutions, s.givens)  # the recorded solutions themselves are sound
    assert set(s.nsol.tolist()) == ({2} if name == "serg_benchmark.csv" else {1})


@pytest.mark.parametrize("name", UNIQUE_FILES)
def test_unique_puzzles_solved(engine: FastEngine, data_dir: Path, name: str) -> None:
    """nsol = 1: the first solution is the recorded one, and a search for two finds exactly one."""
    s = load(data_dir / "sudoku" / name)
    doms = initial_domains(s.givens)
    first = engine.solve(sudoku(), doms)
    assert np.all(first.status == Status.SOLVED)
    assert np.array_equal(grid_values(first), s.solutions), "solution differs from the recorded one"
    assert np.all(first.solutions == 1)
    both = engine.solve(sudoku(), doms, None, SolveOptions(max_solutions=2))
    assert np.all(both.status == Status.SOLVED)
    assert np.all(both.solutions == 1), f"{np.count_nonzero(both.solutions != 1)} puzzles not unique"
    assert np.array_equal(both.domains, first.domains)
    assert np.all(both.nodes >= first.nodes)


def test_multi_solution_puzzles(engine: FastEngine, data_dir: Path) -> None:
    """nsol = 2 (serg_benchmark): a valid grid extending the givens, and a capped count of exactly 2."""
    s = load(data_dir / "sudoku" / "serg_benchmark.csv")
    doms = initial_domains(s.givens)
    both = engine.solve(sudoku(), doms, None, SolveOptions(max_solutions=2))
    assert np.all(both.status == Status.SOLVED)
    assert np.all(both.solutions == 2), f"{np.count_nonzero(both.solutions != 2)} puzzles without a second solution"
    assert_valid_grids(grid_values(both), s.givens)
    first = engine.solve(sudoku(), doms)
    assert np.array_equal(first.domains, both.domains), "the first solution depends on max_solutions"


def sample(path: Path, k: int, seed: int) -> np.ndarray:
    s = load(path)
    rows = np.random.default_rng(seed).choice(len(s.givens), size=k, replace=False)
    return initial_domains(s.givens[np.sort(rows)])


@pytest.mark.parametrize(
    ("name", "k", "options"),
    [
        ("magictour_top1465.csv", 20, SolveOptions()),
        ("forum_hardest_1106.csv", 20, SolveOptions()),
        ("serg_benchmark.csv", 10, SolveOptions(max_solutions=2)),
        ("kaggle_10k.csv", 10, SolveOptions(mode=Mode.PROPAGATE)),
        ("forum_hardest_1106.csv", 10, SolveOptions(mode=Mode.PROPAGATE)),
    ],
    ids=["magictour", "forum_hardest", "serg-count2", "kaggle-propagate", "forum-propagate"],
)
def test_reference_agrees_on_a_sample(
    engine: FastEngine, data_dir: Path, name: str, k: int, options: SolveOptions
) -> None:
    doms = sample(data_dir / "sudoku" / name, k, seed=20240601)
    fast = engine.solve(sudoku(), doms, None, options)
    ref = reference_solve_batch(sudoku(), doms, None, options)
    assert fast.equals(ref)


def test_client_builders_agree(data_dir: Path) -> None:
    """fpgacsp.problems.sudoku must build the very program (same id, so the same registration) and domains."""
    from fpgacsp.problems.sudoku import load_puzzle_file, parse_sudoku, sudoku_domains, sudoku_program
    from fpgacsp_proto.encoding import program_id

    assert program_id(sudoku_program(3)) == program_id(sudoku())
    path = data_dir / "sudoku" / "magictour_top1465.csv"
    records = load_puzzle_file(path)
    ours = load(path)
    assert len(records) == len(ours.givens)
    grids = np.stack([parse_sudoku(r.puzzle) for r in records])
    assert np.array_equal(grids, ours.givens)
    assert np.array_equal(sudoku_domains(grids), initial_domains(ours.givens))
    assert [r.nsol for r in records] == ours.nsol.tolist()
