"""What the cross-framework layer tests share: the estimators (fresh instances per run), 4x4 boards read with
some doubt, and the PyTorch layer's own answer, which the JAX and TensorFlow layers must equal bit for bit."""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType

import numpy as np
import torch
from fpgacsp import LocalSolver
from fpgacsp.torch_layer import (
    Abduction,
    ConstraintLayer,
    Estimator,
    IdentitySTE,
    Interpolation,
    Perturbed,
    RelaxationSTE,
)
from sudoku4 import four_by_four_puzzles

# fresh instances for each run, so that seeded noise (Perturbed) starts from the same state in every framework
ESTIMATORS: dict[str, Callable[[], Estimator]] = {
    "identity": IdentitySTE,
    "relaxation": RelaxationSTE,
    "interpolation": lambda: Interpolation(2.0, normalize=True),
    "perturbed": lambda: Perturbed(sigma=1.0, samples=4, seed=7),
    "abduction": Abduction,
}


def doubtful_boards(count: int = 10, seed: int = 11) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(logits, labels, weights)``: 4x4 boards whose givens are read with noise (blanks: zero logits), every cell
    labelled with its solution, and a random cotangent for the values."""
    with LocalSolver() as solver:
        puzzles, solutions = four_by_four_puzzles(solver, count, seed=seed)
    rng = np.random.default_rng(5)
    truth = np.eye(4)[solutions] * 3.0
    logits = np.where((puzzles >= 0)[..., None], truth + rng.normal(0, 1.5, truth.shape), 0.0)
    return logits, solutions.astype(np.int64), rng.normal(size=truth.shape)


def torch_run(layer: ConstraintLayer, logits: np.ndarray, labels: np.ndarray, w: np.ndarray) -> list[np.ndarray]:
    """The PyTorch layer's ``[values, status, nodes, d(sum(values * w))/d logits]``."""
    x = torch.from_numpy(logits).requires_grad_(True)
    out = layer(x, labels=torch.from_numpy(labels))
    (out.values * torch.from_numpy(w)).sum().backward()
    assert x.grad is not None
    return [out.values.detach().numpy(), out.status.numpy(), out.nodes.numpy(), x.grad.numpy()]


def tensorflow_modules() -> tuple[ModuleType, ModuleType, ModuleType]:
    """``(tensorflow, keras, fpgacsp.tensorflow)``, imported on first use, never while pytest collects.

    TensorFlow's bundled protobuf and abseil crash OR-Tools' CP-SAT (``bench/baselines.py``) in the same process
    (a segfault in ``CpSolver.solve``), so the tests that need TensorFlow are marked ``tensorflow``, run last
    (``tests/conftest.py`` orders them), and import it here, when the first of them runs.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up banner is noise in a test log
    import keras
    import tensorflow
    from fpgacsp import tensorflow as fpgacsp_tensorflow

    return tensorflow, keras, fpgacsp_tensorflow
