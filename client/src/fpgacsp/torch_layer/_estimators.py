"""Gradient estimators for the solver: what the backward pass of :class:`SolveFunction` computes.

The solver's output is piecewise constant in the logits, so its true gradient is zero almost everywhere; an
estimator supplies a useful surrogate instead. Each one is a small object with one method, ``backward``, that
gets everything the forward pass knew (:class:`BackwardContext`) and the incoming gradient. That seam is the
point: estimators that solve again in the backward pass (Vlastelica et al.'s interpolation, which re-solves with
the logits moved along the incoming gradient, or perturbation-based ones averaging solves under noise) need
``BackwardContext.resolve``; the two estimators here do not call it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ._discretize import Discretizer

__all__ = [
    "ESTIMATORS",
    "BackwardContext",
    "Estimator",
    "IdentitySTE",
    "RelaxationSTE",
    "make_estimator",
]


@dataclass(frozen=True)
class BackwardContext:
    """What the forward pass hands to an estimator.

    ``logits`` and ``values`` are detached (``[B, N, D]``, the caller's dtype and device). ``resolve`` maps new
    logits of the same shape to new 0/1 values through the same discretizer, solver, program and options as the
    forward pass: one more solve per call, for estimators that need it.
    """

    logits: Tensor
    values: Tensor
    discretizer: Discretizer
    resolve: Callable[[Tensor], Tensor]


class Estimator(ABC):
    """A straight-through gradient estimator: ``grad_values [B, N, D]`` to ``grad_logits [B, N, D]``."""

    name: ClassVar[str]

    @abstractmethod
    def backward(self, ctx: BackwardContext, grad_values: Tensor) -> Tensor:
        """Return the gradient for the logits (same shape, dtype and device as ``ctx.logits``)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))


class IdentitySTE(Estimator):
    """Pass the gradient straight through: ``grad_logits = grad_values`` (Bengio et al.'s plain STE).

    Treats the solver as the identity on ``[B, N, D]``: a loss that wants value ``v`` more (less) raises
    (lowers) its logit.
    """

    name = "identity"

    def backward(self, ctx: BackwardContext, grad_values: Tensor) -> Tensor:
        return grad_values


class RelaxationSTE(Estimator):
    """Backpropagate through the discretizer's relaxation: ``grad_logits = J_relax(logits)^T grad_values``.

    The relaxation is the smooth function the discretization thresholds: the sigmoid for :class:`Threshold`, the
    softmax over the ``D`` values for :class:`TopK` and :class:`ConfidentArgmax`. The gradient then carries the
    relaxation's shape: it vanishes where the network is already saturated, and under softmax it redistributes
    probability among a variable's values instead of moving every logit independently.
    """

    name = "relaxation"

    def backward(self, ctx: BackwardContext, grad_values: Tensor) -> Tensor:
        with torch.enable_grad():
            x = ctx.logits.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(ctx.discretizer.relax(x), x, grad_values)
        return grad


ESTIMATORS: dict[str, type[Estimator]] = {cls.name: cls for cls in (IdentitySTE, RelaxationSTE)}


def make_estimator(ste: str | Estimator) -> Estimator:
    """An :class:`Estimator` from its name (``"identity"``, ``"relaxation"``) or an instance."""
    if isinstance(ste, Estimator):
        return ste
    if isinstance(ste, str) and ste in ESTIMATORS:
        return ESTIMATORS[ste]()
    names = ", ".join(repr(n) for n in ESTIMATORS)
    raise ValueError(f"ste: expected one of {names} or an Estimator instance, got {ste!r}")
