"""``fpgacsp.tensorflow.ConstraintLayer``: a Keras layer over the PyTorch layer's core, ``tf.custom_gradient`` over
``tf.numpy_function``.

Against one real daemon: for the same logits and estimator the TensorFlow layer returns the PyTorch layer's
values, statuses, nodes and gradients bit for bit, in float32 and float64, eagerly and inside ``tf.function``; a
Keras model holding it trains its own weights through it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up banner is noise in a test log

import keras
import numpy as np
import pytest
import tensorflow as tf
from cross_framework import ESTIMATORS, doubtful_boards, torch_run
from daemon_process import DaemonProcess
from fpgacsp import LocalSolver
from fpgacsp import tensorflow as ftf
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


def tf_run(layer: ftf.ConstraintLayer, logits: np.ndarray, labels: np.ndarray, w: np.ndarray, graph: bool) -> list:
    def run(x: tf.Tensor) -> tuple[ftf.SolverOutput, tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = layer(x, labels)
            loss = tf.reduce_sum(out.values * w)
        return out, tape.gradient(loss, x)

    out, grad = (tf.function(run) if graph else run)(tf.constant(logits))
    return [out.values.numpy(), out.status.numpy(), out.nodes.numpy(), grad.numpy()]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf.function"])
@pytest.mark.parametrize("ste", list(ESTIMATORS))
def test_tensorflow_layer_equals_the_torch_layer_bit_for_bit_through_a_daemon(
    daemon: DaemonProcess, boards: tuple[np.ndarray, ...], ste: str, graph: bool, dtype: type
) -> None:
    logits: np.ndarray = boards[0].astype(dtype)
    labels = boards[1]
    w: np.ndarray = boards[2].astype(dtype)
    options: dict[str, Any] = {"discretize": MinProbability(0.05), "priorities": True, "target": daemon.address}
    want = torch_run(ConstraintLayer(PROGRAM, "solve", ste=ESTIMATORS[ste](), **options), logits, labels, w)
    layer = ftf.ConstraintLayer(PROGRAM, "solve", ste=ESTIMATORS[ste](), **options)
    got = tf_run(layer, logits, labels, w, graph)
    for name, a, b in zip(("values", "status", "nodes", "grad"), want, got, strict=True):
        assert np.array_equal(a, b), (ste, name)
    assert got[0].dtype == dtype and got[3].dtype == dtype  # the layer does not cast (Keras would to float32)
    assert np.abs(got[3]).sum() > 0  # a gradient that could have differed
    info = layer.info
    assert info is not None and info.batch_size == len(logits) and info.solver_calls == 1


class Reader(keras.Model):
    """A Dense reader of noisy one-hot digits into logits, through the solver layer."""

    def __init__(self, layer: ftf.ConstraintLayer) -> None:
        super().__init__()
        self.dense = keras.layers.Dense(4, kernel_initializer="identity", bias_initializer="zeros")
        self.solver = layer

    def call(self, x: tf.Tensor, labels: tf.Tensor) -> ftf.SolverOutput:
        return self.solver(self.dense(x), labels)


def test_a_keras_model_trains_its_weights_through_the_layer_inside_tf_function(
    boards: tuple[np.ndarray, ...],
) -> None:
    logits, labels, _ = boards
    with LocalSolver() as solver:
        model = Reader(ftf.ConstraintLayer(PROGRAM, "solve", MinProbability(0.05), Abduction(), client=solver))
        opt = keras.optimizers.SGD(0.5)
        x = tf.constant(logits.astype(np.float32))

        @tf.function
        def step() -> tf.Tensor:
            with tf.GradientTape() as tape:
                out = model(x, labels)
                t = tf.one_hot(labels, 4)
                loss = tf.reduce_sum(out.values * (1 - 2 * t) + t) / len(labels)  # hamming_loss, in TensorFlow
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return grads[0]

        model.dense.build((None, 16, 4))
        before = model.dense.kernel.numpy().copy()
        grad = step()
        assert np.abs(grad.numpy()).sum() > 0 and not np.array_equal(model.dense.kernel.numpy(), before)
        assert model.solver.info is not None and model.solver.info.backward is not None  # Abduction solved again


def test_tensorflow_layer_checks_its_inputs_with_the_torch_layers_messages() -> None:
    with LocalSolver() as solver:
        layer = ftf.ConstraintLayer(PROGRAM, client=solver)
        with pytest.raises(ValueError, match="N = 15 does not match the program's 16 variables"):
            layer(tf.zeros((2, 15, 4)))
        with pytest.raises(ValueError, match=r"expected floating logits of shape \[B, N, D\]"):
            layer(tf.zeros((2, 16, 4), tf.int32))
        with pytest.raises(TypeError, match=r"labels: expected integer values 0\.\.3"):
            layer(tf.zeros((2, 16, 4)), tf.zeros((2, 16)))
        with pytest.raises(ValueError, match=r"labels: expected shape \[B, N\] = \[2, 16\]"):
            layer(tf.zeros((2, 16, 4)), tf.zeros((2, 15), tf.int32))
        bad = tf.tensor_scatter_nd_update(tf.zeros((2, 16, 4)), [[1, 2, 3]], [float("nan")])
        finite = r"logits must be finite: 1 NaN or infinite value\(s\), the first at \[1, 2, 3\]"
        with pytest.raises(ValueError, match=finite):
            layer(bad)  # eager: raised before the op
        with pytest.raises(tf.errors.InvalidArgumentError, match=finite):
            tf.function(lambda x: layer(x).values)(bad)  # in a graph: from inside the op, at run time
        with pytest.raises(ValueError, match="ste: expected one of"):
            ftf.ConstraintLayer(PROGRAM, ste="backprop", client=solver)
