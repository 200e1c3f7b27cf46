"""Command line: ``python -m examples.visual_sudoku --target local|ADDRESS --regime a|b ...``.

The defaults are the README's main job: regime a on 36-clue generated boards, sized to reach its target in about
three minutes of training on 2 CPU cores (``--time-budget-s`` stops earlier when set).
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

from .boards import Boards, generate_boards, load_boards
from .digits import load_split
from .evaluate import evaluate
from .inference import JointSolver
from .model import DigitCNN
from .pipeline import BoardImages, make_estimator, make_layer
from .report import final_summary, summary_table, write_outputs
from .train import Loss, TrainConfig, train

DEFAULT_OUT = Path(__file__).resolve().parent / "out"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m examples.visual_sudoku",
        description="Visual Sudoku: a CNN reads the given digits, fpgacsp's solver layer completes the board.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--target", default="local", help="daemon address (host:port, unix:///path) or 'local'")
    ap.add_argument("--regime", choices=["a", "b"], default="a", help="a: digit labels; b: symbol grounding")
    ap.add_argument("--clues", type=int, default=36, help="givens per generated board")
    ap.add_argument("--train-boards", type=int, default=1000)
    ap.add_argument("--test-boards", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=None, help="default: 12 for regime a, 10 for regime b")
    ap.add_argument("--time-budget-s", type=float, default=None, help="stop training once this much is spent")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the summary, metrics and plots")
    ap.add_argument("--source", default="generated", help="'generated' or a puzzle,solution CSV file")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3, help="Adam, peak of a one-cycle schedule")
    ap.add_argument(
        "--p",
        type=float,
        default=None,
        help="training layer's MinProbability: a given cell keeps the digits with softmax prob >= p, blanks keep all "
        "(default: 1e-3 for regime a, 0.05 for b, where abduction's calibrated readings leave two candidates a "
        "cell at 1e-3 and the forward's first solution is then often another valid grid)",
    )
    ap.add_argument(
        "--ste",
        choices=["identity", "abduction", "interpolation", "perturbed"],
        default=None,
        help="default: identity for regime a, abduction for regime b",
    )
    ap.add_argument(
        "--loss",
        choices=[k.value for k in Loss],
        default=Loss.HAMMING.value,
        help="regime b's loss on the blank cells: hamming (linear; what interpolation and perturbed need) or mse",
    )
    ap.add_argument(
        "--lam", type=float, default=10.0, help="interpolation: logit shift (Interpolation(lam, normalize=True))"
    )
    ap.add_argument(
        "--widening",
        choices=[w.value for w in Widening],
        default=Widening.NONE.value,
        help="abduction: none (one solve, the first labelling in the CNN's order) or rank (top-1, top-2, ...)",
    )
    ap.add_argument("--sample", action="store_true", help="abduction: a Gumbel-sampled search order (seeded)")
    ap.add_argument("--sigma", type=float, default=1.0, help="perturbed: noise scale")
    ap.add_argument("--samples", type=int, default=8, help="perturbed: solves per backward")
    ap.add_argument("--solver-weight", type=float, default=1.0, help="regime a: weight of the solved-board term")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: CPUs - 1, at least 1)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    return ap


def load_boards_for(args: argparse.Namespace, client: Any) -> tuple[Boards, Boards]:
    """Train and test boards: generated with different seeds, or a file's boards split in two (no overlap)."""
    if args.source == "generated":
        train = generate_boards(client, args.train_boards, args.clues, seed=args.seed)
        test = generate_boards(client, args.test_boards, args.clues, seed=args.seed + 1_000_003)
        return train, test
    boards = load_boards(args.source, args.train_boards + args.test_boards, seed=args.seed)
    if len(boards) < 2:
        raise SystemExit(f"{args.source}: need at least 2 boards with unique solutions, found {len(boards)}")
    cut = max(1, min(len(boards) - 1, round(len(boards) * args.train_boards / (args.train_boards + args.test_boards))))
    return (
        Boards(boards.puzzles[:cut], boards.solutions[:cut]),
        Boards(boards.puzzles[cut:], boards.solutions[cut:]),
    )


def run(args: argparse.Namespace) -> int:
    threads = args.threads or max(1, (os.cpu_count() or 2) - 1)
    torch.set_num_threads(threads)
    ste_name = args.ste or ("identity" if args.regime == "a" else "abduction")
    epochs = args.epochs or (12 if args.regime == "a" else 10)
    budget = math.inf if args.time_budget_s is None else args.time_budget_s
    settings: dict[str, Any] = {
        **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "ste": ste_name,
        "epochs": epochs,
        "threads": threads,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"torch {torch.__version__}",
    }
    t_start = time.perf_counter()
    print(f"connecting to {args.target} ...", flush=True)
    with fpgacsp.connect(args.target) as client:
        t0 = time.perf_counter()
        train_boards, test_boards = load_boards_for(args, client)
        print(
            f"{len(train_boards)} train and {len(test_boards)} test boards ({args.source}, uniqueness checked by "
            f"the solver) in {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
        split = load_split(seed=args.seed)
        train_data = BoardImages(train_boards, split.train, seed=args.seed)
        test_data = BoardImages(test_boards, split.test, seed=args.seed + 1)
        torch.manual_seed(args.seed)
        cnn = DigitCNN()
        ste = make_estimator(
            ste_name, args.lam, args.sigma, args.samples, Widening(args.widening), args.sample, seed=args.seed
        )
        layer = make_layer(client, args.p or (1e-3 if args.regime == "a" else 0.05), ste)
        eval_layer = JointSolver(client)
        config = TrainConfig(
            regime=args.regime,
            loss=Loss(args.loss),
            epochs=epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            solver_weight=args.solver_weight,
            time_budget_s=budget,
            seed=args.seed,
            progress=not args.no_progress,
        )
        records = train(cnn, train_data, test_data, layer, eval_layer, config)
        _, sample = evaluate(cnn, test_data, eval_layer, keep=4)
        args.out.mkdir(parents=True, exist_ok=True)
        torch.save(cnn.state_dict(), args.out / "cnn.pt")
    settings["wall_s"] = round(time.perf_counter() - t_start, 1)
    print()
    print(summary_table(records))
    print()
    print(final_summary(records, settings))
    paths = write_outputs(args.out, records, sample, settings)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except fpgacsp.FpgacspError as exc:
        print(f"error: solver at {args.target}: {exc}", file=sys.stderr)
        return 1
