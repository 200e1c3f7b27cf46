"""Gradient estimators for the solver: what the backward pass of :class:`SolveFunction` computes.

The solver's output is piecewise constant in the logits, so its true gradient is zero almost everywhere; an
estimator supplies a useful surrogate instead. Each one is a small object with one method, ``backward``, that
gets everything the forward pass knew (:class:`BackwardContext`) and the incoming gradient. That seam is the
point: estimators that solve again in the backward pass (Vlastelica et al.'s interpolation, which re-solves with
the logits moved along the incoming gradient, or perturbation-based ones averaging solves under noise) need
``BackwardContext.resolve``; abductive learning solves again with what the loss wants fixed and needs to know
which variables the loss observes (``BackwardContext.labels``, from ``layer(logits, labels=...)``).
:class:`IdentitySTE` and :class:`RelaxationSTE` never solve; :class:`Interpolation`, :class:`Perturbed` and
:class:`Abduction` solve once more per backward (one batched call), through the same client as the forward pass,
so the daemon that served the forward serves the backward too.
"""

from __future__ import annotations

import enum
import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from fpgacsp_proto.isa import Mode, Status
from torch import Tensor

from ._discretize import Discretizer, MinProbability, TopK, mask_to_domains, value_priorities

PROBABILITY_STEPS = (0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.001)  # Widening.PROBABILITY's floors, in order

__all__ = [
    "ESTIMATORS",
    "Abduction",
    "AbductionInfo",
    "BackwardContext",
    "Estimator",
    "IdentitySTE",
    "Interpolation",
    "Perturbed",
    "RelaxationSTE",
    "Widening",
    "make_estimator",
]


DomainSolve = Callable[..., tuple[Tensor, Tensor, Tensor]]
"""``solve(domains uint64[B, N], priorities uint8[B, N, D] | None, like, mode=None) -> (values, status, nodes)``."""


@dataclass(frozen=True)
class BackwardContext:
    """What the forward pass hands to an estimator.

    ``logits`` and ``values`` are detached (``[B, N, D]``, the caller's dtype and device). ``resolve`` maps new
    logits of the same shape to new 0/1 values through the same discretizer, solver, program and options as the
    forward pass: one more solve per call, for estimators that need it. ``solve`` is the lower-level seam beneath
    it: explicit domains and priorities, the same program, client and options, and the statuses back too.

    ``labels`` is the explicit channel for what the loss wants: ``int64[B, N]``, the wanted value of every
    variable the loss observes and ``-1`` elsewhere, as passed to ``layer(logits, labels=...)`` (None when the
    caller passed none). :meth:`wanted` falls back on the incoming gradient when it is None.
    """

    logits: Tensor
    values: Tensor
    discretizer: Discretizer
    resolve: Callable[[Tensor], Tensor]
    labels: Tensor | None = None
    solve: DomainSolve | None = None

    def wanted(self, grad_values: Tensor) -> Tensor:
        """``int64[B, N]``: the value the loss wants of each variable, ``-1`` where it observes none.

        The explicit ``labels`` when the layer got them. Otherwise read off the gradient: a variable is observed
        where its gradient row is not all zero, and the wanted value is the one whose rise lowers the loss most
        (the row's argmin). That is exact for :func:`hamming_loss` (its gradient ``1 - 2t`` is nonzero on every
        observed variable) but not for a squared error, whose gradient vanishes on a variable that is already
        right: such a variable then counts as unobserved. Pass ``labels`` to be exact with any loss.
        """
        if self.labels is not None:
            return self.labels.to(device=self.logits.device, dtype=torch.int64)
        g = grad_values.detach()
        observed = (g != 0).any(dim=-1)
        return torch.where(observed, g.argmin(dim=-1), torch.full_like(observed, -1, dtype=torch.int64))


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
        # not autograd.grad: the backward runs inside the operator fpgacsp::solve_backward, below the autograd
        # dispatch key, where no graph is recorded; the discretizer's relax_backward calls the kernel autograd would
        return ctx.discretizer.relax_backward(ctx.logits.detach(), grad_values.to(ctx.logits.dtype))


