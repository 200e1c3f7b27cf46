"""Killer Sudoku: a Sudoku plus cages whose digits are all different and sum to a given total.

Cage totals are in digits (1..S) as printed on the puzzle, while variables hold ``digit - 1``; so a cage
of ``m`` cells becomes ``LINEAR(1.., cells, EQ, total - m)``. Cages of two or more cells also get a
(non-exact) ALLDIFF: bounds reasoning alone would miss naked singles inside a cage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fpgacsp_proto.isa import AllDiff, Constraint, Linear, LinearOp, Program, make_program

from .sudoku import sudoku_program


@dataclass(frozen=True)
class Cage:
    """A cage: the sum of its digits (1..S each) and its cells (row-major indices)."""

    total: int
    cells: tuple[int, ...]


def killer_program(cages: Sequence[Cage], box: int = 3) -> Program:
    """:func:`sudoku_program`'s constraints, then per cage its LINEAR sum and (size >= 2) its ALLDIFF.

    Raises ValueError when a cage is empty, repeats a cell, has a cell off the grid, or overlaps an
    earlier cage (the message names both cages and the cell).
    """
    base = sudoku_program(box)
    owner: dict[int, int] = {}
    cons: list[Constraint] = list(base.constraints)
    for i, cage in enumerate(cages):
        cells = tuple(int(c) for c in cage.cells)
        _check_cage(i, cage, cells, base.num_vars, owner)
        cons.append(Linear((1,) * len(cells), cells, LinearOp.EQ, int(cage.total) - len(cells)))
        if len(cells) >= 2:
            cons.append(AllDiff(cells, exact=False))
    return make_program(base.num_vars, base.domain_size, cons)


def _check_cage(i: int, cage: Cage, cells: tuple[int, ...], num_cells: int, owner: dict[int, int]) -> None:
    if not cells:
        raise ValueError(f"cages[{i}]: has no cells")
    for c in cells:
        if not 0 <= c < num_cells:
            raise ValueError(f"cages[{i}]: cell {c} is off the grid [0, {num_cells})")
        if c in owner:
            other = owner[c]
            what = "repeats" if other == i else f"overlaps cages[{other}] at"
            raise ValueError(f"cages[{i}] (total {cage.total}) {what} cell {c}")
        owner[c] = i
