"""Huge programs on a real fpgacspd: refused before they are decoded, decoded off the event loop when allowed.

A program over ``registry.max_constraints`` must be refused at a fraction of what registering one at the limit
costs (the count is read from the request's top level, not after decoding every constraint), and registering one
just under the limit, which takes seconds to decode, validate and hash, must not hold the event loop: health checks
and status keep answering meanwhile (it is prepared in a child process). The limit is lowered here (200,000) to
keep the test short; bench/soak.py runs the default 1,048,576.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
from daemon_process import DaemonProcess
from fpgacsp_proto.convert import program_from_proto
from fpgacsp_proto.encoding import program_id
from fpgacsp_proto.isa import Mode
from fpgacsp_proto.v1 import admin_pb2, solver_pb2
from fpgacspd.core import INLINE_REGISTRATION_BYTES
from fpgacspd.engine import FastEngine
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .wire import (
    RPC_TIMEOUT_S,
    connect,
    decode,
    expect_error,
    first_difference,
    local,
    neq_register_request_bytes,
    raw_register,
    solve_request,
)

LIMIT = 200_000


def test_a_program_over_the_constraint_limit_is_refused_before_decoding_and_one_under_it_never_stalls_the_server() -> (
    None
):
    with DaemonProcess(["--max-constraints", str(LIMIT)]) as daemon:
        stubs = connect(daemon.address)
        register = raw_register(stubs.channel)
        over = neq_register_request_bytes(1000, LIMIT + 1)
        start = time.monotonic()
        expect_error(
            lambda: register(over, timeout=RPC_TIMEOUT_S), grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"program.constraints: {LIMIT + 1} constraints exceed registry.max_constraints = {LIMIT}",
        )  # fmt: skip
        refused_s = time.monotonic() - start

        health = health_pb2_grpc.HealthStub(stubs.channel)
        at_limit = neq_register_request_bytes(1000, LIMIT)
        waits: list[float] = []
        with ThreadPoolExecutor(1) as pool:
            start = time.monotonic()
            call = pool.submit(register, at_limit, timeout=RPC_TIMEOUT_S)
            while not call.done():
                t = time.monotonic()
                health.Check(health_pb2.HealthCheckRequest(service=""), timeout=RPC_TIMEOUT_S)
                waits.append(time.monotonic() - t)
                t = time.monotonic()
                stubs.admin.GetDeviceStatus(admin_pb2.GetDeviceStatusRequest(), timeout=RPC_TIMEOUT_S)
                waits.append(time.monotonic() - t)
                time.sleep(0.02)
            registered = call.result()
            took = time.monotonic() - start
        assert registered.created and registered.info.num_constraints == LIMIT
        # measured side by side: refusing one constraint too many costs a fraction of decoding the program
        assert refused_s < took / 2, f"refusing took {refused_s:.3f} s, registering {took:.3f} s: checked too late"
        assert took > 0.5 and len(waits) >= 5, (took, len(waits))  # it was a long registration ...
        assert max(waits) < 0.1, f"... and the server kept answering: {sorted(waits)[-5:]} s"


def test_a_program_prepared_in_the_child_process_solves_exactly_like_the_engine() -> None:
    """Over 64 KiB a body is prepared in a child process and only its canonical encoding comes back; the program
    is decoded on its first solve, on the device thread. Its id and its answers must be exactly those of the
    program itself."""
    body = neq_register_request_bytes(1000, 8_000)
    assert len(body) > INLINE_REGISTRATION_BYTES
    program = program_from_proto(solver_pb2.RegisterProgramRequest.FromString(body).program)
    domains = np.full((3, program.num_vars), 0xFF, dtype=np.uint64)
    domains[1, :5] = 1  # a few fixed values: propagation has something to do
    domains[2, 0] = domains[2, 1] = 2
    with DaemonProcess() as daemon:
        stubs = connect(daemon.address)
        registered = raw_register(stubs.channel)(body, timeout=RPC_TIMEOUT_S)
        assert registered.program_id == program_id(program) and registered.info.num_constraints == 8_000
        resp = stubs.solver.Solve(solve_request(registered.program_id, program, domains, Mode.PROPAGATE),
                                  timeout=RPC_TIMEOUT_S)  # fmt: skip
        want = local(FastEngine(threads=1), program, domains, Mode.PROPAGATE)
        assert first_difference(decode(resp, program, 3), want) == ""
