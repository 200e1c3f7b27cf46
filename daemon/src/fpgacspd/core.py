"""The daemon's working parts wired together, with no gRPC: what each RPC does once its request is decoded.

The servicers (``service.py``) only decode, call one method here, and encode; everything here is plain
asyncio and is tested without a socket.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

import numpy as np
from fpgacsp_proto.isa import Program, Status

from . import __version__
from .batcher import DRAINING, Batcher, SolveAnswer
from .config import Config
from .device import DeviceInfo, DeviceState, DeviceWorker
from .engine import BatchResult, SolveOptions
from .errors import Unavailable
from .metrics import Metrics
from .registry import ProgramEntry, ProgramRegistry
from .selftest import SelfTestReport

_STATUS_NAMES = {int(s): s.name.lower() for s in Status}


class Core:
    def __init__(self, config: Config, worker: DeviceWorker, metrics: Metrics | None = None) -> None:
        self.config = config
        self.worker = worker
        self.metrics = metrics or Metrics()
        self.registry = ProgramRegistry(config.registry, on_remove=self._on_remove)
        self.batcher = Batcher(config.batching, self._run_batch, self.metrics)
        self.started = time.monotonic()
        self.version = __version__
        # kept by service.rpc, so a shutdown knows when every handler has answered and calls stopped coming
        self.active_rpcs = 0
        self.last_rpc_at = 0.0
        self._background: set[asyncio.Task[object]] = set()
        self.state_listeners: list[Callable[[DeviceState], None]] = [self.metrics.set_device_state]
        worker.on_state_change = self._state_changed
        self.metrics.set_device_state(worker.state)

    def _state_changed(self, state: DeviceState) -> None:
        for listener in self.state_listeners:
            listener(state)

    @property
    def state(self) -> DeviceState:
        return self.worker.state

    def start(self) -> None:
        self.batcher.start()

    # -- programs ------------------------------------------------------------------------------------------

    def register(self, program: Program, pin: bool) -> tuple[ProgramEntry, bool]:
        self._refuse_when_draining()
        entry, created = self.registry.register(program, pin)
        self.metrics.set_programs_loaded(len(self.registry))
        return entry, created

    def release(self, program_id: str) -> bool:
        released = self.registry.release(program_id)
        self.metrics.set_programs_loaded(len(self.registry))
        return released

    def _on_remove(self, entry: ProgramEntry) -> None:
        """Free the device slot in the background (through the device thread, after the batches before it)."""
        try:
            task = asyncio.get_running_loop().create_task(
                self.worker.call(self.worker.device.unload_program, entry.program_id)
            )
        except RuntimeError:  # no loop (plain unit tests): nothing is resident
            return
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- solving -------------------------------------------------------------------------------------------

    def check_available(self) -> None:
        """Solve is served while the device is READY or RESETTING (queued work then waits for the reset)."""
        state = self.worker.state
        if state in (DeviceState.READY, DeviceState.RESETTING) and self.batcher.accepting:
            return
        if state == DeviceState.STARTING:
            raise Unavailable("device: starting (the self-test has not passed yet); retry shortly")
        if state == DeviceState.FAILED:
            raise Unavailable("device: failed its self-test; an operator must reset it (Admin.Reset)")
        raise Unavailable(self.batcher.refusal or DRAINING)

    def _refuse_when_draining(self) -> None:
        if not self.batcher.accepting:
            raise Unavailable(self.batcher.refusal or DRAINING)

    async def solve(
        self,
        entry: ProgramEntry,
        domains: np.ndarray,
        priorities: np.ndarray | None,
        options: SolveOptions,
        timeout_s: float | None = None,
    ) -> SolveAnswer:
        """Queue one request; ``timeout_s`` is what is left of the caller's deadline."""
        self.check_available()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        answer = await self.batcher.solve(entry, domains, priorities, options, deadline)
        self.metrics.observe_request(answer.total_s)
        statuses = Counter(answer.result.status.tolist())
        self.metrics.count_statuses({_STATUS_NAMES.get(s, str(s)): n for s, n in statuses.items()})
        return answer

    async def _run_batch(
        self, entry: ProgramEntry, domains: np.ndarray, priorities: np.ndarray | None, options: SolveOptions
    ) -> BatchResult:
        return await self.worker.run_batch(entry.program_id, entry.program, domains, priorities, options)

    # -- admin -------------------------------------------------------------------------------------------------

    async def device_info(self) -> DeviceInfo:
        return await self.worker.status()

    def uptime_s(self) -> float:
        return time.monotonic() - self.started

    async def self_test(self) -> SelfTestReport:
        return await self.worker.self_test()

    async def reset(self) -> SelfTestReport:
        return await self.worker.reset()

    async def drain(self) -> None:
        self.worker.set_state(DeviceState.DRAINING)
        await self.batcher.drain()
