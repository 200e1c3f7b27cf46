"""``fpgacsp.jax.ConstraintLayer``: the PyTorch layer's core behind ``jax.custom_vjp`` and ``jax.pure_callback``.

What is JAX's own: ``jax.vmap`` of the forward (one batched solve) and of the gradient (the estimator slice by
slice) equals the slices taken one by one, and the inputs are checked with the PyTorch layer's messages. That it
equals the PyTorch layer bit for bit is ``test_layer_frameworks.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cross_framework import doubtful_boards
from fpgacsp import LocalSolver
from fpgacsp import jax as fjax
from fpgacsp.torch_layer import Abduction, MinProbability
from sudoku4 import PROGRAM


@pytest.fixture(scope="module")
def boards() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return doubtful_boards()


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
