"""Training from sums alone: the CNN reads every digit, the solver relates the digits to the labelled sum.

Per example the layer gets logits ``[4N, 10]`` over :func:`fpgacsp.addition_program(N, carries=True)`'s
variables: the CNN's readings at a's and b's digits, zeros (every value open) at the sum's digits and the carries.
The labels (``layer(logits, labels=...)``) name the sum's digits and nothing else: no digit label is ever used.
With :class:`fpgacsp.Abduction` (the default) the backward solves each example again with the sum fixed, the
digits open and searched in the CNN's order, and trains the CNN toward that labelling: the likeliest-first
reading that adds up. The loss is :func:`fpgacsp.hamming_loss` on the sum's digits (a monitor for Abduction, the
gradient Interpolation and Perturbed perturb along).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from fpgacsp import addition_program
from fpgacsp.torch_layer import Abduction, ConstraintLayer, Estimator, MinProbability, SolverClient, hamming_loss
from torch import Tensor, nn
from tqdm import tqdm

from examples.visual_sudoku.model import DigitCNN, augment
from examples.visual_sudoku.pipeline import solver_seconds

from .data import BASE, AdditionBatch, AdditionData


@dataclass(frozen=True)
class TrainConfig:
    num_digits: int = 1
    epochs: int = 16
    batch_size: int = 32
    lr: float = 1e-3
    clip: float = 5.0
    explore_epochs: int | None = None  # a sampling Abduction's Gumbel temperature falls from 1 to 0 over these
    time_budget_s: float = math.inf
    seed: int = 0
    progress: bool = True


@dataclass
class EpochRecord:
    """One epoch: training loss, the training sums the forward solve got right, and the test metrics."""

    epoch: int
    loss: float
    train_s: float
    solver_s: float
    train_sum_acc: float  # the forward solve's sum (digits from the CNN's candidates) == the label
    digit_acc: float  # test: argmax reading of each digit image
    sum_acc: float  # test: the read numbers add up to the true sum
    elapsed_s: float
    steps: int
    extra: dict[str, float] = field(default_factory=dict)


class AdditionSolver:
    """The task's view of the layer: images in, logits over the program's variables, and the sum as labels."""

    def __init__(self, client: SolverClient, num_digits: int, ste: Estimator | str, p: float, timeout: float = 60.0):
        self.k = num_digits
        self.program = addition_program(num_digits, BASE, carries=True)
        self.layer = ConstraintLayer(
            self.program,
            mode="solve",
            discretize=MinProbability(p),
            ste=ste,
            client=client,
            priorities=True,
            node_limit=100_000,
            timeout=timeout,
        )

    def logits(self, readings: Tensor) -> Tensor:
        """``[B, 2N, 10]`` readings to ``[B, 4N, 10]``: zeros (all values open) at the sum and carry variables."""
        b = readings.shape[0]
        rest = torch.zeros(b, self.program.num_vars - 2 * self.k, BASE, dtype=readings.dtype)
        return torch.cat([readings, rest], dim=1)

    def labels(self, batch: AdditionBatch) -> Tensor:
        """``int64[B, 4N]``: the sum's digits at its variables, -1 (unobserved) at the addends and carries."""
        t = torch.full((len(batch), self.program.num_vars), -1, dtype=torch.int64)
        t[:, 2 * self.k : 3 * self.k + 1] = batch.sum_digits
        return t


def read(cnn: nn.Module, images: Tensor) -> Tensor:
    """``[B, 2N, 1, 8, 8]`` to ``[B, 2N, 10]`` logits."""
    b, n = images.shape[:2]
    return cnn(images.reshape(b * n, *images.shape[2:])).reshape(b, n, BASE)


def evaluate(cnn: nn.Module, data: AdditionData) -> tuple[float, float]:
    """Test digit accuracy (argmax) and sum accuracy (the numbers read by argmax add up to the true sum)."""
    cnn.eval()
    k = data.num_digits
    right_digits = right_sums = total = 0
    with torch.no_grad():
        for batch in data.batches(256):
            digits = read(cnn, batch.images).argmax(dim=-1)
            right_digits += int((digits == batch.digits).sum())
            # whole numbers compared digit by digit (exact for any N): a read sum is right iff its digits are
            guess = _add_digits(digits[:, :k], digits[:, k:])
            right_sums += int((guess == batch.sum_digits).all(dim=1).sum())
            total += len(batch)
    return right_digits / (total * 2 * k), right_sums / total


def _add_digits(a: Tensor, b: Tensor) -> Tensor:
    """Column addition of digit tensors ``[B, k]`` (least significant first) to ``[B, k + 1]``, exact for any k."""
    out = torch.zeros(a.shape[0], a.shape[1] + 1, dtype=torch.int64)
    carry = torch.zeros(a.shape[0], dtype=torch.int64)
    for i in range(a.shape[1]):
        total = a[:, i] + b[:, i] + carry
        out[:, i], carry = total % BASE, total // BASE
    out[:, -1] = carry
    return out


