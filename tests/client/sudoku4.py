"""4x4 Sudoku for the layer's small learning tests: puzzles with unique solutions, and a symbol-grounding task."""

from __future__ import annotations

import numpy as np
import torch
from fpgacsp import LocalSolver, generate_sudoku, sudoku_program
from fpgacsp.torch_layer import ConstraintLayer, Estimator, MinProbability, hamming_loss

PROGRAM = sudoku_program(2)
SYMBOL_OF_DIGIT = torch.tensor([2, 0, 3, 1])  # digit d is shown as symbol SYMBOL_OF_DIGIT[d]


def four_by_four_puzzles(solver: LocalSolver, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` minimal 4x4 puzzles and their solutions (``fpgacsp.generate_sudoku``, uniqueness proved by the
    solver)."""
    boards = generate_sudoku(solver, count, box=2, seed=seed)
    return boards.puzzles, boards.solutions


class SymbolGrounding:
    """Boards whose given digits are shown as symbols; a learnable table reads a symbol into digit logits.

    The blank cells get zero logits (MinProbability keeps them full), the given cells ``table[symbol]``. The loss
    compares the solved board with the solution on the BLANK cells only: no label of a given cell is ever seen,
    so the table can only learn what the symbols mean through the constraints linking givens and blanks.
    ``loss``: ``"mse"`` (squared error on the blanks, summed over cells, averaged over boards) or ``"hamming"``
    (:func:`hamming_loss`); ``explicit_target``: pass the blanks' targets to the layer (``layer(x, labels=...)``).
    """

    def __init__(
        self,
        solver: LocalSolver,
        ste: str | Estimator,
        boards: int = 24,
        seed: int = 0,
        loss: str = "mse",
        explicit_target: bool = False,
    ) -> None:
        puzzles, solutions = four_by_four_puzzles(solver, boards, seed)
        self.given = torch.as_tensor(puzzles >= 0)
        self.symbols = SYMBOL_OF_DIGIT[torch.as_tensor(np.where(puzzles >= 0, puzzles, 0))]
        self.solution = torch.as_tensor(solutions)
        self.target = torch.nn.functional.one_hot(self.solution, 4).double()
        self.blank_target = torch.where(self.given, torch.full_like(self.solution, -1), self.solution)
        self.blank = (~self.given).double()[..., None]
        self.table = torch.zeros(4, 4, dtype=torch.float64, requires_grad=True)
        self.layer = ConstraintLayer(PROGRAM, "solve", MinProbability(0.05), ste, client=solver, priorities=True)
        self.loss_kind = loss
        self.explicit_target = explicit_target

    def loss(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.table[self.symbols] * self.given[..., None]
        out = self.layer(x, labels=self.blank_target if self.explicit_target else None)
        if self.loss_kind == "hamming":
            return hamming_loss(out.values, self.blank_target), out.values
        loss = (((out.values - self.target) ** 2) * self.blank).sum() / self.given.shape[0]
        return loss, out.values

    def train(self, steps: int, lr: float) -> list[float]:
        opt = torch.optim.Adam([self.table], lr=lr)
        losses = []
        for _ in range(steps):
            loss, _ = self.loss()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    def reading_accuracy(self) -> float:
        """Fraction of digits whose symbol the table reads as that digit."""
        return (self.table.detach().argmax(-1)[SYMBOL_OF_DIGIT] == torch.arange(4)).double().mean().item()

    def board_accuracy(self) -> float:
        with torch.no_grad():
            _, values = self.loss()
        return (values == self.target).all(-1).all(-1).double().mean().item()
