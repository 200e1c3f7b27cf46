"""ConstraintLayer against a real ``fpgacspd`` process (TCP and Unix socket): the same answers as the local engine,
gradients, DataLoader workers connecting on their own, and the daemon's errors reaching the caller."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator

import pytest
import torch
from daemon_process import DaemonProcess
from fpgacsp import DeadlineExceededError, LocalSolver, Status, sudoku_program
from fpgacsp.torch_layer import ConfidentArgmax, ConstraintLayer, Threshold, TopK
from torch.utils.data import DataLoader, Dataset

PROGRAM = sudoku_program(2)
START_METHODS = [m for m in ("spawn", "fork") if m in multiprocessing.get_all_start_methods()]


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    with DaemonProcess(unix_socket=True) as d:
        yield d


@pytest.fixture(scope="module")
def solver() -> Iterator[LocalSolver]:
    with LocalSolver(threads=1) as s:
        yield s


def random_logits(seed: int, batch: int = 16) -> torch.Tensor:
    """From all-unsure (row 0) to confident (the last row), so the configurations below meet every status."""
    scale = torch.linspace(0, 3, batch)[:, None, None]
    return torch.randn(batch, 16, 4, generator=torch.Generator().manual_seed(seed)) * scale


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_daemon_answers_equal_local(daemon: DaemonProcess, solver: LocalSolver, transport: str) -> None:
    target = daemon.address if transport == "tcp" else daemon.unix_address
    x = random_logits(0)
    configs = [
        {"mode": "solve", "discretize": ConfidentArgmax(0.7), "priorities": True},
        {"mode": "solve", "discretize": TopK(3), "node_limit": 3},
        {"mode": "propagate", "discretize": Threshold(0.4)},
    ]
    seen: set[int] = set()
    for config in configs:
        remote = ConstraintLayer(PROGRAM, target=target, **config)  # type: ignore[arg-type]
        local = ConstraintLayer(PROGRAM, client=solver, **config)  # type: ignore[arg-type]
        got, want = remote(x), local(x)
        assert torch.equal(got.values, want.values), config
        assert torch.equal(got.status, want.status), config
        assert torch.equal(got.nodes, want.nodes), config
        seen.update(got.status.tolist())
        remote.close()
    assert seen == {s.value for s in Status}


def test_daemon_gradients(daemon: DaemonProcess) -> None:
    x = random_logits(1, batch=4).double().requires_grad_(True)
    layer = ConstraintLayer(PROGRAM, "solve", ConfidentArgmax(0.7), "relaxation", target=daemon.address)
    g = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(2))
    (grad,) = torch.autograd.grad(layer(x).values, x, g)
    (want,) = torch.autograd.grad(torch.softmax(x, dim=-1), x, g)
    torch.testing.assert_close(grad, want, rtol=0, atol=0)
    layer.close()


def test_daemon_deadline_reaches_the_caller(daemon: DaemonProcess) -> None:
    layer = ConstraintLayer(PROGRAM, target=daemon.address, timeout=1e-6)
    with pytest.raises(DeadlineExceededError):
        layer(torch.zeros(64, 16, 4))
    layer.close()


class RemoteDataset(Dataset[tuple[torch.Tensor, torch.Tensor, int]]):
    def __init__(self, layer: ConstraintLayer, logits: torch.Tensor) -> None:
        self.layer = layer
        self.logits = logits

    def __len__(self) -> int:
        return len(self.logits)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        out = self.layer(self.logits[i : i + 1])
        return out.values[0], out.status[0], os.getpid()


@pytest.mark.parametrize("start_method", START_METHODS)
def test_daemon_dataloader_workers(daemon: DaemonProcess, start_method: str) -> None:
    """Each worker opens its own channel; with fork, the parent's open channel is inherited and left alone."""
    x = random_logits(3, batch=6)
    layer = ConstraintLayer(PROGRAM, "solve", ConfidentArgmax(0.8), target=daemon.address)
    want = layer(x)  # the parent's channel is open (and has been used) before the workers start
    loader = DataLoader(RemoteDataset(layer, x), batch_size=2, num_workers=2, multiprocessing_context=start_method)
    values, status, pids = (torch.cat(parts) for parts in zip(*loader, strict=True))
    assert torch.equal(values, want.values) and torch.equal(status, want.status)
    assert os.getpid() not in pids.tolist()
    assert torch.equal(layer(x).values, want.values)  # the parent's connection still works afterwards
    layer.close()
