"""The constraint layer for TensorFlow: ``fpgacsp.tensorflow.ConstraintLayer`` (install ``fpgacsp[tensorflow]``).

A Keras layer over the PyTorch layer's core, as :mod:`fpgacsp.jax` is: ``tf.numpy_function`` runs the PyTorch
layer's operators (``torch.ops.fpgacsp.solve`` and ``solve_backward``) on CPU tensors, and ``tf.custom_gradient``
makes the second one the gradient. The discretization, the solve and every estimator's arithmetic therefore exist
once, and for the same logits, target and estimator the TensorFlow layer returns the PyTorch layer's values and
gradients bit for bit, eagerly and inside ``tf.function``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import keras
import numpy as np
import tensorflow as tf
import torch
from fpgacsp_proto.isa import Program, Status

from .torch_layer import Discretizer, Estimator, _op
from .torch_layer._discretize import check_logits_finite
from .torch_layer._frontend import FrontEnd, check_structure, host_tensor

__all__ = ["ConstraintLayer", "SolverOutput"]


class SolverOutput(NamedTuple):
    """What :class:`ConstraintLayer` returns: ``values`` ``[B, N, D]`` 0/1 in the logits' dtype, ``status`` and
    ``nodes`` ``int64[B]``."""

    values: tf.Tensor
    status: tf.Tensor
    nodes: tf.Tensor

    @property
    def solved(self) -> tf.Tensor:
        """``bool[B]``: which instances came back SOLVED."""
        return self.status == int(Status.SOLVED)


class ConstraintLayer(FrontEnd, keras.layers.Layer):
    """Solve ``program`` for each instance of a batch of logits ``[B, N, D]``, as a Keras layer.

    The arguments are :class:`fpgacsp.ConstraintLayer`'s (``mode``, ``discretize``, ``ste``, ``target`` or
    ``client``, ``node_limit``, ``priorities``, ``timeout``, ``wait_for_daemon_s``), checked by it. Call it as
    ``layer(logits)`` or ``layer(logits, labels)`` (``int[B, N]``, -1 where the loss does not look). The layer
    has no weights, and does not cast its input (float64 logits stay float64).
    """

    def __init__(
        self,
        program: Program,
        mode: str = "solve",
        discretize: str | Discretizer = "confident_argmax",
        ste: str | Estimator = "identity",
        **options: Any,
    ) -> None:
        super().__init__(trainable=False, autocast=False)
        self._build_core(program, mode, discretize, ste, options)

    def call(self, logits: Any, labels: Any = None) -> SolverOutput:
        x = tf.convert_to_tensor(logits)
        shape = x.shape.as_list() if x.shape.rank is not None else []
        lab = None if labels is None else tf.convert_to_tensor(labels)
        if lab is None:
            check_structure(self.core.program, shape, x.dtype.name)
        else:
            check_structure(self.core.program, shape, x.dtype.name, lab.shape.as_list(), lab.dtype.name)
        if tf.executing_eagerly():
            check_logits_finite(host_tensor(x.numpy()))  # else inside the op, at run time
        return SolverOutput(*_solve(self.core._handle, x, None if lab is None else tf.cast(lab, tf.int64)))

    def compute_output_spec(self, logits: Any, labels: Any = None) -> SolverOutput:
        batch = logits.shape[0]
        return SolverOutput(
            keras.KerasTensor(logits.shape, logits.dtype),
            keras.KerasTensor((batch,), "int64"),
            keras.KerasTensor((batch,), "int64"),
        )


def _solve(handle: int, logits: tf.Tensor, labels: tf.Tensor | None) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The solve with its estimator as the gradient; ``labels`` None: the layer got none."""
    has_labels = labels is not None
    lab = labels if labels is not None else tf.zeros(tf.shape(logits)[:2], tf.int64)

    def forward_host(x: np.ndarray, lab: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with torch.no_grad():
            values, status, nodes = _op.solve(host_tensor(x), handle, host_tensor(lab) if has_labels else None)
        return values.numpy(), status.numpy(), nodes.numpy()

    def backward_host(x: np.ndarray, values: np.ndarray, grad: np.ndarray, lab: np.ndarray) -> np.ndarray:
        out = _op.solve_backward(
            host_tensor(x), host_tensor(values), host_tensor(grad), handle, host_tensor(lab) if has_labels else None
        )
        return out.numpy()

    @tf.custom_gradient
    def apply(x: tf.Tensor, lab: tf.Tensor) -> Any:
        values, status, nodes = tf.numpy_function(
            forward_host, [x, lab], [x.dtype, tf.int64, tf.int64], stateful=True, name="fpgacsp_solve"
        )
        values.set_shape(x.shape)
        status.set_shape(x.shape[:1])
        nodes.set_shape(x.shape[:1])

        def grad(grad_values: tf.Tensor | None, *_int_grads: Any) -> tuple[tf.Tensor, None]:
            if grad_values is None:
                grad_values = tf.zeros_like(values)
            g = tf.numpy_function(
                backward_host, [x, values, grad_values, lab], x.dtype, stateful=True, name="fpgacsp_solve_backward"
            )
            g.set_shape(x.shape)
            return g, None

        return (values, status, nodes), grad

    values, status, nodes = apply(logits, lab)
    return values, status, nodes
