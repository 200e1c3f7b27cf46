"""The ``sim`` transport: the simulated card plugged into this process.

What VFIO gives the driver on a real host (BAR0 access, DMA-mapped host memory, MSI-X eventfds, function
reset), this gives it against :class:`SimDevice`. DMA buffers are numpy arrays entered in an IOMMU table
under an I/O virtual address; the card reaches them only by that address, so a driver that hands it a
wrong address sees the same BAD_ADDRESS / DMA error a card would report.
"""

from __future__ import annotations

import bisect
import os
import threading

import numpy as np

from ..transport import DmaBuffer, TransportError, check_bar_offset
from .faults import FaultPlan
from .model import DmaFault, SimDevice, SimParams

_PAGE = 4096
_IOVA_BASE = 0x1_0000_0000  # above 4 GiB, so a driver that drops the high half of an address is caught


class SimTransport:
    """BAR0, IOMMU-mapped DMA buffers and interrupt eventfds of one :class:`SimDevice`."""

    name = "sim"

    def __init__(self, params: SimParams | None = None, faults: FaultPlan | None = None) -> None:
        self.params = params or SimParams()
        self._lock = threading.Lock()
        self._starts: list[int] = []  # sorted iovas of mapped buffers
        self._buffers: dict[int, DmaBuffer] = {}
        self._next_iova = _IOVA_BASE
        self._fds = tuple(os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) for _ in range(2))
        self.card = SimDevice(self._resolve, self._fds, self.params, faults or FaultPlan())
        self.description = f"simulated card (fast core, {self.card.engine_threads} thread(s))"
        self._closed = False

    def read32(self, offset: int) -> int:
        check_bar_offset(offset)
        return self.card.read32(offset)

    def write32(self, offset: int, value: int) -> None:
        check_bar_offset(offset)
        self.card.write32(offset, value & 0xFFFFFFFF)

    def alloc_dma(self, size: int) -> DmaBuffer:
        if size < 1:
            raise TransportError(f"alloc_dma: size must be positive, got {size}")
        pages = -(-size // _PAGE) * _PAGE
        with self._lock:
            buf = DmaBuffer(self._next_iova, np.zeros(pages, dtype=np.uint8))
            self._next_iova += pages + _PAGE  # a guard page between buffers: overruns do not alias
            bisect.insort(self._starts, buf.iova)
            self._buffers[buf.iova] = buf
        return buf

    def free_dma(self, buf: DmaBuffer) -> None:
        with self._lock:
            if self._buffers.pop(buf.iova, None) is not None:
                self._starts.remove(buf.iova)

    def irq_fds(self) -> tuple[int, ...]:
        return self._fds

    def function_reset(self) -> None:
        self.card.power_on()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.card.close()
        for fd in self._fds:
            os.close(fd)

    def _resolve(self, iova: int, nbytes: int) -> np.ndarray:
        """The card's IOMMU: host memory at [iova, iova + nbytes) or a DMA fault."""
        with self._lock:
            i = bisect.bisect_right(self._starts, iova) - 1
            buf = self._buffers[self._starts[i]] if i >= 0 else None
        if buf is None or iova + nbytes > buf.iova + buf.size or nbytes < 0:
            raise DmaFault(f"no mapping covers iova {iova:#x} + {nbytes}")
        start = iova - buf.iova
        return buf.data[start : start + nbytes]
