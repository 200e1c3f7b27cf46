"""``SolveSpec``: what one forward of :class:`ConstraintLayer` solves with, and what its backward computes.

Forward: discretize the logits, solve (through whatever client the layer resolved: the daemon or the local
engine), and turn the result domains back into 0/1 values on the caller's device and dtype. Backward: whatever
the configured :class:`Estimator` says; nothing about the solver is differentiated. The configuration travels as
one frozen :class:`SolveSpec`, so a spec can solve again for estimators that need it. The torch operators that
run both (``torch.ops.fpgacsp.solve`` and ``solve_backward``, which ``torch.compile`` keeps opaque) are in
``_op``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from fpgacsp_proto.isa import Mode, Program
from torch import Tensor

from ._discretize import Discretizer, check_logits, domains_to_values, value_priorities
from ._estimators import BackwardContext, Estimator

__all__ = ["SolveRecorder", "SolveSpec", "SolverClient", "estimator_backward"]


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


@dataclass
class SolveRecorder:
    """What the solver calls of one forward (and of the backward that follows it) cost, for ``layer.info``.

    The spec is frozen and shared by the forward and the estimator's backward, so the counts live in this small
    mutable record the layer hands in with each forward; ``backward`` flips to True once the forward has returned,
    so the solves an estimator makes (Interpolation, Perturbed, Abduction) are told apart from the forward's.
    """

    backward: bool = False
    calls: list[int] = field(default_factory=lambda: [0, 0])  # [forward, backward]
    solver_s: list[float] = field(default_factory=lambda: [0.0, 0.0])
    nodes: list[int] = field(default_factory=lambda: [0, 0])
    statuses: list[np.ndarray] = field(default_factory=lambda: [np.zeros(256, np.int64), np.zeros(256, np.int64)])
    backward_s: float | None = None  # wall time of the estimator's backward, solves included; None: not run

    def record(self, seconds: float, status: np.ndarray, nodes: np.ndarray) -> None:
        i = int(self.backward)
        self.calls[i] += 1
        self.solver_s[i] += seconds
        self.nodes[i] += int(nodes.sum())
        self.statuses[i] += np.bincount(status.astype(np.int64, copy=False), minlength=256)[:256]


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
    recorder: SolveRecorder | None = None  # the layer's per-forward counts (``layer.info``); None: not recorded

    def run(self, logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Solve ``logits [B, N, D]`` (already checked) to ``(values, status, nodes)`` on the logits' device."""
        prios = value_priorities(logits) if self.priorities else None
        return self.solve_domains(self.discretizer.domains(logits), prios, like=logits)

    def solve_domains(
        self, domains: np.ndarray, priorities: np.ndarray | None, like: Tensor, mode: Mode | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Solve explicit ``domains uint64[B, N]`` (and priorities) with this spec's program, client and options.

        ``(values, status, nodes)`` come back on ``like``'s device, values in its dtype. ``mode`` overrides the
        spec's (an estimator that needs a full labelling searches even under a propagating layer).
        """
        # optional keywords only when set, so a bare LocalSolver (no ``timeout``) works as a client too
        options: dict[str, Any] = {"mode": self.mode if mode is None else mode}
        if self.node_limit is not None:
            options["node_limit"] = self.node_limit
        if self.timeout is not None:
            options["timeout"] = self.timeout
        t0 = time.perf_counter()
        result = self.client.solve(self.program, domains, priorities, **options)
        solver_s = time.perf_counter() - t0
        if self.recorder is not None:
            self.recorder.record(solver_s, np.asarray(result.status), np.asarray(result.nodes))
        values = domains_to_values(result.domains, self.program.domain_size, like=like)
        status = torch.as_tensor(np.asarray(result.status, dtype=np.int64), device=like.device)
        nodes = torch.as_tensor(np.asarray(result.nodes, dtype=np.int64), device=like.device)
        return values, status, nodes

    def resolve(self, logits: Tensor) -> Tensor:
        """Values only: the ``resolve`` an estimator gets in its :class:`BackwardContext`.

        Checked like the layer's input: perturbed logits can overflow to inf, and that should say so.
        """
        check_logits(logits, self.program.num_vars, self.program.domain_size)
        return self.run(logits)[0]


def estimator_backward(
    spec: SolveSpec, logits: Tensor, values: Tensor, grad_values: Tensor, labels: Tensor | None
) -> Tensor:
    """The gradient for ``logits`` that ``spec``'s estimator gives for ``grad_values`` (its solves included).

    ``logits`` and ``values`` are the forward's; the time it takes is recorded as the backward's in ``layer.info``.
    """
    bctx = BackwardContext(
        logits.detach(),
        values.detach(),
        spec.discretizer,
        spec.resolve,
        labels=labels,
        solve=spec.solve_domains,
    )
    t0 = time.perf_counter()
    grad = spec.estimator.backward(bctx, grad_values)
    if spec.recorder is not None:
        spec.recorder.backward_s = time.perf_counter() - t0
    if grad.shape != logits.shape:
        raise RuntimeError(
            f"{spec.estimator!r} returned a gradient of shape {list(grad.shape)} for logits {list(logits.shape)}"
        )
    return grad.to(dtype=logits.dtype)
