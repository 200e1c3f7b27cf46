"""The register-level driver: queues of descriptors in host memory, a doorbell, completions, interrupts.

It speaks only through a :class:`Transport` (BAR0 reads/writes, DMA buffers, interrupt eventfds), so the
same code drives the simulated card and a real one. It knows the protocol (docs/device.md), not what a
program means: :class:`fpgacspd.device.register_device.RegisterDevice` builds jobs on top of it.

Faults are detected here and raised as :class:`DeviceFault` with a ``kind`` the metrics count: no progress
within the job timeout (``timeout``), a device error (``device_error``), a completion that fails its checks
(``bad_completion``), a job that ended with an error code (``job_error``). A lost interrupt is not a fault:
the driver polls the completion ring when no interrupt came for ``irq_poll_s``, and counts one lost when a
completion it found that way still has no interrupt one more ``irq_poll_s`` later.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from . import _regmap as regs
from .layout import (
    COMPLETION_SIZE,
    DESCRIPTOR_SIZE,
    Completion,
    Descriptor,
    DeviceError,
    JobCode,
    Opcode,
    completion_crc,
)
from .transport import Transport, TransportError, wait_interrupt

MAGIC = regs.ID.MAGIC.reset
SUPPORTED_MAJOR = regs.VERSION.MAJOR.reset


class DeviceFault(Exception):  # noqa: N818 (a fault of the device, the field's word; not an error of ours)
    """The device misbehaved; a reset and a retry may cure it. ``kind`` names the class of fault."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


class DeviceDead(TransportError):  # noqa: N818 (a state of the device)
    """Neither a soft reset nor a function-level reset brought the device back, or it is not our card."""


@dataclass(frozen=True)
class Capabilities:
    """The CAP_* registers, read once at attach."""

    max_vars: int
    max_domain: int
    kinds: int
    engines: int
    lanes: int
    program_memory: int  # bytes
    slots: int
    jq_max_log2: int
    cq_max_log2: int
    max_instances: int
    clock_khz: int

    @classmethod
    def read(cls, t: Transport) -> Capabilities:
        eng, prog = t.read32(regs.CAP_ENGINE.OFFSET), t.read32(regs.CAP_PROG.OFFSET)
        queue = t.read32(regs.CAP_QUEUE.OFFSET)
        return cls(
            max_vars=regs.CAP_VARS.MAX_VARS.get(t.read32(regs.CAP_VARS.OFFSET)),
            max_domain=regs.CAP_ENGINE.MAX_DOMAIN.get(eng),
            kinds=regs.CAP_ENGINE.KINDS.get(eng),
            engines=regs.CAP_ENGINE.ENGINES.get(eng),
            lanes=regs.CAP_ENGINE.LANES.get(eng),
            program_memory=regs.CAP_PROG.PROG_MEM_KIB.get(prog) * 1024,
            slots=regs.CAP_PROG.SLOTS.get(prog),
            jq_max_log2=regs.CAP_QUEUE.JQ_MAX_LOG2.get(queue),
            cq_max_log2=regs.CAP_QUEUE.CQ_MAX_LOG2.get(queue),
            max_instances=regs.CAP_JOB.MAX_INSTANCES.get(t.read32(regs.CAP_JOB.OFFSET)),
            clock_khz=regs.CAP_CLOCK.CLK_KHZ.get(t.read32(regs.CAP_CLOCK.OFFSET)),
        )


@dataclass(frozen=True)
class Done:
    """A job as the driver reports it: validated, with its outcome."""

    tag: int
    code: JobCode
    count: int
    cycles: int


@dataclass(frozen=True)
class DriverTimeouts:
    job_s: float = 10.0  # no completion, no instance finished and no search node for this long: the job hangs
    irq_poll_s: float = 0.05  # no interrupt for this long: look at the completion ring anyway
    reset_s: float = 1.0  # STATUS.READY must return this soon after a (soft or function) reset


