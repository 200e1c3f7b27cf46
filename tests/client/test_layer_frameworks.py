"""One solver, every framework: against one real daemon, for the same logits and estimator, the JAX and TensorFlow
layers return the PyTorch layer's values, statuses, nodes and gradients bit for bit, in float32 and float64, both
run directly and traced (``jax.jit``, ``tf.function``).

The discretization and the estimators' arithmetic are defined once (the PyTorch layer's operators, which the other
two layers call), so any difference here would be a bug in how a front end hands data across.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cross_framework import ESTIMATORS, doubtful_boards, tensorflow_modules, torch_run
from daemon_process import DaemonProcess
from fpgacsp import jax as fjax
from fpgacsp.torch_layer import ConstraintLayer, MinProbability
from sudoku4 import PROGRAM

pytestmark = pytest.mark.tensorflow  # the TensorFlow runs: imported late, run last (see cross_framework)


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    with DaemonProcess() as d:
        yield d
        assert d.alive(), d.log_text()


@pytest.fixture(scope="module")
def boards() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return doubtful_boards()


def jax_run(options: dict[str, Any], ste: str, logits: np.ndarray, labels: np.ndarray, w: np.ndarray, traced: bool):
    layer = fjax.ConstraintLayer(PROGRAM, "solve", ste=ESTIMATORS[ste](), **options)

    def loss(x: jax.Array) -> tuple[jax.Array, fjax.SolverOutput]:
        out = layer(x, labels)
        return (out.values * w).sum(), out

    run = jax.value_and_grad(loss, has_aux=True)
    with jax.enable_x64(logits.dtype == np.float64):
        (_, out), grad = (jax.jit(run) if traced else run)(jnp.asarray(logits))
        return layer, [np.asarray(out.values), np.asarray(out.status), np.asarray(out.nodes), np.asarray(grad)]


def tf_run(options: dict[str, Any], ste: str, logits: np.ndarray, labels: np.ndarray, w: np.ndarray, traced: bool):
    tf, _, ftf = tensorflow_modules()
    layer = ftf.ConstraintLayer(PROGRAM, "solve", ste=ESTIMATORS[ste](), **options)

    def run(x: Any) -> tuple[Any, Any]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = layer(x, labels)
            loss = tf.reduce_sum(out.values * w)
        return out, tape.gradient(loss, x)

    out, grad = (tf.function(run) if traced else run)(tf.constant(logits))
    return layer, [out.values.numpy(), out.status.numpy(), out.nodes.numpy(), grad.numpy()]


FRONT_ENDS: dict[str, Callable[..., Any]] = {"jax": jax_run, "tensorflow": tf_run}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("traced", [False, True], ids=["eager", "traced"])
@pytest.mark.parametrize("framework", list(FRONT_ENDS))
@pytest.mark.parametrize("ste", list(ESTIMATORS))
def test_every_framework_equals_the_torch_layer_bit_for_bit_through_one_daemon(
    daemon: DaemonProcess, boards: tuple[np.ndarray, ...], ste: str, framework: str, traced: bool, dtype: type
) -> None:
    logits: np.ndarray = boards[0].astype(dtype)
    labels = boards[1]
    w: np.ndarray = boards[2].astype(dtype)
    options: dict[str, Any] = {"discretize": MinProbability(0.05), "priorities": True, "target": daemon.address}
    want = torch_run(ConstraintLayer(PROGRAM, "solve", ste=ESTIMATORS[ste](), **options), logits, labels, w)
    layer, got = FRONT_ENDS[framework](options, ste, logits, labels, w, traced)
    for name, a, b in zip(("values", "status", "nodes", "grad"), want, got, strict=True):
        assert np.array_equal(a, b), (framework, ste, name)
    assert got[0].dtype == dtype and got[3].dtype == dtype  # no framework cast the logits
    assert np.abs(got[3]).sum() > 0  # a gradient that could have differed
    info = layer.info
    assert info is not None and info.batch_size == len(logits) and info.solver_calls == 1
