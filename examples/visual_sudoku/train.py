"""Training through the solver, in two supervision regimes, with per-epoch metrics and a time budget.

Regime ``a`` (digit labels of the given cells): the loss is the cross-entropy of the CNN's reading of each given
cell plus a term on the *solved* board's given cells, ``||values - onehot(label)||^2``, that reaches the logits
through the layer's estimator (identity by default): where the solver's board disagrees with a label, that
digit's logit is raised and the chosen one lowered.

Regime ``b`` (symbol grounding): the loss sees only the solved values of the cells that were blank in the input,
compared with the solution; no label of a given cell is ever used. The blanks' logits are constants, so the
identity STE sends nothing to the CNN. :class:`fpgacsp.Abduction` (the default) solves the board again with the
blanks fixed to their targets and the givens open, in the CNN's order, and trains the CNN toward the givens that
the rules then imply; :class:`fpgacsp.Interpolation` and :class:`fpgacsp.Perturbed` reach the givens through
solves at moved logits. The blanks' targets travel as ``layer(logits, labels=...)``; the loss is
:func:`fpgacsp.hamming_loss` (or the squared error, ``--loss mse``).
"""

from __future__ import annotations

import enum
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from fpgacsp import Status
from fpgacsp.torch_layer import Abduction, ConstraintLayer, hamming_loss
from torch import Tensor, nn
from tqdm import tqdm

from .digits import NUM_DIGITS
from .evaluate import Metrics, evaluate
from .inference import JointSolver
from .model import augment
from .pipeline import BoardBatch, BoardImages, board_logits, solver_seconds


class Loss(enum.Enum):
    """Regime b's loss on the blank cells: the Hamming distance (linear in the values) or the squared error."""

    HAMMING = "hamming"
    MSE = "mse"


@dataclass(frozen=True)
class TrainConfig:
    regime: str = "a"
    loss: Loss = Loss.HAMMING  # regime b only
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    solver_weight: float = 1.0  # regime a: weight of the solved-board term beside the cross-entropy
    clip: float = 5.0  # gradient norm clip: the estimators' gradients do not saturate as a softmax's does
    time_budget_s: float = math.inf
    seed: int = 0
    progress: bool = True


@dataclass
class EpochRecord:
    """One epoch: training loss and times, the training boards the solver got right, then test metrics."""

    epoch: int
    loss: float
    train_s: float  # wall time of the epoch's training steps (solver calls included)
    solver_s: float  # of which in the solver layer (forward and the estimator's re-solves)
    train_board_acc: float
    train_status: dict[str, int]
    test: Metrics
    elapsed_s: float  # since training started, evaluations included
    steps: int
    stopped: bool = False  # the time budget ran out inside this epoch
    extra: dict[str, float] = field(default_factory=dict)


def blank_target(batch: BoardBatch) -> Tensor:
    """``int64[B, 81]``: the solution at the cells that were blank, -1 at the givens (regime b's observed cells)."""
    return torch.where(batch.given, torch.full_like(batch.solution, -1), batch.solution)


def regime_loss(
    regime: str, logits: Tensor, values: Tensor, batch: BoardBatch, solver_weight: float, loss: Loss = Loss.HAMMING
) -> Tensor:
    """The training loss of one batch (see the module docstring for the two regimes)."""
    target = nn.functional.one_hot(batch.solution, NUM_DIGITS).to(values.dtype)
    if regime == "a":
        ce = nn.functional.cross_entropy(logits[batch.given], batch.puzzle[batch.given])
        # only boards the solver completed: there values and target are both one-hot per cell, so the identity
        # STE's gradient 2 (values - target) sums to zero per cell (up with the label, down with the solver's
        # pick). An UNSAT board's all-zero output says nothing per cell and would raise every label's logit
        # without bound (the logits then diverge).
        solved = (values.sum(dim=-1) == 1).all(dim=1)
        mask = batch.given & solved[:, None]
        term = ((values - target) ** 2)[mask].sum() / batch.given.sum().clamp(min=1)
        return ce + solver_weight * term
    if regime == "b":
        if loss is Loss.HAMMING:
            return hamming_loss(values, blank_target(batch))
        blank = (~batch.given)[..., None].to(values.dtype)
        return (((values - target) ** 2) * blank).sum() / len(batch)
    raise ValueError(f"regime: expected 'a' or 'b', got {regime!r}")