def train(
    cnn: DigitCNN,
    train_data: AdditionData,
    test_data: AdditionData,
    solver: AdditionSolver,
    config: TrainConfig,
    log: Callable[[str], None] = print,
) -> list[EpochRecord]:
    """Train ``cnn`` through ``solver``'s layer; one record per epoch, plus epoch 0 (the untrained network).

    The solver seconds are the layer's own account (``layer.info``), forward and backward.
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(cnn.parameters(), lr=config.lr)
    start = time.perf_counter()
    digit_acc, sum_acc = evaluate(cnn, test_data)
    records = [EpochRecord(0, 0.0, 0.0, 0.0, 0.0, digit_acc, sum_acc, 0.0, 0)]
    log(_line(records[-1]))
    spent = 0.0
    steps_per_epoch = math.ceil(len(train_data) / config.batch_size)
    for epoch in range(1, config.epochs + 1):
        cnn.train()
        solver.layer.ste = _explore(solver.layer.ste, epoch, config)
        t0, solver_s = time.perf_counter(), 0.0
        loss_sum, right, seen, steps, abduced = 0.0, 0, 0, 0, 0
        bar = tqdm(
            train_data.batches(config.batch_size, rng),
            total=steps_per_epoch,
            desc=f"N={config.num_digits} epoch {epoch}/{config.epochs}",
            disable=None if config.progress else True,
            leave=False,
        )
        stopped = False
        for batch in bar:
            b, n = batch.images.shape[:2]
            images = augment(batch.images.reshape(b * n, 1, 8, 8), gen).reshape(batch.images.shape)
            logits = solver.logits(read(cnn, images))
            labels = solver.labels(batch)
            out = solver.layer(logits, labels=labels)
            loss = hamming_loss(out.values, labels)
            opt.zero_grad()
            loss.backward()
            solver_s += solver_seconds(solver.layer)  # the forward's solves and the estimator's, from layer.info
            nn.utils.clip_grad_norm_(cnn.parameters(), config.clip)
            opt.step()
            k = config.num_digits
            solved_sum = out.values[:, 2 * k : 3 * k + 1].argmax(dim=-1)
            right += int((out.solved & (solved_sum == batch.sum_digits).all(dim=1)).sum())
            loss_sum += float(loss.detach()) * len(batch)
            seen += len(batch)
            steps += 1
            if isinstance(solver.layer.ste, Abduction):
                abduced += solver.layer.ste.info.abduced
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", sums=f"{right / seen:.2f}")
            if spent + time.perf_counter() - t0 >= config.time_budget_s:
                stopped = True
                break
        bar.close()
        train_s = time.perf_counter() - t0
        spent += train_s
        digit_acc, sum_acc = evaluate(cnn, test_data)
        rec = EpochRecord(
            epoch,
            loss_sum / max(seen, 1),
            train_s,
            solver_s,
            right / max(seen, 1),
            digit_acc,
            sum_acc,
            time.perf_counter() - start,
            steps,
        )
        if isinstance(solver.layer.ste, Abduction):
            rec.extra["abduced"] = abduced / max(seen, 1)
            if solver.layer.ste.sample:
                rec.extra["temperature"] = solver.layer.ste.temperature
        records.append(rec)
        log(_line(rec))
        if stopped:
            log(f"time budget of {config.time_budget_s:.0f} s of training spent: stopping after epoch {epoch}")
            break
    return records


def _explore(ste: Estimator, epoch: int, config: TrainConfig) -> Estimator:
    """Exploration, then exploitation: a sampling Abduction's noise scale falls linearly from 1 (a labelling drawn
    from the reader's belief: no digit class is lost early on) to 0 (the reader's likeliest labelling: once it
    reads well, sampled misreads would be spread through the carries into digits it reads right)."""
    if config.explore_epochs is None or not isinstance(ste, Abduction) or not ste.sample:
        return ste
    temperature = max(0.0, 1.0 - (epoch - 1) / config.explore_epochs) if config.explore_epochs > 0 else 0.0
    seed = None if ste.seed is None else ste.seed + 1  # a fresh estimator per epoch: fresh noise too
    return dataclasses.replace(ste, temperature=temperature, seed=seed)


def _line(r: EpochRecord) -> str:
    extra = f"  abduced {r.extra['abduced']:6.1%}" if "abduced" in r.extra else ""
    return (
        f"epoch {r.epoch:3d}  loss {r.loss:7.4f}  train {r.train_s:6.1f}s (solver {r.solver_s:5.1f}s)  "
        f"train sums {r.train_sum_acc:6.1%}  |  test digits {r.digit_acc:6.2%}  sums {r.sum_acc:6.2%}{extra}"
    )
