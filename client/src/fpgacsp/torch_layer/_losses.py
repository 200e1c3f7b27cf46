"""A loss on the layer's 0/1 output that names what it wants, for the estimators that need a linear loss.

The layer's output is piecewise constant, so what an estimator does with ``dL/dvalues`` decides what the network
learns. On 0/1 outputs :func:`hamming_loss` takes the same values as the squared error ``||y - t||^2`` (0 for a
right variable, 2 for a wrong one, 1 for an empty domain), but it is written in its linear form
``sum_{n observed} <1 - 2 t_n, y_n> + 1``, so its gradient ``1 - 2 t`` names the wanted value of every observed
variable whatever the output is. The squared error's gradient ``2 (y - t)`` vanishes on a variable that is already
right and is a difference of two one-hots elsewhere: :class:`Interpolation` then moves fewer logits, and
:class:`Abduction` without explicit labels cannot tell that a right variable is observed. Note what neither
loss fixes: an UNSAT board (all-zero output) scores better than a wholly wrong completion, so with estimators
that only follow the loss's gradient (identity, relaxation) a network can lower either loss by making every board
UNSAT; drop unsolved boards from such a loss, or use :class:`Abduction`, whose gradient is a cross-entropy toward
a labelling that satisfies the constraints.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._discretize import check_labels

__all__ = ["hamming_loss"]


def hamming_loss(values: Tensor, labels: Tensor) -> Tensor:
    """Wrong values per instance, averaged over the batch: ``sum_{b, n: t >= 0} |y[b, n] - onehot(t[b, n])|_1 / B``.

    ``values`` is the layer's output ``[B, N, D]`` (0/1), ``labels`` ``int64[B, N]`` with the wanted value of each
    observed variable and ``-1`` elsewhere (the same tensor ``layer(logits, labels=...)`` takes). A variable whose
    solved value is right adds 0, a wrong one 2 (one value too many, one missing), an empty domain (UNSAT) 1: on
    0/1 outputs the same values as the squared error. Written in its linear form, so the gradient is
    ``(1 - 2 t) / B`` on observed variables and 0 elsewhere, also
    where the value is already right (an ``abs`` would give 0 there).
    """
    labels = check_labels(labels, values.shape)
    observed = (labels >= 0).to(values.dtype)[..., None]
    t = torch.nn.functional.one_hot(labels.clamp(min=0), values.shape[-1]).to(values.dtype)
    return ((values * (1 - 2 * t) + t) * observed).sum() / values.shape[0]
