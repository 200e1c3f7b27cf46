"""Metrics on a set of boards: joint inference through the solver against the two-stage pipeline.

Joint: the board's logits go through the solver layer (candidates and priorities, see :mod:`.pipeline`).
Two-stage: read every given digit by its argmax, then solve with those digits fixed. One misread makes the
two-stage board wrong (unsatisfiable, or solved to another grid), so its board accuracy is capped at about
``p ** clues`` for a per-digit accuracy ``p``; the joint pipeline can beat that cap because the solver corrects
misreads whose true digit kept a candidate.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
from fpgacsp import Status, sudoku_domains, sudoku_program
from torch import Tensor, nn

from .inference import JointSolver
from .pipeline import BoardImages, board_logits


@dataclass
class Metrics:
    """One evaluation. Accuracies are fractions in [0, 1]; ``status`` counts solver statuses by name."""

    boards: int = 0
    clues: float = 0.0
    read_acc: float = 0.0  # argmax reading of the given cells
    cell_acc: float = 0.0  # every cell of the solver's board
    blank_acc: float = 0.0  # the blank cells of the solver's board (what regime b is scored on)
    board_acc: float = 0.0  # solver's board == the solution
    two_stage_acc: float = 0.0  # read, then solve with the read digits fixed
    ceiling: float = 0.0  # read_acc ** clues
    status: dict[str, int] = field(default_factory=dict)
    two_stage_status: dict[str, int] = field(default_factory=dict)
    solve_s: float = 0.0  # wall time in the solver layer
    nodes_mean: float = 0.0


@dataclass
class Sample:
    """A few boards for the plots: images ``[K, 81, 8, 8]``, and ``int64[K, 81]`` grids (-1 for none)."""

    images: np.ndarray
    given: np.ndarray
    read: np.ndarray
    solved: np.ndarray
    truth: np.ndarray
    board_ok: np.ndarray


def solved_grid(values: Tensor) -> Tensor:
    """``[B, 81, 9]`` 0/1 to ``int64[B, 81]``: the value of a singleton cell, -1 where the cell is not one."""
    single = values.sum(dim=-1) == 1
    return torch.where(single, values.argmax(dim=-1), torch.full_like(single, -1, dtype=torch.int64))


def _status_names(status: np.ndarray) -> Counter[str]:
    return Counter(Status(int(s)).name for s in status)


@torch.no_grad()
def evaluate(
    cnn: nn.Module, data: BoardImages, layer: JointSolver, batch_size: int = 256, keep: int = 0
) -> tuple[Metrics, Sample]:
    """Score ``data`` through ``layer`` (joint) and through read-then-solve (two-stage, same client).

    ``keep`` boards (the first ones) are returned for the plots.
    """
    was_training = cnn.training
    cnn.eval()
    tot: Counter[str] = Counter()
    status: Counter[str] = Counter()
    two_status: Counter[str] = Counter()
    solve_s, nodes = 0.0, 0
    kept: list[tuple[Tensor, ...]] = []
    for batch in data.batches(batch_size):
        logits = board_logits(cnn, batch)
        t0 = time.perf_counter()
        out = layer(logits, batch.given)
        solve_s += time.perf_counter() - t0
        read = torch.where(batch.given, logits.argmax(dim=-1), torch.full_like(batch.puzzle, -1))
        grid = solved_grid(out.values)
        ok_cells = grid == batch.solution
        board_ok = ok_cells.all(dim=1) & out.solved
        two = layer.client.solve(sudoku_program(), sudoku_domains(read.numpy()), mode="solve", node_limit=20_000)
        two_ok = (np.asarray(two.status) == int(Status.SOLVED)) & (_decode(two.domains) == batch.solution.numpy()).all(
            axis=1
        )
        tot.update(
            boards=len(batch),
            givens=int(batch.given.sum()),
            read_ok=int(((read == batch.puzzle) & batch.given).sum()),
            cells_ok=int(ok_cells.sum()),
            blank_ok=int((ok_cells & ~batch.given).sum()),
            boards_ok=int(board_ok.sum()),
            two_ok=int(two_ok.sum()),
        )
        status.update(_status_names(out.status.numpy()))
        two_status.update(_status_names(np.asarray(two.status)))
        nodes += int(out.nodes.sum())
        if sum(len(k[0]) for k in kept) < keep:
            kept.append((batch.images[:, :, 0], batch.given, read, grid, batch.solution, board_ok))
    cnn.train(was_training)
    n, givens = tot["boards"], tot["givens"]
    read_acc = tot["read_ok"] / max(givens, 1)
    clues = givens / max(n, 1)
    metrics = Metrics(
        boards=n,
        clues=clues,
        read_acc=read_acc,
        cell_acc=tot["cells_ok"] / max(81 * n, 1),
        blank_acc=tot["blank_ok"] / max(81 * n - givens, 1),
        board_acc=tot["boards_ok"] / max(n, 1),
        two_stage_acc=tot["two_ok"] / max(n, 1),
        ceiling=read_acc**clues,
        status=dict(status),
        two_stage_status=dict(two_status),
        solve_s=solve_s,
        nodes_mean=nodes / max(n, 1),
    )
    return metrics, _sample(kept, keep)


def _decode(domains: np.ndarray) -> np.ndarray:
    """Solved bitsets ``uint64[B, 81]`` to values (the lowest set bit; a singleton's only one)."""
    d = np.asarray(domains, dtype=np.uint64)
    out = np.full(d.shape, -1, dtype=np.int64)
    for v in range(8, -1, -1):
        out[(d >> np.uint64(v)) & np.uint64(1) == 1] = v
    return out


def _sample(kept: list[tuple[Tensor, ...]], keep: int) -> Sample:
    if not kept:
        empty = np.zeros((0, 81), dtype=np.int64)
        return Sample(np.zeros((0, 81, 8, 8), np.float32), empty.astype(bool), empty, empty, empty, np.zeros(0, bool))
    cols = [torch.cat([k[i] for k in kept])[:keep].numpy() for i in range(6)]
    return Sample(*cols)
