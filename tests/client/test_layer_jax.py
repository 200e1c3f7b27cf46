"""``fpgacsp.jax.ConstraintLayer``: the PyTorch layer's core behind ``jax.custom_vjp`` and ``jax.pure_callback``.

Against one real daemon: for the same logits and estimator the JAX layer returns the PyTorch layer's values,
statuses, nodes and gradients bit for bit, in float32 and float64, eagerly and under ``jax.jit``; ``jax.vmap``
of the forward and of the gradient equals the slices taken one by one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cross_framework import ESTIMATORS, doubtful_boards, torch_run
from daemon_process import DaemonProcess
from fpgacsp import LocalSolver
from fpgacsp import jax as fjax
from fpgacsp.torch_layer import Abduction, ConstraintLayer, MinProbability
from sudoku4 import PROGRAM


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    with DaemonProcess() as d:
        yield d
        assert d.alive(), d.log_text()


@pytest.fixture(scope="module")
def boards() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return doubtful_boards()


def jax_run(layer: fjax.ConstraintLayer, logits: np.ndarray, labels: np.ndarray, w: np.ndarray, jit: bool) -> list:
    def loss(x: jax.Array) -> tuple[jax.Array, fjax.SolverOutput]:
        out = layer(x, labels)
        return (out.values * w).sum(), out

    run = jax.value_and_grad(loss, has_aux=True)
    (_, out), grad = (jax.jit(run) if jit else run)(jnp.asarray(logits))
    return [np.asarray(out.values), np.asarray(out.status), np.asarray(out.nodes), np.asarray(grad)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("ste", list(ESTIMATORS))
def test_jax_layer_equals_the_torch_layer_bit_for_bit_through_a_daemon(
    daemon: DaemonProcess, boards: tuple[np.ndarray, ...], ste: str, jit: bool, dtype: type
) -> None:
    logits: np.ndarray = boards[0].astype(dtype)
    labels = boards[1]
    w: np.ndarray = boards[2].astype(dtype)
    options: dict[str, Any] = {"discretize": MinProbability(0.05), "priorities": True, "target": daemon.address}
    with jax.enable_x64(dtype == np.float64):
        want = torch_run(ConstraintLayer(PROGRAM, "solve", ste=ESTIMATORS[ste](), **options), logits, labels, w)
        layer = fjax.ConstraintLayer(PROGRAM, "solve", ste=ESTIMATORS[ste](), **options)
        got = jax_run(layer, logits, labels, w, jit)
    for name, a, b in zip(("values", "status", "nodes", "grad"), want, got, strict=True):
        assert np.array_equal(a, b), (ste, name)
    assert got[0].dtype == dtype and got[3].dtype == dtype
    assert np.abs(got[3]).sum() > 0  # a gradient that could have differed
    info = layer.info
    assert info is not None and info.batch_size == len(logits) and info.solver_calls == 1


def test_vmap_of_the_forward_and_of_the_gradient_equals_the_slices_one_by_one(
    boards: tuple[np.ndarray, ...],
) -> None:
    logits, labels, w = (a.astype(np.float32) if a.dtype.kind == "f" else a for a in boards)
    stacked = jnp.stack([jnp.asarray(logits), jnp.asarray(logits[::-1]), jnp.asarray(logits * 0.5)])
    with LocalSolver() as solver:
        layer = fjax.ConstraintLayer(PROGRAM, "solve", MinProbability(0.05), Abduction(), client=solver)
        values = jax.vmap(lambda x: layer(x).values)(stacked)
        assert layer.info is not None and layer.info.batch_size == 3 * len(logits)  # one batched solve
        assert all(np.array_equal(values[i], layer(stacked[i]).values) for i in range(3))
        grad = jax.vmap(jax.grad(lambda x: (layer(x, labels).values * w).sum()))(stacked)
        for i in range(3):
            one = jax.grad(lambda x: (layer(x, labels).values * w).sum())(stacked[i])
            assert np.array_equal(grad[i], one)  # Abduction averages over each slice's own batch
        assert np.abs(np.asarray(grad)).sum() > 0


def test_jax_layer_checks_its_inputs_with_the_torch_layers_messages() -> None:
    with LocalSolver() as solver:
        layer = fjax.ConstraintLayer(PROGRAM, client=solver)
        with pytest.raises(ValueError, match="N = 15 does not match the program's 16 variables"):
            layer(jnp.zeros((2, 15, 4)))
        with pytest.raises(ValueError, match=r"expected floating logits of shape \[B, N, D\]"):
            layer(jnp.zeros((2, 16, 4), jnp.int32))
        with pytest.raises(TypeError, match=r"labels: expected integer values 0\.\.3"):
            layer(jnp.zeros((2, 16, 4)), jnp.zeros((2, 16)))
        with pytest.raises(ValueError, match=r"labels: expected shape \[B, N\] = \[2, 16\]"):
            layer(jnp.zeros((2, 16, 4)), jnp.zeros((2, 15), jnp.int32))
        bad = jnp.zeros((2, 16, 4)).at[1, 2, 3].set(jnp.nan)
        finite = r"logits must be finite: 1 NaN or infinite value\(s\), the first at \[1, 2, 3\]"
        with pytest.raises(ValueError, match=finite):
            layer(bad)  # eager: raised before the callback
        with pytest.raises(jax.errors.JaxRuntimeError, match=finite):
            jax.block_until_ready(jax.jit(lambda x: layer(x).values)(bad))  # under jit: from inside the callback
        with pytest.raises(ValueError, match="ste: expected one of"):
            fjax.ConstraintLayer(PROGRAM, ste="backprop", client=solver)
