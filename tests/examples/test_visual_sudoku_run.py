"""Visual Sudoku end to end through a real ``fpgacspd``: a few training steps of each regime, the summary and
the plots written; and the joint inference corrects a misread the two-stage pipeline cannot."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import fpgacsp
import pytest
import torch
from daemon_process import DaemonProcess

from examples.visual_sudoku.boards import generate_boards
from examples.visual_sudoku.cli import main
from examples.visual_sudoku.inference import JointSolver


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    with DaemonProcess() as d:
        yield d
        assert d.alive(), d.log_text()


@pytest.mark.parametrize(
    ("regime", "ste", "learns"),
    [
        ("a", "identity", True),
        ("b", "abduction", True),  # regime b's default: learns from the solver alone
        ("b", "interpolation", False),  # the other estimators: well formed, not expected to learn in 18 steps
        ("b", "perturbed", False),
    ],
)
def test_short_run_through_daemon(daemon: DaemonProcess, tmp_path: Path, regime: str, ste: str, learns: bool) -> None:
    args = ["--target", daemon.address, "--regime", regime, "--ste", ste, "--train-boards", "48", "--lr", "3e-3"]
    args += ["--test-boards", "16", "--epochs", "3", "--batch-size", "8", "--samples", "2", "--no-progress"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    for name in ("summary.md", "metrics.json", "curves.png", "boards.png", "cnn.pt"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    epochs = metrics["epochs"]
    assert [e["epoch"] for e in epochs] == [0, 1, 2, 3]
    assert all(e["steps"] == 6 for e in epochs[1:])
    assert sum(epochs[-1]["test"]["status"].values()) == 16
    assert metrics["settings"]["ste"] == ste
    # the solver's share of training, from layer.info (forward and backward): some, never more than all of it
    assert all(0 < e["solver_s"] < e["train_s"] for e in epochs[1:]), epochs
    if learns:
        losses = [e["loss"] for e in epochs[1:]]
        assert losses[-1] < losses[0], losses  # the training loss falls
        assert epochs[-1]["test"]["read_acc"] > epochs[0]["test"]["read_acc"] + 0.2  # unseen digits read better
    if ste == "abduction":
        assert epochs[-1]["extra"]["abduced"] == 1.0  # blanks fixed to the solution: always a labelling


def test_joint_inference_corrects_a_misread_the_two_stage_cannot() -> None:
    with fpgacsp.connect("local") as client:
        boards = generate_boards(client, 8, 36, seed=5)
        given = torch.from_numpy(boards.given)
        truth = torch.from_numpy(boards.solutions)
        logits = torch.nn.functional.one_hot(truth, 9).double() * 6.0 * given[..., None]
        cell = int(given[0].nonzero()[0])
        wrong = (int(truth[0, cell]) + 1) % 9
        logits[0, cell, wrong] = 7.0  # a misread: the truth keeps some probability
        out = JointSolver(client)(logits, given)
        solved = out.values.argmax(dim=-1)
        assert out.solved.all()
        assert torch.equal(solved, truth)
