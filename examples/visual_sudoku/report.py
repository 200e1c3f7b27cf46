"""What a run leaves behind: the summary table on stdout, ``summary.md`` and ``metrics.json``, and PNG plots.

Plots use matplotlib's Agg backend (files only, no display): ``curves.png`` (learning curves) and ``boards.png``
(a few test boards: the digit images, the network's reading, the solver's answer and the truth).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from .evaluate import Sample
from .train import EpochRecord


def summary_table(records: list[EpochRecord]) -> str:
    """Per-epoch table (markdown, readable on a terminal too)."""
    head = (
        "| epoch | loss | train s | solver s | test read | test cells | test boards | two-stage | p^clues | "
        "statuses |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    )
    rows = [head]
    for r in records:
        t = r.test
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(t.status.items()))
        rows.append(
            f"| {r.epoch} | {r.loss:.4f} | {r.train_s:.1f} | {r.solver_s:.1f} | {t.read_acc:.2%} | {t.cell_acc:.2%} "
            f"| {t.board_acc:.1%} | {t.two_stage_acc:.1%} | {t.ceiling:.1%} | {statuses} |"
        )
    return "\n".join(rows)


def final_summary(records: list[EpochRecord], settings: dict[str, Any]) -> str:
    """The headline numbers of the last epoch, the settings and the times."""
    last = records[-1].test
    train_s = sum(r.train_s for r in records)
    solver_s = sum(r.solver_s for r in records)
    lines = [
        f"regime {settings.get('regime')} | {last.boards} test boards, {last.clues:.1f} clues | "
        f"{len(records) - 1} epochs, {train_s:.0f} s training ({solver_s:.0f} s of it in the solver), "
        f"{records[-1].elapsed_s:.0f} s in all",
        f"  reading (given cells, argmax) : {last.read_acc:.2%}",
        f"  solved board, cells           : {last.cell_acc:.2%}  (blank cells {last.blank_acc:.2%})",
        f"  solved board, whole boards    : {last.board_acc:.2%}   <- inference through the solver",
        f"  two-stage (read, then solve)  : {last.two_stage_acc:.2%}   (ceiling p^clues = {last.ceiling:.2%})",
        f"  solver statuses               : {_counts(last.status)}   two-stage: {_counts(last.two_stage_status)}",
        f"  solver time on the test set   : {last.solve_s:.2f} s ({last.nodes_mean:.1f} nodes per board)",
    ]
    return "\n".join(lines)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"


def write_outputs(out: Path, records: list[EpochRecord], sample: Sample, settings: dict[str, Any]) -> list[Path]:
    """Write ``summary.md``, ``metrics.json``, ``curves.png`` and ``boards.png`` under ``out``; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    summary = out / "summary.md"
    summary.write_text(
        f"# Visual Sudoku, regime {settings.get('regime')}\n\n```\n{final_summary(records, settings)}\n```\n\n"
        f"{summary_table(records)}\n\nSettings: `{json.dumps(settings, sort_keys=True)}`\n",
        encoding="utf-8",
    )
    metrics = out / "metrics.json"
    metrics.write_text(
        json.dumps({"settings": settings, "epochs": [asdict(r) for r in records]}, indent=1), encoding="utf-8"
    )
    curves, boards = out / "curves.png", out / "boards.png"
    plot_curves(records, curves)
    plot_boards(sample, boards)
    return [summary, metrics, curves, boards]


def plot_curves(records: list[EpochRecord], path: Path) -> None:
    """Training loss; test reading, board (through the solver) and two-stage accuracy, with the p^clues cap."""
    epochs = [r.epoch for r in records]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
    ax0.plot(epochs[1:], [r.loss for r in records[1:]], marker="o")
    ax0.set(xlabel="epoch", ylabel="training loss", title="loss")
    for key, label in [
        ("read_acc", "reading (given cells)"),
        ("board_acc", "boards, through the solver"),
        ("two_stage_acc", "boards, two-stage"),
        ("ceiling", "two-stage ceiling p^clues"),
    ]:
        style = "--" if key == "ceiling" else "-"
        ax1.plot(epochs, [getattr(r.test, key) for r in records], style, marker="o", label=label)
    ax1.set(xlabel="epoch", ylabel="test accuracy", title="test accuracy", ylim=(0, 1.02))
    ax1.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_boards(sample: Sample, path: Path, max_boards: int = 4) -> None:
    """Each board: the given cells' images; small blue digit = the network's reading; big digit = the solver's
    answer (green when right, red with the truth in brackets when wrong)."""
    k = min(len(sample.given), max_boards)
    fig, axes = plt.subplots(1, max(k, 1), figsize=(4.2 * max(k, 1), 4.6), squeeze=False)
    for i, ax in enumerate(axes[0]):
        ax.axis("off")
        if i >= k:
            continue
        canvas = np.ones((72, 72))
        for cell in np.flatnonzero(sample.given[i]).tolist():
            r, c = divmod(cell, 9)
            canvas[8 * r : 8 * r + 8, 8 * c : 8 * c + 8] = 1.0 - sample.images[i, cell]
        ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, extent=(0, 72, 72, 0))
        for j in range(10):
            width = 2.0 if j % 3 == 0 else 0.4
            ax.axhline(8 * j, color="black", lw=width)
            ax.axvline(8 * j, color="black", lw=width)
        for cell in range(81):
            _annotate(ax, sample, i, cell)
        verdict = "solved correctly" if sample.board_ok[i] else "wrong"
        ax.set_title(f"test board {i}: {verdict}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _annotate(ax: Any, sample: Sample, i: int, cell: int) -> None:
    r, c = divmod(cell, 9)
    x, y = 8 * c, 8 * r
    solved, truth = int(sample.solved[i, cell]), int(sample.truth[i, cell])
    if sample.given[i, cell]:
        ax.text(x + 0.5, y + 2.2, str(int(sample.read[i, cell]) + 1), color="tab:blue", fontsize=6)
        if solved != truth:
            ax.text(x + 4.5, y + 7.5, _digit(solved), color="tab:red", fontsize=7, ha="center")
        return
    ok = solved == truth
    text = _digit(solved) if ok else f"{_digit(solved)}({truth + 1})"
    ax.text(x + 4, y + 5.5, text, color="tab:green" if ok else "tab:red", fontsize=9 if ok else 6, ha="center")


def _digit(value: int) -> str:
    return "?" if value < 0 else str(value + 1)
