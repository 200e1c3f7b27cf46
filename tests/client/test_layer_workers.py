"""ConstraintLayer inside DataLoader worker processes (spawn and fork): the layer pickles as a target, each worker
connects on its own, and the answers equal the main process's."""

from __future__ import annotations

import multiprocessing
import os

import pytest
import torch
from fpgacsp import Status, sudoku_program
from fpgacsp.torch_layer import ConfidentArgmax, ConstraintLayer
from torch.utils.data import DataLoader, Dataset

PROGRAM = sudoku_program(2)
START_METHODS = [m for m in ("spawn", "fork") if m in multiprocessing.get_all_start_methods()]


class SolvingDataset(Dataset[tuple[torch.Tensor, torch.Tensor, int, bool]]):
    """Item ``i``: the layer's answer for logits row ``i``, solved in whichever process loads it."""

    def __init__(self, layer: ConstraintLayer, logits: torch.Tensor) -> None:
        self.layer = layer
        self.logits = logits

    def __len__(self) -> int:
        return len(self.logits)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int, bool]:
        out = self.layer(self.logits[i : i + 1])
        # the connection the layer used was opened in this process, not inherited from the parent
        own_connection = self.layer._pid == os.getpid()
        return out.values[0], out.status[0], os.getpid(), own_connection


def test_start_methods_available() -> None:
    assert "spawn" in START_METHODS  # every platform has spawn; fork is added where the OS has it


@pytest.mark.parametrize("start_method", START_METHODS)
def test_dataloader_workers_solve(start_method: str) -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 16, 4, generator=gen) * 4
    layer = ConstraintLayer(PROGRAM, "solve", ConfidentArgmax(0.8), target="local", node_limit=10_000)
    want = layer(logits)  # also connects the parent: a forked worker inherits that connection and must not use it
    assert layer._connected is not None
    loader = DataLoader(
        SolvingDataset(layer, logits),
        batch_size=2,
        num_workers=2,
        multiprocessing_context=start_method,
    )
    values, status, pids, own = (torch.cat(parts) for parts in zip(*loader, strict=True))
    assert torch.equal(values, want.values)
    assert torch.equal(status, want.status)
    assert set(status.tolist()) <= {s.value for s in Status}
    assert os.getpid() not in pids.tolist() and len(set(pids.tolist())) == 2
    assert bool(own.all())
    layer.close()
