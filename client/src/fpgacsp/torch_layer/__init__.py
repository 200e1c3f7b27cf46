"""The PyTorch side of fpgacsp: a constraint program as a layer of a network.

:class:`ConstraintLayer` (an ``nn.Module``) discretizes logits ``[B, N, D]`` into domains, solves them through a
client (the daemon or the in-process engine) and returns 0/1 values ``[B, N, D]`` with a per-instance status; its
backward pass is a straight-through estimator. The discretizers and estimators are exported for direct use and
for writing new ones. See ``docs/layer.md``.
"""

from ._discretize import (
    ConfidentArgmax,
    Discretizer,
    MinProbability,
    Threshold,
    TopK,
    check_labels,
    check_logits,
    discretize_confident_argmax,
    discretize_threshold,
    discretize_top_k,
    domains_to_values,
    mask_to_domains,
    value_priorities,
)
from ._estimators import (
    ESTIMATORS,
    Abduction,
    AbductionInfo,
    BackwardContext,
    Estimator,
    IdentitySTE,
    Interpolation,
    Perturbed,
    RelaxationSTE,
    Widening,
    make_estimator,
)
from ._function import SolverClient, SolveSpec
from ._layer import ConstraintLayer, LayerInfo, SolverOutput, SolveStats
from ._losses import hamming_loss

__all__ = [
    "ESTIMATORS",
    "Abduction",
    "AbductionInfo",
    "BackwardContext",
    "ConfidentArgmax",
    "ConstraintLayer",
    "Discretizer",
    "Estimator",
    "IdentitySTE",
    "Interpolation",
    "LayerInfo",
    "MinProbability",
    "Perturbed",
    "RelaxationSTE",
    "SolveSpec",
    "SolveStats",
    "SolverClient",
    "SolverOutput",
    "Threshold",
    "TopK",
    "Widening",
    "check_logits",
    "check_labels",
    "discretize_confident_argmax",
    "discretize_threshold",
    "discretize_top_k",
    "domains_to_values",
    "hamming_loss",
    "make_estimator",
    "mask_to_domains",
    "value_priorities",
]