@dataclass(frozen=True)
class Interpolation(Estimator):
    """Vlastelica et al. (ICLR 2020), "Differentiation of Blackbox Combinatorial Solvers": one more solve per backward.

    The forward gave ``y = solve(w)``. The backward solves again at ``w' = w - lam * g`` (``g = dL/dy``) and
    returns ``grad_w = (y - y') / lam``: the exact gradient of a piecewise-linear interpolation of ``L(solve(w))``
    whose "kinks" sit ``lam`` apart, so unlike the identity STE it reaches logits the loss never looks at (the
    given cells of a board whose loss only sees the blanks), through the constraints that tie them together.

    Sign, derived for this solver: the paper's solver *minimises* a cost ``<w, y>`` and perturbs ``w + lam * g``.
    Here logits are scores the solver *maximises* (discretization keeps high logits, priorities try them first),
    i.e. it minimises the cost ``-w``; substituting ``-w`` for the cost gives ``w' = w - lam * g`` and
    ``grad_w = (y - y') / lam``. Check on one variable: ``w = [1, 0]`` gives ``y = [1, 0]``; a loss that wants
    value 1 has ``g = [0, -1]``, so ``w' = [1, lam]`` picks ``y' = [0, 1]`` (for ``lam > 1``) and
    ``grad_w = [1, -1] / lam``: a descent step lowers value 0's logit and raises value 1's, as it should.

    ``lam`` is in units of logits per unit of ``g``: ``lam * |g|`` must be comparable with the logit gaps, or
    ``y' == y`` and the gradient is zero. A loss averaged over many cells has a small ``g``; with
    ``normalize=True`` each instance's ``g`` is scaled to a largest entry of 1 before perturbing (and the result
    scaled back), which is the same method with a per-instance ``lam_b = lam / max|g_b|``, so ``lam`` then reads
    "move a wanted value's logit by up to ``lam``" whatever the loss's scale or the batch size.

    An instance whose second solve is infeasible (CONFLICT or UNSAT: every variable left without a value) gets no
    gradient. The paper's solver always returns a feasible point; here the perturbed logits can discretize to an
    infeasible problem, and ``y' = 0`` would make ``(y - y') / lam = y / lam`` push down every value the forward
    chose, the right ones included (observed: it collapses symbol grounding).
    """

    lam: float = 20.0
    normalize: bool = field(default=False, kw_only=True)
    name: ClassVar[str] = "interpolation"

    def __post_init__(self) -> None:
        if not _is_positive(self.lam):
            raise ValueError(f"Interpolation: lam must be a positive number, got {self.lam!r}")
        if not isinstance(self.normalize, bool):
            raise TypeError(f"Interpolation: normalize must be True or False, got {self.normalize!r}")

    def backward(self, ctx: BackwardContext, grad_values: Tensor) -> Tensor:
        w = _wide(ctx.logits)
        g = grad_values.to(w.dtype)
        scale = _instance_scale(g) if self.normalize else torch.ones_like(g[:, :1, :1])
        moved = ctx.resolve(w - self.lam * g / scale)  # one batched solve for the whole batch
        found = (moved.sum(dim=-1) > 0).all(dim=-1)  # [B]: the second solve was feasible
        grad = (ctx.values.to(w.dtype) - moved.to(w.dtype)) * (scale / self.lam) * found[:, None, None].to(w.dtype)
        return grad.to(ctx.logits.dtype)


