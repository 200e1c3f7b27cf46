"""Discretization: soft domain weights (logits ``[B, N, D]``) to the solver's domains ``uint64[B, N]``.

A discretizer decides which values each variable keeps (``mask``) and names the smooth function it
approximates (``relax``), which the ``"relaxation"`` straight-through estimator differentiates. Everything here
is a pure function of the logits, usable without the layer (to build domains for ``Client.solve`` by hand, or to
inspect what the layer sends). The masks are computed in at least float32 so that the same logits give the same
domains whatever dtype the caller trains in, and ties always go to the lowest value, so discretizing is
deterministic (the solver's own determinism contract would be worthless on top of a random tie-break).
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ConfidentArgmax",
    "Discretizer",
    "MinProbability",
    "Threshold",
    "TopK",
    "check_logits",
    "check_labels",
    "discretize_confident_argmax",
    "discretize_threshold",
    "discretize_top_k",
    "domains_to_values",
    "mask_to_domains",
    "value_priorities",
]


class Discretizer(ABC):
    """Logits ``[B, N, D]`` to kept values (``mask``) plus the relaxation the mask approximates (``relax``).

    Subclasses are small frozen dataclasses so that a layer holding one pickles into DataLoader workers and
    prints its configuration.
    """

    @abstractmethod
    def mask(self, logits: Tensor) -> Tensor:
        """``bool[B, N, D]``: True where the value stays in the variable's domain (no gradient)."""

    @abstractmethod
    def relax(self, logits: Tensor) -> Tensor:
        """The differentiable relaxation of :meth:`mask` (same shape and dtype as ``logits``)."""

    def relax_backward(self, logits: Tensor, grad: Tensor) -> Tensor:
        """``J_relax(logits)^T grad``: the vector-Jacobian product of :meth:`relax` (for :class:`RelaxationSTE`).

        It runs inside the backward operator, below autograd, where no graph is recorded. The built-in
        relaxations (softmax, sigmoid) call the backward kernel autograd itself would; any other ``relax``, a
        subclass's override included, goes through ``torch.func.vjp``. Both are bit for bit autograd's gradient.
        """
        kernel = _RELAX_BACKWARDS.get(type(self).relax)
        if kernel is not None:
            return kernel(logits, grad)
        vjp = torch.func.vjp(self.relax, logits)[1]
        (out,) = vjp(grad)
        return cast(Tensor, out)

    def check_domain_size(self, domain_size: int) -> None:
        """Raise ValueError when this discretizer cannot work with ``domain_size`` values (called once, early)."""
        return None

    def domains(self, logits: Tensor) -> np.ndarray:
        """``uint64[B, N]`` bitsets of the kept values, ready for ``solve``."""
        return mask_to_domains(self.mask(logits))

    def __call__(self, logits: Tensor) -> np.ndarray:
        return self.domains(logits)


@dataclass(frozen=True)
class Threshold(Discretizer):
    """Keep every value whose ``sigmoid(logit) >= p``; a variable left with no value keeps its argmax.

    Each value is judged on its own (a multi-label view: the network says "possible" or "not"). Why the argmax
    fallback: an empty domain is a CONFLICT before any constraint is looked at, so one unsure variable would throw
    away the whole instance and every other variable's contribution to it. "No value looks likely" is the network
    being unsure, not a claim that the variable has no value; keeping its best guess lets the solver judge it.
    """

    p: float = 0.5

    def __post_init__(self) -> None:
        if not _is_real(self.p) or not 0.0 < float(self.p) < 1.0:
            raise ValueError(f"Threshold: p must be a number in (0, 1), got {self.p!r}")

    def mask(self, logits: Tensor) -> Tensor:
        x = _as_float(logits)
        # sigmoid(x) >= p  <=>  x >= logit(p): exact, and free of sigmoid's saturation at large |x|
        keep = x >= math.log(self.p) - math.log1p(-self.p)
        return keep | (_argmax_mask(x) & ~keep.any(dim=-1, keepdim=True))

    def relax(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)


@dataclass(frozen=True)
class TopK(Discretizer):
    """Keep the ``k`` values with the largest logits (ties: the lower value first)."""

    k: int

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, numbers.Integral) or self.k < 1:
            raise ValueError(f"TopK: k must be a positive integer, got {self.k!r}")

    def check_domain_size(self, domain_size: int) -> None:
        if self.k > domain_size:
            raise ValueError(f"TopK: k = {self.k} is larger than the program's domain size {domain_size}")

    def mask(self, logits: Tensor) -> Tensor:
        x = _as_float(logits)
        if self.k > x.shape[-1]:
            raise ValueError(f"TopK: k = {self.k} is larger than the domain size {x.shape[-1]} of the logits")
        order = torch.argsort(x, dim=-1, descending=True, stable=True)[..., : int(self.k)]
        return torch.zeros_like(x, dtype=torch.bool).scatter_(-1, order, True)

    def relax(self, logits: Tensor) -> Tensor:
        return torch.softmax(logits, dim=-1)


