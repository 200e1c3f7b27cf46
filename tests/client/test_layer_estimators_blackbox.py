"""The solver-based estimators (Interpolation, Perturbed) and the MinProbability discretizer.

Three kinds of checks. Definitions: on one variable, where the solver is an argmax, each estimator's gradient is
worked out by hand (Interpolation exactly, Perturbed against the closed-form Jacobian of the Gaussian-smoothed
argmax). Plumbing: one batched re-solve per backward through the forward's own client, a daemon included, with the
same answers as the local engine. Learning: symbol grounding on 4x4 Sudoku, where the loss sees only the blank
cells and a table reading the givens' symbols must be learnt through the constraints; the identity STE gives it
exactly zero gradient (the setting where SATNet collapses), the two solver-based estimators learn it.
"""

from __future__ import annotations

import copy
import math
import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from daemon_process import DaemonProcess
from fpgacsp import LocalSolver, Neq, Status, make_program, sudoku_program
from fpgacsp.torch_layer import (
    ConstraintLayer,
    Estimator,
    Interpolation,
    MinProbability,
    Perturbed,
    TopK,
    make_estimator,
)
from sudoku4 import SymbolGrounding

SUDOKU = sudoku_program(2)
ONE_VAR = make_program(1, 3, [])  # no constraints: SOLVE returns the highest-priority value of the domain
STEPS = 50


@pytest.fixture(scope="module")
def solver() -> Iterator[LocalSolver]:
    with LocalSolver(threads=1) as s:
        yield s


