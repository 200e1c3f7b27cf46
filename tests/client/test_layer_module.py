"""ConstraintLayer's forward pass: values, status and nodes agree with the engine, on the caller's device/dtype."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
from collections.abc import Iterator

import fpgacsp
import numpy as np
import pytest
import torch
from fpgacsp import LocalSolver, Mode, Status, check_sudoku_solution, sudoku_program
from fpgacsp.torch_layer import ConfidentArgmax, ConstraintLayer, SolverOutput, Threshold, TopK, domains_to_values

PROGRAM = sudoku_program(2)
# a 4x4 solution, row-major; every row, column and 2x2 box holds 0..3
SOLUTION = np.array([0, 1, 2, 3, 2, 3, 0, 1, 1, 0, 3, 2, 3, 2, 1, 0])
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


@pytest.fixture(scope="module")
def solver() -> Iterator[LocalSolver]:
    with LocalSolver(threads=1) as s:
        yield s


def grid_logits(grids: list[np.ndarray], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Confident logits (10 for the given value, 0 elsewhere) for givens, all-zero rows for blanks (-1)."""
    g = torch.as_tensor(np.stack(grids))
    x = torch.nn.functional.one_hot(g.clamp(min=0), 4).to(dtype) * 10
    return x * (g >= 0).unsqueeze(-1)


def with_blanks(cells: list[int]) -> np.ndarray:
    grid = SOLUTION.copy()
    grid[cells] = -1
    return grid


def test_values_match_direct_solve(solver: LocalSolver) -> None:
    gen = torch.Generator().manual_seed(0)
    # from all-unsure (row 0) to confident (the last row): every status turns up below
    x = torch.randn(16, 16, 4, generator=gen) * torch.linspace(0, 3, 16)[:, None, None]
    seen: set[int] = set()
    for disc in (ConfidentArgmax(0.7), Threshold(0.4), TopK(3)):
        for mode in (Mode.SOLVE, Mode.PROPAGATE):
            out = ConstraintLayer(PROGRAM, mode, disc, client=solver, node_limit=3)(x)
            want = solver.solve(PROGRAM, disc.domains(x), mode=mode, node_limit=3)
            assert torch.equal(out.values, domains_to_values(want.domains, 4, like=x))
            assert out.status.tolist() == want.status.tolist()
            assert out.nodes.tolist() == want.nodes.tolist()
            seen.update(out.status.tolist())
    assert seen == {s.value for s in Status}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_output_device_and_dtype(solver: LocalSolver, device: str, dtype: torch.dtype) -> None:
    x = grid_logits([with_blanks([0, 5, 10, 15]), with_blanks(list(range(8)))], dtype).to(device)
    out = ConstraintLayer(PROGRAM, client=solver)(x)
    assert isinstance(out, SolverOutput)
    assert (out.values.dtype, out.values.device.type) == (dtype, device)
    assert (out.status.dtype, out.status.device.type) == (torch.int64, device)
    assert (out.nodes.dtype, out.nodes.device.type) == (torch.int64, device)
    assert out.values.shape == (2, 16, 4)
    assert out.status.tolist() == [Status.SOLVED, Status.SOLVED]
    want = torch.nn.functional.one_hot(torch.as_tensor(SOLUTION), 4).to(dtype)
    assert torch.equal(out.values.cpu(), torch.stack([want, want]))


def test_no_grad_context(solver: LocalSolver) -> None:
    x = grid_logits([with_blanks([1, 2, 3])]).requires_grad_(True)
    with torch.no_grad():
        out = ConstraintLayer(PROGRAM, client=solver)(x)
    assert not out.values.requires_grad and out.values.grad_fn is None
    assert out.status.tolist() == [Status.SOLVED]
    assert out.values[0].argmax(-1).tolist() == SOLUTION.tolist()


def test_requires_grad_false(solver: LocalSolver) -> None:
    x = grid_logits([with_blanks([4, 9])])
    out = ConstraintLayer(PROGRAM, ste="relaxation", client=solver)(x)
    assert not x.requires_grad and not out.values.requires_grad and out.values.grad_fn is None
    assert out.status.tolist() == [Status.SOLVED]


def test_requires_grad_true_builds_a_graph(solver: LocalSolver) -> None:
    x = grid_logits([with_blanks([4, 9])]).requires_grad_(True)
    out = ConstraintLayer(PROGRAM, client=solver)(x)
    assert out.values.requires_grad and out.values.grad_fn is not None
    assert not out.status.requires_grad and not out.nodes.requires_grad


def test_status_conflict(solver: LocalSolver) -> None:
    """Discretized domains that contradict the program: CONFLICT (propagate) / UNSAT (solve), and all zeros."""
    clash = with_blanks(list(range(2, 16)))
    clash[1] = clash[0]  # two equal values in the first row
    x = grid_logits([clash, with_blanks([0, 7, 12])])
    for mode, status in (("propagate", Status.CONFLICT), ("solve", Status.UNSAT)):
        out = ConstraintLayer(PROGRAM, mode, client=solver)(x)
        assert out.status.tolist() == [status, Status.SOLVED]
        assert not bool(out.values[0].any())
        assert out.values[1].argmax(-1).tolist() == SOLUTION.tolist()
        assert out.solved.tolist() == [False, True]


