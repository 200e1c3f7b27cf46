"""The straight-through estimators: checked against their definitions, plus a small learning test.

The layer's output is piecewise constant in the logits, so finite differences of the layer itself say nothing
(zero almost everywhere). Instead each estimator's backward is compared with the function that defines it:
identity passes ``grad_values`` through; relaxation equals autograd of the relaxation, i.e. the gradient of the
straight-through surrogate ``values + relax(x) - relax(x).detach()``, and that surrogate passes gradcheck.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from fpgacsp import LocalSolver, Status, sudoku_program
from fpgacsp.torch_layer import (
    ESTIMATORS,
    Abduction,
    BackwardContext,
    ConfidentArgmax,
    ConstraintLayer,
    Discretizer,
    Estimator,
    IdentitySTE,
    Interpolation,
    Perturbed,
    RelaxationSTE,
    Threshold,
    TopK,
    make_estimator,
)
from sudoku4 import four_by_four_puzzles

PROGRAM = sudoku_program(2)
DISCRETIZERS = [Threshold(0.5), TopK(2), ConfidentArgmax(0.6)]


@pytest.fixture(scope="module")
def solver() -> Iterator[LocalSolver]:
    with LocalSolver(threads=1) as s:
        yield s


def random_logits(seed: int, batch: int = 4, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 16, 4, generator=gen, dtype=torch.float64) * 2).to(dtype).requires_grad_(True)


def layer_grad(layer: ConstraintLayer, x: torch.Tensor, grad_values: torch.Tensor) -> torch.Tensor:
    out = layer(x)
    (grad,) = torch.autograd.grad(out.values, x, grad_values)
    return grad


@pytest.mark.parametrize("disc", DISCRETIZERS, ids=repr)
@pytest.mark.parametrize("mode", ["solve", "propagate"])
def test_identity_passes_gradient_unchanged(solver: LocalSolver, disc: Discretizer, mode: str) -> None:
    x = random_logits(1)
    g = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(2))
    grad = layer_grad(ConstraintLayer(PROGRAM, mode, disc, "identity", client=solver), x, g)
    assert torch.equal(grad, g)


@pytest.mark.parametrize("disc", DISCRETIZERS, ids=repr)
def test_relaxation_equals_autograd_of_relaxation(solver: LocalSolver, disc: Discretizer) -> None:
    x = random_logits(3)
    g = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(4))
    grad = layer_grad(ConstraintLayer(PROGRAM, "solve", disc, "relaxation", client=solver), x, g)
    (want,) = torch.autograd.grad(disc.relax(x), x, g)
    torch.testing.assert_close(grad, want, rtol=0, atol=0)


@dataclass(frozen=True)
class TemperedTopK(TopK):
    """A discretizer of the user's own: its relaxation is a softmax at temperature 2, with no relax_backward."""

    def relax(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits / 2, dim=-1) * torch.sigmoid(logits)


def test_relaxation_of_a_users_discretizer_equals_autograd_of_its_relax(solver: LocalSolver) -> None:
    """The default relax_backward (torch.func.vjp, inside the backward operator) is autograd's gradient."""
    x = random_logits(5)
    g = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(6))
    disc = TemperedTopK(2)
    grad = layer_grad(ConstraintLayer(PROGRAM, "solve", disc, "relaxation", client=solver), x, g)
    (want,) = torch.autograd.grad(disc.relax(x), x, g)
    torch.testing.assert_close(grad, want, rtol=0, atol=0)


def test_relaxation_closed_forms(solver: LocalSolver) -> None:
    """``J^T g`` written out: sigmoid ``s (1 - s) g``; softmax ``s (g - <s, g>)`` per variable."""
    x = random_logits(5)
    g = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(6))
    s = torch.sigmoid(x.detach())
    grad = layer_grad(ConstraintLayer(PROGRAM, "solve", Threshold(), "relaxation", client=solver), x, g)
    torch.testing.assert_close(grad, s * (1 - s) * g)
    p = torch.softmax(x.detach(), dim=-1)
    for disc in (TopK(1), ConfidentArgmax()):
        grad = layer_grad(ConstraintLayer(PROGRAM, "solve", disc, "relaxation", client=solver), x, g)
        torch.testing.assert_close(grad, p * (g - (p * g).sum(-1, keepdim=True)))


@pytest.mark.parametrize("disc", DISCRETIZERS, ids=repr)
def test_relaxation_gradcheck(disc: Discretizer) -> None:
    """The relaxation whose Jacobian defines the estimator is smooth: autograd agrees with finite differences."""
    assert torch.autograd.gradcheck(disc.relax, (random_logits(7, batch=1),), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("disc", DISCRETIZERS, ids=repr)
def test_relaxation_equals_finite_differences(solver: LocalSolver, disc: Discretizer) -> None:
    """``grad_logits = J^T grad_values`` with ``J`` the relaxation's Jacobian by central differences: the
    definition, independent of autograd."""
    x = random_logits(11, batch=1)
    g = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(12))
    grad = layer_grad(ConstraintLayer(PROGRAM, "solve", disc, "relaxation", client=solver), x, g)
    flat = x.detach().reshape(-1)
    eps = 1e-6
    want = torch.empty_like(flat)
    for i in range(flat.numel()):
        step = torch.zeros_like(flat)
        step[i] = eps
        column = (disc.relax((flat + step).view_as(x)) - disc.relax((flat - step).view_as(x))) / (2 * eps)
        want[i] = (column * g).sum()  # (J^T g)_i = sum_j dJ_j/dx_i g_j
    torch.testing.assert_close(grad, want.view_as(x), rtol=1e-6, atol=1e-8)


