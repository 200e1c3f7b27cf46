"""From a batch of boards to the solver: board tensors, the board's logits and the solver layer.

The model knows which cells are given (as in the published benchmarks) but not their digits, which are images.
A given cell's logits are the CNN's reading of its image; a blank cell's logits are zeros. The layer discretizes
with :class:`MinProbability`: a blank (uniform softmax) keeps every digit, a given cell keeps each digit whose
probability is at least ``p`` (its argmax always), so an unsure reading leaves several candidates, and
``priorities=True`` makes the search try the likelier digits first. That is inference *through* the solver: a
misread whose true digit kept some probability is corrected by the constraints instead of sinking the board.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from fpgacsp import sudoku_program
from fpgacsp.torch_layer import (
    Abduction,
    ConstraintLayer,
    Estimator,
    Interpolation,
    MinProbability,
    Perturbed,
    Widening,
)
from torch import Tensor, nn

from .boards import CELLS, Boards
from .digits import NUM_DIGITS, DigitPool


@dataclass(frozen=True)
class BoardBatch:
    """``images float[B, 81, 1, 8, 8]`` (zeros at blanks), ``given bool[B, 81]``, ``puzzle`` and ``solution``
    ``int64[B, 81]`` (values 0..8, -1 for a blank in ``puzzle``), and the boards' row numbers ``index``."""

    images: Tensor
    given: Tensor
    puzzle: Tensor
    solution: Tensor
    index: Tensor

    def __len__(self) -> int:
        return len(self.given)


class BoardImages:
    """Boards whose given digits are images: each given cell gets an image of its digit drawn (seeded) from
    ``pool``, fixed for the board's lifetime so every evaluation sees the same handwriting."""

    def __init__(self, boards: Boards, pool: DigitPool, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        by_value = pool.by_value()
        choice = np.full(boards.puzzles.shape, -1, dtype=np.int64)
        for v in range(NUM_DIGITS):
            cells = boards.puzzles == v
            choice[cells] = rng.choice(by_value[v], size=int(cells.sum()))
        self.boards = boards
        self.image_index = choice
        self.pool_images = pool.tensor()

    def __len__(self) -> int:
        return len(self.boards)

    def batch(self, rows: np.ndarray) -> BoardBatch:
        idx = torch.from_numpy(self.image_index[rows])
        given = idx >= 0
        images = self.pool_images[idx.clamp(min=0)] * given[..., None, None, None]
        return BoardBatch(
            images=images,
            given=given,
            puzzle=torch.from_numpy(self.boards.puzzles[rows]),
            solution=torch.from_numpy(self.boards.solutions[rows]),
            index=torch.from_numpy(np.asarray(rows, dtype=np.int64)),
        )

    def batches(self, size: int, rng: np.random.Generator | None = None) -> Iterator[BoardBatch]:
        """Batches of ``size`` boards, shuffled when ``rng`` is given, in order otherwise."""
        order = rng.permutation(len(self)) if rng is not None else np.arange(len(self))
        for start in range(0, len(order), size):
            yield self.batch(order[start : start + size])


def board_logits(cnn: nn.Module, batch: BoardBatch, images: Tensor | None = None) -> Tensor:
    """``[B, 81, 9]``: the CNN's logits at given cells, zeros (a uniform belief, hence a full domain) at blanks.

    Only the given cells go through the CNN. ``images`` replaces the batch's given-cell images (augmentation).
    """
    cell_images = batch.images[batch.given] if images is None else images
    read = cnn(cell_images)
    logits = torch.zeros(len(batch), CELLS, NUM_DIGITS, dtype=read.dtype)
    return logits.index_put((batch.given,), read)


def make_estimator(
    name: str,
    lam: float,
    sigma: float,
    samples: int,
    widening: Widening = Widening.NONE,
    sample: bool = False,
    seed: int | None = None,
) -> Estimator | str:
    """The layer's ``ste``: ``identity``, ``abduction`` (abductive learning: the labels of the unobserved variables
    that the observed targets imply; ``widening`` and ``sample`` as :class:`Abduction` takes them),
    ``interpolation`` (Vlastelica et al., normalized, logit shift ``lam``) or ``perturbed`` (Gaussian noise
    ``sigma``, ``samples`` solves averaged). ``seed`` seeds the noise of ``perturbed`` and of a sampling
    ``abduction``."""
    if name == "abduction":
        return Abduction(widening, sample=sample, seed=seed)
    if name == "interpolation":
        return Interpolation(lam=lam, normalize=True)
    if name == "perturbed":
        return Perturbed(sigma=sigma, samples=samples, seed=seed)
    if name == "identity":
        return "identity"
    raise ValueError(f"ste: expected 'identity', 'abduction', 'interpolation' or 'perturbed', got {name!r}")


def solver_seconds(layer: ConstraintLayer) -> float:
    """Seconds the layer's last step spent in the solver: its forward's solves, and its backward's once run.

    Read it after ``loss.backward()``: ``layer.info`` is a snapshot that the backward completes (the estimators
    that solve again, Interpolation, Perturbed and Abduction, do it there). 0 before the first forward.
    """
    info = layer.info
    if info is None:
        return 0.0
    return info.solver_s + (info.backward.solver_s if info.backward is not None else 0.0)


def make_layer(
    client: Any, p: float, ste: Estimator | str = "identity", node_limit: int = 20_000, timeout: float = 60.0
) -> ConstraintLayer:
    """The Sudoku solver layer through ``client``: MinProbability(p) candidates, searched likeliest-first.

    The node limit bounds a pathological board (a confident misread leaves an unsatisfiable one, which the
    search refutes quickly under propagation; the limit only guards the worst case).
    """
    return ConstraintLayer(
        sudoku_program(),
        mode="solve",
        discretize=MinProbability(p),
        ste=ste,
        client=client,
        priorities=True,
        node_limit=node_limit,
        timeout=timeout,
    )
