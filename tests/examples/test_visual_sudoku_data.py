"""Visual Sudoku data: the digit split shares no image, the generator's puzzles are unique with exactly
``clues`` givens (counted by the solver), and the file loader keeps the file's clue pattern."""

from __future__ import annotations

from pathlib import Path

import fpgacsp
import numpy as np
import pytest
from fpgacsp.problems import count_solutions
from fpgacsp.problems import random_sudoku_solution as random_solution

from examples.visual_sudoku.boards import generate_boards, load_boards
from examples.visual_sudoku.digits import load_split


def test_digit_split_is_by_image_and_covers_every_digit() -> None:
    split = load_split(seed=0)
    assert not set(split.train.ids.tolist()) & set(split.test.ids.tolist())
    for pool in (split.train, split.test):
        assert set(np.unique(pool.values).tolist()) == set(range(9))
        assert pool.images.shape[1:] == (8, 8) and pool.images.min() >= 0.0 and pool.images.max() <= 1.0
    assert len(split.train.ids) + len(split.test.ids) == 1797 - 178  # every digit but 0
    again = load_split(seed=0)
    assert np.array_equal(again.test.ids, split.test.ids)
    assert not np.array_equal(load_split(seed=1).test.ids, split.test.ids)


def test_random_solutions_are_valid_and_differ() -> None:
    rng = np.random.default_rng(0)
    grids = [random_solution(rng) for _ in range(20)]
    assert all(fpgacsp.check_sudoku_solution(g) for g in grids)
    assert len({g.tobytes() for g in grids}) == 20


@pytest.mark.parametrize("clues", [36, 26])
def test_generated_puzzles_are_unique_with_exact_clues(clues: int) -> None:
    with fpgacsp.connect("local") as client:
        boards = generate_boards(client, 40, clues, seed=3)
        assert (boards.given.sum(axis=1) == clues).all()
        assert np.array_equal(boards.puzzles[boards.given], boards.solutions[boards.given])
        assert (count_solutions(client, boards.puzzles) == 1).all()
        assert all(fpgacsp.check_sudoku_solution(s) for s in boards.solutions)
        # the count is real: one more blank than a minimal puzzle allows shows up as 2
        loose = boards.puzzles.copy()
        loose[:, :] = -1
        loose[:, :10] = boards.solutions[:, :10]
        assert (count_solutions(client, loose) == 2).all()
        same = generate_boards(client, 40, clues, seed=3)
        assert np.array_equal(same.puzzles, boards.puzzles)


def test_generator_rejects_impossible_clue_counts() -> None:
    with fpgacsp.connect("local") as client, pytest.raises(ValueError, match="clues"):
        generate_boards(client, 1, 16)


def test_file_boards_keep_their_pattern(data_dir: Path) -> None:
    boards = load_boards(data_dir / "sudoku" / "kaggle_10k.csv", 50, seed=0)
    assert len(boards) == 50
    assert all(fpgacsp.check_sudoku_solution(s) for s in boards.solutions)
    assert np.array_equal(boards.puzzles[boards.given], boards.solutions[boards.given])
    assert len(set(boards.given.sum(axis=1).tolist())) > 1  # clue counts as the file has them
