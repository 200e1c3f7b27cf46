"""The ``rtl`` transport: the card's RTL top level (fpga_bitstream/rtl/fcsp_card.sv) simulated by Verilator.

What VFIO gives the driver against a card, this gives it against the card's RTL in a second process: BAR0 reads and
writes (sent over a Unix socket to a cocotb bridge that turns them into AXI4-Lite transfers), DMA buffers (cut out
of one shared-memory arena that the bridge maps too, so the card's AXI4 master reads and writes the driver's
buffers in place, by IOVA, and an address no buffer covers answers SLVERR), MSI-X vectors (the bridge forwards the
card's interrupt outputs, a reader thread here signals the eventfds) and the function-level reset (the card's
``rst``). The driver is the same as over ``sim`` and ``vfio``; only time is slower (docs/device.md, "The card in
RTL"). The simulator needs the repository's ``fpga_bitstream/`` (RTL and testbench) and its dev requirements; the
first start of a parameter set builds the card (minutes), later ones reuse the build.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ..transport import DmaBuffer, TransportError, check_bar_offset
from . import protocol as p

_PAGE = 4096
ARENA_BYTES = 1 << 30  # sparse: only the pages the driver's buffers touch take memory
# A small CAP_JOB: a simulated card is slow anyway, and the driver's splitting of batches into jobs gets exercised
CARD_DEFAULTS = {"SLOTS": 8, "PM_KIB": 16, "MAX_INSTANCES": 16, "JQ_MAX_LOG2": 10, "CQ_MAX_LOG2": 10}


def card_params(**card: int) -> dict[str, int | str]:
    """The Verilog parameters of the card: the engine of ``fpgacspd.rtl.CARD`` and the card's own (SLOTS, PM_KIB,
    MAX_INSTANCES, JQ_MAX_LOG2, CQ_MAX_LOG2, CLK_KHZ), ``card`` overriding the defaults."""
    from ...rtl import CARD

    unknown = set(card) - set(CARD_DEFAULTS) - {"CLK_KHZ"}
    if unknown:
        raise ValueError(f"card parameters: unknown {sorted(unknown)}; known: {sorted(CARD_DEFAULTS)} and CLK_KHZ")
    return {**CARD.verilog_parameters(), **CARD_DEFAULTS, **card}


def _fpga_bitstream() -> Path:
    root = Path(os.environ.get("FCSP_RTL_ROOT") or Path(__file__).resolve().parents[5] / "fpga_bitstream")
    if not (root / "tb" / "card_bridge.py").is_file():
        raise TransportError(
            f"rtl backend: {root} holds no fpga_bitstream/tb/card_bridge.py; the rtl backend runs from a checkout of "
            "the repository (set FCSP_RTL_ROOT to its fpga_bitstream folder)"
        )
    return root


class RtlTransport:
    """BAR0, DMA buffers and interrupts of ``fcsp_card`` running in Verilator behind a cocotb bridge."""

    name = "rtl"

    def __init__(self, start_timeout_s: float = 900.0, reply_timeout_s: float = 120.0, **card: int) -> None:
        self.params = card_params(**card)
        self.description = (
            f"card RTL in Verilator (fcsp_card: {self.params['NV']} variables, D <= {self.params['DW']}, "
            f"{self.params['NC']} constraints, {self.params['LANES']} lanes)"
        )
        self._reply_timeout = reply_timeout_s
        self._lock = threading.Lock()  # one request at a time: the socket carries one reply per request
        self._replies: queue.Queue[int] = queue.Queue()
        self._ready = threading.Event()
        self._closed = False
        self._buffers: dict[int, tuple[int, int]] = {}  # iova -> (arena offset, bytes incl. guard page)
        self._fds = tuple(os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) for _ in range(2))
        self._dir = tempfile.TemporaryDirectory(
            prefix="fcsp-rtl-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None
        )
        arena = Path(self._dir.name) / "arena"
        with open(arena, "wb") as f:
            f.truncate(ARENA_BYTES)
        fd = os.open(arena, os.O_RDWR)
        try:
            self._arena = mmap.mmap(fd, ARENA_BYTES)
        finally:
            os.close(fd)
        self._arena_view = np.frombuffer(self._arena, dtype=np.uint8)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        path = str(Path(self._dir.name) / "bridge.sock")
        listener.bind(path)
        listener.listen(1)
        listener.settimeout(1.0)
        hw = _fpga_bitstream()
        # the build's and the simulation's output; kept after a failed start, so its error can be read
        fd, log = tempfile.mkstemp(prefix="fcsp-rtl-", suffix=".log")
        os.close(fd)
        self.log_path = Path(log)
        env = dict(os.environ, FCSP_BRIDGE_SOCKET=path, FCSP_BRIDGE_ARENA=str(arena),
                   FCSP_BRIDGE_ARENA_SIZE=str(ARENA_BYTES), FCSP_CARD_PARAMS=json.dumps(self.params))  # fmt: skip
        self._log = open(self.log_path, "wb")  # noqa: SIM115  (held open for the simulator's lifetime)
        self._proc = subprocess.Popen(
            [sys.executable, str(hw / "tb" / "card_bridge.py")], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        try:
            self._sock = self._accept(listener, start_timeout_s)
        except BaseException:
            self._abandon()
            raise
        finally:
            listener.close()
        self._reader = threading.Thread(target=self._read_replies, name="fcsp-rtl-bridge", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + start_timeout_s
        while not self._ready.wait(0.5):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                tail = self._tail()
                self._abandon()
                raise TransportError(f"rtl backend: the simulator connected but never came up ({tail})")

    # ------------------------------------------------------------------ the transport protocol
    def read32(self, offset: int) -> int:
        check_bar_offset(offset)
        return self._request(p.Op.READ, offset)

    def write32(self, offset: int, value: int) -> None:
        check_bar_offset(offset)
        self._request(p.Op.WRITE, offset, value & 0xFFFFFFFF)

    def alloc_dma(self, size: int) -> DmaBuffer:
        if size < 1:
            raise TransportError(f"alloc_dma: size must be positive, got {size}")
        pages = -(-size // _PAGE) * _PAGE
        with self._lock:
            offset = self._first_fit(pages + _PAGE)  # a guard page after each buffer: overruns do not alias
            iova = p.IOVA_BASE + offset
            self._buffers[iova] = (offset, pages + _PAGE)
        data = self._arena_view[offset : offset + pages]
        data[:] = 0
        self._request(p.Op.MAP, iova, pages)
        return DmaBuffer(iova, data)

    def free_dma(self, buf: DmaBuffer) -> None:
        with self._lock:
            if self._buffers.pop(buf.iova, None) is None:
                return
        self._request(p.Op.UNMAP, buf.iova)

    def irq_fds(self) -> tuple[int, ...]:
        return self._fds

    def function_reset(self) -> None:
        self._request(p.Op.FUNCTION_RESET)

    def close(self) -> None:
        if self._closed:
            return
        with contextlib.suppress(TransportError):  # a simulator that died is closed already
            self._request(p.Op.CLOSE)
        self._closed = True
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._sock.close()
        self._release()
        self.log_path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ for tests and benchmarks
    def arm(self, kind: p.FaultKind, times: int = 1, count: int = 0) -> None:
        """Make the next ``times`` RUN jobs (of ``count`` instances; 0: any) take fault ``kind`` on the card."""
        self._request(p.Op.FAULT, int(kind), times | count << 32)

    def simulated_cycles(self) -> int:
        """Clock cycles the simulator has run since it started."""
        return self._request(p.Op.CYCLES)

    # ------------------------------------------------------------------ internals
    def _accept(self, listener: socket.socket, timeout_s: float) -> socket.socket:
        """The bridge's connection, once the simulator is built and running; an error if it exits first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                return listener.accept()[0]
            except TimeoutError:
                if self._proc.poll() is not None:
                    raise TransportError(
                        f"rtl backend: the simulator exited with {self._proc.returncode} before it served "
                        f"({self._tail()}; full log: {self.log_path})"
                    ) from None
        raise TransportError(f"rtl backend: the simulator did not start within {timeout_s:.0f} s ({self._tail()})")

    def _request(self, op: p.Op, a: int = 0, b: int = 0) -> int:
        with self._lock:
            if self._closed:
                raise TransportError("rtl backend: the transport is closed")
            try:
                self._sock.sendall(p.REQUEST.pack(op, a, b))
                return self._replies.get(timeout=self._reply_timeout)
            except (OSError, queue.Empty):
                alive = self._proc.poll() is None
                raise TransportError(
                    f"rtl backend: no answer to {op.name} from the simulator "
                    f"({'still running' if alive else f'exited with {self._proc.returncode}'}; {self._tail()})"
                ) from None

    def _read_replies(self) -> None:
        buf = b""
        while True:
            try:
                chunk = self._sock.recv(1 << 16)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            n = len(buf) // p.REPLY.size
            for i in range(n):
                kind, value = p.REPLY.unpack_from(buf, i * p.REPLY.size)
                if kind == p.Reply.IRQ:
                    os.eventfd_write(self._fds[value], 1)
                elif kind == p.Reply.READY:
                    self._ready.set()
                else:
                    self._replies.put(value)
            buf = buf[n * p.REPLY.size :]

    def _first_fit(self, nbytes: int) -> int:
        pos = 0
        for offset, size in sorted(self._buffers.values()):
            if offset - pos >= nbytes:
                break
            pos = offset + size
        if pos + nbytes > ARENA_BYTES:
            raise TransportError(f"alloc_dma: the {ARENA_BYTES >> 20} MiB DMA arena has no {nbytes} bytes free")
        return pos

    def _tail(self) -> str:
        self._log.flush()
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-5:]
        except OSError:
            return "no log"
        return "simulator log: " + " | ".join(lines)

    def _abandon(self) -> None:
        self._closed = True
        self._proc.kill()
        self._proc.wait()
        self._release()

    def _release(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._log.close()
        del self._arena_view
        with contextlib.suppress(BufferError):  # a DmaBuffer still holds a view: the mapping goes with the process
            self._arena.close()
        self._dir.cleanup()
