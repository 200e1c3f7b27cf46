"""The device interface, its engine-backed implementation, and the worker that owns the device thread.

``Device`` is what the batcher and the admin plane see: load/unload a program, run one batch, status,
self-test, reset. Today's implementation, :class:`EngineDevice`, runs the engine's fast core; the
register-level driver of the next issue slots in beneath the same interface. A device is serial, so
:class:`DeviceWorker` runs every device call on ONE dedicated thread, in submission order, and hands the
results back to the asyncio loop (the fast core releases the GIL, so the loop keeps serving meanwhile).
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

import numpy as np
from fpgacsp_proto.isa import Program

from .engine import BatchResult, CompiledProgram, FastEngine, SolveOptions
from .errors import DeviceFailure
from .logs import get_logger, log_event
from .selftest import SelfTestReport, run_self_test

T = TypeVar("T")
_log = get_logger("device")


class DeviceState(enum.IntEnum):
    """Same values as ``fpgacsp.v1.DeviceState``."""

    STARTING = 1
    READY = 2
    RESETTING = 3
    FAILED = 4
    DRAINING = 5


@dataclass(frozen=True)
class DeviceInfo:
    backend: str
    description: str
    batches: int = 0
    instances: int = 0
    nodes: int = 0
    sweeps: int = 0
    resets: int = 0
    faults: int = 0
    programs_loaded: int = 0


class Device(Protocol):
    """A serial constraint-propagation device. Calls come from one thread at a time (the worker's)."""

    backend: str

    def load_program(self, program_id: str, program: Program) -> None:
        """Make ``program`` resident (idempotent)."""

    def unload_program(self, program_id: str) -> None:
        """Free its slot; unknown ids are ignored."""

    def run_batch(
        self,
        program_id: str,
        program: Program,
        domains: np.ndarray,
        priorities: np.ndarray | None,
        options: SolveOptions,
    ) -> BatchResult:
        """Solve ``domains`` (uint64[B, N]); loads the program first when it is not resident."""
        ...

    def status(self) -> DeviceInfo: ...

    def self_test(self) -> SelfTestReport:
        """Known answers through the device (:func:`fpgacspd.selftest.run_self_test` for a model device)."""
        ...

    def reset(self) -> None:
        """Return to the power-on state (resident programs are dropped and reloaded on demand)."""

    def close(self) -> None: ...


class EngineDevice:
    """The fast core as a device: a program slot is a compiled program, a batch is one engine call."""

    backend = "engine"

    def __init__(self, threads: int = 0) -> None:
        self._engine = FastEngine(threads=threads or None)
        self._programs: dict[str, CompiledProgram] = {}
        self._info = DeviceInfo(self.backend, f"fast simulator core (numba), {self._engine.threads} threads")

    def load_program(self, program_id: str, program: Program) -> None:
        if program_id not in self._programs:
            self._programs[program_id] = self._engine.compile(program)

    def unload_program(self, program_id: str) -> None:
        self._programs.pop(program_id, None)

    def run_batch(
        self,
        program_id: str,
        program: Program,
        domains: np.ndarray,
        priorities: np.ndarray | None,
        options: SolveOptions,
    ) -> BatchResult:
        self.load_program(program_id, program)
        res = self._engine.solve(self._programs[program_id], domains, priorities, options)
        info = self._info
        self._info = replace(
            info,
            batches=info.batches + 1,
            instances=info.instances + res.batch_size,
            nodes=info.nodes + int(res.nodes.sum()),
            sweeps=info.sweeps + int(res.sweeps.sum()),
        )
        return res

    def status(self) -> DeviceInfo:
        return replace(self._info, programs_loaded=len(self._programs))

    def self_test(self) -> SelfTestReport:
        return run_self_test(self)

    def reset(self) -> None:
        self._programs.clear()
        self._info = replace(self._info, resets=self._info.resets + 1)

    def close(self) -> None:
        self._engine.close()


def make_device(backend: str, threads: int) -> Device:
    if backend == "engine":
        return EngineDevice(threads)
    raise ValueError(f"device.backend: unknown backend {backend!r}")


class DeviceWorker:
    """Owns the device and its one thread; the daemon's only path to the device.

    ``state`` follows the device's life: STARTING until the first self-test passes, READY, RESETTING
    during a reset, FAILED when a self-test fails, DRAINING once shutdown began.
    """

    def __init__(self, device: Device) -> None:
        self.device = device
        self.state = DeviceState.STARTING
        self.faults = 0
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
        """One batch; on a fault, reset the device and run it once more (solving is pure, so a retry is safe)."""
        try:
            return await self.call(self.device.run_batch, program_id, program, domains, priorities, options)
        except Exception as first:
            self.faults += 1
            log_event(
                _log, logging.ERROR, "device_fault", error=repr(first), program_id=program_id, instances=len(domains)
            )
            try:
                await self.call(self.device.reset)
                return await self.call(self.device.run_batch, program_id, program, domains, priorities, options)
            except Exception as second:
                self.faults += 1
                log_event(_log, logging.ERROR, "device_batch_failed", error=repr(second), program_id=program_id)
                raise DeviceFailure(f"device: batch failed after a reset and a retry ({second})") from second

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
        info = await self.call(self.device.status)
        return replace(info, faults=info.faults + self.faults)

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