def test_status_fixpoint(solver: LocalSolver) -> None:
    out = ConstraintLayer(PROGRAM, "propagate", client=solver)(torch.zeros(3, 16, 4))
    assert out.status.tolist() == [Status.FIXPOINT] * 3
    assert bool((out.values == 1).all())  # nothing fixed, nothing pruned
    assert out.nodes.tolist() == [1, 1, 1]


def test_status_limit(solver: LocalSolver) -> None:
    """Out of nodes before any solution: LIMIT, and the values still possible at the root (not zeros)."""
    out = ConstraintLayer(PROGRAM, client=solver, node_limit=1)(torch.zeros(1, 16, 4))
    assert out.status.tolist() == [Status.LIMIT]
    assert bool((out.values == 1).all())


def test_solve_finds_a_solution_from_nothing(solver: LocalSolver) -> None:
    out = ConstraintLayer(PROGRAM, client=solver)(torch.zeros(2, 16, 4))
    assert out.status.tolist() == [Status.SOLVED] * 2
    assert bool((out.values.sum(-1) == 1).all())
    assert check_sudoku_solution(out.values[0].argmax(-1).numpy(), box=2)


def test_priorities_steer_search(solver: LocalSolver) -> None:
    """Unsure logits (nothing fixed) that prefer value 3 for cell 0: only with priorities does search try it first."""
    x = torch.zeros(1, 16, 4)
    x[0, 0, 3] = 1.0  # softmax 0.48: below ConfidentArgmax's 0.9, so the domain stays full
    plain = ConstraintLayer(PROGRAM, client=solver)(x)
    steered = ConstraintLayer(PROGRAM, client=solver, priorities=True)(x)
    assert plain.status.tolist() == steered.status.tolist() == [Status.SOLVED]
    assert plain.values[0, 0].argmax().item() == 0  # no priorities: the lowest value first
    assert steered.values[0, 0].argmax().item() == 3
    assert check_sudoku_solution(steered.values[0].argmax(-1).numpy(), box=2)


def test_target_local_connects_lazily(solver: LocalSolver) -> None:
    layer = ConstraintLayer(PROGRAM, target="local", node_limit=1000)
    assert layer._connected is None  # nothing opened at construction
    x = grid_logits([with_blanks([0, 1, 2, 3, 4]), with_blanks([])])
    out = layer(x)
    client = layer._connected
    assert client is not None and layer.client is client  # one connection, reused
    want = ConstraintLayer(PROGRAM, client=solver)(x)
    assert torch.equal(out.values, want.values) and torch.equal(out.status, want.status)
    layer.close()
    assert layer._connected is None
    assert torch.equal(layer(x).values, want.values)  # reconnects after close
    layer.close()


def test_default_target_is_local() -> None:
    layer = ConstraintLayer(PROGRAM)
    assert layer.target == "local"
    assert layer(torch.zeros(1, 16, 4)).status.tolist() == [Status.SOLVED]
    layer.close()


def test_pickle_carries_the_target_not_the_connection() -> None:
    layer = ConstraintLayer(PROGRAM, "solve", Threshold(0.7), "relaxation", target="local", node_limit=50)
    x = grid_logits([with_blanks([3, 6])])
    first = layer(x)
    for clone in (pickle.loads(pickle.dumps(layer)), copy.deepcopy(layer)):
        assert clone._connected is None and clone.target == "local"
        assert (clone.mode, clone.discretize, clone.ste, clone.node_limit) == (
            Mode.SOLVE,
            Threshold(0.7),
            layer.ste,
            50,
        )
        assert torch.equal(clone(x).values, first.values)
        assert clone._connected is not layer._connected
        clone.close()
    layer.close()


def test_layer_in_a_sequential_model(solver: LocalSolver) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), ConstraintLayer(PROGRAM, client=solver))
    out = model(torch.randn(2, 16, 4))
    assert out.values.shape == (2, 16, 4)
    assert list(model[1].parameters()) == [] and model[1].state_dict() == {}


def test_repr(solver: LocalSolver) -> None:
    layer = ConstraintLayer(PROGRAM, "propagate", TopK(2), "relaxation", target="unix:///run/fpgacsp.sock", timeout=3)
    assert repr(layer) == (
        "ConstraintLayer(program=Program(num_vars=16, domain_size=4, constraints=12), mode='propagate', "
        "discretize=TopK(k=2), ste=RelaxationSTE(), target='unix:///run/fpgacsp.sock', timeout=3.0)"
    )
    assert "client=LocalSolver" in repr(ConstraintLayer(PROGRAM, client=solver))


def test_reexported_from_the_package() -> None:
    from fpgacsp import torch_layer

    for name in ("ConstraintLayer", "SolverOutput", "Threshold", "TopK", "ConfidentArgmax", "discretize_top_k"):
        assert getattr(fpgacsp, name) is getattr(torch_layer, name)
        assert name in fpgacsp.__all__
    with pytest.raises(AttributeError, match=r"^module 'fpgacsp' has no attribute 'ConstraintLayers'$"):
        fpgacsp.ConstraintLayers  # noqa: B018


def test_importing_fpgacsp_does_not_import_torch() -> None:
    """The CLI imports fpgacsp: the layer (and torch) load only when a layer name is first used."""
    code = "import sys, fpgacsp; assert 'torch' not in sys.modules; fpgacsp.TopK; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
