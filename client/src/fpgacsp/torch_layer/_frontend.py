"""What the JAX and TensorFlow layers share: the PyTorch layer as their core, and its checks on foreign arrays.

``fpgacsp.jax`` and ``fpgacsp.tensorflow`` hold a :class:`ConstraintLayer` and call its operators from their own
callbacks; this mixin gives both the same ``core``, ``info`` and ``ste``, and :func:`check_structure` runs the
PyTorch layer's structural checks (and messages) on the shape and dtype of an array of another framework, through
``meta`` tensors that hold no data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from fpgacsp_proto.isa import Program

from ._discretize import Discretizer, check_labels_structure, check_logits_structure
from ._estimators import Estimator, make_estimator
from ._layer import ConstraintLayer, LayerInfo

__all__ = ["FrontEnd", "check_structure", "host_tensor"]


class FrontEnd:
    """The PyTorch layer as ``core`` (built with the same arguments, so the same checks), and its ``info``/``ste``."""

    core: ConstraintLayer

    def _build_core(
        self, program: Program, mode: str, discretize: str | Discretizer, ste: str | Estimator, options: dict[str, Any]
    ) -> None:
        self.core = ConstraintLayer(program, mode, discretize, ste, **options)

    @property
    def info(self) -> LayerInfo | None:
        """The last forward's :class:`fpgacsp.LayerInfo` (and its backward's), as the PyTorch layer keeps it."""
        return self.core.info

    @property
    def ste(self) -> Estimator:
        return self.core.ste

    @ste.setter
    def ste(self, estimator: str | Estimator) -> None:
        self.core.ste = make_estimator(estimator)


def check_structure(
    program: Program,
    shape: Sequence[int | None],
    dtype: str,
    labels_shape: Sequence[int | None] | None = None,
    labels_dtype: str | None = None,
) -> None:
    """The PyTorch layer's structural checks for logits (and labels) of another framework, by shape and dtype name.

    A dimension unknown while tracing (None) counts as any size that passes: the batch, checked when it runs.
    """
    torch_dtype = getattr(torch, dtype, None)
    if len(shape) != 3 or not isinstance(torch_dtype, torch.dtype) or not torch_dtype.is_floating_point:
        raise ValueError(
            f"expected floating logits of shape [B, N, D] = [B, {program.num_vars}, {program.domain_size}], "
            f"got {dtype} {list(shape)}"
        )
    known = [1 if d is None else d for d in shape]
    meta = check_logits_structure(
        torch.empty(known, dtype=torch_dtype, device="meta"), program.num_vars, program.domain_size
    )
    if labels_shape is not None:
        labels_torch = getattr(torch, labels_dtype or "", None)
        if not isinstance(labels_torch, torch.dtype):
            labels_torch = torch.float32  # not a dtype torch knows: certainly not integer values
        lab = [known[0] if d is None else d for d in labels_shape]
        check_labels_structure(torch.empty(lab, dtype=labels_torch, device="meta"), meta.shape)


def host_tensor(a: Any) -> torch.Tensor:
    """A CPU tensor of its own from another framework's host array (often a read-only view of its buffers)."""
    return torch.from_numpy(np.array(a, order="C"))
