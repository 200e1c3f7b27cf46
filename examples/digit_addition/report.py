"""What a run leaves behind: the per-N table on stdout, ``summary.md`` and ``metrics.json``, ``curves.png``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from .train import EpochRecord


def final_table(runs: dict[int, list[EpochRecord]], settings: dict[str, Any]) -> str:
    """One row per N: the last epoch's test digit and sum accuracy, epochs and training time."""
    rows = [
        f"digit addition | estimator {settings.get('ste')} | {settings.get('test_examples')} test sums per N",
        "| N | test digit accuracy | test sum accuracy | digit acc ^ 2N | epochs | training s | solver s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, records in runs.items():
        last = records[-1]
        train_s = sum(r.train_s for r in records)
        solver_s = sum(r.solver_s for r in records)
        rows.append(
            f"| {n} | {last.digit_acc:.2%} | {last.sum_acc:.2%} | {last.digit_acc ** (2 * n):.2%} | "
            f"{len(records) - 1} | {train_s:.0f} | {solver_s:.0f} |"
        )
    return "\n".join(rows)


def epoch_table(records: list[EpochRecord]) -> str:
    rows = [
        "| epoch | loss | train s | solver s | train sums (forward solve) | test digits | test sums |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        rows.append(
            f"| {r.epoch} | {r.loss:.4f} | {r.train_s:.1f} | {r.solver_s:.1f} | {r.train_sum_acc:.1%} | "
            f"{r.digit_acc:.2%} | {r.sum_acc:.2%} |"
        )
    return "\n".join(rows)


def write_outputs(out: Path, runs: dict[int, list[EpochRecord]], settings: dict[str, Any]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    summary = out / "summary.md"
    parts = ["# Digit addition: run summary", "", final_table(runs, settings), ""]
    for n, records in runs.items():
        parts += [f"## N = {n}", "", epoch_table(records), ""]
    parts += ["## Settings", "", "```", json.dumps(settings, indent=2), "```", ""]
    summary.write_text("\n".join(parts))
    metrics = out / "metrics.json"
    payload = {"settings": settings, "runs": {str(n): [asdict(r) for r in recs] for n, recs in runs.items()}}
    metrics.write_text(json.dumps(payload, indent=2))
    curves = out / "curves.png"
    plot_curves(runs, curves)
    return [summary, metrics, curves]


def plot_curves(runs: dict[int, list[EpochRecord]], path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for n, records in runs.items():
        epochs = [r.epoch for r in records]
        left.plot(epochs, [100 * r.digit_acc for r in records], marker="o", label=f"N = {n}")
        right.plot(epochs, [100 * r.sum_acc for r in records], marker="o", label=f"N = {n}")
    for ax, title in ((left, "test digit accuracy (%)"), (right, "test sum accuracy (%)")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Digit addition from sums alone, through the solver")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
