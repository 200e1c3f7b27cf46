"""The cocotb side of the ``rtl`` transport: the card's RTL (``fcsp_card``) on a simulated PCIe slot.

``fpgacspd.device.rtl.RtlTransport`` runs this module in Verilator through ``card_bridge.py`` and talks to it over a
socket (the frames are ``fpgacspd.device.rtl.protocol``). Here, BAR0 reads and writes become AXI4-Lite transfers
(cocotbext-axi's ``AxiLiteMaster``), the card's AXI4 master reaches the transport's DMA arena (a shared memory file
both processes map) through ``AxiSlave`` with an IOMMU check (an address no mapped buffer covers answers SLVERR),
the card's MSI-X outputs become interrupt frames the transport turns into eventfd signals, and a function-level
reset pulses ``rst``. Faults are armed through the card's ``inject_*`` hooks.

Time only moves while there is something to do: with no frame waiting and the sequencer idle (or hung), the bridge
waits on the socket without advancing the simulation; otherwise it runs the clock in slices and polls between them.
"""

from __future__ import annotations

import logging
import mmap
import os
import select
import socket
from typing import Any

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiSlave
from fpgacspd.device.rtl import protocol as p  # the frames, shared with the transport

SLICE = 64  # cycles run between two polls of the socket while the card works
S_IDLE, S_HANG = 1, 16  # fcsp_card's sequencer states in which nothing happens until the host acts


def _present(bus: Any) -> Any:
    """``bus`` without the optional signals the card does not have (IDs, user, QoS, ...): cocotb-bus leaves them as
    None attributes, which cocotbext-axi 0.1.28 takes for present signals under cocotb 2."""
    for side in ("write", "read"):
        for name in ("aw", "w", "b", "ar", "r"):
            channel = getattr(getattr(bus, side, None), name, None)
            if channel is not None:
                for sig, handle in list(vars(channel).items()):
                    if handle is None:
                        delattr(channel, sig)
    return bus


class HostMemory:
    """The DMA arena, as the card's IOMMU sees it: only mapped buffers answer."""

    def __init__(self, path: str, size: int) -> None:
        fd = os.open(path, os.O_RDWR)
        try:
            self.mem = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.mapped: dict[int, int] = {}  # iova -> size

    def _offset(self, address: int, length: int) -> int:
        for iova, size in self.mapped.items():
            if iova <= address and address + length <= iova + size:
                return address - p.IOVA_BASE
        raise ValueError(f"no mapping covers iova {address:#x} + {length}")

    async def read(self, address: int, length: int) -> bytes:
        off = self._offset(address, length)
        return self.mem[off : off + length]

    async def write(self, address: int, data: bytes) -> None:
        off = self._offset(address, len(data))
        self.mem[off : off + len(data)] = data


