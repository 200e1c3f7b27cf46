"""``fpgacsp.tensorflow.ConstraintLayer``: a Keras layer over the PyTorch layer's core, ``tf.custom_gradient`` over
``tf.numpy_function``.

What is TensorFlow's own: a Keras model holding the layer trains its weights through it inside ``tf.function``,
and the inputs are checked with the PyTorch layer's messages. That it equals the PyTorch layer bit for bit is
``test_layer_frameworks.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from cross_framework import doubtful_boards, tensorflow_modules
from fpgacsp import LocalSolver
from fpgacsp.torch_layer import Abduction, MinProbability
from sudoku4 import PROGRAM

pytestmark = pytest.mark.tensorflow


@pytest.fixture(scope="module")
def boards() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return doubtful_boards()


def test_a_keras_model_trains_its_weights_through_the_layer_inside_tf_function(
    boards: tuple[np.ndarray, ...],
) -> None:
    tf, keras, ftf = tensorflow_modules()

    class Reader(keras.Model):  # type: ignore[name-defined]
        """A Dense reader of noisy one-hot digits into logits, through the solver layer."""

        def __init__(self, layer: Any) -> None:
            super().__init__()
            self.dense = keras.layers.Dense(4, kernel_initializer="identity", bias_initializer="zeros")
            self.solver = layer

        def call(self, x: Any, labels: Any) -> Any:
            return self.solver(self.dense(x), labels)

    logits, labels, _ = boards
    with LocalSolver() as solver:
        model = Reader(ftf.ConstraintLayer(PROGRAM, "solve", MinProbability(0.05), Abduction(), client=solver))
        opt = keras.optimizers.SGD(0.5)
        x = tf.constant(logits.astype(np.float32))

        @tf.function
        def step() -> Any:
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
    tf, _, ftf = tensorflow_modules()
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
