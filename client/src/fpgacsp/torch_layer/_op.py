"""The solver as torch operators: ``torch.ops.fpgacsp.solve`` and ``torch.ops.fpgacsp.solve_backward``.

Why operators and not an ``autograd.Function``: ``torch.compile`` traces Python into a graph, and a solve is
neither traceable (it leaves the process, or runs numba on numpy arrays) nor something the tracer should look
into. As ``torch.library.custom_op``\\ s with fake implementations, the tracer knows the outputs' shapes and
dtypes from the inputs' and keeps each call opaque, so ``fullgraph=True`` compiles and the compiled graph runs the
eager code itself: the same outputs and the same gradients, bit for bit. The backward is an operator too
(``register_autograd`` calls it), because the estimators that solve again (Interpolation, Perturbed, Abduction)
branch on what comes back, which no graph can hold.

Operators take tensors and plain numbers only. The layer is therefore named by an integer *handle* (a
process-wide registry of live layers, held weakly, so a handle is a constant the compiled graph can carry). Both
operators are functions of their inputs alone (``torch.library.opcheck`` calls them repeatedly and compares), so
the backward does not name its forward: it solves with the layer's settings as they are when it runs (the same
as the forward's unless the layer was reconfigured in between) and adds its counts to the layer's last forward
in ``layer.info``.

This module deliberately has no ``from __future__ import annotations``: ``custom_op`` reads the signature's
annotations as types to build the operator's schema.
"""

import functools
import itertools
import threading
import time
import weakref
from typing import Any, Protocol

import torch
from torch import Tensor

from ._discretize import check_labels_range, check_logits_finite
from ._function import SolveRecorder, SolveSpec, estimator_backward

__all__ = ["SpecSource", "refuse_function_transforms", "register_source", "solve", "solve_backward"]

DOUBLE_BACKWARD = (
    "ConstraintLayer: double backward is not supported (create_graph=True or a higher-order gradient through the "
    "solver layer): its gradient estimators are first-order only"
)


class SpecSource(Protocol):
    """What the operators need of a layer: a spec for each forward, and where to publish what it cost."""

    def solve_spec(self, recorder: SolveRecorder) -> SolveSpec:
        """The spec one forward solves with, recording into ``recorder``."""
        ...

    def record_forward(self, batch: int, seconds: float, recorder: SolveRecorder) -> None:
        """The forward of ``batch`` instances took ``seconds``; ``recorder`` will also see its backward."""
        ...

    def backward_recorder(self) -> SolveRecorder:
        """Where a backward records: the last forward's recorder (a fresh one if there was none)."""
        ...


_lock = threading.Lock()
_handles = itertools.count(1)
_sources: dict[int, "weakref.ref[SpecSource]"] = {}


def register_source(source: SpecSource) -> int:
    """A new handle for ``source`` (a layer), valid while it lives; the operators find it by that number."""
    with _lock:
        handle = next(_handles)
        _sources[handle] = weakref.ref(source, functools.partial(_forget, handle))
    return handle


def _forget(handle: int, _ref: object) -> None:
    _sources.pop(handle, None)


def _source(handle: int) -> SpecSource:
    ref = _sources.get(handle)
    source = None if ref is None else ref()
    if source is None:
        raise RuntimeError(
            f"fpgacsp::solve: no live ConstraintLayer has handle {handle} in this process (the layer was garbage "
            "collected, or the handle came from another process): call the layer itself, not the operator"
        )
    return source


