"""ConstraintLayer failure modes, one test each (cvxpylayers / kornia style): every check fires before any solve.

The client here records its calls, so each test can assert that nothing reached the solver.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from fpgacsp import LocalSolver, Mode, Program, sudoku_program
from fpgacsp.torch_layer import (
    BackwardContext,
    ConstraintLayer,
    Estimator,
    Threshold,
    TopK,
)

PROGRAM = sudoku_program(2)  # 16 variables, 4 values


class RecordingClient:
    """The client's ``solve`` over the local engine, keeping every call's keywords."""

    def __init__(self, solver: LocalSolver | None) -> None:
        self.solver = solver
        self.calls: list[dict[str, Any]] = []

    def solve(
        self,
        program: Program,
        domains: np.ndarray,
        priorities: np.ndarray | None = None,
        *,
        mode: Mode = Mode.SOLVE,
        node_limit: int | None = None,
        max_solutions: int = 1,
        timeout: float | None = None,
    ) -> Any:
        self.calls.append({"mode": mode, "node_limit": node_limit, "timeout": timeout, "priorities": priorities})
        limit = 1_000_000 if node_limit is None else node_limit
        assert self.solver is not None
        return self.solver.solve(program, domains, priorities, mode=mode, node_limit=limit)


@pytest.fixture(scope="module")
def solver() -> Iterator[LocalSolver]:
    with LocalSolver(threads=1) as s:
        yield s


@pytest.fixture
def client(solver: LocalSolver) -> RecordingClient:
    return RecordingClient(solver)


@pytest.fixture
def layer(client: RecordingClient) -> ConstraintLayer:
    return ConstraintLayer(PROGRAM, client=client)


def check_raises(layer: ConstraintLayer, client: RecordingClient, logits: Any, exc: type, message: str) -> None:
    """``layer(logits)`` raises ``exc`` with exactly ``message``, and the solver was never called."""
    with pytest.raises(exc) as info:
        layer(logits)
    assert str(info.value) == message
    assert client.calls == []


# --- the logits -----------------------------------------------------------------------------------------


def test_not_a_tensor(layer: ConstraintLayer, client: RecordingClient) -> None:
    x = np.zeros((1, 16, 4), dtype=np.float32)
    check_raises(layer, client, x, TypeError, "expected logits as a torch.Tensor, got ndarray")


def test_incorrect_shape(layer: ConstraintLayer, client: RecordingClient) -> None:
    check_raises(
        layer, client, torch.zeros(16, 4), ValueError, "expected logits of shape [B, N, D] = [B, 16, 4], got [16, 4]"
    )
    check_raises(
        layer,
        client,
        torch.zeros(2, 1, 16, 4),
        ValueError,
        "expected logits of shape [B, N, D] = [B, 16, 4], got [2, 1, 16, 4]",
    )


def test_incorrect_shape_sudoku_message(client: RecordingClient) -> None:
    """The example from the API docs, for the 9x9 program."""
    layer = ConstraintLayer(sudoku_program(3), client=client)
    check_raises(
        layer, client, torch.zeros(81, 9), ValueError, "expected logits of shape [B, N, D] = [B, 81, 9], got [81, 9]"
    )


def test_wrong_num_vars(layer: ConstraintLayer, client: RecordingClient) -> None:
    check_raises(
        layer,
        client,
        torch.zeros(2, 15, 4),
        ValueError,
        "expected logits of shape [B, N, D] = [B, 16, 4], got [2, 15, 4]: N = 15 does not match the program's "
        "16 variables",
    )


def test_wrong_domain_size(layer: ConstraintLayer, client: RecordingClient) -> None:
    check_raises(
        layer,
        client,
        torch.zeros(2, 16, 9),
        ValueError,
        "expected logits of shape [B, N, D] = [B, 16, 4], got [2, 16, 9]: D = 9 does not match the program's "
        "domain size 4",
    )


def test_empty_batch(layer: ConstraintLayer, client: RecordingClient) -> None:
    check_raises(
        layer, client, torch.zeros(0, 16, 4), ValueError, "expected a non-empty batch, got logits of shape [0, 16, 4]"
    )


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bool, torch.complex64])
def test_non_float_dtype(layer: ConstraintLayer, client: RecordingClient, dtype: torch.dtype) -> None:
    x = torch.zeros(1, 16, 4, dtype=dtype)
    check_raises(layer, client, x, TypeError, f"expected floating-point logits, got dtype {dtype}")


def test_nan_input(layer: ConstraintLayer, client: RecordingClient) -> None:
    x = torch.zeros(3, 16, 4)
    x[1, 5, 2] = float("nan")
    x[2, 0, 0] = float("nan")
    check_raises(
        layer, client, x, ValueError, "logits must be finite: 2 NaN or infinite value(s), the first at [1, 5, 2] = nan"
    )


def test_inf_input(layer: ConstraintLayer, client: RecordingClient) -> None:
    x = torch.zeros(1, 16, 4, dtype=torch.float64)
    x[0, 3, 1] = -float("inf")
    check_raises(
        layer, client, x, ValueError, "logits must be finite: 1 NaN or infinite value(s), the first at [0, 3, 1] = -inf"
    )


# --- the labels (what the loss wants, for the estimators) ------------------------------------------------


@pytest.mark.parametrize(
    ("target", "exc", "message"),
    [
        (
            np.zeros((2, 16), dtype=np.int64),
            TypeError,
            "labels: expected a torch.Tensor of values (-1 where unobserved), got ndarray",
        ),
        (
            torch.zeros(2, 16, 4),
            TypeError,
            "labels: expected integer values 0..3 (-1 where unobserved), got dtype torch.float32; pass values, not "
            "one-hot rows (one_hot.argmax(-1))",
        ),
        (
            torch.zeros(2, 15, dtype=torch.int64),
            ValueError,
            "labels: expected shape [B, N] = [2, 16] to match the logits, got [2, 15]",
        ),
        (
            torch.tensor([[0] * 15 + [4]] * 2),
            ValueError,
            "labels: values must be in [-1, 3] (-1 where unobserved), got 4 at [0, 15]",
        ),
        (
            torch.tensor([[-1] * 16, [-2] + [0] * 15]),
            ValueError,
            "labels: values must be in [-1, 3] (-1 where unobserved), got -2 at [1, 0]",
        ),
    ],
    ids=["not-a-tensor", "one-hot-floats", "shape", "too-large", "too-small"],
)
def test_bad_labels(layer: ConstraintLayer, client: RecordingClient, target: Any, exc: type, message: str) -> None:
    with pytest.raises(exc) as info:
        layer(torch.zeros(2, 16, 4), labels=target)
    assert str(info.value) == message
    assert client.calls == []


def test_double_backward_says_it_is_not_supported(layer: ConstraintLayer) -> None:
    """A gradient penalty (create_graph=True) would otherwise get a first-order gradient that silently does not
    require grad; the layer says plainly that it has no second derivative to give."""
    x = torch.zeros(1, 16, 4, requires_grad=True)
    out = layer(x)
    with pytest.raises(RuntimeError, match=r"^ConstraintLayer: double backward is not supported"):
        torch.autograd.grad(out.values.sum(), x, create_graph=True)
    (first,) = torch.autograd.grad(layer(x).values.sum(), x)  # the ordinary backward still works
    assert first.shape == x.shape


# --- the configuration ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"mode": "search"}, ValueError, "mode: expected 'solve' or 'propagate', got 'search'"),
        ({"mode": 2}, ValueError, "mode: expected 'solve' or 'propagate', got 2"),
        (
            {"discretize": "argmax"},
            ValueError,
            "discretize: expected 'threshold', 'confident_argmax' or a Discretizer such as TopK(k), got 'argmax'",
        ),
        ({"discretize": "top_k"}, ValueError, "discretize: 'top_k' needs k: pass fpgacsp.TopK(k)"),
        ({"discretize": TopK(5)}, ValueError, "TopK: k = 5 is larger than the program's domain size 4"),
        (
            {"ste": "softmax"},
            ValueError,
            "ste: expected one of 'identity', 'relaxation', 'interpolation', 'perturbed', 'abduction' "
            "or an Estimator instance, got 'softmax'",
        ),
        ({"node_limit": 0}, ValueError, "node_limit: expected None or a positive integer, got 0"),
        ({"node_limit": 2.5}, ValueError, "node_limit: expected None or a positive integer, got 2.5"),
        ({"timeout": 0}, ValueError, "timeout: expected None or a positive number of seconds, got 0"),
        ({"timeout": float("inf")}, ValueError, "timeout: expected None or a positive number of seconds, got inf"),
        ({"priorities": 1}, TypeError, "priorities: expected True or False, got 1"),
        (
            {"mode": "propagate", "priorities": True},
            ValueError,
            "priorities: only mode='solve' branches, so priorities=True needs mode='solve'",
        ),
        (
            {"target": 50051},
            TypeError,
            "target: expected an address string such as 'localhost:50051' or 'local', got 50051",
        ),
        ({"target": ""}, TypeError, "target: expected an address string such as 'localhost:50051' or 'local', got ''"),
        ({"client": object()}, TypeError, "client: expected an object with a solve() method, got object"),
        ({"target": "local", "client": RecordingClient(None)}, ValueError, "pass either target or client, not both"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_configuration(kwargs: dict[str, Any], exc: type, message: str) -> None:
    with pytest.raises(exc) as info:
        ConstraintLayer(PROGRAM, **kwargs)
    assert str(info.value) == message


def test_unknown_mode() -> None:
    with pytest.raises(ValueError, match=r"^mode: expected 'solve' or 'propagate', got 'SOLVE'$"):
        ConstraintLayer(PROGRAM, "SOLVE")


def test_unknown_discretize() -> None:
    with pytest.raises(ValueError, match=r"^discretize: expected 'threshold', 'confident_argmax' or a Discretizer"):
        ConstraintLayer(PROGRAM, "solve", "round")


def test_unknown_ste() -> None:
    with pytest.raises(
        ValueError,
        match=r"^ste: expected one of 'identity', 'relaxation', 'interpolation', 'perturbed', 'abduction' or an Est",
    ):
        ConstraintLayer(PROGRAM, "solve", "threshold", "vlastelica")


def test_not_a_program() -> None:
    with pytest.raises(TypeError, match=r"^program: expected an fpgacsp.Program, got dict$"):
        ConstraintLayer({"num_vars": 16})  # type: ignore[arg-type]


def test_invalid_program() -> None:
    bad = Program(num_vars=0, domain_size=4, constraints=())
    with pytest.raises(ValueError, match=r"^num_vars: must be in \[1, 1048576\], got 0$"):
        ConstraintLayer(bad)


# --- errors after the checks ----------------------------------------------------------------------------


def test_solver_error_propagates_unchanged() -> None:
    class Failing:
        def solve(self, *args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("daemon went away")

    layer = ConstraintLayer(PROGRAM, client=Failing())
    with pytest.raises(ConnectionError, match=r"^daemon went away$"):
        layer(torch.zeros(1, 16, 4))


def test_estimator_returning_wrong_shape(client: RecordingClient) -> None:
    class Broken(Estimator):
        name = "broken"

        def backward(self, ctx: BackwardContext, grad_values: torch.Tensor) -> torch.Tensor:
            return grad_values[:, :1]

    layer = ConstraintLayer(PROGRAM, ste=Broken(), client=client)
    x = torch.zeros(2, 16, 4, requires_grad=True)
    out = layer(x)
    with pytest.raises(
        RuntimeError, match=r"^Broken\(\) returned a gradient of shape \[2, 1, 4\] for logits \[2, 16, 4\]$"
    ):
        out.values.sum().backward()


def test_options_reach_the_client_only_when_set(client: RecordingClient) -> None:
    x = torch.zeros(1, 16, 4)
    ConstraintLayer(PROGRAM, client=client)(x)
    ConstraintLayer(PROGRAM, "propagate", Threshold(), client=client, node_limit=7, timeout=2.5)(x)
    assert client.calls[0] == {"mode": Mode.SOLVE, "node_limit": None, "timeout": None, "priorities": None}
    assert client.calls[1] == {"mode": Mode.PROPAGATE, "node_limit": 7, "timeout": 2.5, "priorities": None}


def test_bare_local_solver_is_a_client(solver: LocalSolver) -> None:
    """No timeout set: the keywords a LocalSolver lacks are never sent, so it works as a client as is."""
    out = ConstraintLayer(PROGRAM, client=solver)(torch.zeros(2, 16, 4))
    assert out.status.tolist() == [1, 1]


def test_estimator_resolve_checks_logits(client: RecordingClient) -> None:
    """A re-solving estimator whose perturbed logits overflow gets the layer's message, not a garbage solve."""

    class Overflowing(Estimator):
        name = "overflowing"

        def backward(self, ctx: BackwardContext, grad_values: torch.Tensor) -> torch.Tensor:
            return ctx.resolve(ctx.logits * float("inf"))

    layer = ConstraintLayer(PROGRAM, ste=Overflowing(), client=client)
    x = torch.ones(1, 16, 4, requires_grad=True)
    out = layer(x)
    with pytest.raises(
        ValueError, match=r"^logits must be finite: 64 NaN or infinite value\(s\), the first at \[0, 0, 0\]"
    ):
        out.values.sum().backward()
    assert len(client.calls) == 1  # the forward solve only