def test_straight_through_surrogate(solver: LocalSolver) -> None:
    """Forward value of the layer, backward of the relaxation: ``values + r(x) - r(x).detach()`` reproduces both."""
    x = random_logits(13, batch=2)
    disc = ConfidentArgmax(0.6)
    layer = ConstraintLayer(PROGRAM, "solve", disc, "relaxation", client=solver)
    out = layer(x)
    r = disc.relax(x)
    surrogate = out.values.detach() + r - r.detach()
    g = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(14))
    assert torch.equal(surrogate.detach(), out.values.detach())
    torch.testing.assert_close(
        torch.autograd.grad(out.values, x, g)[0], torch.autograd.grad(surrogate, x, g)[0], rtol=0, atol=0
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("ste", ["identity", "relaxation"])
def test_gradient_dtype_follows_logits(solver: LocalSolver, dtype: torch.dtype, ste: str) -> None:
    x = random_logits(9, dtype=dtype)
    out = ConstraintLayer(PROGRAM, "solve", TopK(2), ste, client=solver)(x)
    (out.values * torch.arange(4, dtype=dtype)).sum().backward()
    assert x.grad is not None and x.grad.dtype == dtype and x.grad.shape == x.shape
    assert bool(x.grad.abs().sum() > 0)


def test_gradient_is_zero_when_loss_ignores_values(solver: LocalSolver) -> None:
    x = random_logits(10)
    out = ConstraintLayer(PROGRAM, client=solver)(x)
    (out.values.sum() * 0).backward()
    assert x.grad is not None and not bool(x.grad.any())


# --- the estimator seam ---------------------------------------------------------------------------------


class ProbeEstimator(Estimator):
    """A stand-in for the re-solving estimators of the next issue: solves again at perturbed logits and returns
    the finite difference of the values (Vlastelica et al.'s form with lambda = 1)."""

    name = "probe"

    def __init__(self) -> None:
        self.seen: list[BackwardContext] = []

    def backward(self, ctx: BackwardContext, grad_values: torch.Tensor) -> torch.Tensor:
        self.seen.append(ctx)
        perturbed = ctx.resolve(ctx.logits - grad_values)  # logits are scores: descent raises wanted values
        return ctx.values - perturbed


def test_estimator_seam_can_solve_again(solver: LocalSolver) -> None:
    probe = ProbeEstimator()
    assert make_estimator(probe) is probe
    layer = ConstraintLayer(PROGRAM, "solve", ConfidentArgmax(0.9), probe, client=solver)
    x = torch.zeros(1, 16, 4, dtype=torch.float64, requires_grad=True)
    out = layer(x)
    target = torch.nn.functional.one_hot(torch.tensor([3, 2, 1, 0] * 4), 4).to(x.dtype)  # want value 3 in cell 0
    g = torch.zeros_like(x)
    g[0, 0] = -20 * target[0]  # the incoming gradient asks for a larger value-3 logit in cell 0
    (grad,) = torch.autograd.grad(out.values, x, g)
    [ctx] = probe.seen
    assert torch.equal(ctx.logits, x.detach()) and torch.equal(ctx.values, out.values.detach())
    assert ctx.discretizer == ConfidentArgmax(0.9)
    # solving at the perturbed logits fixes cell 0 to 3: the estimate moves cell 0 from value 0 towards value 3
    assert grad[0, 0].tolist() == [1.0, 0.0, 0.0, -1.0]
    assert out.status.tolist() == [Status.SOLVED]


def test_estimator_registry() -> None:
    assert dict(ESTIMATORS) == {
        "identity": IdentitySTE,
        "relaxation": RelaxationSTE,
        "interpolation": Interpolation,
        "perturbed": Perturbed,
        "abduction": Abduction,
    }
    assert make_estimator("identity") == IdentitySTE() != RelaxationSTE()


# --- learning -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def puzzles(solver: LocalSolver) -> tuple[np.ndarray, np.ndarray]:
    return four_by_four_puzzles(solver, 32, seed=0)


@pytest.mark.parametrize(
    ("ste", "disc"),
    [("identity", Threshold(0.5)), ("relaxation", Threshold(0.5)), ("identity", ConfidentArgmax(0.9))],
    ids=lambda v: repr(v) if isinstance(v, Discretizer) else None,
)
def test_learning_reduces_loss(
    solver: LocalSolver, puzzles: tuple[np.ndarray, np.ndarray], ste: str, disc: Discretizer
) -> None:
    """A per-cell linear model reads the givens; the loss is on the solver's output only. It has to learn to be
    sure of the givens (so the solver completes the unique solution) and unsure of the blanks.

    Zero initialisation makes the run independent of torch's random state. Not listed: relaxation with
    ConfidentArgmax, which on this task often ends with every blank confidently fixed to one value (UNSAT), where
    the saturated softmax passes almost no gradient back; docs/layer.md warns about that combination.
    """
    givens, solutions = puzzles
    inputs = torch.nn.functional.one_hot(torch.as_tensor(givens + 1), 5).float()  # [B, 16, 5]: blank or digit
    target = torch.nn.functional.one_hot(torch.as_tensor(solutions), 4).float()
    model = torch.nn.Linear(5, 4)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    layer = ConstraintLayer(PROGRAM, "solve", disc, ste, client=solver)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    losses = []
    for _ in range(30):
        out = layer(model(inputs))
        loss = ((out.values - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = layer(model(inputs))
    correct = (final.values == target).all(-1).all(-1).float().mean().item()
    assert losses[-1] < 0.5 * losses[0], losses
    assert correct >= 0.9, (correct, losses)