@dataclass(frozen=True)
class Perturbed(Estimator):
    """Perturbed optimizers (Berthet et al., NeurIPS 2020): the Jacobian of ``E[solve(w + sigma Z)]``, ``Z ~ N(0, I)``.

    The smoothed solution ``y_sigma(w) = E[y(w + sigma Z)]`` of a maximiser has the Jacobian
    ``E[y(w + sigma Z) Z^T] / sigma`` (Gaussian integration by parts), so the backward returns, per instance ``b``,
    ``grad_w[b] = mean_s <g[b], y_s[b]> Z_s[b] / sigma`` with ``y_s = solve(w + sigma Z_s)`` over ``samples``
    draws of ``Z`` per logit, all solved in one batched call (the samples stacked along the batch dimension). The
    forward pass itself stays the unperturbed solve: the perturbed optimizer serves as a gradient estimator only.
    The sign needs no flip: the solver maximises the logits, as Berthet et al.'s ``argmax`` does.

    ``sigma`` is in units of logits: it has to move the solution (flip the discretization or the search order) for
    the samples to differ, while a large one drowns the network's own logits. The estimate is a Monte Carlo
    average over ``samples``: its noise grows with the number of logits, so wide problems (a 9x9 board has 729)
    need more samples than :class:`Interpolation`'s single extra solve.

    ``seed``: an int makes the noise reproducible (a generator seeded once, advancing with each backward and
    carried along when the layer is pickled); None draws from torch's global generator. The noise is drawn on
    the CPU, so a seed gives the same noise on every device.
    """

    sigma: float = 1.0
    samples: int = 8
    seed: int | None = None
    _generator: torch.Generator | None = field(default=None, init=False, repr=False, compare=False)
    name: ClassVar[str] = "perturbed"

    def __post_init__(self) -> None:
        if not _is_positive(self.sigma):
            raise ValueError(f"Perturbed: sigma must be a positive number, got {self.sigma!r}")
        if isinstance(self.samples, bool) or not isinstance(self.samples, numbers.Integral) or self.samples < 1:
            raise ValueError(f"Perturbed: samples must be a positive integer, got {self.samples!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral)):
            raise ValueError(f"Perturbed: seed must be None or an integer, got {self.seed!r}")

    def backward(self, ctx: BackwardContext, grad_values: Tensor) -> Tensor:
        w = _wide(ctx.logits)
        g = grad_values.to(w.dtype)
        s, shape = int(self.samples), tuple(w.shape)
        z = torch.randn((s, *shape), generator=self._noise_generator(), dtype=w.dtype).to(w.device)
        ys = ctx.resolve((w.unsqueeze(0) + self.sigma * z).reshape(s * shape[0], *shape[1:])).reshape(s, *shape)
        score = (ys.to(w.dtype) * g).sum(dim=(-2, -1))  # [S, B]: <g[b], y_s[b]>
        grad = (score[..., None, None] * z).mean(dim=0) / self.sigma
        return grad.to(ctx.logits.dtype)

    def _noise_generator(self) -> torch.Generator | None:
        return _seeded_generator(self)


class Widening(enum.Enum):
    """How :class:`Abduction` chooses among the labellings that satisfy the constraints."""

    NONE = "none"
    """One solve, every open variable over its full domain: the first solution in the network's order. Cheapest;
    greedy where the constraints leave a choice (the first variable branched on keeps its own top reading, and
    another variable takes the change)."""
    RANK = "rank"
    """Candidate sets of growing rank: every open variable restricted to its top 1, then its top 2, ... values,
    and full domains last; each instance takes the first rank at which a labelling exists. That approximates the
    network's likeliest consistent labelling (the one whose least trusted reading ranks highest) instead of the
    greedy first one. Up to ``D`` solves per backward, each of only the instances still without a labelling."""
    PROBABILITY = "probability"
    """Candidate sets of falling probability: every open variable keeps the values with softmax probability at
    least 0.5, then 0.2, 0.1, 0.05, 0.02, 0.01, 0.001 (its likeliest value always), full domains last. Unlike
    ``RANK`` a sure variable stays fixed while an unsure one widens, so a labelling changes the readings the
    network doubts, not the first variables in index order. At most 8 solves per backward."""


@dataclass
class AbductionInfo:
    """What the last backward of an :class:`Abduction` found: instances in the batch, those that got a gradient,
    those that observed nothing, those whose abduction failed (UNSAT, or LIMIT before a solution), those whose
    labelling came from a step after the first (a wider candidate set), and the batched solves it made."""

    boards: int = 0
    abduced: int = 0
    unobserved: int = 0
    failed: int = 0
    widened: int = 0
    solves: int = 0

    @property
    def rate(self) -> float:
        """Fraction of the batch's instances that got a gradient."""
        return self.abduced / self.boards if self.boards else 0.0


@dataclass(frozen=True)
class Abduction(Estimator):
    """Abductive learning (Dai et al., NeurIPS 2019) as a straight-through-style estimator: one more solve per backward.

    The backward solves every instance again, with each variable the loss observes fixed to the value the loss
    wants and every other variable left open, searching in the network's own order (each variable's values
    ranked by its logits, as ``priorities=True`` does). The solution found is the *abduced labelling* ``y'``: an
    assignment that agrees with everything the loss knows, satisfies the constraints, and follows the network's
    belief as far as the constraints allow. The gradient is that of the cross-entropy of the discretizer's
    relaxation toward ``y'``, summed over variables and averaged over the batch: ``grad_w = (relax(w) - y') / B``
    (softmax for :class:`MinProbability`, :class:`TopK` and :class:`ConfidentArgmax`; the sigmoid's binary
    cross-entropy for :class:`Threshold`).

    That is what lets a network learn from the solver alone: the loss names only the variables it observes (the
    blank cells of a Sudoku, the sum of an addition), and the constraints turn them into labels for the variables
    it does not observe (the given digits, the addends), the ones the network reads. No gradient reaches an
    instance whose abduction fails (UNSAT: what the loss wants contradicts the constraints, or LIMIT before a
    solution) or that observes nothing.

    What the loss wants comes from ``layer(logits, labels=...)`` (``int64[B, N]``, -1 where unobserved); without
    labels it is read off the incoming gradient (:meth:`BackwardContext.wanted`: exact with
    :func:`hamming_loss`). The loss's own gradient is otherwise unused: any loss that names the wanted values
    works, and its value is for monitoring.

    Options:

    - ``widening`` (:class:`Widening`): ``NONE`` (the default), one solve over full domains, the first labelling
      in the network's order; enough where the observed variables leave the rest (nearly) determined, as the
      blanks of a Sudoku do for its givens, and where a misread can only be repaired one way. ``PROBABILITY``
      (and ``RANK``): candidate sets that widen step by step, for constraints that leave a real choice of which
      reading to overrule: on long additions the greedy labelling repairs a misread by changing whichever digit
      the search branches on first, and those wrong labels spread through the carries. ``PROBABILITY`` keeps
      the sure readings and widens the doubtful ones (see :class:`Widening`).
    - ``candidates``: your own candidate sets for the open variables instead (discretizers, narrowest first, e.g.
      ``(MinProbability(0.1), MinProbability(1e-3))``); full domains are always tried last. Not with a widening.
    - ``sample``: draw the labelling instead of taking the likeliest-first one: what the search sees (priorities,
      and the candidate sets a widening tries) comes from the logits plus Gumbel noise, so each value leads its
      variable's order with its softmax probability (the Gumbel-max trick) and the labelling found is a sample of
      the network's belief restricted to what the constraints allow (perturb-and-MAP). That keeps a class the network
      has stopped predicting in play: with hard labels from its own top readings, such a class is never abduced
      again (observed on digit addition with widening: three digits lost for good without sampling, none with
      it). The gradient
      stays ``relax(w) - y'`` at the unperturbed logits. ``temperature`` scales the noise (1: a sample of the
      network's belief; 0: none); annealing it from 1 to 0 over training (exploration, then exploitation) is what
      kept a good reader stable on long additions, where sampled misreads spread through the carries. ``seed``:
      reproducible noise, as for :class:`Perturbed` (a CPU generator seeded once, advancing with each backward,
      pickled with the layer).

    Cost: one batched solve of ``B`` instances per backward (more with widening, each of only the instances still
    without a labelling), through the same client (the same daemon) as the forward pass, in ``SOLVE`` mode with
    the layer's node limit whatever the layer's own mode. After each backward ``info`` says how many instances got
    a gradient (:class:`AbductionInfo`).
    """

    widening: Widening = Widening.NONE
    candidates: tuple[Discretizer, ...] = ()
    sample: bool = False
    seed: int | None = None
    temperature: float = 1.0
    info: AbductionInfo = field(default_factory=AbductionInfo, init=False, repr=False, compare=False)
    _generator: torch.Generator | None = field(default=None, init=False, repr=False, compare=False)
    name: ClassVar[str] = "abduction"

    def _noise_generator(self) -> torch.Generator | None:
        return _seeded_generator(self)

    def __post_init__(self) -> None:
        if not isinstance(self.widening, Widening):
            raise TypeError(f"Abduction: widening must be a fpgacsp.Widening, got {self.widening!r}")
        if not isinstance(self.candidates, tuple) or not all(isinstance(c, Discretizer) for c in self.candidates):
            raise TypeError(f"Abduction: candidates must be a tuple of Discretizers, got {self.candidates!r}")
        if self.candidates and self.widening is not Widening.NONE:
            raise ValueError("Abduction: pass either candidates or a widening, not both")
        if not isinstance(self.sample, bool):
            raise TypeError(f"Abduction: sample must be True or False, got {self.sample!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral)):
            raise ValueError(f"Abduction: seed must be None or an integer, got {self.seed!r}")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not math.isfinite(float(t)) or float(t) < 0:
            raise ValueError(f"Abduction: temperature must be a number >= 0, got {t!r}")

    def steps(self, domain_size: int) -> tuple[Discretizer | None, ...]:
        """The candidate sets tried in order; None is full domains (always last)."""
        if self.widening is Widening.RANK:
            return (*(TopK(k) for k in range(1, domain_size)), None)
        if self.widening is Widening.PROBABILITY:
            return (*(MinProbability(p) for p in PROBABILITY_STEPS), None)
        return (*self.candidates, None)

    def backward(self, ctx: BackwardContext, grad_values: Tensor) -> Tensor:
        if ctx.solve is None:
            raise RuntimeError("Abduction needs BackwardContext.solve (the layer's explicit-domain solve)")
        solve = ctx.solve
        w = _wide(ctx.logits)
        b, d = w.shape[0], w.shape[-1]
        wanted = ctx.wanted(grad_values)  # [B, N], -1 where unobserved
        observed = wanted >= 0
        sees = observed.any(dim=-1)  # [B]: the loss looks at this instance
        fixed = torch.nn.functional.one_hot(wanted.clamp(min=0), d).to(torch.bool)
        # what the search sees: the logits, or with sample=True the logits plus Gumbel noise of scale temperature
        order = w + self.temperature * _gumbel(w, self._noise_generator()) if self.sample else w
        prios = value_priorities(order)
        y = torch.zeros_like(w)
        ok = torch.zeros(b, dtype=torch.bool, device=w.device)
        solves = widened = 0
        for step, candidates in enumerate(self.steps(d)):
            rows = torch.nonzero(~ok & sees).flatten()
            if len(rows) == 0:
                break
            open_mask = torch.ones_like(fixed[rows]) if candidates is None else candidates.mask(order[rows])
            domains = torch.where(observed[rows, :, None], fixed[rows], open_mask)
            y_rows, status, _ = solve(mask_to_domains(domains), prios[rows.cpu().numpy()], w, Mode.SOLVE)
            found = status == int(Status.SOLVED)
            y = y.index_put((rows[found],), y_rows[found].to(w.dtype))
            ok = ok.index_put((rows[found],), torch.ones_like(found[found]))
            solves += 1
            widened += int(found.sum()) if step > 0 else 0
        report = AbductionInfo(b, int(ok.sum()), int((~sees).sum()), int((~ok & sees).sum()), widened, solves)
        object.__setattr__(self, "info", report)  # a frozen dataclass: the report is not part of its identity
        with torch.no_grad():
            grad = (ctx.discretizer.relax(w) - y) * (ok[:, None, None].to(w.dtype) / b)
        return grad.to(ctx.logits.dtype)


def _seeded_generator(est: Perturbed | Abduction) -> torch.Generator | None:
    """The estimator's noise generator: None without a seed (torch's global one), else a CPU generator seeded once
    and created on first use (the estimators are frozen dataclasses, so it is set through ``object``)."""
    if est.seed is None:
        return None
    if est._generator is None:
        object.__setattr__(est, "_generator", torch.Generator().manual_seed(int(est.seed)))
    return est._generator


def _gumbel(like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard Gumbel noise shaped like ``like`` (drawn on the CPU, so a seed gives the same noise everywhere)."""
    u = torch.rand(like.shape, generator=generator, dtype=like.dtype).clamp_(1e-12, 1 - 1e-12)
    return (-torch.log(-torch.log(u))).to(like.device)


def _wide(logits: Tensor) -> Tensor:
    """Logits in float32 at least: a perturbation in float16 could overflow to inf (or round away)."""
    x = logits.detach()
    return x if x.dtype == torch.float64 else x.to(torch.float32)


def _instance_scale(g: Tensor) -> Tensor:
    """``max |g[b]|`` per instance as ``[B, 1, 1]``, 1 where ``g[b]`` is all zero (nothing to move then)."""
    m = g.abs().amax(dim=(-2, -1), keepdim=True)
    return torch.where(m > 0, m, torch.ones_like(m))


def _is_positive(value: object) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
        and float(value) > 0
    )


ESTIMATORS: dict[str, type[Estimator]] = {
    cls.name: cls for cls in (IdentitySTE, RelaxationSTE, Interpolation, Perturbed, Abduction)
}


def make_estimator(ste: str | Estimator) -> Estimator:
    """An :class:`Estimator` from its name (a key of :data:`ESTIMATORS`, built with its defaults) or an instance."""
    if isinstance(ste, Estimator):
        return ste
    if isinstance(ste, str) and ste in ESTIMATORS:
        return ESTIMATORS[ste]()
    names = ", ".join(repr(n) for n in ESTIMATORS)
    raise ValueError(f"ste: expected one of {names} or an Estimator instance, got {ste!r}")