@dataclass(frozen=True)
class ConfidentArgmax(Discretizer):
    """Fix a variable to its argmax when that value's softmax probability is ``>= p``, else keep its domain full.

    The network only commits where it is sure and leaves the rest to the solver (visual Sudoku: read the clear
    digits, let the constraints fill the cells it cannot read).
    """

    p: float = 0.9

    def __post_init__(self) -> None:
        if not _is_real(self.p) or not 0.0 < float(self.p) <= 1.0:
            raise ValueError(f"ConfidentArgmax: p must be a number in (0, 1], got {self.p!r}")

    def mask(self, logits: Tensor) -> Tensor:
        x = _as_float(logits)
        sure = torch.softmax(x, dim=-1).amax(dim=-1, keepdim=True) >= self.p
        return _argmax_mask(x) | ~sure

    def relax(self, logits: Tensor) -> Tensor:
        return torch.softmax(logits, dim=-1)


@dataclass(frozen=True)
class MinProbability(Discretizer):
    """Keep every value whose softmax probability is ``>= p``, and always the likeliest value (all of them on a tie).

    A candidate set per variable, as wide as the network's doubt: a sure variable keeps one value, an unsure one
    keeps every reading it finds plausible, and the search (best with ``priorities=True``, which tries the likelier
    candidates first) picks among them under the constraints, so the solver can overrule a misread. The likeliest
    value is kept even when ``p`` exceeds its probability, for the reason :class:`Threshold` keeps one: an empty
    domain is a conflict, not doubt. Values tied for the largest logit are all kept, since nothing prefers one of
    them: uniform logits (all zeros, a variable the network says nothing about, such as a blank cell) keep the full
    domain at every ``p``, where keeping only the lowest tied value would silently fix that variable to value 0.
    """

    p: float = 0.01

    def __post_init__(self) -> None:
        if not _is_real(self.p) or not 0.0 < float(self.p) <= 1.0:
            raise ValueError(f"MinProbability: p must be a number in (0, 1], got {self.p!r}")

    def mask(self, logits: Tensor) -> Tensor:
        x = _as_float(logits)
        return (torch.softmax(x, dim=-1) >= self.p) | (x == x.amax(dim=-1, keepdim=True))

    def relax(self, logits: Tensor) -> Tensor:
        return torch.softmax(logits, dim=-1)


def discretize_threshold(logits: Tensor, p: float = 0.5) -> np.ndarray:
    """Domains ``uint64[B, N]`` keeping values with ``sigmoid(logit) >= p`` (see :class:`Threshold`)."""
    return Threshold(p).domains(check_logits(logits))


def discretize_top_k(logits: Tensor, k: int) -> np.ndarray:
    """Domains ``uint64[B, N]`` keeping the ``k`` largest logits per variable (see :class:`TopK`)."""
    return TopK(k).domains(check_logits(logits))


def discretize_confident_argmax(logits: Tensor, p: float = 0.9) -> np.ndarray:
    """Domains ``uint64[B, N]`` fixing confident variables, full elsewhere (see :class:`ConfidentArgmax`)."""
    return ConfidentArgmax(p).domains(check_logits(logits))


def value_priorities(logits: Tensor) -> np.ndarray:
    """Branching priorities ``uint8[B, N, D]``: the rank of each value by probability, the likeliest highest.

    The solver tries the value with the highest priority first, so SOLVE explores the network's belief in order.
    Ranks (``D - 1`` for the likeliest down to ``0``; ties: the lower value ranks higher) are taken from the
    logits, which order values exactly as their softmax probabilities do; quantising the probabilities themselves
    to 0..255 would tie values closer than 1/255 (or underflowed to 0) and lose the network's order there, and the
    solver only ever compares priorities within one variable.
    """
    x = _as_float(logits)
    d = x.shape[-1]
    if d <= _PAIRWISE_MAX_D:
        return _pairwise_priorities(x.to("cpu").numpy())
    order = torch.argsort(x, dim=-1, descending=True, stable=True)
    ranks = torch.arange(d - 1, -1, -1, device=x.device, dtype=torch.int64).expand_as(order)
    prio = torch.empty_like(order).scatter_(-1, order, ranks)
    return prio.to(device="cpu", dtype=torch.uint8).numpy()


