"""Hostile inputs for the soak (bench/soak.py) and the end-to-end tests: huge programs, fuzz, half-open sockets.

Each builds what a careless or hostile client would send, as bytes on the wire, without going through the
client library (which refuses most of it before it leaves the process).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

import numpy as np
from fpgacsp_proto.v1 import admin_pb2, isa_pb2, solver_pb2


def varint(value: int) -> bytes:
    """A protobuf base-128 varint."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def neq_register_request_bytes(num_vars: int, count: int, domain_size: int = 8) -> bytes:
    """A serialized ``RegisterProgramRequest`` of ``count`` NEQ constraints (x != y over a ring of variables),
    built as bytes: a million constraints in about a second, where building the message object takes minutes."""
    pieces = []
    for i in range(count):
        x, y = i % num_vars, (i + 1 + i // num_vars) % num_vars
        if x == y:
            y = (y + 1) % num_vars
        neq = b"\x08" + varint(x) + b"\x10" + varint(y)
        constraint = b"\x12" + varint(len(neq)) + neq
        pieces.append(b"\x1a" + varint(len(constraint)) + constraint)
    program = b"\x08" + varint(num_vars) + b"\x10" + varint(domain_size) + b"".join(pieces)
    return b"\x0a" + varint(len(program)) + program


# Every unary method of the two services, with its request type: the fuzz's targets.
METHODS: list[tuple[str, type]] = [
    (f"/{service.full_name}/{method.name}", getattr(module, method.input_type.name))
    for module in (solver_pb2, admin_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
]


def fuzz_request(rng: np.random.Generator, program_id: str) -> tuple[str, bytes]:
    """One hostile request: random bytes to a random method, or a structurally valid but wrong message."""
    path, request_type = METHODS[int(rng.integers(len(METHODS)))]
    kind = int(rng.integers(4))
    if kind == 0:  # random bytes
        return path, rng.bytes(int(rng.integers(0, 64)))
    if kind == 1:  # a wrong Solve
        n = int(rng.integers(0, 3))
        req = solver_pb2.SolveRequest(
            program_id=[program_id, "0" * 64, "x" * int(rng.integers(0, 200))][int(rng.integers(3))],
            batch_size=[0, 1, 2, 2**31, 2**32 - 1][int(rng.integers(5))],
            domains=rng.bytes(int(rng.integers(0, 400))),
            priorities=rng.bytes(int(rng.integers(0, 3)) * n),
            mode=int(rng.integers(0, 5)),  # type: ignore[arg-type]
            node_limit=[0, 1, 2**63 - 1, 2**64 - 1][int(rng.integers(4))],
            max_solutions=[0, 1, 2**64 - 1][int(rng.integers(3))],
        )
        return "/fpgacsp.v1.Solver/Solve", req.SerializeToString()
    if kind == 2:  # a wrong program
        d = [0, 1, 9, 64, 65, 2**32 - 1][int(rng.integers(6))]
        program = isa_pb2.Program(num_vars=[0, 1, 3, 2**20 + 1, 2**32 - 1][int(rng.integers(5))], domain_size=d)
        for _ in range(int(rng.integers(0, 4))):
            c = program.constraints.add()
            choice = int(rng.integers(4))
            if choice == 0:
                c.alldiff.vars.extend(int(v) for v in rng.integers(0, 5, size=int(rng.integers(0, 5))))
            elif choice == 1:
                c.neq.x, c.neq.y, c.neq.k = int(rng.integers(0, 5)), int(rng.integers(0, 5)), int(rng.integers(-99, 99))
            elif choice == 2:
                c.table2.x, c.table2.y = int(rng.integers(0, 5)), int(rng.integers(0, 5))
                c.table2.rows.extend(int(r) for r in rng.integers(0, 2**63, size=int(rng.integers(0, 70))))
            else:
                k = int(rng.integers(0, 4))
                c.linear.vars.extend(int(v) for v in rng.integers(0, 5, size=k))
                c.linear.coeffs.extend(int(v) for v in rng.integers(-(2**31), 2**31, size=k))
                c.linear.rhs = int(rng.integers(-(2**62), 2**62))
        req_p = solver_pb2.RegisterProgramRequest(program=program, pin=bool(rng.integers(2)))
        return "/fpgacsp.v1.Solver/RegisterProgram", req_p.SerializeToString()
    # a valid message of the method's own type, with odd ids
    message = request_type()
    if hasattr(message, "program_id"):
        message.program_id = ["", "f" * 64, "F" * 64, "é" * 10][int(rng.integers(4))]
    return path, message.SerializeToString()


class Slowloris:
    """``connections`` half-open HTTP requests to ``address`` that trickle a byte now and then and never finish;
    a connection the server closes is opened again. ``closed_by_server`` counts those closes."""

    def __init__(self, address: str, connections: int, trickle_s: float = 1.0) -> None:
        host, _, port = address.rpartition(":")
        self.target = (host.strip("[]"), int(port))
        self.connections = connections
        self.trickle_s = trickle_s
        self.closed_by_server = 0
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slowloris", daemon=True)

    def __enter__(self) -> Slowloris:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _open(self) -> socket.socket | None:
        try:
            sock = socket.create_connection(self.target, timeout=2)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            sock.setblocking(False)
            return sock
        except OSError:
            self.refused += 1
            return None

    def _run(self) -> None:
        socks: list[socket.socket] = []
        while not self._stop.is_set():
            while len(socks) < self.connections and not self._stop.is_set():
                sock = self._open()
                if sock is None:
                    break
                socks.append(sock)
            alive = []
            for sock in socks:
                try:
                    sock.send(b"X")
                    with contextlib.suppress(BlockingIOError):
                        if sock.recv(1) == b"":
                            raise ConnectionResetError
                    alive.append(sock)
                except OSError:
                    self.closed_by_server += 1
                    sock.close()
            socks = alive
            self._stop.wait(self.trickle_s)
        for sock in socks:
            sock.close()


def timed(call: Callable[[], object]) -> tuple[float, BaseException | None]:
    """Seconds ``call`` took, and what it raised (None if nothing)."""
    start = time.monotonic()
    try:
        call()
    except Exception as e:  # the soak records every outcome
        return time.monotonic() - start, e
    return time.monotonic() - start, None
