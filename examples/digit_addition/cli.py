"""Command line: ``python -m examples.digit_addition --target local|ADDRESS --digits 1 2 4 15 ...``.

One run per N in ``--digits``, each with a fresh CNN (or, with ``--curriculum``, the previous N's), the same seed
and its own data; the summary table compares them. Defaults: Abduction with probability widening and a sampled
search order whose noise anneals to zero over the run (exploration, then exploitation), 16 epochs of
``6000 / (2 N)`` training examples (every training image used about 6.7 times an epoch, whatever N), 1000 test
examples written in unseen handwriting.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import fpgacsp
import torch
from fpgacsp import Widening

from examples.visual_sudoku.model import DigitCNN
from examples.visual_sudoku.pipeline import make_estimator

from .data import BASE, AdditionData, digit_split
from .report import final_table, write_outputs
from .train import AdditionSolver, TrainConfig, train

DEFAULT_OUT = Path(__file__).resolve().parent / "out"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m examples.digit_addition",
        description="Digit addition: a CNN learns to read digits from the sums of N-digit numbers alone, "
        "through fpgacsp's LINEAR constraints.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--target", default="local", help="daemon address (host:port, unix:///path) or 'local'")
    ap.add_argument("--digits", type=int, nargs="+", default=[1, 2, 4, 15], help="N: digits per number")
    ap.add_argument("--train-images", type=int, default=6000, help="digit images per epoch: 6000 / (2 N) examples")
    ap.add_argument("--test-examples", type=int, default=1000)
    ap.add_argument(
        "--epochs", type=int, nargs="+", default=[16], help="epochs: one value for every N, or one per N in --digits"
    )
    ap.add_argument(
        "--curriculum",
        action="store_true",
        help="start each N's reader from the previous N's (still trained on sums only) instead of from scratch",
    )
    ap.add_argument("--time-budget-s", type=float, default=None, help="per N: stop training once this much is spent")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--p", type=float, default=0.05, help="training forward's MinProbability for the readings")
    ap.add_argument("--ste", choices=["identity", "abduction", "interpolation", "perturbed"], default="abduction")
    ap.add_argument(
        "--widening",
        choices=[w.value for w in Widening],
        default=Widening.PROBABILITY.value,
        help="abduction: probability (candidates of falling probability: unsure readings widen first), rank "
        "(top-1, top-2, ... for every digit at once) or none (the greedy first labelling)",
    )
    ap.add_argument(
        "--no-sample",
        action="store_true",
        help="abduction: search in the CNN's own order instead of a Gumbel-sampled one (loses classes for good)",
    )
    ap.add_argument(
        "--explore",
        type=float,
        default=1.0,
        help="abduction: the sampled order's Gumbel temperature falls from 1 to 0 over this fraction of a "
        "from-scratch run's epochs (0: no exploration; a large value such as 1000 keeps it near 1 throughout; "
        "with --curriculum the later stages start at 0: their reader reads every class)",
    )
    ap.add_argument("--lam", type=float, default=10.0, help="interpolation: logit shift (normalized)")
    ap.add_argument("--sigma", type=float, default=1.0, help="perturbed: noise scale")
    ap.add_argument("--samples", type=int, default=8, help="perturbed: solves per backward")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: CPUs - 1, at least 1)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the summary, metrics and plots")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    return ap


def run(args: argparse.Namespace) -> int:
    if args.explore < 0:
        raise SystemExit(f"--explore: a fraction >= 0 of the epochs, got {args.explore}")
    if any(n < 1 for n in args.digits) or len(set(args.digits)) != len(args.digits):
        raise SystemExit(f"--digits: distinct positive numbers of digits, got {args.digits}")
    if len(args.epochs) not in (1, len(args.digits)):
        raise SystemExit(f"--epochs: one value, or one per N ({len(args.digits)}), got {args.epochs}")
    per_n = args.epochs * len(args.digits) if len(args.epochs) == 1 else args.epochs
    epochs = dict(zip(args.digits, per_n, strict=True))
    threads = args.threads or max(1, (os.cpu_count() or 2) - 1)
    torch.set_num_threads(threads)
    budget = math.inf if args.time_budget_s is None else args.time_budget_s
    settings: dict[str, Any] = {
        **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "threads": threads,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"torch {torch.__version__}",
    }
    t_start = time.perf_counter()
    runs: dict[int, list[Any]] = {}
    cnn: DigitCNN | None = None
    split = digit_split(seed=args.seed)
    print(f"connecting to {args.target} ...", flush=True)
    with fpgacsp.connect(args.target) as client:
        for n in args.digits:
            train_data = AdditionData(split.train, max(1, args.train_images // (2 * n)), n, seed=args.seed)
            test_data = AdditionData(split.test, args.test_examples, n, seed=args.seed + 1)
            print(f"N = {n}: {len(train_data)} training sums, {len(test_data)} test sums", flush=True)
            torch.manual_seed(args.seed)
            previous = cnn if args.curriculum and runs else None
            cnn = DigitCNN(classes=BASE)
            if previous is not None:
                cnn.load_state_dict(previous.state_dict())
            ste = make_estimator(
                args.ste,
                args.lam,
                args.sigma,
                args.samples,
                Widening(args.widening),
                sample=not args.no_sample,
                seed=args.seed,
            )
            solver = AdditionSolver(client, n, ste, args.p)
            warm = previous is not None
            config = TrainConfig(
                num_digits=n,
                epochs=epochs[n],
                explore_epochs=0 if warm else max(1, round(args.explore * epochs[n])),
                batch_size=args.batch_size,
                lr=args.lr,
                time_budget_s=budget,
                seed=args.seed,
                progress=not args.no_progress,
            )
            runs[n] = train(cnn, train_data, test_data, solver, config)
            args.out.mkdir(parents=True, exist_ok=True)
            torch.save(cnn.state_dict(), args.out / f"cnn_n{n}.pt")
    settings["wall_s"] = round(time.perf_counter() - t_start, 1)
    print()
    print(final_table(runs, settings))
    paths = write_outputs(args.out, runs, settings)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except fpgacsp.FpgacspError as exc:
        print(f"error: solver at {args.target}: {exc}", file=sys.stderr)
        return 1
