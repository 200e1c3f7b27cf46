"""The constraint layer for JAX: ``fpgacsp.jax.ConstraintLayer`` (install ``fpgacsp[jax]``).

One core, two front ends, as cvxpylayers keeps one: the discretization, the solve and every estimator's backward
are the PyTorch layer's own code (:mod:`fpgacsp.torch_layer`, on CPU tensors), reached from JAX through
``jax.pure_callback`` and wrapped in ``jax.custom_vjp``. So for the same logits, target and estimator the JAX
layer returns exactly the PyTorch layer's values and gradients, bit for bit, because the same code computed
them, and every option, check and message is the PyTorch layer's.

- ``jax.jit``: the callback is opaque to XLA; shapes and dtypes are declared up front, so it traces.
- ``jax.vmap``: ``vmap_method="broadcast_all"``; the forward solves all slices in one batched call (instances
  are independent), the backward runs the estimator slice by slice, so an estimator that averages over the
  batch (Abduction divides by ``B``) sees the batch it would without vmap.
- ``jax.grad`` / ``jax.vjp``: the estimator's gradient; higher-order derivatives are refused, as in PyTorch.

JAX treats a ``pure_callback`` as pure: it may drop a call whose result is unused or repeat one. The solver
is pure; estimators that draw noise from a seeded generator (``Perturbed``, ``Abduction(sample=True)``) advance
it per call, so under JAX pass them a fresh instance (or no seed) when repeatability across runs matters.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import torch
from fpgacsp_proto.isa import Program, Status

from .torch_layer import ConstraintLayer as TorchConstraintLayer
from .torch_layer import Discretizer, Estimator, _op
from .torch_layer._discretize import check_logits_finite
from .torch_layer._frontend import FrontEnd, check_structure, host_tensor

__all__ = ["ConstraintLayer", "SolverOutput"]


class SolverOutput(NamedTuple):
    """What :class:`ConstraintLayer` returns: ``values`` ``[B, N, D]`` 0/1 in the logits' dtype, ``status`` and
    ``nodes`` ``int32[B]`` (JAX's default integer width; ``int64`` with x64 enabled)."""

    values: jax.Array
    status: jax.Array
    nodes: jax.Array

    @property
    def solved(self) -> jax.Array:
        """``bool[B]``: which instances came back SOLVED."""
        return self.status == int(Status.SOLVED)


class ConstraintLayer(FrontEnd):
    """Solve ``program`` for each instance of a batch of logits ``[B, N, D]``, as a JAX function.

    The arguments are :class:`fpgacsp.ConstraintLayer`'s (``mode``, ``discretize``, ``ste``, ``target`` or
    ``client``, ``node_limit``, ``priorities``, ``timeout``, ``wait_for_daemon_s``), checked by it. Call it as
    ``layer(logits)`` or ``layer(logits, labels)`` (``int[B, N]``, -1 where the loss does not look).
    """

    def __init__(
        self,
        program: Program,
        mode: str = "solve",
        discretize: str | Discretizer = "confident_argmax",
        ste: str | Estimator = "identity",
        **options: Any,
    ) -> None:
        self._build_core(program, mode, discretize, ste, options)
        self._apply = _make_apply(self.core)

    def __call__(self, logits: Any, labels: Any = None) -> SolverOutput:
        x = jnp.asarray(logits)
        lab = None if labels is None else jnp.asarray(labels)
        if lab is None:
            check_structure(self.core.program, x.shape, np.dtype(x.dtype).name)
        else:
            check_structure(self.core.program, x.shape, np.dtype(x.dtype).name, lab.shape, np.dtype(lab.dtype).name)
        if not isinstance(x, jax.core.Tracer):
            # concrete logits (eager): the value check raises here, as PyTorch's does; under jit it runs in the
            # callback and reaches the caller inside JAX's JaxRuntimeError, the same message included
            check_logits_finite(host_tensor(x))
        has_labels = lab is not None
        lab = lab.astype(jnp.int32) if lab is not None else jnp.zeros(x.shape[:2], jnp.int32)
        values, status, nodes = self._apply(x, lab, has_labels)
        return SolverOutput(values, status, nodes)


def _make_apply(core: TorchConstraintLayer) -> Any:
    """The layer's ``custom_vjp`` function ``(logits, labels, has_labels) -> (values, status, nodes)``."""
    handle = core._handle

    def forward_host(logits: np.ndarray, labels: np.ndarray, has_labels: bool) -> tuple[np.ndarray, ...]:
        # vmap's broadcast_all hands extra leading axes: instances are independent, so all go in one solve
        logits, labels = np.asarray(logits), np.asarray(labels)
        x = host_tensor(logits.reshape(-1, *logits.shape[-2:]))
        lab = host_tensor(labels.reshape(-1, labels.shape[-1]).astype(np.int64)) if has_labels else None
        with torch.no_grad():
            values, status, nodes = _op.solve(x, handle, lab)
        int_type = _int_type()
        return (
            values.numpy().reshape(logits.shape),
            status.numpy().astype(int_type).reshape(logits.shape[:-2]),
            nodes.numpy().astype(int_type).reshape(logits.shape[:-2]),
        )

    def backward_host(
        logits: np.ndarray, values: np.ndarray, grad: np.ndarray, labels: np.ndarray, has_labels: bool
    ) -> np.ndarray:
        # one estimator call per vmapped slice: an estimator may average over its batch
        logits, values, grad, labels = (np.asarray(a) for a in (logits, values, grad, labels))
        lead = logits.shape[:-3]
        out = np.empty_like(logits)
        for i in np.ndindex(*lead):
            lab = host_tensor(labels[i].astype(np.int64)) if has_labels else None
            g = _op.solve_backward(host_tensor(logits[i]), host_tensor(values[i]), host_tensor(grad[i]), handle, lab)
            out[i] = g.numpy()
        return out

    def solve(logits: jax.Array, labels: jax.Array, has_labels: bool) -> tuple[jax.Array, ...]:
        b = logits.shape[0]
        int_type = _int_type()
        shapes = (
            jax.ShapeDtypeStruct(logits.shape, logits.dtype),
            jax.ShapeDtypeStruct((b,), int_type),
            jax.ShapeDtypeStruct((b,), int_type),
        )
        return tuple(
            jax.pure_callback(
                lambda x, lab: forward_host(x, lab, has_labels), shapes, logits, labels, vmap_method="broadcast_all"
            )
        )

    def apply_fwd(logits: jax.Array, labels: jax.Array, has_labels: bool) -> tuple[Any, Any]:
        out = solve(logits, labels, has_labels)
        return out, (logits, out[0], labels)

    def apply_bwd(has_labels: bool, residuals: Any, cotangents: Any) -> tuple[Any, Any]:
        logits, values, labels = residuals
        grad_values = cotangents[0]
        grad = jax.pure_callback(
            lambda x, v, g, lab: backward_host(x, v, g, lab, has_labels),
            jax.ShapeDtypeStruct(logits.shape, logits.dtype),
            logits,
            values,
            grad_values,
            labels,
            vmap_method="broadcast_all",
        )
        return grad, np.zeros(labels.shape, dtype=jax.dtypes.float0)

    apply = jax.custom_vjp(solve, nondiff_argnums=(2,))
    apply.defvjp(apply_fwd, apply_bwd)
    return apply


def _int_type() -> Any:
    return jnp.int64 if jax.config.read("jax_enable_x64") else jnp.int32
