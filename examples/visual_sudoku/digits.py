"""The digit images: scikit-learn's bundled 8x8 handwritten digits, split into train and test by image.

The split is by image, stratified by digit and seeded, so test boards are drawn only from handwriting the CNN
never saw. Digit 0 is dropped: a Sudoku uses 1..9, and class ``k`` here is digit ``k + 1`` (the solver's value).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

NUM_DIGITS = 9


@dataclass(frozen=True)
class DigitPool:
    """Images ``float32[M, 8, 8]`` in [0, 1] and their values ``int64[M]`` (0..8 for digits 1..9).

    ``ids`` are the row numbers in scikit-learn's data set, to prove the two halves share no image.
    """

    images: np.ndarray
    values: np.ndarray
    ids: np.ndarray

    def by_value(self) -> list[np.ndarray]:
        """Indices into this pool for each of its values (0..8 for Sudoku), to draw an image of a given digit."""
        return [np.flatnonzero(self.values == v) for v in range(int(self.values.max()) + 1)]

    def tensor(self) -> torch.Tensor:
        """The images as a ``float32[M, 1, 8, 8]`` tensor (the CNN's input layout)."""
        return torch.from_numpy(self.images).unsqueeze(1)


@dataclass(frozen=True)
class DigitSplit:
    train: DigitPool
    test: DigitPool


def load_split(test_fraction: float = 0.5, seed: int = 0, first_digit: int = 1) -> DigitSplit:
    """Digits ``first_digit..9`` split by image into train and test, stratified by digit, reproducible from ``seed``.

    Half the images go to test by default: about 90 per digit each side, so every test board is drawn from
    plenty of unseen handwriting while the CNN still has enough to learn from. Values are ``digit - first_digit``
    (Sudoku: 1..9 as 0..8; digit addition, ``first_digit=0``: the digits themselves).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction: must be in (0, 1), got {test_fraction}")
    if first_digit not in (0, 1):
        raise ValueError(f"first_digit: must be 0 or 1, got {first_digit}")
    data = load_digits()
    keep = np.flatnonzero(data.target >= first_digit)
    images = (data.images[keep] / 16.0).astype(np.float32)
    values = (data.target[keep] - first_digit).astype(np.int64)
    tr, te = train_test_split(
        np.arange(len(keep)), test_size=test_fraction, stratify=values, random_state=seed, shuffle=True
    )
    tr, te = np.sort(tr), np.sort(te)
    return DigitSplit(
        train=DigitPool(images[tr], values[tr], keep[tr]),
        test=DigitPool(images[te], values[te], keep[te]),
    )