class CountingClient:
    """Forwards to a real client and records the batch size of every solve call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.batches: list[int] = []

    def solve(self, program: Any, domains: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        self.batches.append(int(domains.shape[0]))
        return self.inner.solve(program, domains, *args, **kwargs)


def grad_of(layer: ConstraintLayer, logits: torch.Tensor, grad_values: torch.Tensor) -> torch.Tensor:
    x = logits.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(layer(x).values, x, grad_values)
    return grad


# --- names and arguments --------------------------------------------------------------------------------


def test_names_and_defaults() -> None:
    import fpgacsp

    assert fpgacsp.Interpolation is Interpolation and fpgacsp.Perturbed is Perturbed
    assert fpgacsp.MinProbability is MinProbability
    assert make_estimator("interpolation") == Interpolation(20.0) == Interpolation()
    assert make_estimator("perturbed") == Perturbed(1.0, 8, None) == Perturbed()
    assert Interpolation(5) != Interpolation(5, normalize=True) and Perturbed(seed=1) != Perturbed(seed=2)
    assert repr(Interpolation()) == "Interpolation(lam=20.0, normalize=False)"
    assert repr(Perturbed(0.5, 4, seed=3)) == "Perturbed(sigma=0.5, samples=4, seed=3)"
    assert repr(MinProbability()) == "MinProbability(p=0.01)"
    layer = ConstraintLayer(SUDOKU, ste="interpolation", discretize=MinProbability())
    assert "ste=Interpolation(lam=20.0, normalize=False)" in repr(layer)


BAD_ARGUMENTS = [
    (Interpolation, {"lam": 0}, "Interpolation: lam must be a positive number, got 0"),
    (Interpolation, {"lam": -1.0}, "Interpolation: lam must be a positive number, got -1.0"),
    (Interpolation, {"lam": math.inf}, "Interpolation: lam must be a positive number, got inf"),
    (Interpolation, {"lam": True}, "Interpolation: lam must be a positive number, got True"),
    (Interpolation, {"lam": "20"}, "Interpolation: lam must be a positive number, got '20'"),
    (Perturbed, {"sigma": 0.0}, "Perturbed: sigma must be a positive number, got 0.0"),
    (Perturbed, {"sigma": math.nan}, "Perturbed: sigma must be a positive number, got nan"),
    (Perturbed, {"samples": 0}, "Perturbed: samples must be a positive integer, got 0"),
    (Perturbed, {"samples": 2.5}, "Perturbed: samples must be a positive integer, got 2.5"),
    (Perturbed, {"samples": True}, "Perturbed: samples must be a positive integer, got True"),
    (Perturbed, {"seed": 1.5}, "Perturbed: seed must be None or an integer, got 1.5"),
    (Perturbed, {"seed": "7"}, "Perturbed: seed must be None or an integer, got '7'"),
    (MinProbability, {"p": 0}, "MinProbability: p must be a number in (0, 1], got 0"),
    (MinProbability, {"p": -0.1}, "MinProbability: p must be a number in (0, 1], got -0.1"),
    (MinProbability, {"p": 1.5}, "MinProbability: p must be a number in (0, 1], got 1.5"),
    (MinProbability, {"p": math.nan}, "MinProbability: p must be a number in (0, 1], got nan"),
    (MinProbability, {"p": True}, "MinProbability: p must be a number in (0, 1], got True"),
    (MinProbability, {"p": "0.1"}, "MinProbability: p must be a number in (0, 1], got '0.1'"),
    (MinProbability, {"p": None}, "MinProbability: p must be a number in (0, 1], got None"),
]


@pytest.mark.parametrize(("cls", "kwargs", "message"), BAD_ARGUMENTS)
def test_bad_arguments(cls: Any, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        cls(**kwargs)
    assert str(info.value) == message


def test_normalize_must_be_bool() -> None:
    with pytest.raises(TypeError, match=r"^Interpolation: normalize must be True or False, got 1$"):
        Interpolation(normalize=1)  # type: ignore[arg-type]


# --- MinProbability -------------------------------------------------------------------------------------

# softmax([2, 1, 0, -3]) = [0.6623, 0.2436, 0.0896, 0.0045]; softmax([0, 0, 0, 0]) = 0.25 each
MASKS = [
    (0.01, [2.0, 1.0, 0.0, -3.0], [1, 1, 1, 0]),
    (0.004, [2.0, 1.0, 0.0, -3.0], [1, 1, 1, 1]),
    (0.1, [2.0, 1.0, 0.0, -3.0], [1, 1, 0, 0]),
    (0.5, [2.0, 1.0, 0.0, -3.0], [1, 0, 0, 0]),
    (0.9, [2.0, 1.0, 0.0, -3.0], [1, 0, 0, 0]),  # nothing reaches p: the argmax stays
    (1.0, [-3.0, 0.0, 1.0, 2.0], [0, 0, 0, 1]),  # p = 1 keeps the argmax only
    (0.25, [0.0, 0.0, 0.0, 0.0], [1, 1, 1, 1]),  # p = 1 / D: still the full domain
    (0.26, [0.0, 0.0, 0.0, 0.0], [1, 1, 1, 1]),  # just above: every value tied for the top stays, not value 0
    (0.9, [1.0, 3.0, 3.0, 3.0], [0, 1, 1, 1]),  # a tie at the top: all of it, even with nothing reaching p
    (0.3, [0.0, 5.0, 5.0, 0.0], [0, 1, 1, 0]),
    (0.01, [0.0, 20.0, 0.0, 0.0], [0, 1, 0, 0]),
]


@pytest.mark.parametrize(("p", "row", "want"), MASKS)
def test_min_probability_masks(p: float, row: list[float], want: list[int]) -> None:
    got = MinProbability(p).mask(torch.tensor([[row]]))
    assert got.int().tolist() == [[want]]


@pytest.mark.parametrize("d", [2, 4, 9, 16, 64])
def test_min_probability_zeros_give_the_full_domain(d: int) -> None:
    zeros = torch.zeros(3, 5, d)
    for p in (0.01, 1 / d, 0.5, 1.0):  # at every p: a blank is never fixed to value 0 by the tie-break
        assert bool(MinProbability(p).mask(zeros).all())
    full = (1 << d) - 1
    assert MinProbability().domains(zeros).tolist() == [[full] * 5] * 3


def test_min_probability_always_keeps_the_argmax() -> None:
    x = torch.randn(64, 9, 9, generator=torch.Generator().manual_seed(0)) * 4
    for p in (0.01, 0.2, 0.5, 0.99, 1.0):
        mask = MinProbability(p).mask(x)
        assert bool(mask.gather(-1, x.argmax(-1, keepdim=True)).all())
        assert bool((mask == ((torch.softmax(x, -1) >= p) | (x == x.amax(-1, keepdim=True)))).all())


def test_min_probability_is_dtype_independent_and_relaxes_to_softmax() -> None:
    x = (torch.randn(8, 16, 4, generator=torch.Generator().manual_seed(1)) * 3).to(torch.bfloat16)
    disc = MinProbability(0.05)
    assert torch.equal(disc.mask(x), disc.mask(x.to(torch.float32)))
    assert torch.equal(disc.mask(x.to(torch.float16)), disc.mask(x.to(torch.float64)))
    y = x.double()
    torch.testing.assert_close(disc.relax(y), torch.softmax(y, -1), rtol=0, atol=0)


def test_min_probability_lets_the_solver_overrule_a_misread(solver: LocalSolver) -> None:
    """Cell 0 reads as 1 (p = 0.6) or 2 (p = 0.4); its row already holds a 1, so only 2 fits. Top-1 reading
    conflicts; the candidate set with priorities solves, and takes the likelier reading where both fit."""
    logits = torch.zeros(1, 16, 4)
    logits[0, 3] = torch.tensor([-9.0, 9.0, -9.0, -9.0])  # a sure 1 in row 0
    logits[0, 0] = torch.log(torch.tensor([0.001, 0.6, 0.4, 0.001]))  # the misread: 1 looks likelier than 2
    top1 = ConstraintLayer(SUDOKU, "solve", TopK(1), client=solver)(logits)
    assert top1.status.tolist() == [Status.UNSAT]
    out = ConstraintLayer(SUDOKU, "solve", MinProbability(0.05), client=solver, priorities=True)(logits)
    assert out.status.tolist() == [Status.SOLVED]
    values = out.values[0].argmax(-1)
    assert values[0].item() == 2 and values[3].item() == 1
    assert sorted(values[:4].tolist()) == [0, 1, 2, 3]
    # without the conflict (cell 3 left open) the likelier reading 1 is the one tried first, and kept
    free = logits.clone()
    free[0, 3] = 0.0
    out = ConstraintLayer(SUDOKU, "solve", MinProbability(0.05), client=solver, priorities=True)(free)
    assert out.status.tolist() == [Status.SOLVED] and out.values[0, 0].argmax().item() == 1


# --- one variable, by hand ------------------------------------------------------------------------------


def test_interpolation_sign_on_one_variable(solver: LocalSolver) -> None:
    """``w = [1, 0, 0]`` solves to value 0; ``L = -y[1]`` wants value 1: ``g = [0, -1, 0]``. The re-solve at
    ``w - lam * g = [1, lam, 0]`` picks value 1 when ``lam > 1``, so ``grad = (y - y') / lam = [1, -1, 0] / lam``
    and a descent step raises value 1's logit. A small ``lam`` does not move the solution: zero gradient."""
    w = torch.tensor([[[1.0, 0.0, 0.0]]], dtype=torch.float64)
    g = torch.tensor([[[0.0, -1.0, 0.0]]], dtype=torch.float64)
    for disc in (TopK(1), MinProbability(0.01)):
        layer = ConstraintLayer(ONE_VAR, "solve", disc, Interpolation(4.0), client=solver, priorities=True)
        assert grad_of(layer, w, g).tolist() == [[[0.25, -0.25, 0.0]]]
        layer = ConstraintLayer(ONE_VAR, "solve", disc, Interpolation(0.5), client=solver, priorities=True)
        assert grad_of(layer, w, g).tolist() == [[[0.0, 0.0, 0.0]]]
    step = w - 0.1 * grad_of(ConstraintLayer(ONE_VAR, "solve", TopK(1), Interpolation(4.0), client=solver), w, g)
    assert step[0, 0, 1] > w[0, 0, 1] and step[0, 0, 0] < w[0, 0, 0]  # descent: towards value 1


def test_interpolation_gives_no_gradient_where_the_second_solve_finds_no_solution(solver: LocalSolver) -> None:
    """``x != y`` over two values, top-1 discretization. Instance 0 reads ``(0, 1)`` and its loss wants ``y = 0``:
    the perturbed logits read ``(0, 0)``, which is UNSAT, so ``y' = 0`` and ``(y - y') / lam`` would push both
    chosen values down; it must get no gradient. Instance 1 reads ``(1, 0)`` and wants ``(0, 1)``, which is
    feasible: the usual ``(y - y') / lam``."""
    program = make_program(2, 2, [Neq(0, 1)])
    w = torch.tensor([[[5.0, 0.0], [0.0, 1.0]], [[0.0, 5.0], [1.0, 0.0]]], dtype=torch.float64)
    g = torch.tensor([[[0.0, 0.0], [-1.0, 0.0]], [[-1.0, 0.0], [0.0, -1.0]]], dtype=torch.float64)
    layer = ConstraintLayer(program, "solve", TopK(1), Interpolation(10.0), client=solver)
    grad = grad_of(layer, w, g)
    assert not bool(grad[0].any())
    assert grad[1].tolist() == [[-0.1, 0.1], [0.1, -0.1]]


def test_interpolation_normalize_is_a_per_instance_lambda(solver: LocalSolver) -> None:
    """A tiny ``g`` (a loss averaged over many cells) moves nothing at ``lam = 4``; ``normalize=True`` perturbs
    by ``lam * g / max|g|`` and scales back, i.e. ``lam_b = lam / max|g_b|``: the gradient is ``g``-sized."""
    w = torch.tensor([[[1.0, 0.0, 0.0]], [[1.0, 0.0, 0.0]]], dtype=torch.float64)
    g = torch.tensor([[[0.0, -1e-3, 0.0]], [[0.0, 0.0, 0.0]]], dtype=torch.float64)
    plain = ConstraintLayer(ONE_VAR, "solve", TopK(1), Interpolation(4.0), client=solver)
    assert not bool(grad_of(plain, w, g).any())
    scaled = ConstraintLayer(ONE_VAR, "solve", TopK(1), Interpolation(4.0, normalize=True), client=solver)
    torch.testing.assert_close(
        grad_of(scaled, w, g), torch.tensor([[[2.5e-4, -2.5e-4, 0.0]], [[0.0, 0.0, 0.0]]]).double()
    )


def test_perturbed_matches_the_smoothed_argmax_jacobian(solver: LocalSolver) -> None:
    """For two values at ``w = [0, 0]``: ``P(y = 1) = Phi((w1 - w0) / (sigma sqrt 2))``, whose derivative is
    ``1 / (2 sigma sqrt(pi))``. ``L = -y[1]`` then has ``dL/dw = [1, -1] / (2 sigma sqrt(pi))``."""
    program = make_program(1, 2, [])
    sigma = 0.5
    layer = ConstraintLayer(program, "solve", TopK(1), Perturbed(sigma, samples=20_000, seed=0), client=solver)
    w = torch.zeros(1, 1, 2, dtype=torch.float64)
    grad = grad_of(layer, w, torch.tensor([[[0.0, -1.0]]], dtype=torch.float64))
    want = 1 / (2 * sigma * math.sqrt(math.pi))  # 0.564; the estimate's standard error is 0.01
    assert grad[0, 0, 0].item() == pytest.approx(want, abs=0.04)
    assert grad[0, 0, 1].item() == pytest.approx(-want, abs=0.04)


def test_perturbed_is_the_monte_carlo_formula(solver: LocalSolver) -> None:
    """``grad[b] = mean_s <g[b], y_s[b]> Z_s[b] / sigma``, recomputed here with the same noise (drawn as
    ``randn(S, B, N, D)`` from a CPU generator seeded with ``seed``) and argmax as the solver."""
    program = make_program(2, 3, [])
    sigma, samples = 0.7, 16
    w = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    g = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    layer = ConstraintLayer(program, "solve", TopK(1), Perturbed(sigma, samples, seed=3), client=solver)
    z = torch.randn(samples, 5, 2, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ys = torch.nn.functional.one_hot((w + sigma * z).argmax(-1), 3).double()
    want = ((ys * g).sum(dim=(-2, -1))[..., None, None] * z).mean(0) / sigma
    torch.testing.assert_close(grad_of(layer, w, g), want, rtol=1e-12, atol=1e-12)


# --- plumbing: one batched re-solve through the same client ---------------------------------------------


def fresh(kind: str) -> Estimator:
    """A new estimator per test: a seeded Perturbed advances its generator, so instances are never shared."""
    return {"interpolation": Interpolation(10.0), "perturbed": Perturbed(1.0, 5, seed=0)}[kind]


@pytest.mark.parametrize(("kind", "per_backward"), [("interpolation", 1), ("perturbed", 5)])
def test_one_batched_resolve_per_backward(solver: LocalSolver, kind: str, per_backward: int) -> None:
    client = CountingClient(solver)
    layer = ConstraintLayer(SUDOKU, "solve", MinProbability(0.05), fresh(kind), client=client, priorities=True)
    x = torch.randn(6, 16, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    out = layer(x)
    ((out.values - 1 / 4) ** 2).sum().backward()
    assert client.batches == [6, 6 * per_backward]
    assert x.grad is not None and x.grad.dtype == x.dtype and x.grad.shape == x.shape


# A valid 4x4 Sudoku solution as one-hot [16, 4]: a loss pulling towards it keeps the re-solves feasible.
VALID_4X4 = torch.nn.functional.one_hot(
    torch.tensor([(r * 2 + r // 2 + c) % 4 for r in range(4) for c in range(4)]), 4
).double()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize("kind", ["interpolation", "perturbed"])
def test_gradient_dtype_follows_logits(solver: LocalSolver, dtype: torch.dtype, kind: str) -> None:
    layer = ConstraintLayer(SUDOKU, "solve", MinProbability(0.05), fresh(kind), client=solver, priorities=True)
    x = (torch.randn(4, 16, 4, generator=torch.Generator().manual_seed(2)) * 0.5).to(dtype).requires_grad_(True)
    ((layer(x).values - VALID_4X4.to(dtype)) ** 2).sum().backward()
    assert x.grad is not None and x.grad.dtype == dtype and bool(torch.isfinite(x.grad).all())
    assert bool(x.grad.abs().sum() > 0)


def test_perturbed_seed_reproduces_and_travels(solver: LocalSolver) -> None:
    x = torch.randn(3, 16, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    g = torch.randn(3, 16, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)

    def layer(est: Estimator) -> ConstraintLayer:
        return ConstraintLayer(SUDOKU, "solve", MinProbability(0.05), est, client=solver, priorities=True)

    a, b = layer(Perturbed(seed=5)), layer(Perturbed(seed=5))
    first = grad_of(a, x, g)
    assert torch.equal(first, grad_of(b, x, g))  # same seed, same noise
    copied = pickle.loads(pickle.dumps(a.ste))  # the generator's state travels with the estimator
    assert isinstance(copied, Perturbed) and copied == a.ste
    second = grad_of(a, x, g)
    assert not torch.equal(first, second)  # the generator advanced
    assert torch.equal(second, grad_of(layer(copied), x, g))
    assert torch.equal(grad_of(layer(copy.deepcopy(b.ste)), x, g), grad_of(b, x, g))


def test_estimators_through_the_daemon_equal_local(solver: LocalSolver) -> None:
    """The re-solve goes to the forward's own target: through a real daemon the gradients are the local ones
    bit for bit (the solver is deterministic, and the Perturbed noise is seeded)."""
    x = torch.randn(8, 16, 4, generator=torch.Generator().manual_seed(6), dtype=torch.float64) * 2
    g = -VALID_4X4.expand(8, 16, 4) + 0.1 * torch.randn(8, 16, 4, generator=torch.Generator().manual_seed(7))
    with DaemonProcess() as daemon:
        for make in (lambda: Interpolation(5.0), lambda: Perturbed(1.0, 4, seed=8)):
            remote = ConstraintLayer(
                SUDOKU, "solve", MinProbability(0.05), make(), target=daemon.address, priorities=True
            )
            local = ConstraintLayer(SUDOKU, "solve", MinProbability(0.05), make(), client=solver, priorities=True)
            got, want = grad_of(remote, x, g), grad_of(local, x, g)
            assert bool(want.any()) and torch.equal(got, want)
            remote.close()


# --- learning: symbol grounding on 4x4 Sudoku (sudoku4.SymbolGrounding) -----------------------------------


def test_identity_gives_the_givens_no_gradient(solver: LocalSolver) -> None:
    """The SATNet failure mode: the loss never looks at a given cell, so the identity STE sends it exactly zero
    gradient, the table never moves and nothing is learnt, however long it trains."""
    task = SymbolGrounding(solver, "identity")
    losses = task.train(steps=10, lr=0.1)
    assert task.table.grad is not None and not bool(task.table.grad.any())
    assert not bool(task.table.detach().any())
    assert len(set(losses)) == 1 and losses[0] > 0 and task.board_accuracy() == 0.0


LEARNERS = {  # the settings that learn this task; lr is Adam's
    "interpolation": (lambda: Interpolation(20.0), 0.1),
    "interpolation-normalized": (lambda: Interpolation(2.0, normalize=True), 0.1),
    "perturbed": (lambda: Perturbed(0.7, 16, seed=0), 0.2),
}


@pytest.mark.parametrize("learner", list(LEARNERS))
@pytest.mark.parametrize("seed", [0, 1])
def test_solver_estimators_learn_the_symbols(solver: LocalSolver, learner: str, seed: int) -> None:
    """Same task, solver-based gradients: the re-solves move the givens' values, so the table learns every
    symbol, the loss on the blanks falls by 90% or more and the solver completes every board."""
    make, lr = LEARNERS[learner]
    task = SymbolGrounding(solver, make(), seed=seed)
    losses = task.train(steps=STEPS, lr=lr)
    assert task.reading_accuracy() == 1.0, losses
    assert min(losses[-5:]) < 0.1 * losses[0], losses
    assert task.board_accuracy() == 1.0, losses  # every board solved, the givens read as the right digits


@pytest.mark.parametrize("est", [Interpolation(20.0), Interpolation(2.0, normalize=True)], ids=repr)
def test_interpolation_first_step_points_every_symbol_right(solver: LocalSolver, est: Interpolation) -> None:
    """From the all-zero table the re-solve pins the blanks to their targets, the constraints then fix the givens,
    and ``y - y'`` credits each symbol's true digit: one Adam step already reads every symbol right."""
    task = SymbolGrounding(solver, est, seed=2)
    task.train(steps=1, lr=0.1)
    assert task.reading_accuracy() == 1.0
