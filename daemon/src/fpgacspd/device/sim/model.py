"""The simulated card: a model of the accelerator behind its register map, not a shortcut around it.

It owns what the card owns (BAR0 registers with their SystemRDL semantics, program memory, slots, a job
sequencer) and touches host memory only through its IOMMU, as a DMA engine would. A sequencer thread
fetches descriptors from the job ring, runs RUN jobs on the engine's fast core (bit-identical to the
reference model, so the RTL's contract holds), writes result records, output domains and a completion,
and signals MSI-X vectors (eventfds). Performance counters follow the cycle model. Faults come from a
:class:`FaultPlan`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from fpgacsp_proto.encoding import decode_program
from fpgacsp_proto.isa import Mode, Neq, Program, make_program

from ...engine import BatchResult, CompiledProgram, FastEngine, SolveControl, SolveOptions
from ...engine.batch import empty_result
from .. import _regmap as regs
from ..layout import (
    COMPLETION_SIZE,
    DESCRIPTOR_SIZE,
    FLAG_PRIORITIES,
    PROGRAM_ALIGN,
    RESULT,
    Completion,
    Descriptor,
    DeviceError,
    JobCode,
    Opcode,
    cycle_count,
)
from ..regdefs import Field
from .faults import Fault, FaultPlan

DmaResolver = Callable[[int, int], np.ndarray]  # (iova, nbytes) -> uint8 view, raises DmaFault
_BY_OFFSET = {r.OFFSET: r for r in regs.REGISTERS}
_RESET_KEEPS = {r.OFFSET for r in regs.REGISTERS if r.NAME.startswith(("PERF_", "SCRATCH", "HEARTBEAT", "CAP_"))}
_NODE_COUNTER = {regs.PERF_NODES_LO.OFFSET: 0, regs.PERF_NODES_HI.OFFSET: 32}
_WIDE_COUNTERS = {  # 64-bit counters kept as Python ints, read as LO/HI halves
    regs.PERF_CYCLES_LO.OFFSET: ("cycles", 0), regs.PERF_CYCLES_HI.OFFSET: ("cycles", 32),
    regs.PERF_SWEEPS_LO.OFFSET: ("sweeps", 0), regs.PERF_SWEEPS_HI.OFFSET: ("sweeps", 32),
    regs.PERF_NODES_LO.OFFSET: ("nodes", 0), regs.PERF_NODES_HI.OFFSET: ("nodes", 32),
}  # fmt: skip


class DmaFault(Exception):  # noqa: N818 (the PCIe term)
    """The device addressed host memory no mapping covers."""


@dataclass(frozen=True)
class SimParams:
    """The card's build parameters, shown in its CAP_* registers."""

    threads: int = 0  # engine threads (the model's ENGINES); 0: all cores
    max_instances: int = 65_536
    slots: int = 64
    program_memory_kib: int = 65_536
    slow_us: int = 200_000  # extra latency of a SLOW fault
    late_irq_us: int = 10_000  # how long after its completion a LATE_IRQ interrupt is signalled


@dataclass
class _Slot:
    compiled: CompiledProgram
    program: Program
    offset: int
    length: int