def train(
    cnn: nn.Module,
    train_data: BoardImages,
    test_data: BoardImages,
    layer: ConstraintLayer,
    eval_layer: JointSolver,
    config: TrainConfig,
    log: Callable[[str], None] = print,
) -> list[EpochRecord]:
    """Train ``cnn`` through ``layer`` and evaluate on ``test_data`` through ``eval_layer`` after each epoch.

    Stops after ``config.epochs`` or when ``config.time_budget_s`` of training is spent (the epoch in progress is
    cut short, then evaluated). Returns one record per epoch, plus epoch 0: the untrained network.
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(cnn.parameters(), lr=config.lr)
    steps_per_epoch = math.ceil(len(train_data) / config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=config.lr, total_steps=max(config.epochs * steps_per_epoch, 1), pct_start=0.15
    )
    start = time.perf_counter()
    train_s_total = 0.0
    records = [_record(0, 0.0, 0.0, 0.0, Counter(), 0, cnn, test_data, eval_layer, start, 0)]
    log(_line(records[-1]))
    for epoch in range(1, config.epochs + 1):
        cnn.train()
        t0, solver_s = time.perf_counter(), 0.0
        loss_sum, ok, status, steps, stopped, abduced = 0.0, 0, Counter[str](), 0, False, 0
        bar = tqdm(
            train_data.batches(config.batch_size, rng),
            total=steps_per_epoch,
            desc=f"epoch {epoch}/{config.epochs} ({config.regime})",
            disable=None if config.progress else True,  # None: only on a terminal
            leave=False,
        )
        for batch in bar:
            images = augment(batch.images[batch.given], gen)
            logits = board_logits(cnn, batch, images)
            out = layer(logits, labels=blank_target(batch) if config.regime == "b" else None)
            loss = regime_loss(config.regime, logits, out.values, batch, config.solver_weight, config.loss)
            opt.zero_grad()
            loss.backward()
            solver_s += solver_seconds(layer)  # the forward's solves and the estimator's, from layer.info
            nn.utils.clip_grad_norm_(cnn.parameters(), config.clip)
            opt.step()
            if sched.last_epoch + 1 < sched.total_steps:
                sched.step()
            loss_sum += float(loss.detach()) * len(batch)
            right = out.solved & (out.values.argmax(-1) == batch.solution).all(dim=1)
            ok += int(right.sum())
            if isinstance(layer.ste, Abduction):
                abduced += layer.ste.info.abduced
            status.update(Status(int(s)).name for s in out.status)
            steps += 1
            bar.set_postfix(
                loss=f"{loss_sum / max(sum(status.values()), 1):.3f}", boards=f"{ok / sum(status.values()):.2f}"
            )
            if train_s_total + time.perf_counter() - t0 >= config.time_budget_s:
                stopped = True
                break
        bar.close()
        train_s = time.perf_counter() - t0
        train_s_total += train_s
        seen = max(sum(status.values()), 1)
        rec = _record(
            epoch,
            loss_sum / seen,
            train_s,
            solver_s,
            status,
            ok,
            cnn,
            test_data,
            eval_layer,
            start,
            steps,
        )
        rec.stopped = stopped
        if isinstance(layer.ste, Abduction):
            rec.extra["abduced"] = abduced / seen  # training boards whose abduction gave a gradient
        records.append(rec)
        log(_line(rec))
        if stopped:
            log(f"time budget of {config.time_budget_s:.0f} s of training spent: stopping after epoch {epoch}")
            break
    return records


def _record(
    epoch: int,
    loss: float,
    train_s: float,
    solver_s: float,
    status: Counter[str],
    ok: int,
    cnn: nn.Module,
    test_data: BoardImages,
    eval_layer: JointSolver,
    start: float,
    steps: int,
) -> EpochRecord:
    metrics, _ = evaluate(cnn, test_data, eval_layer)
    seen = max(sum(status.values()), 1)
    return EpochRecord(
        epoch=epoch,
        loss=loss,
        train_s=train_s,
        solver_s=solver_s,
        train_board_acc=ok / seen,
        train_status=dict(status),
        test=metrics,
        elapsed_s=time.perf_counter() - start,
        steps=steps,
    )


def _line(r: EpochRecord) -> str:
    t = r.test
    return (
        f"epoch {r.epoch:3d}  loss {r.loss:7.4f}  train {r.train_s:6.1f}s (solver {r.solver_s:5.1f}s)  "
        f"train boards {r.train_board_acc:6.1%}  |  test read {t.read_acc:6.2%}  cells {t.cell_acc:6.2%}  "
        f"boards {t.board_acc:6.1%}  two-stage {t.two_stage_acc:6.1%} (ceiling {t.ceiling:6.1%})  "
        f"solve {t.solve_s:4.1f}s" + (f"  abduced {r.extra['abduced']:6.1%}" if "abduced" in r.extra else "")
    )
