"""The daemon's working parts wired together, with no gRPC: what each RPC does once its request is decoded.

The servicers (``service.py``) only decode, call one method here, and encode; everything here is plain
asyncio and is tested without a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable

from fpgacsp_proto.isa import Status

from . import __version__, program_body
from .batcher import DRAINING, Batcher, SolveAnswer
from .config import Config
from .device import DeviceInfo, DeviceState, DeviceWorker
from .engine import BatchResult
from .errors import Unavailable
from .logs import get_logger, log_event
from .metrics import Metrics
from .preparer import Preparer
from .registry import PreparedProgram, ProgramEntry, ProgramRegistry
from .selftest import SelfTestReport
from .solve_batch import SolveBatch, merging

_STATUS_NAMES = {int(s): s.name.lower() for s in Status}
_log = get_logger("core")
# A registration this small (a 9x9 Sudoku is 1.5 kB, 64 KiB about 6,000 constraints) is decoded on the event loop
# in a few milliseconds at most, and never waits behind a huge one; a larger one goes to a child process.
INLINE_REGISTRATION_BYTES = 64 << 10


class Core:
    def __init__(self, config: Config, worker: DeviceWorker, metrics: Metrics | None = None) -> None:
        self.config = config
        self.worker = worker
        self.metrics = metrics or Metrics()
        self.registry = ProgramRegistry(config.registry, on_remove=self._on_remove)
        self._preparer = Preparer()  # large registrations: in a child process, one at a time
        self.batcher: Batcher[SolveBatch, BatchResult] = Batcher(
            config.batching, merging(self._run_merged), self.metrics
        )
        self.started = time.monotonic()
        self.version = __version__
        self._background: set[asyncio.Task[object]] = set()
        self._recovery: asyncio.Task[None] | None = None
        self.state_listeners: list[Callable[[DeviceState], None]] = [self.metrics.set_device_state]
        worker.on_state_change = self._state_changed
        self.metrics.set_device_state(worker.state)

    def _state_changed(self, state: DeviceState) -> None:
        for listener in self.state_listeners:
            listener(state)
        if state == DeviceState.FAILED and (self._recovery is None or self._recovery.done()):
            with contextlib.suppress(RuntimeError):  # no loop (plain unit tests): nobody to recover it
                self._recovery = asyncio.get_running_loop().create_task(self._recover(), name="fpgacsp-recovery")

    async def _recover(self) -> None:
        """Bring a FAILED device back: reset and self-test it after a backoff that doubles per failed attempt
        (``device.recovery_backoff_ms`` up to ``device.recovery_backoff_max_ms``), until one passes, an admin
        reset did it, or the daemon stops. Health stays NOT_SERVING meanwhile; the metrics show the attempts
        and the wait before the next one."""
        device = self.config.device
        delay, attempt = device.recovery_backoff_ms / 1000, 0
        while self.worker.state == DeviceState.FAILED and self.batcher.accepting:
            self.metrics.recovery_scheduled(delay)
            log_event(_log, logging.WARNING, "device_recovery_scheduled", attempt=attempt + 1, in_s=delay)
            await asyncio.sleep(delay)
            if self.worker.state != DeviceState.FAILED or not self.batcher.accepting:
                break  # an admin reset brought it back meanwhile, or the daemon stops
            attempt += 1
            try:
                passed, error = (await self.worker.reset()).passed, ""
            except Exception as e:  # any failure of the attempt is reported, and retried later
                passed, error = False, str(e)
            self.metrics.recovery_attempted(passed)
            log_event(
                _log, logging.INFO if passed else logging.ERROR, "device_recovery", attempt=attempt, passed=passed,
                error=error,
            )  # fmt: skip
            if passed:
                return
            delay = min(delay * 2, device.recovery_backoff_max_ms / 1000)
        self.metrics.recovery_scheduled(0)

    async def stop_recovery(self) -> None:
        if self._recovery is not None and not self._recovery.done():
            self._recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recovery

    @property
    def state(self) -> DeviceState:
        return self.worker.state

    def start(self) -> None:
        self.batcher.start()

    # -- programs ------------------------------------------------------------------------------------------

    async def register(self, body: bytes) -> tuple[ProgramEntry, bool]:
        """A ``RegisterProgramRequest``'s bytes: parse, check, decode, encode and hash (in a child process unless
        the body is small), then admit."""
        self._refuse_when_draining()
        limits = self.registry.limits
        if len(body) <= INLINE_REGISTRATION_BYTES:
            program, pin = program_body.decode_body(body, limits)
            prepared = self.registry.prepare(program)
        else:
            done = await self._preparer.prepare(body, limits)  # the child checks the limits before decoding
            prepared = PreparedProgram(
                done.program_id, done.encoding, done.num_vars, done.domain_size, done.num_constraints
            )
            pin = done.pin
            self._refuse_when_draining()
        entry, created = self.registry.admit(prepared, pin)
        self.metrics.set_programs_loaded(len(self.registry))
        return entry, created

    def close(self) -> None:
        self._preparer.close()

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
            raise Unavailable(
                "device: failed its self-test; the daemon retries its recovery with backoff (an operator may "
                "reset it now with Admin.Reset); retry later or on another daemon"
            )
        raise Unavailable(self.batcher.refusal or DRAINING)

    def _refuse_when_draining(self) -> None:
        if not self.batcher.accepting:
            raise Unavailable(self.batcher.refusal or DRAINING)

    async def solve(self, batch: SolveBatch, timeout_s: float | None = None) -> SolveAnswer:
        """Queue one decoded request; ``timeout_s`` is what is left of the caller's deadline."""
        self.check_available()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        answer = await self.batcher.solve(batch, deadline)
        batch.entry.solves += 1
        self.metrics.observe_request(answer.total_s)
        self.metrics.count_work(int(answer.result.nodes.sum()), int(answer.result.sweeps.sum()))
        statuses = Counter(answer.result.status.tolist())
        self.metrics.count_statuses({_STATUS_NAMES.get(s, str(s)): n for s, n in statuses.items()})
        return answer

    async def _run_merged(self, batch: SolveBatch, deadline: float | None) -> BatchResult:
        """One device batch (the batcher merged its requests; ``merging`` splits the answer)."""
        entry = batch.entry
        # a function, not the program: one held as its encoding is decoded on the device thread, not here
        return await self.worker.run_batch(
            entry.program_id, lambda: entry.program, batch.domains, batch.priorities, batch.options, deadline
        )

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
        await self.stop_recovery()
        self.worker.set_state(DeviceState.DRAINING)
        await self.batcher.drain()
