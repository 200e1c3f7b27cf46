"""Seeded Sudoku puzzles whose uniqueness the solver itself proves, of any box size the ISA holds (2..5).

For training data and tests: a 4x4 board (box 2) learns in seconds, a 9x9 one is the benchmark's size.

Generation: a random solved grid (the pattern grid ``(S (r mod n) + r div n + c) mod S`` under a random relabelling
of the values, row and column permutations within bands and stacks, band and stack permutations and an optional
transpose: every symmetry that keeps a Sudoku a Sudoku), then cells are blanked in a random order, each removal
kept only when the solver still finds exactly one solution (``max_solutions=2`` reports 1). Every board of a
batch carves in step, so each round is one batched solve through whatever client is given (a daemon or
``fpgacsp.connect("local")``). Grids are ``int64[B, S*S]``, values ``0..S-1``, ``-1`` for a blank (the convention
of :mod:`fpgacsp.problems.sudoku`). The same seed and arguments give the same boards: the solver is
deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from fpgacsp_proto.isa import Mode, Status

from .sudoku import box_for_cells, sudoku_domains, sudoku_program

__all__ = ["SudokuBoards", "count_solutions", "generate_sudoku", "random_sudoku_solution"]

# The fewest givens a uniquely solvable puzzle can have, where it is known (9x9: 17, McGuire et al. 2012).
MIN_CLUES = {2: 4, 3: 17}
MAX_ROUNDS = 50  # fresh grids tried for a board whose carving got stuck above ``clues``


@dataclass(frozen=True)
class SudokuBoards:
    """Puzzles (``-1`` blank) and their unique solutions, ``int64[B, S*S]`` each."""

    puzzles: np.ndarray
    solutions: np.ndarray

    def __len__(self) -> int:
        return len(self.puzzles)

    @property
    def given(self) -> np.ndarray:
        """``bool[B, S*S]``: which cells are given."""
        return self.puzzles >= 0


def random_sudoku_solution(rng: np.random.Generator, box: int = 3) -> np.ndarray:
    """A random complete grid ``int64[S*S]`` (``S = box**2``), drawn with ``rng`` (see the module docstring)."""
    n, s = box, box * box
    r = np.arange(s)
    base = (n * (r[:, None] % n) + r[:, None] // n + r[None, :]) % s
    rows = np.concatenate([n * b + rng.permutation(n) for b in rng.permutation(n)])
    cols = np.concatenate([n * c + rng.permutation(n) for c in rng.permutation(n)])
    grid = rng.permutation(s)[base[np.ix_(rows, cols)]]
    if rng.random() < 0.5:
        grid = grid.T
    return np.ascontiguousarray(grid).reshape(s * s).astype(np.int64)


def count_solutions(client: Any, puzzles: np.ndarray) -> np.ndarray:
    """How many solutions each puzzle of ``int64[B, S*S]`` has, capped at 2: 1 means unique, 0 none."""
    box = box_for_cells(puzzles.shape[1])
    result = client.solve(sudoku_program(box), sudoku_domains(puzzles), mode=Mode.SOLVE, max_solutions=2)
    solved = np.asarray(result.status) == int(Status.SOLVED)
    found = np.asarray(result.solutions)
    return np.where(solved | (found > 0), found, 0)


def _carve(client: Any, solutions: np.ndarray, clues: int, rng: np.random.Generator) -> np.ndarray:
    """Blank cells in a random order per board while the solution stays unique; boards stop at ``clues`` givens
    (or when no cell can go). A board left above ``clues`` is the caller's to retry with a fresh grid."""
    cells = solutions.shape[1]
    puzzles = solutions.copy()
    orders = np.stack([rng.permutation(cells) for _ in range(len(solutions))])
    for step in range(cells):
        active = np.flatnonzero((puzzles >= 0).sum(axis=1) > clues)
        if len(active) == 0:
            break
        trial = puzzles[active].copy()
        trial[np.arange(len(active)), orders[active, step]] = -1
        unique = count_solutions(client, trial) == 1
        puzzles[active[unique]] = trial[unique]
    return puzzles


def generate_sudoku(client: Any, count: int, clues: int | None = None, *, box: int = 3, seed: int = 0) -> SudokuBoards:
    """``count`` puzzles of box size ``box`` with one solution each, proved unique through ``client``.

    ``clues``: exactly that many givens per puzzle (a board that gets stuck above it is retried with a fresh
    grid, up to 50 times); None carves each board until no further cell can go (a minimal puzzle: every given is
    needed for uniqueness). Example, 64 minimal 4x4 puzzles in a fraction of a second::

        with fpgacsp.connect("local") as client:
            boards = fpgacsp.generate_sudoku(client, 64, box=2, seed=0)
    """
    if not 2 <= box <= 5:
        raise ValueError(f"box: must be in [2, 5] (grids of 4 to 25 values), got {box}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count: must be a positive integer, got {count!r}")
    cells = box**4
    low = MIN_CLUES.get(box, 1)
    if clues is not None and not low <= clues <= cells:
        raise ValueError(f"clues: must be in [{low}, {cells}] for box {box}, got {clues}")
    rng = np.random.default_rng(seed)
    solutions = np.stack([random_sudoku_solution(rng, box) for _ in range(count)])
    target = 0 if clues is None else clues
    puzzles = _carve(client, solutions, target, rng)
    if clues is None:
        return SudokuBoards(puzzles, solutions)
    for _ in range(MAX_ROUNDS):
        stuck = np.flatnonzero((puzzles >= 0).sum(axis=1) != clues)
        if len(stuck) == 0:
            return SudokuBoards(puzzles, solutions)
        solutions[stuck] = np.stack([random_sudoku_solution(rng, box) for _ in stuck])
        puzzles[stuck] = _carve(client, solutions[stuck], clues, rng)
    raise RuntimeError(f"could not carve unique puzzles down to {clues} clues in {MAX_ROUNDS} rounds; use more clues")