class Driver:
    """One attached device: its rings, its outstanding jobs, its resets."""

    def __init__(self, transport: Transport, timeouts: DriverTimeouts | None = None, queue_log2: int = 8) -> None:
        self.t = transport
        self.timeouts = timeouts or DriverTimeouts()
        self.lost_interrupts = 0
        self.aborts = 0  # RUN jobs the driver asked the card to abort (deadline passed, or abort())
        self.last_tick = time.monotonic()  # the last time a wait loop ran: the device thread lives
        self._abort = threading.Event()
        self._batch = 0  # the batch (begin_batch) the waits belong to now
        self._abort_batch = -1  # the batch abort_batch() asked to stop
        self._check_identity()
        self.caps = Capabilities.read(transport)
        self._jq_log2 = min(queue_log2, self.caps.jq_max_log2, self.caps.cq_max_log2)
        self._entries = 1 << self._jq_log2
        self._jq = transport.alloc_dma(self._entries * DESCRIPTOR_SIZE)
        self._cq = transport.alloc_dma(self._entries * COMPLETION_SIZE)
        self._irq_fds = transport.irq_fds()
        self._next_tag = 1
        self.soft_reset()

    # ------------------------------------------------------------------ attach and reset
    def _check_identity(self) -> None:
        magic = self.t.read32(regs.ID.OFFSET)
        if magic != MAGIC:
            raise DeviceDead(
                f"{self.t.description}: ID reads {magic:#010x}, expected {MAGIC:#010x}: not an fpgacsp card"
            )
        major = regs.VERSION.MAJOR.get(self.t.read32(regs.VERSION.OFFSET))
        if major != SUPPORTED_MAJOR:
            raise DeviceDead(f"{self.t.description}: register map v{major}.x, this driver speaks v{SUPPORTED_MAJOR}.x")
        for pattern in (0xA5A5A5A5, 0x5A5A5A5A):
            self.t.write32(regs.SCRATCH.OFFSET, pattern)
            if (got := self.t.read32(regs.SCRATCH.OFFSET)) != pattern:
                raise DeviceDead(f"{self.t.description}: SCRATCH wrote {pattern:#010x}, read {got:#010x}: bus broken")

    def soft_reset(self) -> str:
        """Reset the device and set the rings up again; returns "soft" or "function" (the reset that took)."""
        kind = "soft"
        self.t.write32(regs.CTRL.OFFSET, regs.CTRL.SOFT_RESET.mask)
        if not self._wait_ready():
            kind = "function"
            self.t.function_reset()
            if not self._wait_ready():
                raise DeviceDead(f"{self.t.description}: STATUS.READY stays 0 after a soft and a function reset")
        self._setup_rings()
        return kind

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.timeouts.reset_s
        while True:
            status = self.t.read32(regs.STATUS.OFFSET)
            ready = regs.STATUS.READY.get(status) and not regs.STATUS.HALTED.get(status)
            # a soft reset that did not take leaves the old queue registers behind
            if ready and self.t.read32(regs.JQ_SIZE.OFFSET) == 0:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)

    def _setup_rings(self) -> None:
        self._jq.data[:] = 0
        self._cq.data[:] = 0
        t = self.t
        for reg_lo, reg_hi, reg_size, buf in (
            (regs.JQ_BASE_LO, regs.JQ_BASE_HI, regs.JQ_SIZE, self._jq),
            (regs.CQ_BASE_LO, regs.CQ_BASE_HI, regs.CQ_SIZE, self._cq),
        ):
            t.write32(reg_lo.OFFSET, buf.iova & 0xFFFFFFFF)
            t.write32(reg_hi.OFFSET, buf.iova >> 32)
            t.write32(reg_size.OFFSET, self._jq_log2)
        self._tail = 0  # next descriptor index we write
        self._cq_head = 0  # next completion index we read
        self._phase = 1  # the phase a fresh completion carries on this lap
        self._seq = 0  # completions consumed since reset
        self._outstanding: dict[int, Descriptor] = {}
        for fd in self._irq_fds:  # interrupts of the previous life are stale now
            wait_interrupt((fd,), 0)
        t.write32(regs.IRQ_STATUS.OFFSET, regs.IRQ_STATUS.COMPLETION.mask | regs.IRQ_STATUS.ERROR.mask)
        t.write32(regs.IRQ_MASK.OFFSET, 0)
        t.write32(regs.CTRL.OFFSET, regs.CTRL.ENABLE.mask)

    # ------------------------------------------------------------------ jobs
    @property
    def free_entries(self) -> int:
        return self._entries - 1 - len(self._outstanding)

    def submit(self, opcode: Opcode, **fields: int) -> int:
        """Write one descriptor and ring the doorbell; returns its tag."""
        if self.free_entries < 1:
            raise RuntimeError("job ring full: wait for completions before submitting more")
        tag = self._next_tag
        self._next_tag = tag % 0xFFFFFFFF + 1  # never 0
        desc = Descriptor(opcode=opcode, tag=tag, **fields)
        desc.pack_into(self._jq.data, self._tail * DESCRIPTOR_SIZE)
        self._outstanding[tag] = desc
        self._tail = (self._tail + 1) % self._entries
        self.t.write32(regs.JQ_TAIL.OFFSET, self._tail)
        return tag

    def abort(self) -> None:
        """From now on (any thread may call it) every :meth:`wait` aborts its RUN jobs, the running one too: they
        complete ``ABORTED``. For a device that is being closed, so that no search holds its thread."""
        self._abort.set()

    def begin_batch(self) -> None:
        """The waits from now on belong to a new batch (device thread)."""
        self._batch += 1

    def abort_batch(self) -> None:
        """Abort the RUN jobs of the batch running now, not of later ones (any thread; an operator's reset)."""
        self._abort_batch = self._batch

    def wait(self, tags: set[int], deadline: float | None = None) -> dict[int, Done]:
        """Wait until every job in ``tags`` completed; raises :class:`DeviceFault` on any fault.

        Once ``deadline`` (``time.monotonic()``) has passed, or :meth:`abort` was called, the card is told to
        abort (``CTRL.ABORT``, repeated until every job in ``tags`` has completed: each write stops the RUN
        job running then), so the jobs complete ``ABORTED`` instead of running to their node limit.
        """
        done: dict[int, Done] = {}
        progress = (self._progress(), time.monotonic())
        aborting = False
        while not tags <= done.keys():
            self.last_tick = time.monotonic()
            stop = self._abort.is_set() or self._abort_batch == self._batch
            if aborting or stop or (deadline is not None and self.last_tick >= deadline):
                self.aborts += not aborting
                aborting = True
                self.t.write32(regs.CTRL.OFFSET, regs.CTRL.ENABLE.mask | regs.CTRL.ABORT.mask)
            fired = wait_interrupt(self._irq_fds, self.timeouts.irq_poll_s)
            new = self._drain()
            if new and not fired:
                # A card writes the completion, then signals: a poll that timed out in between finds it without
                # its interrupt. Give the interrupt one more poll interval before calling it lost, and drain again
                # for whatever else that interrupt announces (an eventfd coalesces several into one read).
                fired = wait_interrupt(self._irq_fds, self.timeouts.irq_poll_s)
                if fired:
                    new.update(self._drain())
                else:
                    self.lost_interrupts += 1
            if 1 in fired or self._halted():
                self._raise_device_error()
            done.update(new)
            progress = self._check_progress(progress, bool(new))
        self.last_tick = time.monotonic()
        return done

    def _drain(self) -> dict[int, Done]:
        """Consume every new completion (phase bit); validate each and acknowledge them with CQ_HEAD."""
        out: dict[int, Done] = {}
        ring = self._cq.data
        while True:
            offset = self._cq_head * COMPLETION_SIZE
            entry = Completion.unpack_from(ring, offset)
            if entry.phase & 1 != self._phase:
                break
            if completion_crc(ring, offset) != entry.crc:
                raise DeviceFault("bad_completion", f"CRC mismatch in completion {self._cq_head} (tag {entry.tag})")
            out.update([self._validate(entry)])
            self._cq_head = (self._cq_head + 1) % self._entries
            if self._cq_head == 0:
                self._phase ^= 1
        if out:
            self.t.write32(regs.CQ_HEAD.OFFSET, self._cq_head)
        return out

    def _validate(self, entry: Completion) -> tuple[int, Done]:
        self._seq += 1
        if entry.seq != self._seq:
            raise DeviceFault("bad_completion", f"sequence {entry.seq}, expected {self._seq}")
        desc = self._outstanding.pop(entry.tag, None)
        if desc is None:
            raise DeviceFault("bad_completion", f"completion for tag {entry.tag}, which is not outstanding")
        if entry.code not in JobCode._value2member_map_:
            raise DeviceFault("bad_completion", f"unknown completion code {entry.code} for tag {entry.tag}")
        if desc.opcode == Opcode.RUN and entry.code == JobCode.OK and entry.items != desc.items:
            raise DeviceFault("bad_completion", f"tag {entry.tag} answered {entry.items} of {desc.items} instances")
        return entry.tag, Done(entry.tag, JobCode(entry.code), entry.items, entry.cycles)

    def _halted(self) -> bool:
        return bool(regs.STATUS.HALTED.get(self.t.read32(regs.STATUS.OFFSET)))

    def _raise_device_error(self) -> None:
        code = regs.ERROR.CODE.get(self.t.read32(regs.ERROR.OFFSET))
        tag = self.t.read32(regs.ERROR_TAG.OFFSET)
        name = DeviceError(code).name if code in DeviceError._value2member_map_ else str(code)
        raise DeviceFault("device_error", f"ERROR.CODE {name} (job tag {tag}); the device halted")

    def _progress(self) -> tuple[int, int]:
        """What a working engine moves: instances finished and search nodes (a single long search finishes no
        instance for a long time, but its node count climbs; a hung engine moves neither)."""
        return self.t.read32(regs.PERF_INSTANCES.OFFSET), self.t.read32(regs.PERF_NODES_LO.OFFSET)

    def _check_progress(self, last: tuple[tuple[int, int], float], completed: bool) -> tuple[tuple[int, int], float]:
        """Hang detection: no completion, no instance finished and no node searched within the job timeout."""
        now = time.monotonic()
        if completed:
            return last[0], now
        if now - last[1] < self.timeouts.irq_poll_s:
            return last  # an interrupt woke us; the progress counters need not be read yet
        counters = self._progress()
        if counters != last[0]:
            return counters, now
        if now - last[1] > self.timeouts.job_s:
            stuck = sorted(self._outstanding)
            raise DeviceFault("timeout", f"no progress for {self.timeouts.job_s:g} s; outstanding tags {stuck}")
        return last

    # ------------------------------------------------------------------ program memory window
    def read_program_memory(self, offset: int, length: int) -> bytes:
        """Read program memory back through PROG_WIN_ADDR/DATA (programmed I/O, for verification)."""
        start = offset & ~3
        self.t.write32(regs.PROG_WIN_ADDR.OFFSET, start)
        words = [self.t.read32(regs.PROG_WIN_DATA.OFFSET) for _ in range(-(-(offset + length - start) // 4))]
        raw = np.array(words, dtype="<u4").tobytes()
        return raw[offset - start : offset - start + length]

    def counters(self) -> dict[str, int]:
        """The free-running performance counters (64-bit ones read HI, LO, HI)."""

        def wide(lo: type, hi: type) -> int:
            while True:
                h = self.t.read32(hi.OFFSET)  # type: ignore[attr-defined]
                low = self.t.read32(lo.OFFSET)  # type: ignore[attr-defined]
                if self.t.read32(hi.OFFSET) == h:  # type: ignore[attr-defined]
                    return h << 32 | low

        return {
            "cycles": wide(regs.PERF_CYCLES_LO, regs.PERF_CYCLES_HI),
            "sweeps": wide(regs.PERF_SWEEPS_LO, regs.PERF_SWEEPS_HI),
            "nodes": wide(regs.PERF_NODES_LO, regs.PERF_NODES_HI),
            "jobs": self.t.read32(regs.PERF_JOBS.OFFSET),
            "instances": self.t.read32(regs.PERF_INSTANCES.OFFSET),
            "heartbeat": self.t.read32(regs.HEARTBEAT.OFFSET),
        }

    def close(self) -> None:
        try:
            self.t.write32(regs.CTRL.OFFSET, regs.CTRL.SOFT_RESET.mask)  # stop fetching before the rings go away
        finally:
            for buf in (self._jq, self._cq):
                self.t.free_dma(buf)