# Up to this many values, ranking by pairwise comparison (D (D - 1) / 2 vectorised compares) beats a stable argsort
# over rows this short by 10-30x (bench/layer.py); past it the quadratic count of compares loses.
_PAIRWISE_MAX_D = 16


def _pairwise_priorities(x: np.ndarray) -> np.ndarray:
    """:func:`value_priorities` without a sort: the same ranks, bit for bit (tests/client/test_layer_fast_paths.py).

    Value ``i``'s rank is the number of values that beat it: ``j`` beats ``i`` when ``x_j > x_i``, or on a tie when
    ``j < i`` (the stable descending argsort's order). Each pair ``i < j`` is compared once over all rows: ``j``
    beats ``i`` exactly when ``x_j > x_i``, otherwise ``i`` beats ``j``. Priority = ``D - 1 - rank``.
    """
    d = x.shape[-1]
    cols = np.ascontiguousarray(x.reshape(-1, d).T)  # [D, rows]: each value's column contiguous for the compares
    prio = np.full(cols.shape, d - 1, dtype=np.uint8)
    for i in range(d - 1):
        for j in range(i + 1, d):
            j_beats_i = cols[j] > cols[i]
            prio[i] -= j_beats_i
            prio[j] -= ~j_beats_i
    return np.ascontiguousarray(prio.T).reshape(x.shape)


def mask_to_domains(mask: Tensor) -> np.ndarray:
    """``bool[B, N, D]`` to bitsets ``uint64[B, N]`` (bit ``v`` set where ``mask[b, n, v]``)."""
    m = mask.detach().to(device="cpu", dtype=torch.bool).numpy()
    if m.shape[-1] <= 64:
        # an integer matrix product with the powers of two: exact in uint64 (numpy's integer matmul does not go
        # through floating point), and 3-4x faster than packbits plus the byte shuffling below
        return np.ascontiguousarray(m.view(np.uint8) @ _POWERS_OF_TWO[: m.shape[-1]])
    packed = np.packbits(m, axis=-1, bitorder="little")  # [B, N, ceil(D / 8)], value v is bit v % 8 of byte v // 8
    words = np.zeros((*m.shape[:-1], 8), dtype=np.uint8)
    words[..., : packed.shape[-1]] = packed
    return np.ascontiguousarray(words).view("<u8")[..., 0].astype(np.uint64)


_POWERS_OF_TWO = np.left_shift(np.uint64(1), np.arange(64, dtype=np.uint64))


def domains_to_values(domains: np.ndarray, domain_size: int, like: Tensor) -> Tensor:
    """Bitsets ``uint64[B, N]`` to 0/1 ``[B, N, D]`` on ``like``'s device and dtype (value ``v`` = bit ``v``)."""
    words = np.ascontiguousarray(domains, dtype="<u8")
    bits = np.unpackbits(words.view(np.uint8).reshape(*words.shape, 8), axis=-1, bitorder="little")
    return torch.from_numpy(np.ascontiguousarray(bits[..., :domain_size])).to(device=like.device, dtype=like.dtype)


def check_logits(logits: object, num_vars: int | None = None, domain_size: int | None = None) -> Tensor:
    """Check ``logits`` is a finite floating ``[B, N, D]`` tensor with ``B >= 1`` (and the program's N, D).

    Raised before anything is solved; the messages are part of the API (tests pin them). Structure is checked
    before values, so a wrong shape never pays for a scan of the data.
    """
    return check_logits_finite(check_logits_structure(logits, num_vars, domain_size))


def check_logits_structure(logits: object, num_vars: int | None = None, domain_size: int | None = None) -> Tensor:
    """The part of :func:`check_logits` that reads only the type, shape and dtype, never the data.

    ``torch.compile`` traces it (those are known at trace time, and a wrong one raises while tracing); the data
    check (:func:`check_logits_finite`) runs inside the solve op, where the values exist.
    """
    if not isinstance(logits, Tensor):
        raise TypeError(f"expected logits as a torch.Tensor, got {type(logits).__name__}")
    shape = list(logits.shape)
    want = f"[B, {'N' if num_vars is None else num_vars}, {'D' if domain_size is None else domain_size}]"
    expected = f"expected logits of shape [B, N, D] = {want}, got {shape}"
    if logits.ndim != 3:
        raise ValueError(expected)
    if num_vars is not None and shape[1] != num_vars:
        raise ValueError(f"{expected}: N = {shape[1]} does not match the program's {num_vars} variables")
    if domain_size is not None and shape[2] != domain_size:
        raise ValueError(f"{expected}: D = {shape[2]} does not match the program's domain size {domain_size}")
    if shape[0] == 0:
        raise ValueError(f"expected a non-empty batch, got logits of shape {shape}")
    if shape[2] == 0:
        raise ValueError(f"expected at least one value per variable, got logits of shape {shape}")
    if not logits.is_floating_point():
        raise TypeError(f"expected floating-point logits, got dtype {logits.dtype}")
    return logits


