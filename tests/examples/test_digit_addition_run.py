"""Digit addition end to end through a real ``fpgacspd``: a few epochs from sums alone for N = 1, then N = 2 from
its reader (``--curriculum``), the summary and the plot written, the loss falling and the reading of unseen digits
improving; and the task's data (sums of N-digit numbers, exact for N = 15) and evaluation checked on their own."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from daemon_process import DaemonProcess

from examples.digit_addition.cli import main
from examples.digit_addition.data import AdditionData, digit_split
from examples.digit_addition.train import _add_digits


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    with DaemonProcess() as d:
        yield d
        assert d.alive(), d.log_text()


def test_short_run_through_daemon_learns_from_sums(daemon: DaemonProcess, tmp_path: Path) -> None:
    args = ["--target", daemon.address, "--digits", "1", "2", "--epochs", "8", "1", "--train-images", "2000"]
    args += ["--test-examples", "200", "--lr", "3e-3", "--curriculum", "--no-progress", "--out", str(tmp_path)]
    assert main(args) == 0
    for name in ("summary.md", "metrics.json", "curves.png", "cnn_n1.pt", "cnn_n2.pt"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["settings"]["ste"] == "abduction" and metrics["settings"]["widening"] == "probability"
    one, two = metrics["runs"]["1"], metrics["runs"]["2"]
    assert [e["epoch"] for e in one] == list(range(9)) and [e["epoch"] for e in two] == [0, 1]
    assert all(e["steps"] == 32 for e in one[1:])  # 1000 sums in batches of 32
    assert all(0 < e["solver_s"] < e["train_s"] for e in one[1:]), one  # the solver's share, from layer.info
    assert all(e["extra"]["abduced"] == 1.0 for e in one[1:])  # every sum has a labelling
    # exploration, then exploitation: the sampled order's temperature falls linearly from 1 towards 0
    assert [e["extra"]["temperature"] for e in one[1:]] == pytest.approx([1 - i / 8 for i in range(8)])
    losses = [e["loss"] for e in one[1:]]
    assert losses[-1] < losses[0], losses
    # unseen handwriting, no digit label ever used: from one class for everything (about 3%) to well above chance
    assert one[0]["digit_acc"] < 0.1 < 0.2 < one[-1]["digit_acc"], one
    assert "| 2 |" in (tmp_path / "summary.md").read_text()
    # --curriculum: N = 2 starts from N = 1's reader (it reads digits at once) and explores no more
    assert two[0]["digit_acc"] > 0.2 and two[1]["extra"]["temperature"] == 0.0


def test_data_sums_are_exact_for_fifteen_digits() -> None:
    split = digit_split(seed=0)
    data = AdditionData(split.test, 50, 15, seed=3)
    weights = [10**i for i in range(15)]
    for row in range(50):
        a = sum(int(d) * w for d, w in zip(data.digits[row, :15], weights, strict=True))
        b = sum(int(d) * w for d, w in zip(data.digits[row, 15:], weights, strict=True))
        assert data.sums[row] == a + b
        assert sum(int(d) * 10**i for i, d in enumerate(data.sum_digits[row])) == a + b
    batch = data.batch(np.arange(4))
    assert batch.images.shape == (4, 30, 1, 8, 8) and batch.sum_digits.shape == (4, 16)
    # every digit's image is one of that digit: the pool's value at the drawn index
    assert (split.test.values[data.image_index] == data.digits).all()
    assert torch.equal(_add_digits(batch.digits[:, :15], batch.digits[:, 15:]), batch.sum_digits)
