"""The daemon's device over the register-level driver: program slots, batches as jobs, fault recovery.

This is where the :class:`~fpgacspd.device.base.Device` interface meets the card. Programs live in the
card's slots and program memory (LRU-evicted when either runs out), loaded by DMA with a LOAD job. A
batch becomes RUN jobs of at most CAP_JOB.MAX_INSTANCES instances, staged in one DMA arena. A fault (see
:mod:`.driver`) resets the device, runs the known-answer self-test, reloads the program and runs the
batch again (solving is pure, so a retry is safe), at most ``max_retries`` times; then the batch fails
with :class:`~fpgacspd.errors.DeviceFailure` and only its requests get INTERNAL.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

import numpy as np
from fpgacsp_proto.bitset import check_domains, check_priorities
from fpgacsp_proto.encoding import encode_program
from fpgacsp_proto.isa import Program

from ..engine import BatchResult, SolveOptions
from ..engine.batch import empty_result
from ..errors import DeadlineExpired, DeviceFailure, DeviceLost, InvalidArgument, Unavailable
from ..logs import get_logger, log_event
from ..selftest import SelfTestReport, run_self_test
from . import _regmap as regs
from .base import DeviceInfo
from .driver import DeviceDead, DeviceFault, Driver, DriverTimeouts
from .layout import FLAG_PRIORITIES, PROGRAM_ALIGN, RESULT, JobCode, Opcode
from .transport import DmaBuffer, Transport

T = TypeVar("T")
_log = get_logger("device")


class DeviceEvents(Protocol):
    """Who hears about faults, resets and retries (the daemon's metrics); called on the device thread."""

    def device_fault(self, kind: str) -> None: ...

    def device_reset(self, kind: str) -> None: ...

    def device_retry(self) -> None: ...

    def device_aborted(self) -> None: ...

    def device_job_cycles(self, cycles: int) -> None: ...


class _NoEvents:
    def device_fault(self, kind: str) -> None:
        pass

    def device_reset(self, kind: str) -> None:
        pass

    def device_retry(self) -> None:
        pass

    def device_aborted(self) -> None:
        pass

    def device_job_cycles(self, cycles: int) -> None:
        pass


@dataclass
class _Resident:
    slot: int
    offset: int
    length: int


class RegisterDevice:
    """A card (simulated or real) driven through its registers; one thread calls it at a time."""

    def __init__(
        self,
        transport: Transport,
        timeouts: DriverTimeouts | None = None,
        max_retries: int = 2,
        events: DeviceEvents | None = None,
    ) -> None:
        self.backend = transport.name
        self.transport = transport
        self.driver = Driver(transport, timeouts)
        self.max_retries = max_retries
        self.events: DeviceEvents = events or _NoEvents()
        self._resident: OrderedDict[str, _Resident] = OrderedDict()  # LRU order, oldest first
        self._arena: DmaBuffer | None = None
        self._recovering = False
        self._stopping = False  # abort(): the device is being closed
        self._abort_reason = ""  # abort_running(): why the running batch was aborted
        self._lost_seen = 0
        caps = self.driver.caps
        description = (
            f"{transport.description}; {caps.slots} slots, {caps.program_memory >> 20} MiB program memory, "
            f"{caps.engines} engine(s) x {caps.lanes} lanes @ {caps.clock_khz / 1000:g} MHz"
        )
        self._info = DeviceInfo(self.backend, description)

    # ------------------------------------------------------------------ Device interface
    def load_program(self, program_id: str, program: Program) -> None:
        self._recovered(lambda: self._load(program_id, program))

    def unload_program(self, program_id: str) -> None:
        resident = self._resident.pop(program_id, None)
        if resident is None:
            return
        try:
            self._job(Opcode.UNLOAD, slot=resident.slot)
        except DeviceFault as fault:
            if self._recovering:
                raise
            self._note_fault(fault, 0)
            self._recover()  # no retry: the reset freed every slot, this one included

    def run_batch(
        self,
        program_id: str,
        program: Program,
        domains: np.ndarray,
        priorities: np.ndarray | None,
        options: SolveOptions,
        deadline: float | None = None,
    ) -> BatchResult:
        doms = check_domains(domains, program.num_vars, program.domain_size)
        prios = check_priorities(priorities, len(doms), program.num_vars, program.domain_size)
        self.driver.begin_batch()
        res = self._recovered(lambda: self._run(program_id, program, doms, prios, options, deadline))
        lost, self._lost_seen = self.driver.lost_interrupts - self._lost_seen, self.driver.lost_interrupts
        for _ in range(lost):  # found by polling the completion ring; no reset needed
            self.events.device_fault("lost_interrupt")
        info = self._info
        self._info = replace(
            info,
            faults=info.faults + lost,
            batches=info.batches + 1,
            instances=info.instances + res.batch_size,
            nodes=info.nodes + int(res.nodes.sum()),
            sweeps=info.sweeps + int(res.sweeps.sum()),
        )
        return res

    def abort(self) -> None:
        """Stop the batch running now and every later one (any thread may call it): their RUN jobs are aborted on
        the card and they raise ``Unavailable``. Used when the daemon stops, so no search holds the device thread."""
        self._stopping = True
        self.driver.abort()

    def abort_running(self) -> None:
        """Abort the batch running now, if any (any thread may call it): an operator's reset waits for no search.
        Its requests get ``UNAVAILABLE``; later batches are not affected."""
        self._abort_reason = "reset"
        self.driver.abort_batch()

    def activity(self) -> float:
        return self.driver.last_tick

    def status(self) -> DeviceInfo:
        """The daemon's tallies plus the card's HEARTBEAT and node counter, read now: a status proves the card
        answers, and a node count that climbs between two statuses shows a long job is working, not hung.

        Called from any thread, also while a batch runs on the device thread: it only reads registers and an
        immutable record, so it never waits for a job."""
        heartbeat = self.transport.read32(regs.HEARTBEAT.OFFSET)
        t = self.transport
        nodes = t.read32(regs.PERF_NODES_LO.OFFSET) | t.read32(regs.PERF_NODES_HI.OFFSET) << 32
        return replace(self._info, programs_loaded=len(self._resident), heartbeat=heartbeat, card_nodes=nodes)

    def self_test(self) -> SelfTestReport:
        return run_self_test(self)

    def reset(self) -> None:
        kind = self.driver.soft_reset()
        self._resident.clear()
        self._info = replace(self._info, resets=self._info.resets + 1)
        self.events.device_reset(kind)
        log_event(_log, logging.WARNING, "device_reset", reset=kind)

    def close(self) -> None:
        try:
            self.driver.close()
            if self._arena is not None:
                self.transport.free_dma(self._arena)
        finally:
            self.transport.close()

    def counters(self) -> dict[str, int]:
        """The card's own performance counters and heartbeat (registers, not the daemon's tallies)."""
        return self.driver.counters()

    # ------------------------------------------------------------------ recovery
    def _recovered(self, work: Callable[[], T]) -> T:
        """Run ``work``; on a fault reset, self-test and run it again, ``max_retries`` times at most."""
        if self._recovering:
            return work()  # the self-test inside a recovery: a fault there is the recovery's to count
        for attempt in range(self.max_retries + 1):
            try:
                return work()
            except DeviceFault as fault:
                self._note_fault(fault, attempt)
                if attempt == self.max_retries:
                    raise DeviceFailure(f"device: {fault} (after {self.max_retries} resets and retries)") from fault
                self._recover()
                self.events.device_retry()
        raise AssertionError("unreachable")

    def _note_fault(self, fault: DeviceFault, attempt: int) -> None:
        self._info = replace(self._info, faults=self._info.faults + 1)
        self.events.device_fault(fault.kind)
        log_event(_log, logging.ERROR, "device_fault", kind=fault.kind, error=str(fault), attempt=attempt + 1)

    def _recover(self) -> None:
        """Reset, then prove the device with the known answers before trusting it with the batch again."""
        self._recovering = True
        try:
            for attempt in range(self.max_retries + 1):
                self.reset()
                try:
                    report = run_self_test(self, propagate=(DeviceFault,))
                    break
                except DeviceFault as fault:  # the self-test itself hit a fault: count it and reset again
                    self._note_fault(fault, attempt)
            else:
                raise DeviceLost(f"device: the self-test faulted after each of {self.max_retries + 1} resets")
        except DeviceDead as dead:
            raise DeviceLost(f"device: {dead}") from dead
        finally:
            self._recovering = False
        if not report.passed:
            failed = "; ".join(f"{c.name}: {c.detail}" for c in report.cases if not c.passed)
            raise DeviceLost(f"device: self-test after a recovery reset failed ({failed})")

    # ------------------------------------------------------------------ jobs
    def _job(self, opcode: Opcode, **fields: int) -> None:
        tag = self.driver.submit(opcode, **fields)
        done = self.driver.wait({tag})[tag]
        if done.code != JobCode.OK:
            raise DeviceFault("job_error", f"{opcode.name} job answered {done.code.name}")

    def _load(self, program_id: str, program: Program) -> _Resident:
        resident = self._resident.get(program_id)
        if resident is not None:
            self._resident.move_to_end(program_id)
            return resident
        data = encode_program(program)
        self._check_capabilities(program, len(data))
        slot, offset = self._place(len(data))
        staging = self.transport.alloc_dma(len(data))
        try:
            staging.data[: len(data)] = np.frombuffer(data, dtype=np.uint8)
            self._job(Opcode.LOAD, slot=slot, items=len(data), src_addr=staging.iova, dst_addr=offset)
        finally:
            self.transport.free_dma(staging)
        resident = self._resident[program_id] = _Resident(slot, offset, len(data))
        return resident

    def _check_capabilities(self, program: Program, length: int) -> None:
        caps = self.driver.caps
        if program.num_vars > caps.max_vars or program.domain_size > caps.max_domain:
            raise InvalidArgument(
                f"program: {program.num_vars} variables of domain {program.domain_size} exceed the device's "
                f"capabilities ({caps.max_vars} variables, domain {caps.max_domain})"
            )
        if -(-length // PROGRAM_ALIGN) * PROGRAM_ALIGN > caps.program_memory:
            raise InvalidArgument(f"program: larger than the device's program memory ({caps.program_memory} bytes)")

    def _place(self, length: int) -> tuple[int, int]:
        """A free slot and a first-fit program-memory range, evicting least recently used programs."""
        caps = self.driver.caps
        size = -(-length // PROGRAM_ALIGN) * PROGRAM_ALIGN
        while True:
            used_slots = {r.slot for r in self._resident.values()}
            free_slot = next((s for s in range(caps.slots) if s not in used_slots), None)
            offset = self._first_fit(size)
            if free_slot is not None and offset is not None:
                return free_slot, offset
            if not self._resident:
                raise InvalidArgument(f"program: {length} bytes do not fit the device's empty program memory")
            _, evicted = self._resident.popitem(last=False)  # program memory is simply reused; no UNLOAD job
            log_event(_log, logging.DEBUG, "program_evicted", slot=evicted.slot)

    def _first_fit(self, size: int) -> int | None:
        cursor = 0
        for r in sorted(self._resident.values(), key=lambda r: r.offset):
            if r.offset - cursor >= size:
                return cursor
            cursor = r.offset + -(-r.length // PROGRAM_ALIGN) * PROGRAM_ALIGN
        return cursor if self.driver.caps.program_memory - cursor >= size else None

    def _run(
        self,
        program_id: str,
        program: Program,
        doms: np.ndarray,
        prios: np.ndarray | None,
        options: SolveOptions,
        deadline: float | None,
    ) -> BatchResult:
        slot = self._load(program_id, program).slot
        started = time.monotonic()
        batch, n, d = len(doms), program.num_vars, program.domain_size
        words, prio_bytes = batch * n * 8, (batch * n * d if prios is not None else 0)
        self._arena = _grow(self.transport, self._arena, 2 * words + prio_bytes + batch * RESULT.itemsize + 4 * 64)
        src, dst, pri, out = _carve(self._arena, words, words, prio_bytes, batch * RESULT.itemsize)
        src.data[:words] = doms.reshape(-1).view(np.uint8)
        if prios is not None:
            pri.data[:prio_bytes] = prios.reshape(-1)
        pending: dict[int, tuple[int, int]] = {}
        step = self.driver.caps.max_instances
        for lo in range(0, batch, step):
            hi = min(batch, lo + step)
            while self.driver.free_entries < 1:  # more jobs than ring entries: let some finish first
                self._collect(pending, self.driver.wait({next(iter(pending))}, deadline), deadline, started)
            tag = self.driver.submit(
                Opcode.RUN, mode=int(options.mode), slot=slot, items=hi - lo,
                flags=FLAG_PRIORITIES if prios is not None else 0,
                src_addr=src.iova + lo * n * 8, dst_addr=dst.iova + lo * n * 8,
                prio_addr=pri.iova + lo * n * d if prios is not None else 0,
                result_addr=out.iova + lo * RESULT.itemsize,
                node_limit=options.node_limit, max_solutions=options.max_solutions,
            )  # fmt: skip
            pending[tag] = (lo, hi)
        while pending:
            self._collect(pending, self.driver.wait(set(pending), deadline), deadline, started)
        return _results(dst, out, batch, n)

    def _collect(self, pending: dict[int, tuple[int, int]], done: dict, deadline: float | None, started: float) -> None:
        aborted = False
        self.events.device_job_cycles(sum(c.cycles for c in done.values()))
        for tag, completion in done.items():
            pending.pop(tag, None)
            if completion.code == JobCode.ABORTED:
                aborted = True
            elif completion.code != JobCode.OK:
                raise DeviceFault("job_error", f"RUN job {tag} answered {completion.code.name}")
        if not aborted:
            return
        while pending:  # the batch's other jobs are aborted too (the driver keeps asking): collect them
            done = self.driver.wait(set(pending), deadline)
            for tag in done:
                pending.pop(tag, None)
        self.events.device_aborted()
        expired = deadline is not None and time.monotonic() >= deadline
        reason = "stopping" if self._stopping else "deadline" if expired else self._abort_reason or "reset"
        log_event(_log, logging.WARNING, "batch_aborted", reason=reason)
        if reason == "reset":
            raise Unavailable("device: the job was aborted for an operator's reset (Admin.Reset); retry")
        if reason == "deadline":
            raise DeadlineExpired(
                f"deadline: passed while the batch ran on the device; its job was aborted after "
                f"{time.monotonic() - started:.3f} s"
            )
        raise Unavailable("device: the job was aborted because the daemon is stopping; retry on another daemon")


def _grow(t: Transport, buf: DmaBuffer | None, size: int) -> DmaBuffer:
    """``buf`` if it holds ``size`` bytes, else a fresh buffer of the next power of two (``buf`` freed)."""
    if buf is not None and buf.size >= size:
        return buf
    if buf is not None:
        t.free_dma(buf)
    return t.alloc_dma(1 << max(12, (size - 1).bit_length()))


def _carve(arena: DmaBuffer, *sizes: int) -> list[DmaBuffer]:
    """Consecutive 64-byte aligned pieces of ``arena``, each a view the device knows by its own address."""
    views, cursor = [], 0
    for size in sizes:
        views.append(DmaBuffer(arena.iova + cursor, arena.data[cursor : cursor + size]))
        cursor += -(-size // 64) * 64
    return views


def _results(dst: DmaBuffer, out: DmaBuffer, batch: int, n: int) -> BatchResult:
    rec = out.data.view(RESULT)
    res = empty_result(batch, n)
    res.domains[:] = dst.data.view(np.uint64).reshape(batch, n)
    res.status[:] = rec["status"]
    res.solutions[:] = rec["solutions"]
    res.nodes[:] = rec["nodes"]
    res.sweeps[:] = rec["sweeps"]
    return res
