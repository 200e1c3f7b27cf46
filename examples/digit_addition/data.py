"""The task's data: pairs of N-digit numbers written with scikit-learn's 8x8 digit images, labelled by their sum.

Images come from the same by-image split as the visual Sudoku (``first_digit=0``: all ten digits), so test sums
are written only in handwriting the CNN never saw. Each example is two numbers of ``N`` digits (leading zeros
allowed, as in A-NeSI's benchmark), every digit an image drawn at random (seeded) from the pool of its value,
and one label: the sum. Digits are stored least significant first, the solver's variable order
(:mod:`fpgacsp.problems.addition`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from examples.visual_sudoku.digits import DigitPool, DigitSplit, load_split

BASE = 10


def digit_split(seed: int = 0) -> DigitSplit:
    """All ten digits (values 0..9), split by image into train and test halves."""
    return load_split(seed=seed, first_digit=0)


@dataclass(frozen=True)
class AdditionBatch:
    """``images float[B, 2N, 1, 8, 8]`` (a's digits then b's, least significant first), ``digits int64[B, 2N]``
    (the truth, for evaluation only), ``sum_digits int64[B, N+1]`` (the label, least significant first)."""

    images: torch.Tensor
    digits: torch.Tensor
    sum_digits: torch.Tensor

    def __len__(self) -> int:
        return len(self.digits)


class AdditionData:
    """``count`` examples of ``num_digits``-digit addition written with images from ``pool``, fixed by ``seed``."""

    def __init__(self, pool: DigitPool, count: int, num_digits: int, seed: int = 0) -> None:
        if count < 1 or num_digits < 1:
            raise ValueError(f"count and num_digits must be positive, got {count} and {num_digits}")
        rng = np.random.default_rng(seed)
        self.num_digits = num_digits
        self.digits = rng.integers(0, BASE, size=(count, 2 * num_digits))
        by_value = pool.by_value()
        self.image_index = np.empty_like(self.digits)
        for v in range(BASE):
            cells = self.digits == v
            self.image_index[cells] = rng.choice(by_value[v], size=int(cells.sum()))
        weights = BASE ** np.arange(num_digits, dtype=object)
        a = (self.digits[:, :num_digits].astype(object) * weights).sum(axis=1)
        b = (self.digits[:, num_digits:].astype(object) * weights).sum(axis=1)
        self.sums = a + b  # Python ints: 15-digit sums do not fit every numpy path exactly
        self.sum_digits = np.array(
            [[int(s) // BASE**i % BASE for i in range(num_digits + 1)] for s in self.sums], dtype=np.int64
        )
        self.pool_images = pool.tensor()

    def __len__(self) -> int:
        return len(self.digits)

    def batch(self, rows: np.ndarray) -> AdditionBatch:
        return AdditionBatch(
            images=self.pool_images[torch.from_numpy(self.image_index[rows])],
            digits=torch.from_numpy(self.digits[rows]),
            sum_digits=torch.from_numpy(self.sum_digits[rows]),
        )

    def batches(self, size: int, rng: np.random.Generator | None = None) -> Iterator[AdditionBatch]:
        """Batches of ``size`` examples, shuffled when ``rng`` is given, in order otherwise."""
        order = rng.permutation(len(self)) if rng is not None else np.arange(len(self))
        for start in range(0, len(order), size):
            yield self.batch(order[start : start + size])
