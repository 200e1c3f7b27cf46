"""The worker that owns the device thread: the daemon's only path to the device.

A device is serial, so :class:`DeviceWorker` runs every device call on ONE dedicated thread, in submission
order, and hands the results back to the asyncio loop (the fast core and the driver's interrupt waits
release the GIL, so the loop keeps serving meanwhile). Fault recovery (reset, self-test, retry) happens
inside the device, on that thread; the worker tracks the state the health service and metrics show.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
from fpgacsp_proto.isa import Program

from ..engine import BatchResult, SolveOptions
from ..errors import DeviceFailure, DeviceLost
from ..logs import get_logger, log_event
from ..selftest import SelfTestReport
from .base import Device, DeviceInfo, DeviceState

T = TypeVar("T")
_log = get_logger("device")


class DeviceWorker:
    """Owns the device and its one thread; the daemon's only path to the device.

    ``state`` follows the device's life: STARTING until the first self-test passes, READY, RESETTING
    during a reset, FAILED when a self-test fails, DRAINING once shutdown began.
    """

    def __init__(self, device: Device) -> None:
        self.device = device
        self.state = DeviceState.STARTING
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fpgacsp-device")
        self._closed = threading.Event()
        self.on_state_change: Callable[[DeviceState], None] | None = None

    def set_state(self, state: DeviceState) -> None:
        if state != self.state:
            log_event(_log, logging.INFO, "device_state", state=state.name.lower(), previous=self.state.name.lower())
            self.state = state
            if self.on_state_change is not None:
                self.on_state_change(state)

    async def call(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` on the device thread, after every call submitted before it."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    async def run_batch(
        self,
        program_id: str,
        program: Program,
        domains: np.ndarray,
        priorities: np.ndarray | None,
        options: SolveOptions,
    ) -> BatchResult:
        """One batch. The device recovers from faults itself; what still fails fails this batch only."""
        try:
            return await self.call(self.device.run_batch, program_id, program, domains, priorities, options)
        except DeviceFailure as e:
            log_event(_log, logging.ERROR, "device_batch_failed", error=e.message, program_id=program_id)
            if isinstance(e, DeviceLost):
                self.set_state(DeviceState.FAILED)
            raise

    async def self_test(self) -> SelfTestReport:
        report = await self.call(self.device.self_test)
        self._after_self_test(report)
        return report

    async def reset(self) -> SelfTestReport:
        """Reset and self-test in ONE device-thread call, so no batch runs between them."""
        previous = self.state
        self.set_state(DeviceState.RESETTING)

        def reset_and_test() -> SelfTestReport:
            self.device.reset()
            return self.device.self_test()

        try:
            report = await self.call(reset_and_test)
        except Exception:
            self.set_state(previous if previous == DeviceState.DRAINING else DeviceState.FAILED)
            raise
        self._after_self_test(report)
        return report

    async def status(self) -> DeviceInfo:
        return await self.call(self.device.status)

    def _after_self_test(self, report: SelfTestReport) -> None:
        if self.state == DeviceState.DRAINING:
            return
        self.set_state(DeviceState.READY if report.passed else DeviceState.FAILED)

    def close(self) -> None:
        """Wait for the running call, then stop the thread and release the device."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._executor.shutdown(wait=True)
        self.device.close()
