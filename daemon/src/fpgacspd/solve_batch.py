"""One Solve request as one value: built once when the request is decoded, carried unchanged to the device.

:class:`SolveBatch` holds the program entry (with its canonical encoding), the u64 domains, the priorities and
the options, each checked once by :func:`fpgacspd.wire.decode_solve`. The batcher queues these values without
looking inside them (it needs a ``key`` and a ``size``); merging requests into one device batch and splitting
the device's answer back into one result per request live here, next to the data.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .engine import BatchResult, SolveOptions
from .errors import DeviceFailure
from .registry import ProgramEntry


@dataclass(frozen=True)
class BatchKey:
    """Requests with equal keys may share a device batch: the same program with the same options."""

    program_id: str
    options: SolveOptions


@dataclass(frozen=True, eq=False)
class SolveBatch:
    entry: ProgramEntry
    domains: np.ndarray  # uint64[B, N], bits below the domain size only
    priorities: np.ndarray | None  # uint8[B, N, D]
    options: SolveOptions

    @property
    def size(self) -> int:
        return len(self.domains)

    @property
    def key(self) -> BatchKey:
        return BatchKey(self.entry.program_id, self.options)

    @staticmethod
    def merge(items: Sequence[SolveBatch]) -> SolveBatch:
        """One device batch of requests with the same key, their rows in order. Requests without priorities get
        all zeros when others have some, which branch exactly like no priorities (lowest value first)."""
        first = items[0]
        if len(items) == 1:
            return first
        if any(item.key != first.key for item in items):
            raise ValueError("solve batch: only requests of one program and one set of options merge")
        domains = np.concatenate([item.domains for item in items])
        priorities = None
        if any(item.priorities is not None for item in items):
            e = first.entry
            priorities = np.concatenate(
                [
                    item.priorities
                    if item.priorities is not None
                    else np.zeros((item.size, e.num_vars, e.domain_size), np.uint8)
                    for item in items
                ]
            )
        return SolveBatch(first.entry, domains, priorities, first.options)

    @staticmethod
    def split(result: BatchResult, items: Sequence[SolveBatch]) -> list[BatchResult]:
        """The device's answer to :meth:`merge` of ``items``, as one result per item (views, no copies)."""
        total = sum(item.size for item in items)
        if result.batch_size != total:
            raise DeviceFailure(f"device: returned {result.batch_size} rows for a batch of {total}")
        if len(items) == 1:
            return [result]
        parts, offset = [], 0
        for item in items:
            rows = slice(offset, offset + item.size)
            offset += item.size
            part = BatchResult(
                result.domains[rows], result.status[rows], result.nodes[rows], result.solutions[rows],
                result.sweeps[rows],
            )  # fmt: skip
            parts.append(part)
        return parts


RunMerged = Callable[[SolveBatch, "float | None"], Awaitable[BatchResult]]


def merging(run: RunMerged) -> Callable[[list[SolveBatch], float | None], Awaitable[list[BatchResult]]]:
    """The batcher's run function over ``run``, which solves one merged batch (on the device worker): merge the
    items, run them as one batch, split the answer into one result per item."""

    async def run_items(items: list[SolveBatch], deadline: float | None) -> list[BatchResult]:
        return SolveBatch.split(await run(SolveBatch.merge(items), deadline), items)

    return run_items
