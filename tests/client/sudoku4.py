"""Random 4x4 Sudoku puzzles with unique solutions, for the layer's small learning tests."""

from __future__ import annotations

import numpy as np
from fpgacsp import LocalSolver, Mode, sudoku_domains, sudoku_program

PROGRAM = sudoku_program(2)


def four_by_four_puzzles(solver: LocalSolver, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random 4x4 solutions (relabelled, rows and columns shuffled within bands) carved to minimal unique puzzles.

    Uniqueness is proved by the solver itself (``max_solutions=2`` finds exactly one).
    """
    rng = np.random.default_rng(seed)
    base = np.array([[(r * 2 + r // 2 + c) % 4 for c in range(4)] for r in range(4)])
    puzzles: list[np.ndarray] = []
    solutions: list[np.ndarray] = []
    while len(puzzles) < count:
        grid = rng.permutation(4)[base]
        grid = grid[[b * 2 + i for b in rng.permutation(2) for i in rng.permutation(2)]]
        grid = grid[:, [b * 2 + i for b in rng.permutation(2) for i in rng.permutation(2)]]
        solution = (grid.T if rng.random() < 0.5 else grid).reshape(-1)
        puzzle = solution.copy()
        for cell in rng.permutation(16):
            trial = puzzle.copy()
            trial[cell] = -1
            if solver.solve(PROGRAM, sudoku_domains(trial), mode=Mode.SOLVE, max_solutions=2).solutions[0] == 1:
                puzzle = trial
        puzzles.append(puzzle)
        solutions.append(solution)
    return np.stack(puzzles), np.stack(solutions)
