"""The transport seam: what the driver may do to a device, and nothing more.

A transport gives the driver three things a PCIe function has: 32-bit reads and writes of BAR0 (the
register map), DMA buffers (host memory pinned and mapped for the device, known to the device by an
I/O virtual address), and interrupt vectors delivered as eventfds. ``sim`` implements them against the
device model in this process; ``vfio`` against a real card through Linux VFIO. The driver is the same.
"""

from __future__ import annotations

import os
import select
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from . import _regmap as regs


class TransportError(RuntimeError):
    """Setting up or talking to the device failed; the message says what to check."""


@dataclass(eq=False)
class DmaBuffer:
    """Host memory the device can read and write at ``iova``; ``data`` is the host's view of it.

    ``handle`` is the transport's own bookkeeping (the mmap of a VFIO buffer, for instance).
    """

    iova: int
    data: np.ndarray  # uint8[size], writable, page aligned
    handle: object = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return int(self.data.nbytes)


class Transport(Protocol):
    """BAR0 register access, DMA memory and interrupt eventfds of one device function."""

    name: str  # "sim" or "vfio"
    description: str  # for status and logs: the PCI address, or the model's parameters

    def read32(self, offset: int) -> int:
        """Read the 32-bit register at byte ``offset`` of BAR0."""
        ...

    def write32(self, offset: int, value: int) -> None:
        """Write the 32-bit register at byte ``offset`` of BAR0."""

    def alloc_dma(self, size: int) -> DmaBuffer:
        """Pinned, zeroed host memory of at least ``size`` bytes, mapped for the device."""
        ...

    def free_dma(self, buf: DmaBuffer) -> None:
        """Unmap and release ``buf``; the device must no longer use it."""

    def irq_fds(self) -> tuple[int, ...]:
        """One eventfd per interrupt vector (vector 0: completion, 1: error); the device signals them."""
        ...

    def function_reset(self) -> None:
        """The PCIe function-level reset: the last resort when a soft reset through CTRL does not take."""

    def close(self) -> None:
        """Release everything (buffers, interrupts, the device); idempotent."""


def check_bar_offset(offset: int) -> None:
    """A model transport's check of a BAR0 access (a real BAR is checked against its mapped size, vfio)."""
    if offset % 4 or not 0 <= offset < regs.BAR0_SIZE:
        raise TransportError(f"BAR0 access at {offset:#x}: must be 4-byte aligned and below {regs.BAR0_SIZE:#x}")


def wait_interrupt(fds: tuple[int, ...], timeout_s: float) -> tuple[int, ...]:
    """Wait up to ``timeout_s`` for any vector; return the vectors that fired, each acknowledged (read)."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    events = poller.poll(max(0.0, timeout_s) * 1000.0)
    fired = []
    for fd, _ in events:
        try:
            os.eventfd_read(fd)
        except BlockingIOError:  # raced with another reader: nothing pending any more
            continue
        fired.append(fds.index(fd))
    return tuple(sorted(fired))
