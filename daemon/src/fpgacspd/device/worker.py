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
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TypeVar

import numpy as np
from fpgacsp_proto.isa import Program

from ..engine import BatchResult, SolveOptions
from ..errors import DeviceFailure, DeviceLost, Unavailable
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
        # Status reads registers only and must never wait behind a job, so it has a thread of its own.
        self._status_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fpgacsp-status")
        self._busy_since: float | None = None  # when the device call running now started (device thread)
        # Set on the device thread the moment a batch finds the device lost, before the loop hears of it: the
        # batches already queued on that thread must not run on the dead card. Cleared by a passing self-test.
        self._lost = threading.Event()
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
        return await loop.run_in_executor(self._executor, functools.partial(self._timed, fn, *args))

    def _timed(self, fn: Callable[..., T], *args: object) -> T:
        self._busy_since = time.monotonic()
        try:
            return fn(*args)
        finally:
            self._busy_since = None

    def thread_alive(self, within_s: float) -> bool:
        """The device thread is idle, or the call it runs showed life within ``within_s`` (the device's
        ``activity()``: the driver's wait loop ticks every poll interval while a job runs)."""
        since = self._busy_since
        if since is None:
            return True
        return time.monotonic() - max(since, self.device.activity()) < within_s

    @property
    def busy_s(self) -> float:
        """How long the device call running now has run; 0 when the device thread is idle."""
        since = self._busy_since
        return 0.0 if since is None else time.monotonic() - since

    async def run_batch(
        self,
        program_id: str,
        program: Program | Callable[[], Program],
        domains: np.ndarray,
        priorities: np.ndarray | None,
        options: SolveOptions,
        deadline: float | None = None,
    ) -> BatchResult:
        """One batch. The device recovers from faults itself; what still fails fails this batch only.

        ``program`` may be a function that returns it: it is then called on the device thread (a huge program
        held as its encoding is decoded there, on its first solve, not on the event loop).

        A batch queued behind the one that failed the device is not run on a FAILED device: it is answered
        UNAVAILABLE (retry elsewhere, or once the recovery brought the device back)."""
        self._refuse_if_failed()
        try:
            return await self.call(self._run_batch, program_id, program, domains, priorities, options, deadline)
        except DeviceFailure as e:
            log_event(_log, logging.ERROR, "device_batch_failed", error=e.message, program_id=program_id)
            if isinstance(e, DeviceLost):
                self.set_state(DeviceState.FAILED)
            raise

    def _run_batch(
        self,
        program_id: str,
        program: Program | Callable[[], Program],
        domains: np.ndarray,
        priorities: np.ndarray | None,
        options: SolveOptions,
        deadline: float | None,
    ) -> BatchResult:
        self._refuse_if_failed()  # again on the device thread: it may have failed while this batch waited
        if callable(program):
            program = program()
        try:
            return self.device.run_batch(program_id, program, domains, priorities, options, deadline)
        except DeviceLost:
            self._lost.set()
            raise

    def _refuse_if_failed(self) -> None:
        if self._lost.is_set() or self.state == DeviceState.FAILED:
            raise Unavailable("device: failed; the daemon is trying to recover it (see fpgacsp status); retry")

    def _self_test(self) -> SelfTestReport:
        report = self.device.self_test()
        if report.passed:
            self._lost.clear()
        return report

    async def self_test(self) -> SelfTestReport:
        report = await self.call(self._self_test)
        self._after_self_test(report)
        return report

    async def reset(self) -> SelfTestReport:
        """Reset and self-test in ONE device-thread call, so no batch runs between them."""
        previous = self.state
        self.set_state(DeviceState.RESETTING)
        self.device.abort_running()  # a long search ahead of the reset on the device thread stops at its next node

        def reset_and_test() -> SelfTestReport:
            self.device.reset()
            return self._self_test()

        try:
            report = await self.call(reset_and_test)
        except Exception:
            self.set_state(previous if previous == DeviceState.DRAINING else DeviceState.FAILED)
            raise
        self._after_self_test(report)
        return report

    async def status(self) -> DeviceInfo:
        """The device's status, read on the status thread: never behind a running job."""
        loop = asyncio.get_running_loop()
        info = await loop.run_in_executor(self._status_executor, self.device.status)
        return replace(info, busy_s=self.busy_s)

    def _after_self_test(self, report: SelfTestReport) -> None:
        if self.state == DeviceState.DRAINING:
            return
        self.set_state(DeviceState.READY if report.passed else DeviceState.FAILED)

    def close(self) -> None:
        """Abort the running batch, drop queued calls, stop the threads and release the device."""
        if self._closed.is_set():
            return
        self._closed.set()
        self.device.abort()  # a long search must not hold the stop: the card aborts it at its next node
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._status_executor.shutdown(wait=True)
        self.device.close()
