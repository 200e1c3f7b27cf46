"""Sudoku boards: a seeded generator whose puzzles the solver itself proves unique, and the shared puzzle files.

Generation: a random solved grid (a base grid relabelled and shuffled by the symmetries that keep a Sudoku a
Sudoku), then cells are blanked in a random order, each removal kept only when the solver still finds exactly one
solution (``max_solutions=2`` reports 1), until ``clues`` givens remain. Every board of a batch carves in step, so
each round is one batched solve. Grids are ``int64[B, 81]``, values 0..8 for digits 1..9, -1 for a blank (the
convention of :mod:`fpgacsp.problems.sudoku`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fpgacsp import Status, load_puzzle_file, parse_sudoku, sudoku_domains, sudoku_program

CELLS = 81
MIN_CLUES = 17  # no 9x9 Sudoku with fewer givens has a unique solution
MAX_ROUNDS = 50  # fresh grids tried for a board whose carving got stuck above ``clues``


@dataclass(frozen=True)
class Boards:
    """Puzzles (``-1`` blank) and their solutions, ``int64[B, 81]`` each."""

    puzzles: np.ndarray
    solutions: np.ndarray

    def __len__(self) -> int:
        return len(self.puzzles)

    @property
    def given(self) -> np.ndarray:
        """``bool[B, 81]``: which cells are given (known to the model, as in the published benchmarks)."""
        return self.puzzles >= 0


def random_solution(rng: np.random.Generator) -> np.ndarray:
    """A random complete grid: the pattern grid under a random digit relabelling, row and column permutations
    within bands and stacks, band and stack permutations and an optional transpose."""
    r = np.arange(9)
    base = (3 * (r[:, None] % 3) + r[:, None] // 3 + r[None, :]) % 9
    rows = np.concatenate([3 * b + rng.permutation(3) for b in rng.permutation(3)])
    cols = np.concatenate([3 * s + rng.permutation(3) for s in rng.permutation(3)])
    grid = rng.permutation(9)[base[np.ix_(rows, cols)]]
    if rng.random() < 0.5:
        grid = grid.T
    return np.ascontiguousarray(grid).reshape(CELLS).astype(np.int64)


def count_solutions(client: Any, puzzles: np.ndarray) -> np.ndarray:
    """How many solutions each puzzle has, capped at 2 (the solver's ``max_solutions=2``): 1 means unique."""
    result = client.solve(sudoku_program(), sudoku_domains(puzzles), max_solutions=2)
    solved = np.asarray(result.status) == int(Status.SOLVED)
    return np.where(solved | (np.asarray(result.solutions) > 0), np.asarray(result.solutions), 0)


def _carve(client: Any, solutions: np.ndarray, clues: int, rng: np.random.Generator) -> np.ndarray:
    """Blank cells in a random order per board while the solution stays unique; boards stop at ``clues`` givens.

    A board that runs out of cells to try keeps more givens; the caller retries it with a fresh grid.
    """
    puzzles = solutions.copy()
    orders = np.stack([rng.permutation(CELLS) for _ in range(len(solutions))])
    for step in range(CELLS):
        active = np.flatnonzero((puzzles >= 0).sum(axis=1) > clues)
        if len(active) == 0:
            break
        trial = puzzles[active].copy()
        trial[np.arange(len(active)), orders[active, step]] = -1
        unique = count_solutions(client, trial) == 1
        puzzles[active[unique]] = trial[unique]
    return puzzles


def generate_boards(client: Any, count: int, clues: int = 36, seed: int = 0) -> Boards:
    """``count`` puzzles with exactly ``clues`` givens and one solution each, checked through ``client``.

    The same seed and arguments give the same boards (the solver is deterministic).
    """
    if not MIN_CLUES <= clues <= CELLS:
        raise ValueError(f"clues: must be in [{MIN_CLUES}, {CELLS}], got {clues}")
    if count < 1:
        raise ValueError(f"count: must be >= 1, got {count}")
    rng = np.random.default_rng(seed)
    solutions = np.stack([random_solution(rng) for _ in range(count)])
    puzzles = _carve(client, solutions, clues, rng)
    for _ in range(MAX_ROUNDS):
        stuck = np.flatnonzero((puzzles >= 0).sum(axis=1) != clues)
        if len(stuck) == 0:
            return Boards(puzzles, solutions)
        solutions[stuck] = np.stack([random_solution(rng) for _ in stuck])
        puzzles[stuck] = _carve(client, solutions[stuck], clues, rng)
    raise RuntimeError(f"could not carve unique puzzles down to {clues} clues in {MAX_ROUNDS} rounds; use more clues")


def load_boards(path: str | Path, count: int | None = None, seed: int = 0) -> Boards:
    """Unique-solution puzzles of a ``puzzle,solution[,nsol]`` file, their clue pattern as written.

    Lines without a solution or marked as having no or several solutions are skipped; ``count`` boards are drawn
    at random (seeded) when the file holds more.
    """
    records = [r for r in load_puzzle_file(path) if r.solution is not None and r.nsol in (None, 1)]
    records = [r for r in records if len(r.puzzle) == CELLS]
    if not records:
        raise ValueError(f"{path}: no 9x9 puzzle with a recorded unique solution")
    if count is not None and count < len(records):
        pick = np.sort(np.random.default_rng(seed).choice(len(records), size=count, replace=False))
        records = [records[i] for i in pick]
    puzzles = np.stack([parse_sudoku(r.puzzle) for r in records])
    solutions = np.stack([parse_sudoku(r.solution or "") for r in records])
    return Boards(puzzles, solutions)