class SimDevice:
    """The register file, program memory and job sequencer of one simulated card."""

    def __init__(self, dma: DmaResolver, irq_fds: tuple[int, ...], params: SimParams, faults: FaultPlan) -> None:
        self.params = params
        self.faults = faults
        self._dma = dma
        self._irq_fds = irq_fds
        self._engine = FastEngine(threads=params.threads or None)
        self._cond = threading.Condition()
        self._closed = False
        self._wedged = False
        self._generation = 0
        self._run_jobs = 0  # RUN jobs fetched since power-on: the fault plan's clock
        self._running: BatchResult | None = None  # the RUN job on the engine now, filled as instances finish
        self._control: SolveControl | None = None  # its abort and node count
        self._warm_up()
        self.power_on()
        self._thread = threading.Thread(target=self._sequencer, name="fpgacsp-sim-card", daemon=True)
        self._thread.start()

    def _warm_up(self) -> None:
        """Load the fast core's compiled kernel now: a card has no first-job stall, so the model must not."""
        program = make_program(2, 2, [Neq(0, 1, 0)])
        self._engine.solve(self._engine.compile(program), np.full((1, 2), 3, dtype=np.uint64))

    # ------------------------------------------------------------------ reset
    def power_on(self) -> None:
        """Every register to its reset value, counters to zero, program memory cleared: a fresh card."""
        with self._cond:
            self._regs = {r.OFFSET: r.RESET for r in regs.REGISTERS}
            self._caps()
            self._perf = {"cycles": 0, "sweeps": 0, "nodes": 0}
            self._epoch = time.monotonic()
            self._progmem = np.zeros(self.params.program_memory_kib * 1024, dtype=np.uint8)
            self._wedged = False
            self._soft_reset_locked()

    def _caps(self) -> None:
        p = self.params
        self._regs[regs.CAP_ENGINE.OFFSET] = (
            regs.CAP_ENGINE.RESET & ~regs.CAP_ENGINE.ENGINES.mask
        ) | regs.CAP_ENGINE.ENGINES.put(min(self._engine.threads, 255))
        self._regs[regs.CAP_PROG.OFFSET] = regs.CAP_PROG.PROG_MEM_KIB.put(
            p.program_memory_kib
        ) | regs.CAP_PROG.SLOTS.put(p.slots)
        self._regs[regs.CAP_JOB.OFFSET] = regs.CAP_JOB.MAX_INSTANCES.put(p.max_instances)

    def _soft_reset_locked(self) -> None:
        if self._wedged:
            return  # the WEDGE fault: the sequencer no longer answers CTRL.SOFT_RESET
        self._generation += 1  # a job running now is abandoned: its completion is never written
        if self._control is not None:
            self._control.abort()  # and its engine stops at the next node, so the sequencer is free at once
        for off, reg in _BY_OFFSET.items():
            if off not in _RESET_KEEPS:
                self._regs[off] = reg.RESET
        self._slots: dict[int, _Slot] = {}
        self._seq = 0
        self._cq_phase = 1
        self._regs[regs.STATUS.OFFSET] = regs.STATUS.READY.mask
        self._cond.notify_all()

    # ------------------------------------------------------------------ BAR0
    def read32(self, offset: int) -> int:
        with self._cond:
            if offset == regs.HEARTBEAT.OFFSET:
                return int((time.monotonic() - self._epoch) * 1000) & 0xFFFFFFFF
            if offset == regs.PROG_WIN_DATA.OFFSET:
                return self._window_access(None)
            if offset == regs.PERF_INSTANCES.OFFSET and self._running is not None:
                finished = int(np.count_nonzero(self._running.status))  # status 0: still running
                return (self._regs[offset] + finished) & 0xFFFFFFFF
            if offset in _NODE_COUNTER and self._control is not None:  # nodes count while a job searches
                return ((self._perf["nodes"] + self._control.nodes) >> _NODE_COUNTER[offset]) & 0xFFFFFFFF
            perf = self._perf_register(offset)
            return perf if perf is not None else self._regs.get(offset, 0)

    def write32(self, offset: int, value: int) -> None:
        with self._cond:
            reg = _BY_OFFSET.get(offset)
            if reg is None:
                return  # unmapped: writes are ignored, as on the card
            if offset == regs.PROG_WIN_DATA.OFFSET:
                self._window_access(value)
                return
            old = self._regs[offset]
            new = old
            for f in reg.FIELDS:
                if not f.writable:
                    continue
                if f.onwrite == "woclr":
                    new &= ~(value & f.mask)
                elif f.singlepulse:
                    new &= ~f.mask  # acts once, reads back 0
                else:
                    new = (new & ~f.mask) | (value & f.mask)
            self._regs[offset] = new
            if offset == regs.CTRL.OFFSET and value & regs.CTRL.SOFT_RESET.mask:
                self._soft_reset_locked()
            elif offset == regs.CTRL.OFFSET and value & regs.CTRL.ABORT.mask and self._control is not None:
                self._control.abort()  # the engine stops at its next node; _run completes the job ABORTED
            self._cond.notify_all()  # a doorbell, ENABLE or anything else the sequencer waits on

    def _window_access(self, value: int | None) -> int:
        addr = self._regs[regs.PROG_WIN_ADDR.OFFSET] & ~3
        if addr + 4 > len(self._progmem):
            return 0xFFFFFFFF  # outside program memory: reads all ones, writes are dropped
        word = self._progmem[addr : addr + 4].view("<u4")
        if value is not None:
            word[0] = value
        self._regs[regs.PROG_WIN_ADDR.OFFSET] = (addr + 4) & 0xFFFFFFFF
        return int(word[0])

    def _perf_register(self, offset: int) -> int | None:
        counter = _WIDE_COUNTERS.get(offset)
        if counter is None:
            return None
        name, shift = counter
        return (self._perf[name] >> shift) & 0xFFFFFFFF

    # ------------------------------------------------------------------ sequencer
    def _sequencer(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._job_pending():
                    self._cond.wait()
                if self._closed:
                    return
                fetched = self._fetch()
                if fetched is None:
                    continue
                desc, generation = fetched
                self._regs[regs.STATUS.OFFSET] |= regs.STATUS.BUSY.mask
            self._execute(desc, generation)
            with self._cond:
                if generation == self._generation:
                    self._regs[regs.STATUS.OFFSET] &= ~regs.STATUS.BUSY.mask

    def _job_pending(self) -> bool:
        status = self._regs[regs.STATUS.OFFSET]
        ready = status & regs.STATUS.READY.mask and not status & regs.STATUS.HALTED.mask
        enabled = self._regs[regs.CTRL.OFFSET] & regs.CTRL.ENABLE.mask
        head = self._regs[regs.JQ_HEAD.OFFSET]
        return bool(ready and enabled and head != self._regs[regs.JQ_TAIL.OFFSET])

    def _fetch(self) -> tuple[Descriptor, int] | None:
        """Take the descriptor at JQ_HEAD (lock held); a broken ring halts the device."""
        size_log2 = self._regs[regs.JQ_SIZE.OFFSET] & 0x1F
        cap = regs.CAP_QUEUE.JQ_MAX_LOG2.get(self._regs[regs.CAP_QUEUE.OFFSET])
        head, tail = self._regs[regs.JQ_HEAD.OFFSET], self._regs[regs.JQ_TAIL.OFFSET]
        if size_log2 > cap or tail >= 1 << size_log2:
            self._halt(DeviceError.QUEUE_CONFIG, 0)
            return None
        base = self._regs[regs.JQ_BASE_LO.OFFSET] | self._regs[regs.JQ_BASE_HI.OFFSET] << 32
        try:
            raw = self._dma(base + head * DESCRIPTOR_SIZE, DESCRIPTOR_SIZE)
        except DmaFault:
            self._halt(DeviceError.DMA, 0)
            return None
        desc = Descriptor.unpack_from(raw)
        self._regs[regs.JQ_HEAD.OFFSET] = (head + 1) % (1 << size_log2)
        return desc, self._generation

    def _execute(self, desc: Descriptor, generation: int) -> None:
        opcode = desc.opcode
        fault = None
        if opcode == Opcode.RUN:
            self._run_jobs += 1
            fault = self.faults.pick(self._run_jobs, desc.items)
        if fault in (Fault.HANG, Fault.WEDGE):
            self._hang(generation, wedge=fault is Fault.WEDGE)
            return
        if fault is Fault.ERROR:
            with self._cond:
                if generation == self._generation:
                    self._halt(DeviceError.INTERNAL, desc.tag)
            return
        try:
            code, count, cycles = self._dispatch(opcode, desc, generation)
        except DmaFault:
            code, count, cycles = JobCode.BAD_ADDRESS, 0, 0
        if fault is Fault.SLOW:
            with self._cond:
                self._cond.wait_for(lambda: generation != self._generation or self._closed, self.params.slow_us / 1e6)
        self._complete(desc, code, count, cycles, generation, fault)

    def _hang(self, generation: int, wedge: bool) -> None:
        with self._cond:
            self._wedged = self._wedged or wedge
            self._cond.wait_for(lambda: generation != self._generation or self._closed)

    def _halt(self, code: DeviceError, tag: int) -> None:
        """A device error (lock held): record it, stop fetching, raise the error interrupt."""
        if not self._regs[regs.ERROR.OFFSET]:
            self._regs[regs.ERROR.OFFSET] = int(code)
            self._regs[regs.ERROR_TAG.OFFSET] = tag
        self._regs[regs.STATUS.OFFSET] |= regs.STATUS.HALTED.mask
        self._raise_irq(regs.IRQ_STATUS.ERROR, vector=1)

    def _raise_irq(self, source: Field, vector: int, drop: bool = False) -> None:
        self._regs[regs.IRQ_STATUS.OFFSET] |= source.mask
        if not drop and not self._regs[regs.IRQ_MASK.OFFSET] & source.mask:
            os.eventfd_write(self._irq_fds[vector], 1)

    def _complete(
        self, desc: Descriptor, code: int, count: int, cycles: int, generation: int, fault: Fault | None
    ) -> None:
        with self._cond:
            if generation != self._generation or self._closed:
                return  # reset while running: this completion never reaches the host
            size = 1 << (self._regs[regs.CQ_SIZE.OFFSET] & 0x1F)
            tail = self._regs[regs.CQ_TAIL.OFFSET]
            base = self._regs[regs.CQ_BASE_LO.OFFSET] | self._regs[regs.CQ_BASE_HI.OFFSET] << 32
            if (tail + 1) % size == self._regs[regs.CQ_HEAD.OFFSET] % size:
                self._halt(DeviceError.QUEUE_CONFIG, desc.tag)  # the host let the ring overflow
                return
            self._seq += 1
            entry = Completion(desc.tag, code, self._cq_phase, count, self._seq, cycles).sealed()
            if fault is Fault.CORRUPT:
                entry = entry._replace(items=entry.items ^ 1 << 3)  # a bit flipped on the way: the CRC fails
            try:
                entry.pack_into(self._dma(base + tail * COMPLETION_SIZE, COMPLETION_SIZE), 0)
            except DmaFault:
                self._halt(DeviceError.DMA, desc.tag)
                return
            tail = (tail + 1) % size
            if tail == 0:
                self._cq_phase ^= 1
            self._regs[regs.CQ_TAIL.OFFSET] = tail
            self._regs[regs.PERF_JOBS.OFFSET] = (self._regs[regs.PERF_JOBS.OFFSET] + 1) & 0xFFFFFFFF
            self._perf["cycles"] += cycles
            if fault is Fault.LATE_IRQ:  # the completion is visible now, its interrupt comes later
                timer = threading.Timer(self.params.late_irq_us / 1e6, self._late_irq, (generation,))
                timer.daemon = True
                timer.start()
                return
            self._raise_irq(regs.IRQ_STATUS.COMPLETION, vector=0, drop=fault is Fault.DROP_IRQ)

    def _late_irq(self, generation: int) -> None:
        with self._cond:
            if generation == self._generation and not self._closed:  # a reset in between drops it
                self._raise_irq(regs.IRQ_STATUS.COMPLETION, vector=0)

    # ------------------------------------------------------------------ jobs
    def _dispatch(self, opcode: int, desc: Descriptor, generation: int) -> tuple[JobCode, int, int]:
        if opcode == Opcode.NOP:
            return JobCode.OK, 0, 1
        if opcode == Opcode.LOAD:
            return self._load(desc, generation)
        if opcode == Opcode.UNLOAD:
            with self._cond:
                return (JobCode.OK, 0, 1) if self._slots.pop(desc.slot, None) else (JobCode.BAD_SLOT, 0, 1)
        if opcode == Opcode.RUN:
            return self._run(desc, generation)
        return JobCode.BAD_OPCODE, 0, 0

    def _load(self, desc: Descriptor, generation: int) -> tuple[JobCode, int, int]:
        slot, length, offset = desc.slot, desc.items, desc.dst_addr
        if slot >= self.params.slots:
            return JobCode.BAD_SLOT, 0, 0
        if offset % PROGRAM_ALIGN or offset + length > len(self._progmem):
            return JobCode.BAD_ADDRESS, 0, 0
        data = self._dma(desc.src_addr, length)
        self._progmem[offset : offset + length] = data
        try:
            program = decode_program(bytes(data))
        except ValueError:
            return JobCode.BAD_PROGRAM, 0, 0
        max_vars = regs.CAP_VARS.MAX_VARS.get(self._regs[regs.CAP_VARS.OFFSET])
        if program.num_vars > max_vars or program.domain_size > 64:
            return JobCode.OVER_CAPABILITY, 0, 0
        compiled = self._engine.compile(program)
        with self._cond:
            if generation == self._generation:
                self._slots[slot] = _Slot(compiled, program, offset, length)
        return JobCode.OK, 0, (length + 63) // 64  # one cycle per 64-byte beat of the load

    def _run(self, desc: Descriptor, generation: int) -> tuple[JobCode, int, int]:
        with self._cond:
            slot = self._slots.get(desc.slot)
        count = desc.items
        if slot is None:
            return JobCode.BAD_SLOT, 0, 0
        p = slot.program
        if not 1 <= count <= self.params.max_instances or desc.mode not in (Mode.PROPAGATE, Mode.SOLVE):
            return JobCode.OVER_CAPABILITY, 0, 0
        if desc.node_limit < 1 or desc.max_solutions < 1:
            return JobCode.OVER_CAPABILITY, 0, 0
        n, d = p.num_vars, p.domain_size
        src = self._dma(desc.src_addr, count * n * 8).view("<u8").reshape(count, n)
        dst = self._dma(desc.dst_addr, count * n * 8).view("<u8").reshape(count, n)
        out = self._dma(desc.result_addr, count * RESULT.itemsize).view(RESULT)
        prio = None
        if desc.flags & FLAG_PRIORITIES:
            prio = self._dma(desc.prio_addr, count * n * d).reshape(count, n, d)
        options = SolveOptions(Mode(desc.mode), desc.node_limit, desc.max_solutions)
        res = empty_result(count, n)
        control = self._engine.control()
        with self._cond:
            if generation != self._generation:
                return JobCode.OK, 0, 0  # reset before it started: the completion is dropped anyway
            # PERF_INSTANCES counts its finished instances while it runs, PERF_NODES its search nodes
            self._running, self._control = res, control
        try:
            self._engine.solve(slot.compiled, src, prio, options, out=res, control=control)
        finally:
            with self._cond:
                self._running, self._control = None, None
                if control.aborted:  # the nodes it searched were work the engine did
                    self._perf["nodes"] += control.nodes
        sweeps, nodes = int(res.sweeps.sum()), int(res.nodes.sum())
        with self._cond:  # a reset stops the DMA engine: nothing of an abandoned job reaches host memory
            if generation != self._generation:
                return JobCode.OK, 0, 0  # the completion is dropped anyway
            if control.aborted:
                return JobCode.ABORTED, 0, 0
            dst[:] = res.domains
            out["status"], out["solutions"], out["nodes"], out["sweeps"] = (
                res.status,
                res.solutions,
                res.nodes,
                res.sweeps,
            )
            self._regs[regs.PERF_INSTANCES.OFFSET] = (self._regs[regs.PERF_INSTANCES.OFFSET] + count) & 0xFFFFFFFF
            self._perf["sweeps"] += sweeps
            self._perf["nodes"] += nodes
        lanes = regs.CAP_ENGINE.LANES.get(self._regs[regs.CAP_ENGINE.OFFSET])
        return JobCode.OK, count, cycle_count(sweeps, nodes, len(p.constraints), lanes)

    # ------------------------------------------------------------------ lifetime
    @property
    def engine_threads(self) -> int:
        return self._engine.threads

    def close(self) -> None:
        with self._cond:
            self._closed = True
            if self._control is not None:
                self._control.abort()
            self._cond.notify_all()
        self._thread.join()
        self._engine.close()
