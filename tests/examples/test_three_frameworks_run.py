"""The three-framework example through a real ``fpgacspd``: PyTorch, JAX and TensorFlow train the same 4x4 visual
Sudoku from the solver alone, and their loss curves are the same, step by step."""

from __future__ import annotations

from collections.abc import Iterator

import fpgacsp
import numpy as np
import pytest
from daemon_process import DaemonProcess

from examples.three_frameworks.train import FRAMEWORKS, make_task, report


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    with DaemonProcess() as d:
        yield d
        assert d.alive(), d.log_text()


def test_three_frameworks_learn_the_same_loss_curve_through_one_daemon(daemon: DaemonProcess) -> None:
    with fpgacsp.connect(daemon.address) as client:
        task = make_task(client, boards=24, seed=0, dtype="float32")
    runs = [run(task, daemon.address, 12, 0.5) for run in FRAMEWORKS.values()]
    assert [r.framework for r in runs] == ["PyTorch", "JAX", "TensorFlow"]
    curves = np.array([r.losses for r in runs])
    assert curves.shape == (3, 12)
    assert (curves == curves[0]).all(), curves  # the layer is one core: the same solves, the same gradients
    assert curves[0, -1] < curves[0, 0]  # and it learns: the loss on the blanks falls
    assert max(abs(r.weights - runs[0].weights).max() for r in runs) < 1e-4  # only the reader's matmuls differ
    text = report(runs, every=4)
    assert "| 12 | " in text and "largest difference between the loss curves: 0;" in text
