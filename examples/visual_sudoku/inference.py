"""Joint inference: the board's readings and the Sudoku rules decided together, through the solver.

Three steps, each one batched solve of the boards still open (all through the same client as training):

1. The argmax readings, checked with ``max_solutions=2``: a board whose readings leave exactly one solution is
   done (this is where the two-stage pipeline stops; it also takes a non-unique or wrong completion).
2. One misread: for every given cell and every other digit, the readings with that one cell changed; of the
   variants the solver proves to have exactly one solution, the likeliest change (by the CNN's probability)
   wins. This is the most likely correction when one given was misread, the common case at 99% reading.
3. Widening candidates: the layer with ``MinProbability(p)`` (a blank's all-zero logits keep every digit) and
   priorities, ``p`` falling step by step, re-solving only the boards still open: cells the CNN is unsure of keep
   several digits and the search tries the likelier first, so two or more misreads are repaired too. Widening slowly
   matters because the search returns the *first* solution along the priorities, not the likeliest: a wide
   step would let it change a confident reading as readily as the doubtful one.

Puzzles in the benchmarks have one solution, so "exactly one solution" is a fair test of a reading.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from fpgacsp import Status, sudoku_domains, sudoku_program
from fpgacsp.torch_layer import SolverOutput, domains_to_values
from torch import Tensor

from .digits import NUM_DIGITS
from .pipeline import make_layer

CHUNK = 8192  # instances per solve call, well under the daemon's solve.max_request_instances

# From readings with probability 0.2 to readings a million times less likely than certain.
WIDENING = (0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 1e-4, 1e-5, 1e-6)


class JointSolver:
    """``solver(logits, given) -> SolverOutput`` for boards ``[B, 81, 9]`` with ``given bool[B, 81]``."""

    def __init__(self, client: Any, ps: tuple[float, ...] = WIDENING, node_limit: int = 20_000) -> None:
        if not ps or any(b >= a for a, b in itertools.pairwise(ps)):
            raise ValueError(f"ps: expected a decreasing, non-empty sequence of probabilities, got {ps!r}")
        self.client = client
        self.node_limit = node_limit
        self.layers = [make_layer(client, p, node_limit=node_limit) for p in ps]

    def __call__(self, logits: Tensor, given: Tensor) -> SolverOutput:
        logits = logits.detach()
        read = torch.where(given, logits.argmax(dim=-1), torch.full_like(given, -1, dtype=torch.int64)).numpy()
        values, status, nodes = self._unique(read)
        todo = np.flatnonzero(status != int(Status.SOLVED))
        if len(todo):
            self._one_misread(logits, given, read, todo, values, status, nodes)
        for layer in self.layers:
            todo = np.flatnonzero(status != int(Status.SOLVED))
            if len(todo) == 0:
                break
            again = layer(logits[todo])
            values[todo], status[todo] = again.values.numpy(), again.status.numpy()
            nodes[todo] += again.nodes.numpy()
        like = logits
        return SolverOutput(torch.from_numpy(values).to(like.dtype), torch.from_numpy(status), torch.from_numpy(nodes))

    def _solve(self, grids: np.ndarray) -> SimpleNamespace:
        """Solve ``grids`` with ``max_solutions=2`` in chunks the daemon accepts (its per-request cap)."""
        parts = [
            self.client.solve(
                sudoku_program(),
                sudoku_domains(grids[i : i + CHUNK]),
                mode="solve",
                node_limit=self.node_limit,
                max_solutions=2,
            )
            for i in range(0, len(grids), CHUNK)
        ]
        return SimpleNamespace(
            **{k: np.concatenate([getattr(p, k) for p in parts]) for k in ("domains", "status", "nodes", "solutions")}
        )

    def _unique(self, read: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step 1: solve the argmax readings; a board counts as solved only with exactly one solution."""
        res = self._solve(read)
        values = domains_to_values(res.domains, NUM_DIGITS, like=torch.zeros(0)).numpy()
        status = np.asarray(res.status, dtype=np.int64).copy()
        status[(status == int(Status.SOLVED)) & (np.asarray(res.solutions) != 1)] = int(Status.UNSAT)
        values[status != int(Status.SOLVED)] = 0
        return values, status, np.asarray(res.nodes, dtype=np.int64).copy()

    def _one_misread(
        self,
        logits: Tensor,
        given: Tensor,
        read: np.ndarray,
        todo: np.ndarray,
        values: np.ndarray,
        status: np.ndarray,
        nodes: np.ndarray,
    ) -> None:
        """Step 2: every single-cell change of the readings of boards ``todo``; keep the likeliest unique one."""
        logp = torch.log_softmax(logits.double(), dim=-1).numpy()
        triples = [
            (b, c, v)
            for b in todo
            for c in np.flatnonzero(given[b].numpy())
            for v in range(NUM_DIGITS)
            if v != read[b, c]
        ]
        if not triples:
            return
        r, c, v = (np.array(col, dtype=np.int64) for col in zip(*triples, strict=True))
        grids = read[r].copy()
        grids[np.arange(len(r)), c] = v
        res = self._solve(grids)
        ok = (np.asarray(res.status) == int(Status.SOLVED)) & (np.asarray(res.solutions) == 1)
        np.add.at(nodes, r, np.asarray(res.nodes, dtype=np.int64))
        score = np.where(ok, logp[r, c, v], -np.inf)
        for b in todo:
            mine = np.flatnonzero(r == b)
            best = mine[np.argmax(score[mine])] if len(mine) else None
            if best is not None and np.isfinite(score[best]):
                values[b] = domains_to_values(res.domains[best : best + 1], NUM_DIGITS, like=torch.zeros(0)).numpy()[0]
                status[b] = int(Status.SOLVED)
