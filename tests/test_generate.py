"""fpgacsp.generate_sudoku: seeded puzzles of every small box size, unique (proved by the solver), with exactly
the clues asked for or minimal, their givens agreeing with a valid solution."""

from __future__ import annotations

from collections.abc import Iterator

import fpgacsp
import numpy as np
import pytest
from fpgacsp import generate_sudoku
from fpgacsp.problems import count_solutions, random_sudoku_solution


@pytest.fixture(scope="module")
def client() -> Iterator[fpgacsp.Client]:
    with fpgacsp.connect("local") as c:
        yield c


def valid_grid(grid: np.ndarray, box: int) -> bool:
    s = box * box
    g = grid.reshape(s, s)
    boxes = g.reshape(box, box, box, box).transpose(0, 2, 1, 3).reshape(s, s)
    return all(sorted(unit.tolist()) == list(range(s)) for rows in (g, g.T, boxes) for unit in rows)


@pytest.mark.parametrize("box", [2, 3, 4, 5])
def test_random_solutions_are_valid_grids_and_differ(box: int) -> None:
    rng = np.random.default_rng(box)
    grids = [random_sudoku_solution(rng, box) for _ in range(12)]
    assert all(valid_grid(g, box) for g in grids)
    assert len({g.tobytes() for g in grids}) == 12


def test_minimal_4x4_puzzles_are_unique_and_every_given_is_needed(client: fpgacsp.Client) -> None:
    boards = generate_sudoku(client, 32, box=2, seed=7)
    assert boards.puzzles.shape == boards.solutions.shape == (32, 16)
    assert all(valid_grid(s, 2) for s in boards.solutions)
    assert np.array_equal(boards.puzzles[boards.given], boards.solutions[boards.given])
    assert (count_solutions(client, boards.puzzles) == 1).all()
    # minimal: blanking any one more given leaves two or more solutions
    for b in range(4):
        for cell in np.flatnonzero(boards.given[b]):
            loose = boards.puzzles[b].copy()
            loose[cell] = -1
            assert count_solutions(client, loose[None])[0] == 2


@pytest.mark.parametrize(("box", "clues"), [(2, 6), (3, 30), (4, 180)])
def test_exact_clue_counts(client: fpgacsp.Client, box: int, clues: int) -> None:
    boards = generate_sudoku(client, 6, clues, box=box, seed=1)
    assert (boards.given.sum(axis=1) == clues).all()
    assert (count_solutions(client, boards.puzzles) == 1).all()
    assert all(valid_grid(s, box) for s in boards.solutions)


def test_the_same_seed_gives_the_same_boards_and_another_seed_others(client: fpgacsp.Client) -> None:
    a = generate_sudoku(client, 8, box=2, seed=3)
    b = generate_sudoku(client, 8, box=2, seed=3)
    c = generate_sudoku(client, 8, box=2, seed=4)
    assert np.array_equal(a.puzzles, b.puzzles) and np.array_equal(a.solutions, b.solutions)
    assert not np.array_equal(a.solutions, c.solutions)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": 1, "clues": 16}, r"clues: must be in \[17, 81\] for box 3, got 16"),
        ({"count": 1, "clues": 3, "box": 2}, r"clues: must be in \[4, 16\] for box 2, got 3"),
        ({"count": 0}, r"count: must be a positive integer, got 0"),
        ({"count": 1, "box": 6}, r"box: must be in \[2, 5\]"),
    ],
)
def test_bad_arguments_name_the_field(client: fpgacsp.Client, kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_sudoku(client, **kwargs)