class Bridge:
    def __init__(self, dut: Any, sock: socket.socket, memory: HostMemory) -> None:
        self.dut, self.sock, self.memory = dut, sock, memory
        self.bar = AxiLiteMaster(_present(AxiLiteBus.from_prefix(dut, "s_axil")), dut.clk, dut.rst)
        self.dma = AxiSlave(_present(AxiBus.from_prefix(dut, "m_axi")), dut.clk, dut.rst, target=memory)
        for name in ("s_axil", "m_axi"):  # one line per transfer otherwise
            logging.getLogger(f"cocotb.{dut._name}.{name}").setLevel(logging.WARNING)
        self.faults = {kind: [0, 0] for kind in p.FaultKind}  # kind -> [times left, instance count or 0]
        self.inbox = b""
        self.cycles = 0

    def send(self, kind: int, value: int) -> None:
        self.sock.sendall(p.REPLY.pack(kind, value))

    async def reset(self) -> None:
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)

    def arm_lines(self) -> None:
        dut = self.dut
        dut.inject_hang.value = int(self.faults[p.FaultKind.HANG][0] > 0)
        dut.inject_error.value = int(self.faults[p.FaultKind.ERROR][0] > 0)
        dut.inject_corrupt.value = int(self.faults[p.FaultKind.CORRUPT][0] > 0)
        items = {self.faults[k][1] for k in (p.FaultKind.HANG, p.FaultKind.ERROR, p.FaultKind.CORRUPT)
                 if self.faults[k][0] > 0}  # fmt: skip
        dut.inject_items.value = items.pop() if len(items) == 1 else 0

    async def watch_faults(self) -> None:
        while True:
            await RisingEdge(self.dut.fault_taken)
            for kind in (p.FaultKind.HANG, p.FaultKind.ERROR, p.FaultKind.CORRUPT):
                if self.faults[kind][0] > 0 and int(getattr(self.dut, f"inject_{kind.name.lower()}").value):
                    self.faults[kind][0] -= 1
                    break
            self.arm_lines()

    async def watch_irq(self, signal: Any, vector: int) -> None:
        while True:
            await RisingEdge(signal)
            drop = self.faults[p.FaultKind.DROP_IRQ]
            if vector == 0 and drop[0] > 0:
                drop[0] -= 1  # a message lost on the way: IRQ_STATUS is set, no eventfd fires
                continue
            self.send(p.Reply.IRQ, vector)

    def frames(self, block: bool) -> list[tuple[int, int, int]]:
        timeout = 0.05 if block else 0.0
        while True:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                break
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                return [(p.Op.CLOSE, 0, 0)]
            self.inbox += chunk
            timeout = 0.0
        n = len(self.inbox) // p.REQUEST.size
        out = [p.REQUEST.unpack_from(self.inbox, i * p.REQUEST.size) for i in range(n)]
        self.inbox = self.inbox[n * p.REQUEST.size :]
        return out

    def idle(self) -> bool:
        return int(self.dut.st.value) in (S_IDLE, S_HANG)

    async def serve(self) -> None:
        while True:
            frames = self.frames(block=self.idle())
            for op, a, b in frames:
                if op == p.Op.READ:
                    self.send(p.Reply.VALUE, await self.bar.read_dword(a))
                elif op == p.Op.WRITE:
                    await self.bar.write_dword(a, b)
                    self.send(p.Reply.VALUE, 0)
                elif op == p.Op.MAP:
                    self.memory.mapped[a] = b
                    self.send(p.Reply.VALUE, 0)
                elif op == p.Op.UNMAP:
                    self.memory.mapped.pop(a, None)
                    self.send(p.Reply.VALUE, 0)
                elif op == p.Op.FUNCTION_RESET:
                    for kind in self.faults:
                        self.faults[kind] = [0, 0]
                    self.arm_lines()
                    await self.reset()
                    self.send(p.Reply.VALUE, 0)
                elif op == p.Op.FAULT:
                    self.faults[p.FaultKind(a)] = [b & 0xFFFFFFFF, b >> 32]
                    self.arm_lines()
                    self.send(p.Reply.VALUE, 0)
                elif op == p.Op.CYCLES:
                    self.send(p.Reply.VALUE, self.cycles)
                elif op == p.Op.CLOSE:
                    self.send(p.Reply.VALUE, 0)
                    return
            if not frames and not self.idle():
                await ClockCycles(self.dut.clk, SLICE)
                self.cycles += SLICE
            elif frames:
                await ClockCycles(self.dut.clk, 2)  # let a doorbell reach the sequencer before the idle check
                self.cycles += 2


@cocotb.test()
async def card(dut: Any) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(os.environ["FCSP_BRIDGE_SOCKET"])
    memory = HostMemory(os.environ["FCSP_BRIDGE_ARENA"], int(os.environ["FCSP_BRIDGE_ARENA_SIZE"]))
    Clock(dut.clk, 10, unit="ns").start()  # cocotb 2: starts its own task
    for name in ("inject_hang", "inject_error", "inject_corrupt", "inject_items"):
        getattr(dut, name).value = 0
    bridge = Bridge(dut, sock, memory)
    await bridge.reset()
    cocotb.start_soon(bridge.watch_irq(dut.irq_completion, 0))
    cocotb.start_soon(bridge.watch_irq(dut.irq_error, 1))
    cocotb.start_soon(bridge.watch_faults())
    bridge.send(p.Reply.READY, 0)
    await bridge.serve()
    sock.close()
