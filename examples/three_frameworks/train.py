"""One task, three frameworks: a 4x4 visual Sudoku learnt from the solver alone in PyTorch, JAX and TensorFlow.

Each board's givens are shown as handwritten digits (scikit-learn's 8x8 images of 1..4); a linear reader turns
each image into four logits, the blanks get zero logits, and the solver layer (``MinProbability(0.05)``,
``Abduction``, likeliest-first search) solves the board. Only the blank cells are labelled, so the reader learns
to read digits it is never told, through the constraints. The three runs start from the same weights, see the
same boards and take the same plain SGD steps; the layer is the same core in all three (``fpgacsp.jax`` and
``fpgacsp.tensorflow`` run the PyTorch layer's operators), so what can differ is only each framework's own
arithmetic around it (the reader's matrix products). The loss curves are printed side by side, with the largest
difference between them.

``python -m examples.three_frameworks [--target local|ADDRESS] [--steps 40] [--boards 64] [--dtype float32]``
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import fpgacsp
import numpy as np

from ..visual_sudoku.digits import load_split

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up banner

DIGITS = 4  # 4x4 Sudoku: digits 1..4, solver values 0..3


@dataclass(frozen=True)
class Task:
    """``images [B*16, 64]`` (zeros on blanks), ``given bool[B, 16]``, ``labels int64[B, 16]`` (the solution on
    blanks, -1 on givens), the test images ``[M, 64]`` and their digits ``[M]``, the initial weights."""

    images: np.ndarray
    given: np.ndarray
    labels: np.ndarray
    test_images: np.ndarray
    test_digits: np.ndarray
    w0: np.ndarray
    b0: np.ndarray


def make_task(client: object, boards: int, seed: int, dtype: str) -> Task:
    split = load_split(seed=seed)
    pools = [np.flatnonzero(split.train.values == v) for v in range(DIGITS)]
    rng = np.random.default_rng(seed)
    sudoku = fpgacsp.generate_sudoku(client, boards, box=2, seed=seed)
    given = sudoku.puzzles >= 0
    picks = np.array([rng.choice(pools[int(v)]) for v in sudoku.solutions.reshape(-1)])
    images = split.train.images[picks].reshape(boards * 16, 64) * given.reshape(-1, 1)
    labels = np.where(given, -1, sudoku.solutions).astype(np.int64)
    keep = split.test.values < DIGITS
    return Task(
        images=images.astype(dtype),
        given=given,
        labels=labels,
        test_images=split.test.images[keep].reshape(-1, 64).astype(dtype),
        test_digits=split.test.values[keep],
        w0=(rng.normal(0, 0.1, (64, DIGITS))).astype(dtype),
        b0=np.zeros(DIGITS, dtype),
    )


@dataclass
class Run:
    framework: str
    losses: list[float]
    read_acc: float
    weights: np.ndarray
    seconds: float


def layer_options(target: str) -> dict[str, Any]:
    return {
        "discretize": fpgacsp.MinProbability(0.05),
        "ste": fpgacsp.Abduction(),
        "priorities": True,
        "target": target,
    }


def run_torch(task: Task, target: str, steps: int, lr: float) -> Run:
    import torch

    layer = fpgacsp.ConstraintLayer(fpgacsp.sudoku_program(2), "solve", **layer_options(target))
    x, labels = torch.from_numpy(task.images), torch.from_numpy(task.labels)
    given = torch.from_numpy(task.given)[..., None]
    w = torch.tensor(task.w0, requires_grad=True)
    b = torch.tensor(task.b0, requires_grad=True)
    losses, t0 = [], time.perf_counter()
    for _ in range(steps):
        logits = (x @ w + b).reshape(*task.given.shape, DIGITS) * given
        loss = fpgacsp.hamming_loss(layer(logits, labels=labels).values, labels)
        w.grad = b.grad = None
        loss.backward()
        with torch.no_grad():
            w -= lr * w.grad  # type: ignore[operator]
            b -= lr * b.grad  # type: ignore[operator]
        losses.append(float(loss.detach()))
    read = (torch.from_numpy(task.test_images) @ w + b).argmax(-1).numpy()
    return Run(
        "PyTorch", losses, float((read == task.test_digits).mean()), w.detach().numpy(), time.perf_counter() - t0
    )


def run_jax(task: Task, target: str, steps: int, lr: float) -> Run:
    import fpgacsp.jax
    import jax
    import jax.numpy as jnp

    layer = fpgacsp.jax.ConstraintLayer(fpgacsp.sudoku_program(2), "solve", **layer_options(target))
    with jax.enable_x64(task.images.dtype == np.float64):
        x, labels = jnp.asarray(task.images), jnp.asarray(task.labels)
        given = jnp.asarray(task.given)[..., None]
        observed = (labels >= 0)[..., None]
        t = jax.nn.one_hot(jnp.maximum(labels, 0), DIGITS, dtype=x.dtype) * observed

        def loss_of(params: tuple[jax.Array, jax.Array]) -> jax.Array:
            w, b = params
            logits = (x @ w + b).reshape(*task.given.shape, DIGITS) * given
            values = layer(logits, labels).values
            return ((values * (1 - 2 * t) + t) * observed).sum() / task.given.shape[0]  # hamming_loss

        step = jax.value_and_grad(loss_of)
        params = (jnp.asarray(task.w0), jnp.asarray(task.b0))
        losses, t0 = [], time.perf_counter()
        for _ in range(steps):
            loss, (gw, gb) = step(params)
            params = (params[0] - lr * gw, params[1] - lr * gb)
            losses.append(float(loss))
        read = np.asarray((jnp.asarray(task.test_images) @ params[0] + params[1]).argmax(-1))
        return Run(
            "JAX", losses, float((read == task.test_digits).mean()), np.asarray(params[0]), time.perf_counter() - t0
        )


def run_tensorflow(task: Task, target: str, steps: int, lr: float) -> Run:
    import fpgacsp.tensorflow
    import tensorflow as tf

    layer = fpgacsp.tensorflow.ConstraintLayer(fpgacsp.sudoku_program(2), "solve", **layer_options(target))
    x, labels = tf.constant(task.images), tf.constant(task.labels)
    given = tf.constant(task.given[..., None], dtype=x.dtype)
    observed = tf.cast(labels >= 0, x.dtype)[..., None]
    t = tf.one_hot(tf.maximum(labels, 0), DIGITS, dtype=x.dtype) * observed
    w, b = tf.Variable(task.w0), tf.Variable(task.b0)
    losses, t0 = [], time.perf_counter()
    for _ in range(steps):
        with tf.GradientTape() as tape:
            logits = tf.reshape(x @ w + b, (*task.given.shape, DIGITS)) * given
            values = layer(logits, labels).values
            loss = tf.reduce_sum((values * (1 - 2 * t) + t) * observed) / task.given.shape[0]  # hamming_loss
        gw, gb = tape.gradient(loss, [w, b])
        w.assign_sub(lr * gw)
        b.assign_sub(lr * gb)
        losses.append(float(loss))
    read = (tf.constant(task.test_images) @ w + b).numpy().argmax(-1)
    return Run("TensorFlow", losses, float((read == task.test_digits).mean()), w.numpy(), time.perf_counter() - t0)


FRAMEWORKS: dict[str, Callable[[Task, str, int, float], Run]] = {
    "torch": run_torch,
    "jax": run_jax,
    "tensorflow": run_tensorflow,
}


def report(runs: Sequence[Run], every: int) -> str:
    head = "| step | " + " | ".join(f"{r.framework} loss" for r in runs) + " |"
    lines = [head, "|---:|" + "---:|" * len(runs)]
    steps = len(runs[0].losses)
    for i in range(steps):
        if i % every == 0 or i == steps - 1:
            lines.append(f"| {i + 1} | " + " | ".join(f"{r.losses[i]:.6f}" for r in runs) + " |")
    curves = np.array([r.losses for r in runs])
    weights = np.array([r.weights for r in runs])
    lines += [
        "",
        "| framework | read accuracy on unseen test digits | seconds |",
        "|---|---:|---:|",
        *(f"| {r.framework} | {r.read_acc:.1%} | {r.seconds:.1f} |" for r in runs),
        "",
        f"largest difference between the loss curves: {np.abs(curves - curves[0]).max():.3g}; "
        f"between the final weights: {np.abs(weights - weights[0]).max():.3g}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.three_frameworks", description=__doc__.split("\n")[0])
    parser.add_argument("--target", default="local", help="where to solve: local or a daemon address")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--boards", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--every", type=int, default=5, help="print every n-th step's losses")
    parser.add_argument("--frameworks", nargs="+", choices=list(FRAMEWORKS), default=list(FRAMEWORKS))
    args = parser.parse_args(argv)
    with fpgacsp.connect(args.target) as client:
        task = make_task(client, args.boards, args.seed, args.dtype)
    runs = [FRAMEWORKS[name](task, args.target, args.steps, args.lr) for name in args.frameworks]
    print(report(runs, args.every))
    return 0
