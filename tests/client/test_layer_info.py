"""``ConstraintLayer.info``: what the last forward (and its backward) cost, checked against the solver's result."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Iterator
from typing import Any

import fpgacsp
import numpy as np
import pytest
import torch
from fpgacsp import LocalSolver, Mode, Status, sudoku_program
from fpgacsp.torch_layer import ConstraintLayer, Interpolation, LayerInfo, SolveStats, Threshold

PROGRAM = sudoku_program(2)


@pytest.fixture(scope="module")
def solver() -> Iterator[LocalSolver]:
    with LocalSolver(threads=1) as s:
        yield s


class CountingClient:
    """A client that keeps every result it returned, so the test compares ``info`` with the solver's own answer."""

    def __init__(self, inner: LocalSolver) -> None:
        self.inner = inner
        self.results: list[Any] = []

    def solve(self, *args: Any, **kwargs: Any) -> Any:
        result = self.inner.solve(*args, **kwargs)
        self.results.append(result)
        return result


def mixed_logits(batch: int = 16) -> torch.Tensor:
    """From all-unsure (row 0) to confident: with node_limit=3 every status of SOLVE comes back somewhere."""
    gen = torch.Generator().manual_seed(0)
    return torch.randn(batch, 16, 4, generator=gen) * torch.linspace(0, 3, batch)[:, None, None]


def test_info_is_none_before_the_first_forward(solver: LocalSolver) -> None:
    assert ConstraintLayer(PROGRAM, client=solver).info is None


@pytest.mark.parametrize("mode", [Mode.SOLVE, Mode.PROPAGATE])
def test_info_matches_the_solver_result(solver: LocalSolver, mode: Mode) -> None:
    client = CountingClient(solver)
    layer = ConstraintLayer(PROGRAM, mode, Threshold(0.4), client=client, node_limit=3)
    x = mixed_logits()
    out = layer(x)
    info = layer.info
    assert isinstance(info, LayerInfo)
    (result,) = client.results
    assert info.batch_size == 16
    assert info.solver_calls == 1
    assert info.nodes == int(np.asarray(result.nodes).sum()) == int(out.nodes.sum())
    want = {s: int((np.asarray(result.status) == int(s)).sum()) for s in Status}
    assert dict(info.statuses) == want
    assert sum(info.statuses.values()) == 16
    assert len([s for s, n in want.items() if n]) >= 2  # more than one status, so the counting is exercised
    assert 0.0 < info.solver_s <= info.forward_s
    assert info.outside_solver_s == pytest.approx(info.forward_s - info.solver_s)
    assert info.backward is None and info.backward_s is None
    with pytest.raises(TypeError):
        info.statuses[Status.SOLVED] = 0  # type: ignore[index]  # a snapshot, read-only


def test_each_forward_replaces_the_info(solver: LocalSolver) -> None:
    layer = ConstraintLayer(PROGRAM, "propagate", client=solver)
    layer(torch.zeros(3, 16, 4))
    assert layer.info is not None and layer.info.statuses[Status.FIXPOINT] == 3 and layer.info.nodes == 3
    layer(torch.zeros(5, 16, 4))
    assert layer.info is not None and layer.info.batch_size == 5 and layer.info.statuses[Status.FIXPOINT] == 5


def test_identity_backward_makes_no_solver_call(solver: LocalSolver) -> None:
    layer = ConstraintLayer(PROGRAM, client=solver, node_limit=50)
    x = mixed_logits().requires_grad_()
    layer(x).values.sum().backward()
    info = layer.info
    assert info is not None and isinstance(info.backward, SolveStats)
    assert info.backward.solver_calls == 0 and info.backward.nodes == 0
    assert info.backward_s is not None and info.backward_s >= 0.0


def test_interpolation_backward_solves_are_counted_apart(solver: LocalSolver) -> None:
    client = CountingClient(solver)
    layer = ConstraintLayer(PROGRAM, "solve", Threshold(0.4), Interpolation(lam=5.0), client=client, node_limit=50)
    x = mixed_logits().requires_grad_()
    out = layer(x)
    before = layer.info
    assert before is not None and before.backward is None
    (out.values * torch.randn(out.values.shape, generator=torch.Generator().manual_seed(1))).sum().backward()
    info = layer.info
    assert info is not None and info.backward is not None
    fwd_result, bwd_result = client.results
    assert info.nodes == int(np.asarray(fwd_result.nodes).sum())  # the forward part is unchanged
    assert info.backward.solver_calls == 1
    assert info.backward.nodes == int(np.asarray(bwd_result.nodes).sum())
    assert sum(info.backward.statuses.values()) == 16
    assert info.backward_s is not None and 0.0 < info.backward.solver_s <= info.backward_s


def test_info_does_not_travel_with_the_layer(solver: LocalSolver) -> None:
    layer = ConstraintLayer(PROGRAM, "propagate", target="local")
    layer(torch.zeros(2, 16, 4))
    assert layer.info is not None
    assert pickle.loads(pickle.dumps(layer)).info is None
    assert copy.deepcopy(layer).info is None
    layer.close()


def test_reexported() -> None:
    assert fpgacsp.torch_layer.LayerInfo is LayerInfo