@torch.library.custom_op("fpgacsp::solve", mutates_args=())
def solve(logits: Tensor, handle: int, labels: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Solve ``logits [B, N, D]`` with layer ``handle``'s settings: ``(values, status, nodes)``.

    ``values`` are 0/1 in the logits' dtype and device, ``status`` and ``nodes`` ``int64[B]`` on the same device.
    ``labels`` (``int64[B, N]`` or None) only travel to the backward's estimator. The logits' structure was checked
    by the layer (that part is traced); their values, and the labels' range, are checked here, where they exist.
    """
    source = _source(handle)
    t0 = time.perf_counter()
    check_logits_finite(logits)
    if labels is not None:
        check_labels_range(labels, int(logits.shape[-1]))
    recorder = SolveRecorder()
    spec = source.solve_spec(recorder)
    values, status, nodes = spec.run(logits.detach())
    recorder.backward = True  # any solve from here on is the estimator's
    source.record_forward(int(logits.shape[0]), time.perf_counter() - t0, recorder)
    return values, status, nodes


@solve.register_fake
def _solve_fake(logits: Tensor, handle: int, labels: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    batch = logits.shape[0]
    return (
        torch.empty_like(logits),
        logits.new_empty((batch,), dtype=torch.int64),
        logits.new_empty((batch,), dtype=torch.int64),
    )


@torch.library.custom_op("fpgacsp::solve_backward", mutates_args=())
def solve_backward(logits: Tensor, values: Tensor, grad_values: Tensor, handle: int, labels: Tensor | None) -> Tensor:
    """Layer ``handle``'s estimator's gradient for ``logits``, given the forward's ``values`` and ``grad_values``."""
    source = _source(handle)
    spec = source.solve_spec(source.backward_recorder())
    grad = estimator_backward(spec, logits, values, grad_values, labels)
    # an operator's output may not alias an input (the identity estimator returns grad_values itself)
    if grad._is_view() or any(grad is t for t in (logits, values, grad_values, labels)):
        grad = grad.clone()
    return grad


@solve_backward.register_fake
def _solve_backward_fake(
    logits: Tensor, values: Tensor, grad_values: Tensor, handle: int, labels: Tensor | None
) -> Tensor:
    return torch.empty_like(logits)


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
    logits, handle, labels = inputs
    values, _status, _nodes = output
    ctx.handle = handle
    # the graph keeps the layer alive until its backward (``ConstraintLayer(...)(x).values.sum().backward()``):
    # the registry holds layers weakly
    ctx.source = _source(handle)
    ctx.save_for_backward(logits, values, labels)


def _backward(ctx: Any, grad_values: Tensor | None, *_grad_int: Any) -> tuple[Tensor, None, None]:
    if torch.is_grad_enabled():
        # create_graph=True (a gradient penalty, torch.func's higher-order transforms): the estimators are
        # first-order surrogates of a piecewise-constant function, there is no second derivative to give, and a
        # gradient that silently does not require grad would hide that
        raise RuntimeError(DOUBLE_BACKWARD)
    logits, values, labels = ctx.saved_tensors
    if grad_values is None:
        grad_values = torch.zeros_like(values)
    return solve_backward(logits, values, grad_values, ctx.handle, labels), None, None


solve.register_autograd(_backward, setup_context=_setup_context)


@solve.register_vmap
def _solve_vmap(
    info: Any, in_dims: tuple[int | None, None, int | None], logits: Tensor, handle: int, labels: Tensor | None
) -> tuple[tuple[Tensor, Tensor, Tensor], tuple[int, int, int]]:
    """``torch.func.vmap``: the instances of every slice are independent, so all slices go in one batched solve."""
    logits_dim, _, labels_dim = in_dims
    x = _to_front(logits, logits_dim, info.batch_size)  # [V, B, N, D]
    flat_labels = None if labels is None else _to_front(labels, labels_dim, info.batch_size).flatten(0, 1)
    values, status, nodes = solve(x.flatten(0, 1), handle, flat_labels)
    batches = x.shape[:2]
    return (values.unflatten(0, batches), status.unflatten(0, batches), nodes.unflatten(0, batches)), (0, 0, 0)


def _to_front(t: Tensor, dim: int | None, size: int) -> Tensor:
    return t.movedim(dim, 0) if dim is not None else t.expand(size, *t.shape)


def refuse_function_transforms() -> None:
    """Raise, naming the layer, under ``torch.func.grad``/``jacrev``/``jvp`` and the like (vmap is fine).

    The estimators are first-order surrogates computed by an opaque backward, which torch.func's own
    differentiation cannot enter (it would fail deep inside torch with a message about autograd.Function).
    """
    if torch.compiler.is_compiling():
        return  # torch.compile never runs under a functorch transform of its own here; nothing to look at
    for interpreter in torch._C._functorch.get_interpreter_stack() or ():
        kind = interpreter.key()
        if kind in (torch._C._functorch.TransformType.Grad, torch._C._functorch.TransformType.Jvp):
            raise RuntimeError(
                "ConstraintLayer: torch.func.grad, vjp, jacrev, jacfwd and jvp cannot differentiate the solver "
                "layer (its gradient is an estimator's, computed by an opaque backward); use loss.backward() or "
                "torch.autograd.grad, which run the estimator. torch.func.vmap works."
            )
