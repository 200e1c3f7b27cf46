"""Abduction: the estimator that learns from the solver alone, and hamming_loss, the linear loss beside it.

Definitions: the gradient is ``(softmax(w) - y') / B`` where ``y'`` is the first solution of a search with the
observed variables fixed to their targets, the rest open and the network's order as priorities; worked out by
hand on digit addition and compared with a direct solve on 4x4 Sudoku. Failures: an instance whose abduction is
UNSAT, or that observes nothing, gets no gradient. Plumbing: one batched solve per backward, in SOLVE mode, never
under ``no_grad``, and through a real daemon the same gradients as locally. Learning: symbol grounding on 4x4
Sudoku, scored by board accuracy.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from daemon_process import DaemonProcess
from fpgacsp import LocalSolver, Mode, Status, addition_program, sudoku_program
from fpgacsp.torch_layer import (
    Abduction,
    AbductionInfo,
    ConstraintLayer,
    MinProbability,
    TopK,
    Widening,
    hamming_loss,
    mask_to_domains,
    value_priorities,
)
from sudoku4 import SymbolGrounding, four_by_four_puzzles

SUDOKU = sudoku_program(2)


@pytest.fixture(scope="module")
def solver() -> Iterator[LocalSolver]:
    with LocalSolver(threads=1) as s:
        yield s


@pytest.fixture(scope="module")
def boards(solver: LocalSolver) -> tuple[np.ndarray, np.ndarray]:
    return four_by_four_puzzles(solver, 6, seed=11)


class RecordingClient:
    """Forwards to a real client and records each call's batch size and mode."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[int, Mode]] = []

    def solve(self, program: Any, domains: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((int(domains.shape[0]), Mode(kwargs["mode"])))
        return self.inner.solve(program, domains, *args, **kwargs)


def info_of(layer: ConstraintLayer) -> AbductionInfo:
    assert isinstance(layer.ste, Abduction)
    return layer.ste.info


def blank_target(puzzles: np.ndarray, solutions: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.where(puzzles >= 0, -1, solutions))


def abduction_grad(layer: ConstraintLayer, x: torch.Tensor, target: torch.Tensor | None, loss: str = "mse") -> Any:
    x = x.clone().requires_grad_(True)
    out = layer(x, labels=target)
    if loss == "hamming":
        assert target is not None
        value = hamming_loss(out.values, target)
    else:
        value = (out.values**2).sum()  # the loss's own gradient is unused when the target is explicit
    (grad,) = torch.autograd.grad(value, x)
    return grad


# --- the definition ---------------------------------------------------------------------------------------


def test_by_hand_on_digit_addition(solver: LocalSolver) -> None:
    """a + b = s with s = 5 observed. The network reads a as 3 (then 4) and b as 4 (then 2). The search branches on
    a first (the smaller domain after propagation, ties to the lower index), takes the network's 3, and the sum
    forces b = 2: the abduced labelling keeps the network's belief where it can and overrules it where the sum
    says so. The gradient is softmax(w) - y' on every variable."""
    program = addition_program(1)  # a, b, s0, s1 (s least significant digit first)
    x = torch.zeros(1, 4, 10, dtype=torch.float64)
    x[0, 0, 3], x[0, 0, 4] = 4.0, 2.0
    x[0, 1, 4], x[0, 1, 2] = 4.0, 2.0
    target = torch.tensor([[-1, -1, 5, 0]])
    layer = ConstraintLayer(program, "solve", MinProbability(0.01), Abduction(), client=solver)
    grad = abduction_grad(layer, x, target)
    y = torch.nn.functional.one_hot(torch.tensor([3, 2, 5, 0]), 10).double()
    torch.testing.assert_close(grad[0], torch.softmax(x[0], -1) - y, rtol=0, atol=1e-15)
    assert info_of(layer) == AbductionInfo(boards=1, abduced=1, unobserved=0, failed=0, widened=0, solves=1)


def test_gradient_matches_a_direct_solve_with_the_targets_fixed(
    solver: LocalSolver, boards: tuple[np.ndarray, np.ndarray]
) -> None:
    puzzles, solutions = boards
    target = blank_target(puzzles, solutions)
    x = torch.randn(len(puzzles), 16, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2
    layer = ConstraintLayer(SUDOKU, "solve", MinProbability(0.05), Abduction(), client=solver, priorities=True)
    grad = abduction_grad(layer, x, target)

    fixed = torch.nn.functional.one_hot(target.clamp(min=0), 4).bool()
    domains = mask_to_domains(torch.where((target >= 0)[..., None], fixed, torch.ones_like(fixed)))
    result = solver.solve(SUDOKU, domains, value_priorities(x), mode=Mode.SOLVE)
    assert (np.asarray(result.status) == int(Status.SOLVED)).all()  # blanks fixed to the truth: always feasible
    bits = (torch.as_tensor(result.domains.astype(np.int64))[..., None] >> torch.arange(4)) & 1
    want = (torch.softmax(x, -1) - bits.double()) / len(puzzles)
    torch.testing.assert_close(grad, want, rtol=0, atol=1e-15)
    # the abduced givens are the true digits: the 4x4 blanks fixed to the solution leave no freedom here
    assert torch.equal(bits.argmax(-1), torch.as_tensor(solutions))


def test_unsat_abduction_and_unobserved_instances_get_no_gradient(
    solver: LocalSolver, boards: tuple[np.ndarray, np.ndarray]
) -> None:
    puzzles, solutions = boards
    target = blank_target(puzzles, solutions)[:3].clone()
    target[1, :2] = torch.tensor([0, 0])  # two cells of one row both wanted as value 0: no labelling exists
    target[2] = -1  # observes nothing
    x = torch.randn(3, 16, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    layer = ConstraintLayer(SUDOKU, "solve", MinProbability(0.05), Abduction(), client=solver)
    grad = abduction_grad(layer, x, target)
    assert bool(grad[0].abs().sum() > 0)
    assert not bool(grad[1].any()) and not bool(grad[2].any())
    assert info_of(layer) == AbductionInfo(boards=3, abduced=1, unobserved=1, failed=1, widened=0, solves=1)
    assert info_of(layer).rate == pytest.approx(1 / 3)


def test_without_a_target_the_hamming_gradient_names_the_same_values(
    solver: LocalSolver, boards: tuple[np.ndarray, np.ndarray]
) -> None:
    """hamming_loss's gradient 1 - 2t is nonzero on every observed variable and smallest at the wanted value, so
    BackwardContext.wanted reads the same target off it as the layer would have been given."""
    puzzles, solutions = boards
    target = blank_target(puzzles, solutions)
    x = torch.randn(len(puzzles), 16, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    layer = ConstraintLayer(SUDOKU, "solve", MinProbability(0.05), Abduction(), client=solver, priorities=True)
    explicit = abduction_grad(layer, x, target)
    y = x.clone().requires_grad_(True)
    (inferred,) = torch.autograd.grad(hamming_loss(layer(y).values, target), y)
    assert torch.equal(explicit, inferred)


def test_candidates_then_full_domains(solver: LocalSolver, boards: tuple[np.ndarray, np.ndarray]) -> None:
    """With candidates=(TopK(1),) the givens first keep only the network's argmax; a network that misreads every
    given makes that abduction UNSAT, and the full-domain step that always follows finds the labelling the
    default finds."""
    puzzles, solutions = boards
    target = blank_target(puzzles, solutions)
    misread = torch.as_tensor((solutions + 1) % 4)
    x = torch.nn.functional.one_hot(misread, 4).double() * 3 * torch.as_tensor(puzzles >= 0)[..., None]

    def layer(est: Abduction) -> ConstraintLayer:
        return ConstraintLayer(SUDOKU, "solve", MinProbability(0.05), est, client=solver, priorities=True)

    full, narrow = layer(Abduction()), layer(Abduction(candidates=(TopK(1),)))
    assert torch.equal(abduction_grad(narrow, x, target), abduction_grad(full, x, target))
    b = len(puzzles)
    assert info_of(narrow) == AbductionInfo(boards=b, abduced=b, unobserved=0, failed=0, widened=b, solves=2)
    # readings that are right: the first, narrowest step already succeeds for every board
    right = torch.nn.functional.one_hot(torch.as_tensor(solutions), 4).double() * 3
    abduction_grad(narrow, right, target)
    assert info_of(narrow) == AbductionInfo(boards=b, abduced=b, unobserved=0, failed=0, widened=0, solves=1)


def test_rank_widening_takes_the_labelling_with_the_best_worst_reading(solver: LocalSolver) -> None:
    """a + b = 7 observed. The network reads a as 5 (sure) and b as 4 first, 2 second. Greedy (NONE): a branches
    first, takes 5, the sum forces b = 2. RANK: at top-1 (a = 5, b = 4) nothing adds up; at top-2 a in {5, 3} and
    b in {4, 2} give 5 + 2 and 3 + 4; the search takes a's first choice again, a = 5, b = 2. Now make b sure of 4
    and a unsure between 5 and 3: greedy still takes a = 5 (b = 2, b's least likely reading), RANK takes 3 + 4,
    both readings within each variable's top 2."""
    program = addition_program(1)
    target = torch.tensor([[-1, -1, 7, 0]])

    def abduced(x: torch.Tensor, widening: Widening) -> list[int]:
        layer = ConstraintLayer(program, "solve", MinProbability(0.01), Abduction(widening), client=solver)
        grad = abduction_grad(layer, x, target)
        return (torch.softmax(x[0], -1) - grad[0]).round().argmax(-1).tolist()

    x = torch.zeros(1, 4, 10, dtype=torch.float64)
    x[0, 0, 5], x[0, 0, 3] = 6.0, 1.0  # a: 5, then 3
    x[0, 1, 4], x[0, 1, 2] = 3.0, 2.0  # b: 4, then 2
    assert abduced(x, Widening.NONE) == abduced(x, Widening.RANK) == [5, 2, 7, 0]
    x[0, 1, 2] = -6.0  # b: 4, then anything but 2; 2 is now b's least likely value
    x[0, 1, 8] = 1.0
    assert abduced(x, Widening.NONE) == [5, 2, 7, 0]
    assert abduced(x, Widening.RANK) == [3, 4, 7, 0]


def test_probability_widening_changes_the_doubtful_reading_not_the_first_one(solver: LocalSolver) -> None:
    """a + b = 7. a is unsure (4 at 62%, 2 at 38%), b is sure (5 at 99.9%, 3 at 0.1%). The readings (4, 5) do not
    add up. NONE and RANK branch on a first and keep its top reading 4, so b becomes 3, its 0.1% reading; RANK's
    top-2 sets widen both variables at once. PROBABILITY keeps b fixed while a widens (at the 0.2 floor): 2 + 5."""
    program = addition_program(1)
    target = torch.tensor([[-1, -1, 7, 0]])
    x = torch.full((1, 4, 10), -5.0, dtype=torch.float64)
    x[0, 0, 4], x[0, 0, 2] = 2.0, 1.5
    x[0, 1, 5], x[0, 1, 3] = 8.0, 1.0
    x[0, 2:] = 0.0

    def abduced(widening: Widening) -> list[int]:
        layer = ConstraintLayer(program, "solve", MinProbability(0.01), Abduction(widening), client=solver)
        grad = abduction_grad(layer, x, target)
        return (torch.softmax(x[0], -1) - grad[0]).round().argmax(-1).tolist()

    assert abduced(Widening.NONE) == abduced(Widening.RANK) == [4, 3, 7, 0]
    assert abduced(Widening.PROBABILITY) == [2, 5, 7, 0]


def test_sampled_order_is_seeded_follows_a_sure_network_and_varies_where_it_is_unsure(solver: LocalSolver) -> None:
    """sample=True draws the search order from logits + Gumbel noise: where the network is sure (a gap of 50
    logits) the labelling is its own; where it is unsure (all logits equal) the labellings drawn differ from draw
    to draw but are always consistent with the target, and a seed reproduces them (also after pickling)."""
    program = addition_program(1)
    target = torch.tensor([[-1, -1, 9, 0]] * 64)  # a + b = 9: ten labellings
    sure = torch.zeros(64, 4, 10, dtype=torch.float64)
    sure[:, 0, 4], sure[:, 1, 5] = 50.0, 50.0

    def labels(est: Abduction, x: torch.Tensor) -> torch.Tensor:
        layer = ConstraintLayer(program, "solve", MinProbability(0.01), est, client=solver)
        grad = abduction_grad(layer, x, target)
        return (torch.softmax(x, -1) - 64 * grad).round().argmax(-1)

    assert bool((labels(Abduction(sample=True, seed=0), sure)[:, :2] == torch.tensor([4, 5])).all())
    unsure = torch.zeros(64, 4, 10, dtype=torch.float64)
    drawn = labels(Abduction(sample=True, seed=0), unsure)
    assert bool((drawn[:, 0] + drawn[:, 1] == 9).all())
    assert len(set(drawn[:, 0].tolist())) >= 5  # many of the ten labellings, not always the first
    assert bool((labels(Abduction(), unsure)[:, 0] == 0).all())  # unsampled: ties go to the lowest value
    assert torch.equal(labels(Abduction(sample=True, seed=0), unsure), drawn)  # the same seed, the same draws
    est = Abduction(sample=True, seed=3)
    labels(est, unsure)  # advance the generator once
    copied = pickle.loads(pickle.dumps(est))
    assert torch.equal(labels(copied, unsure), labels(est, unsure))  # the generator's state travels


# --- plumbing ---------------------------------------------------------------------------------------------


def test_one_searching_solve_per_backward_even_under_a_propagating_layer(
    solver: LocalSolver, boards: tuple[np.ndarray, np.ndarray]
) -> None:
    puzzles, solutions = boards
    client = RecordingClient(solver)
    layer = ConstraintLayer(SUDOKU, "propagate", MinProbability(0.05), Abduction(), client=client)
    x = torch.zeros(len(puzzles), 16, 4, dtype=torch.float64, requires_grad=True)
    out = layer(x, labels=blank_target(puzzles, solutions))
    hamming_loss(out.values, blank_target(puzzles, solutions)).backward()
    assert client.calls == [(len(puzzles), Mode.PROPAGATE), (len(puzzles), Mode.SOLVE)]
    assert x.grad is not None and bool(x.grad.any())


def test_never_called_under_no_grad(solver: LocalSolver, boards: tuple[np.ndarray, np.ndarray]) -> None:
    puzzles, solutions = boards
    client = RecordingClient(solver)
    layer = ConstraintLayer(SUDOKU, "solve", MinProbability(0.05), Abduction(), client=client)
    with torch.no_grad():
        out = layer(torch.zeros(len(puzzles), 16, 4, requires_grad=True), labels=blank_target(puzzles, solutions))
    assert out.values.grad_fn is None
    assert client.calls == [(len(puzzles), Mode.SOLVE)]  # the forward's solve only


def test_through_a_real_daemon_and_local_the_gradients_are_the_same(
    solver: LocalSolver, boards: tuple[np.ndarray, np.ndarray]
) -> None:
    puzzles, solutions = boards
    target = blank_target(puzzles, solutions)
    x = torch.randn(len(puzzles), 16, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    local = ConstraintLayer(SUDOKU, "solve", MinProbability(0.05), Abduction(), client=solver, priorities=True)
    want = abduction_grad(local, x, target)
    with DaemonProcess() as daemon:
        remote = ConstraintLayer(
            SUDOKU, "solve", MinProbability(0.05), Abduction(), target=daemon.address, priorities=True
        )
        got = abduction_grad(remote, x, target)
        remote.close()
    in_process = ConstraintLayer(SUDOKU, "solve", MinProbability(0.05), Abduction(), target="local", priorities=True)
    assert bool(want.any()) and torch.equal(got, want)
    assert torch.equal(abduction_grad(in_process, x, target), want)  # fpgacsp.connect("local") as well
    in_process.close()


def test_bad_options() -> None:
    with pytest.raises(TypeError, match=r"^Abduction: widening must be a fpgacsp.Widening, got 'rank'$"):
        Abduction("rank")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^Abduction: candidates must be a tuple of Discretizers, got \[TopK"):
        Abduction(candidates=[TopK(2)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^Abduction: pass either candidates or a widening, not both$"):
        Abduction(Widening.RANK, (TopK(2),))
    with pytest.raises(TypeError, match=r"^Abduction: sample must be True or False, got 1$"):
        Abduction(sample=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^Abduction: seed must be None or an integer, got 1.5$"):
        Abduction(sample=True, seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^Abduction: temperature must be a number >= 0, got -1.0$"):
        Abduction(sample=True, temperature=-1.0)
    assert Abduction() == Abduction() != Abduction(candidates=(TopK(2),)) != Abduction(Widening.RANK)
    want = (
        "Abduction(widening=<Widening.NONE: 'none'>, candidates=(TopK(k=2),), sample=False, seed=None, temperature=1.0)"
    )
    assert repr(Abduction(candidates=(TopK(2),))) == want


# --- learning: symbol grounding on 4x4 Sudoku (sudoku4.SymbolGrounding) -----------------------------------


@pytest.mark.parametrize(
    ("loss", "explicit"), [("hamming", True), ("mse", True), ("hamming", False)], ids=["hamming", "mse", "inferred"]
)
@pytest.mark.parametrize("seed", [0, 1])
def test_abduction_learns_the_symbols_from_the_blanks_alone(
    solver: LocalSolver, loss: str, explicit: bool, seed: int
) -> None:
    """No given cell's label is ever used: the loss sees the blanks. Abduction labels the givens with the digits
    the blanks' solution implies, so every symbol is read right and every board solved, with either loss."""
    task = SymbolGrounding(solver, Abduction(), seed=seed, loss=loss, explicit_target=explicit)
    assert task.board_accuracy() == 0.0
    losses = task.train(steps=20, lr=0.1)
    assert task.reading_accuracy() == 1.0, losses
    assert task.board_accuracy() == 1.0, losses
    assert losses[-1] < 0.1 * losses[0], losses
