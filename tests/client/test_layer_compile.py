"""The layer under ``torch.compile`` and ``torch.func``: the solve is a pair of custom operators.

``torch.compile(model, fullgraph=True)`` of a model holding a :class:`ConstraintLayer` must give what eager gives,
outputs and gradients bit for bit, for every estimator, since the compiled graph calls the same opaque operators
(``torch.ops.fpgacsp.solve`` and ``solve_backward``); ``torch.library.opcheck`` checks those operators' fake
implementations, schemas and autograd registration against their real ones. ``torch.func.vmap`` batches all
slices into one solve; ``torch.func.grad`` is refused with a message that names the layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from cross_framework import ESTIMATORS
from fpgacsp import LocalSolver
from fpgacsp.torch_layer import (
    Abduction,
    ConstraintLayer,
    MinProbability,
    RelaxationSTE,
    Threshold,
    _op,
    hamming_loss,
)
from sudoku4 import PROGRAM, SYMBOL_OF_DIGIT, four_by_four_puzzles
from torch import Tensor, nn


@pytest.fixture(scope="module")
def solver() -> Iterator[LocalSolver]:
    with LocalSolver() as s:
        yield s


@pytest.fixture(scope="module")
def boards(solver: LocalSolver) -> tuple[Tensor, Tensor, Tensor]:
    """``(symbols, given, labels)`` of 12 4x4 boards whose givens are shown as symbols; every cell labelled, so
    that even the identity estimator's gradient reaches the symbol table."""
    puzzles, solutions = four_by_four_puzzles(solver, 12, seed=3)
    given = torch.as_tensor(puzzles >= 0)
    symbols = SYMBOL_OF_DIGIT[torch.as_tensor(np.where(puzzles >= 0, puzzles, 0))]
    labels = torch.as_tensor(solutions)
    return symbols, given, labels


