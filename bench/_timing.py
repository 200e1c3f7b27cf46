"""Timing helpers shared by the serving benchmark's sections (bench/serve.py, bench/_device.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Rate:
    instances: int = 0
    seconds: float = 0.0
    calls: int = 0

    @property
    def per_s(self) -> float:
        return self.instances / self.seconds if self.seconds > 0 else 0.0


def windows(domains: np.ndarray, batch: int, count: int) -> list[np.ndarray]:
    """``count`` consecutive batches of ``batch`` puzzles, wrapping around the file."""
    n = len(domains)
    return [np.ascontiguousarray(domains[np.arange(i * batch, (i + 1) * batch) % n]) for i in range(count)]


def timed_rate(call: Callable[[np.ndarray], object], batches: Sequence[np.ndarray], budget: float, rate: Rate) -> None:
    """Call on the batches in turn for ``budget`` seconds (at least once), adding to ``rate``."""
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < budget or elapsed == 0.0:
        b = batches[rate.calls % len(batches)]
        call(b)
        rate.calls += 1
        rate.instances += len(b)
        elapsed = time.perf_counter() - start
    rate.seconds += elapsed
