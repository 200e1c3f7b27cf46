"""Sudoku boards: seeded puzzles that the solver itself proves unique (``fpgacsp.generate_sudoku``), and the
shared puzzle files. Grids are ``int64[B, 81]``, values 0..8 for digits 1..9, -1 for a blank (the convention of
:mod:`fpgacsp.problems.sudoku`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from fpgacsp import SudokuBoards, generate_sudoku, load_puzzle_file, parse_sudoku

CELLS = 81
Boards = SudokuBoards  # puzzles (-1 blank) and solutions, int64[B, 81] each


def generate_boards(client: Any, count: int, clues: int = 36, seed: int = 0) -> Boards:
    """``count`` 9x9 puzzles with exactly ``clues`` givens and one solution each, checked through ``client``."""
    return generate_sudoku(client, count, clues, box=3, seed=seed)


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