class Reader(nn.Module):
    """A learnable symbol table read into logits, through the solver layer, to a Hamming loss on the blanks."""

    def __init__(self, solver: LocalSolver, dtype: torch.dtype) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.table = nn.Parameter(torch.randn(4, 4, generator=gen, dtype=dtype) * 2)
        self.layer = ConstraintLayer(PROGRAM, "solve", MinProbability(0.05), client=solver, priorities=True)

    def forward(self, symbols: Tensor, given: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        out = self.layer(self.table[symbols] * given[..., None], labels=labels)
        return hamming_loss(out.values, labels), out.values, out.status, out.nodes


def step(model: Reader, run: Callable[..., tuple[Tensor, ...]], ste: str, boards: tuple[Tensor, ...]) -> list[Tensor]:
    """One forward and backward with a fresh ``ste``: the outputs and the table's gradient."""
    model.layer.ste = ESTIMATORS[ste]()
    model.zero_grad()
    loss, values, status, nodes = run(*boards)
    loss.backward()
    assert model.table.grad is not None
    return [loss.detach(), values.detach(), status, nodes, model.table.grad.clone()]


@pytest.mark.parametrize(
    ("dtype", "backend"),
    [(torch.float32, "inductor"), (torch.float64, "aot_eager")],
    ids=["float32-inductor", "float64-aot_eager"],
)
def test_fullgraph_compile_gives_eager_outputs_and_gradients_bit_for_bit_for_every_estimator(
    solver: LocalSolver, boards: tuple[Tensor, Tensor, Tensor], dtype: torch.dtype, backend: str
) -> None:
    torch._dynamo.reset()
    model = Reader(solver, dtype)
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    for ste in ESTIMATORS:
        eager = step(model, model, ste, boards)
        graph = step(model, compiled, ste, boards)
        for name, a, b in zip(("loss", "values", "status", "nodes", "grad"), eager, graph, strict=True):
            assert a.dtype == b.dtype and torch.equal(a, b), (ste, name)
        assert eager[-1].abs().sum() > 0, ste  # a gradient that could have differed
        assert model.layer.info is not None and model.layer.info.solver_calls == 1  # published from the graph too


def test_compiled_layer_publishes_info_and_takes_a_new_batch_size_without_error(
    solver: LocalSolver, boards: tuple[Tensor, Tensor, Tensor]
) -> None:
    torch._dynamo.reset()
    model = Reader(solver, torch.float64)
    model.layer.ste = Abduction()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager", dynamic=True)
    for size in (12, 5, 7):
        part = tuple(t[:size] for t in boards)
        model.layer.ste = Abduction()
        loss, *_ = compiled(*part)
        loss.backward()
        info = model.layer.info
        assert info is not None and info.batch_size == size and info.solver_calls == 1
        assert info.backward is not None and info.backward.solver_calls == 1  # Abduction's solve, in the backward
        assert model.layer.ste.info.boards == size


def test_opcheck_passes_for_the_solve_operator_and_its_backward(
    solver: LocalSolver, boards: tuple[Tensor, Tensor, Tensor]
) -> None:
    symbols, given, labels = boards
    layer = ConstraintLayer(PROGRAM, "solve", MinProbability(0.05), RelaxationSTE(), client=solver, priorities=True)
    logits = (torch.randn(4, 4, dtype=torch.float64)[symbols] * given[..., None]).requires_grad_(True)
    torch.library.opcheck(_op.solve, (logits, layer._handle, None))
    torch.library.opcheck(_op.solve, (logits, layer._handle, labels))
    values, _, _ = _op.solve(logits.detach(), layer._handle, labels)
    for ste in ("relaxation", "interpolation", "abduction"):
        layer.ste = ESTIMATORS[ste]()
        args = (logits.detach(), values, torch.randn_like(values), layer._handle, labels)
        torch.library.opcheck(_op.solve_backward, args)


def test_compiled_layer_still_refuses_bad_logits_and_names_the_problem(solver: LocalSolver) -> None:
    torch._dynamo.reset()
    layer = ConstraintLayer(PROGRAM, discretize=Threshold(0.5), client=solver)
    compiled = torch.compile(lambda x: layer(x).values, fullgraph=True, backend="aot_eager")
    bad = torch.zeros(2, 16, 4)
    bad[1, 3, 2] = float("nan")
    message = r"logits must be finite: 1 NaN or infinite value\(s\), the first at \[1, 3, 2\]"
    with pytest.raises(ValueError, match=message):
        compiled(bad)  # the values are checked inside the operator, at run time
    with pytest.raises(Exception, match="N = 15 does not match the program's 16 variables"):
        compiled(torch.zeros(2, 15, 4))  # the structure while tracing (fullgraph wraps it in torch's Unsupported)


def test_vmap_solves_every_slice_in_one_batched_call(solver: LocalSolver) -> None:
    layer = ConstraintLayer(PROGRAM, discretize=Threshold(0.5), client=solver)
    logits = torch.randn(3, 5, 16, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3
    mapped = torch.func.vmap(lambda x: layer(x).values)(logits)
    info = layer.info
    assert info is not None and info.batch_size == 15 and info.solver_calls == 1
    assert torch.equal(mapped, torch.stack([layer(x).values for x in logits]))
    moved = torch.func.vmap(lambda x: layer(x).status, in_dims=1)(logits)  # a mapped dimension not in front
    assert torch.equal(moved, torch.stack([layer(logits[:, i]).status for i in range(5)]))


def test_torch_func_grad_is_refused_with_a_message_that_names_the_layer(solver: LocalSolver) -> None:
    layer = ConstraintLayer(PROGRAM, discretize=Threshold(0.5), client=solver)
    with pytest.raises(RuntimeError, match=r"ConstraintLayer: torch.func.grad, .* use loss.backward\(\)"):
        torch.func.grad(lambda x: layer(x).values.sum())(torch.zeros(2, 16, 4))