def check_logits_finite(logits: Tensor) -> Tensor:
    """Raise ValueError, naming the first bad entry, unless every logit is finite (the data half of the check)."""
    if torch.compiler.is_compiling():
        # a traced graph cannot branch on data: an assertion the graph keeps (RuntimeError, without the position)
        torch._assert_async(torch.isfinite(logits.detach()).all(), "logits must be finite: NaN or infinite value(s)")
        return logits
    bad = ~torch.isfinite(logits.detach())
    if bool(bad.any()):
        first = [int(i) for i in bad.nonzero()[0]]
        raise ValueError(
            f"logits must be finite: {int(bad.sum())} NaN or infinite value(s), the first at {first} "
            f"= {float(logits.detach()[tuple(first)])}"
        )
    return logits


def check_labels(labels: object, shape: tuple[int, ...] | list[int]) -> Tensor:
    """Check ``labels``: an integer ``[B, N]`` tensor of wanted values ``0..D-1``, ``-1`` where nothing is wanted.

    ``shape`` is the logits' ``[B, N, D]``. Raised before anything is solved, with messages that name ``labels``.
    """
    return check_labels_range(check_labels_structure(labels, shape), int(shape[2]))


def check_labels_structure(labels: object, shape: tuple[int, ...] | list[int]) -> Tensor:
    """The part of :func:`check_labels` that reads only the type, dtype and shape (traced by ``torch.compile``)."""
    b, n, d = (int(x) for x in shape)
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels: expected a torch.Tensor of values (-1 where unobserved), got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(
            f"labels: expected integer values 0..{d - 1} (-1 where unobserved), got dtype {labels.dtype}; "
            "pass values, not one-hot rows (one_hot.argmax(-1))"
        )
    if list(labels.shape) != [b, n]:
        raise ValueError(f"labels: expected shape [B, N] = [{b}, {n}] to match the logits, got {list(labels.shape)}")
    return labels


def check_labels_range(labels: Tensor, domain_size: int) -> Tensor:
    """Raise ValueError, naming the first bad entry, unless every label is in ``[-1, D - 1]`` (the data half)."""
    d = domain_size
    if torch.compiler.is_compiling():
        # a traced graph cannot branch on data: an assertion the graph keeps (RuntimeError, without the position)
        ok = ((labels >= -1) & (labels < d)).all()
        torch._assert_async(ok, f"labels: values must be in [-1, {d - 1}] (-1 where unobserved)")
        return labels
    bad = (labels < -1) | (labels >= d)
    if bool(bad.any()):
        first = [int(i) for i in bad.nonzero()[0]]
        raise ValueError(
            f"labels: values must be in [-1, {d - 1}] (-1 where unobserved), got {int(labels[tuple(first)])} at {first}"
        )
    return labels


def _softmax_backward(logits: Tensor, grad: Tensor) -> Tensor:
    """The VJP of ``softmax(logits, -1)``: the kernel autograd's SoftmaxBackward calls, so bit for bit its result."""
    return torch.ops.aten._softmax_backward_data(grad, torch.softmax(logits, dim=-1), -1, logits.dtype)


def _sigmoid_backward(logits: Tensor, grad: Tensor) -> Tensor:
    """The VJP of ``sigmoid(logits)``: the kernel autograd's SigmoidBackward calls."""
    return torch.ops.aten.sigmoid_backward(grad, torch.sigmoid(logits))


# the built-in relax methods themselves (a subclass that overrides relax has another function object)
_RELAX_BACKWARDS: dict[object, Callable[[Tensor, Tensor], Tensor]] = {
    Threshold.relax: _sigmoid_backward,
    TopK.relax: _softmax_backward,
    ConfidentArgmax.relax: _softmax_backward,
    MinProbability.relax: _softmax_backward,
}


def _as_float(logits: Tensor) -> Tensor:
    """Detached logits in float32 at least (exact for float16/bfloat16), so masks do not depend on the dtype."""
    x = logits.detach()
    return x if x.dtype == torch.float64 else x.to(torch.float32)


def _argmax_mask(x: Tensor) -> Tensor:
    """One-hot of the argmax along the last axis (``torch.argmax`` returns the first maximum: the lowest value)."""
    return torch.zeros_like(x, dtype=torch.bool).scatter_(-1, x.argmax(dim=-1, keepdim=True), True)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
