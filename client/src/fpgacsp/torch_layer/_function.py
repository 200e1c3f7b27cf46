"""``SolveFunction``: the autograd Function behind :class:`ConstraintLayer`.

Forward: discretize the logits, solve (through whatever client the layer resolved: the daemon or the local
engine), and turn the result domains back into 0/1 values on the caller's device and dtype. Backward: whatever
the configured :class:`Estimator` says; nothing about the solver is differentiated. The configuration travels as
one frozen :class:`SolveSpec`, so the Function itself holds no state and a spec can solve again for estimators
that need it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from fpgacsp_proto.isa import Mode, Program
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from ._discretize import Discretizer, check_logits, domains_to_values, value_priorities
from ._estimators import BackwardContext, Estimator

__all__ = ["SolveFunction", "SolveSpec", "SolverClient"]


class SolverClient(Protocol):
    """Anything with the client's ``solve``: ``fpgacsp.connect(...)``'s clients, or a ``LocalSolver``.

    Called as ``solve(program, domains, priorities, mode=..., [node_limit=...], [timeout=...])`` and expected to
    return an object with ``domains`` (``uint64[B, N]``), ``status`` (``uint8[B]``) and ``nodes`` (``[B]``).
    """

    @property
    def solve(self) -> Callable[..., Any]:
        """Solve a batch of instances of ``program``; row ``b`` of the result answers row ``b``.

        Typed loosely (a read-only callable) so that clients whose keyword sets differ all fit.
        """
        ...


@dataclass(frozen=True, eq=False)
class SolveSpec:
    """Everything one forward pass needs besides the logits."""

    program: Program
    mode: Mode
    discretizer: Discretizer
    estimator: Estimator
    client: SolverClient
    priorities: bool = False
    node_limit: int | None = None
    timeout: float | None = None

    def run(self, logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Solve ``logits [B, N, D]`` (already checked) to ``(values, status, nodes)`` on the logits' device."""
        domains = self.discretizer.domains(logits)
        prios = value_priorities(logits) if self.priorities else None
        # optional keywords only when set, so a bare LocalSolver (no ``timeout``) works as a client too
        options: dict[str, Any] = {"mode": self.mode}
        if self.node_limit is not None:
            options["node_limit"] = self.node_limit
        if self.timeout is not None:
            options["timeout"] = self.timeout
        result = self.client.solve(self.program, domains, prios, **options)
        values = domains_to_values(result.domains, self.program.domain_size, like=logits)
        status = torch.as_tensor(np.asarray(result.status, dtype=np.int64), device=logits.device)
        nodes = torch.as_tensor(np.asarray(result.nodes, dtype=np.int64), device=logits.device)
        return values, status, nodes

    def resolve(self, logits: Tensor) -> Tensor:
        """Values only: the ``resolve`` an estimator gets in its :class:`BackwardContext`.

        Checked like the layer's input: perturbed logits can overflow to inf, and that should say so.
        """
        check_logits(logits, self.program.num_vars, self.program.domain_size)
        return self.run(logits)[0]


class SolveFunction(torch.autograd.Function):
    """``(logits, spec) -> (values, status, nodes)``; ``status`` and ``nodes`` are not differentiable."""

    @staticmethod
    def forward(ctx: FunctionCtx, logits: Tensor, spec: SolveSpec) -> tuple[Tensor, Tensor, Tensor]:
        values, status, nodes = spec.run(logits)
        ctx.spec = spec  # type: ignore[attr-defined]
        ctx.save_for_backward(logits, values)
        ctx.mark_non_differentiable(status, nodes)
        return values, status, nodes

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_values: Tensor, *_grad_int: Any) -> tuple[Tensor, None]:
        logits, values = ctx.saved_tensors
        spec: SolveSpec = ctx.spec
        bctx = BackwardContext(logits.detach(), values.detach(), spec.discretizer, spec.resolve)
        grad = spec.estimator.backward(bctx, grad_values)
        if grad.shape != logits.shape:
            raise RuntimeError(
                f"{spec.estimator!r} returned a gradient of shape {list(grad.shape)} for logits {list(logits.shape)}"
            )
        return grad.to(dtype=logits.dtype), None
