"""The client's gRPC boundary against a scripted server on a real loopback socket.

A scripted server (not the daemon) makes every status code, retry and malformed answer happen on demand
and counts what actually reached it, so these tests pin down the client alone: each gRPC code becomes the
right exception with the server's message, ``UNAVAILABLE`` is retried by the service config (and only it),
``NOT_FOUND`` triggers exactly one re-registration, every RPC carries a deadline, and input checks fail
before anything is sent. The daemon itself is exercised in ``test_client_daemon.py``.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import pickle
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import fpgacsp
import grpc
import numpy as np
import pytest
from fpgacsp import Mode, connect, connect_async, sudoku_program
from fpgacsp._channel import RETRY_MAX_ATTEMPTS, SERVICE_CONFIG, channel_options
from fpgacsp._client import NOT_FOUND_RETRIES
from fpgacsp._retry import SOLVE_RETRIES_ON_INTERNAL
from fpgacsp_proto import program_id
from fpgacsp_proto.bitset import pack_domains, unpack_domains
from fpgacsp_proto.convert import pack_u64, program_from_proto
from fpgacsp_proto.v1 import admin_pb2, admin_pb2_grpc, solver_pb2, solver_pb2_grpc
from fpgacspd.engine import FastEngine, SolveOptions

PROGRAM = sudoku_program(2)
FULL = np.full((3, 16), 0b1111, dtype=np.uint64)
NOWHERE = "fpgacsp-no-such-host.invalid:1"  # resolving fails: any RPC would be UNAVAILABLE


class Script:
    """What the scripted server answers: per method, a queue of (code, message) to fail with; else success."""

    def __init__(self) -> None:
        self.failures: dict[str, list[tuple[grpc.StatusCode, str]]] = {}
        self.calls: Counter[str] = Counter()
        self.deadlines: dict[str, float | None] = {}
        self.delay_s = 0.0
        self.bad_response = False
        self.wrong_id = False
        self.lock = threading.Lock()

    def fail(self, method: str, *codes: grpc.StatusCode, message: str = "scripted failure") -> None:
        self.failures.setdefault(method, []).extend((c, f"{message} ({c.name})") for c in codes)

    def enter(self, method: str, context: grpc.ServicerContext) -> None:
        with self.lock:
            self.calls[method] += 1
            self.deadlines[method] = context.time_remaining()
            pending = self.failures.get(method)
            failure = pending.pop(0) if pending else None
        if self.delay_s:
            time.sleep(self.delay_s)
        if failure is not None:
            context.abort(*failure)


class FakeSolver(solver_pb2_grpc.SolverServicer):
    def __init__(self, script: Script) -> None:
        self.s = script
        self.engine = FastEngine(threads=1)
        self.programs: dict[str, Any] = {}

    def RegisterProgram(self, request: Any, context: Any) -> solver_pb2.RegisterProgramResponse:
        self.s.enter("RegisterProgram", context)
        program = program_from_proto(request.program)
        pid = "0" * 64 if self.s.wrong_id else program_id(program)
        self.programs[pid] = program
        return solver_pb2.RegisterProgramResponse(program_id=pid, created=True)

    def Solve(self, request: Any, context: Any) -> solver_pb2.SolveResponse:
        self.s.enter("Solve", context)
        program = self.programs[request.program_id]
        doms = unpack_domains(request.domains, request.batch_size, program.num_vars, program.domain_size)
        options = SolveOptions(mode=Mode(request.mode), node_limit=request.node_limit or 1000, max_solutions=1)
        res = self.engine.solve(program, doms, None, options)
        out = pack_domains(res.domains, program.domain_size)
        return solver_pb2.SolveResponse(
            domains=out[:-1] if self.s.bad_response else out,
            status=res.status.tobytes(),
            nodes=pack_u64(res.nodes),
            solutions=pack_u64(res.solutions),
            sweeps=pack_u64(res.sweeps),
            timing=solver_pb2.Timing(queue_us=1, device_us=2, total_us=3, device_batch_size=4, merged_requests=1),
        )

    def GetProgram(self, request: Any, context: Any) -> solver_pb2.GetProgramResponse:
        self.s.enter("GetProgram", context)
        return solver_pb2.GetProgramResponse(info=solver_pb2.ProgramInfo(program_id=request.program_id, num_vars=16))

    def ListPrograms(self, request: Any, context: Any) -> solver_pb2.ListProgramsResponse:
        self.s.enter("ListPrograms", context)
        return solver_pb2.ListProgramsResponse(programs=[solver_pb2.ProgramInfo(program_id=p) for p in self.programs])

    def ReleaseProgram(self, request: Any, context: Any) -> solver_pb2.ReleaseProgramResponse:
        self.s.enter("ReleaseProgram", context)
        return solver_pb2.ReleaseProgramResponse(released=self.programs.pop(request.program_id, None) is not None)


class FakeAdmin(admin_pb2_grpc.AdminServicer):
    def __init__(self, solver: FakeSolver) -> None:
        self.solver = solver

    @property
    def s(self) -> Script:
        return self.solver.s

    def GetDeviceStatus(self, request: Any, context: Any) -> admin_pb2.DeviceStatus:
        self.s.enter("GetDeviceStatus", context)
        return admin_pb2.DeviceStatus(backend="fake", state=admin_pb2.DEVICE_STATE_READY, queue_depth=7)

    def SelfTest(self, request: Any, context: Any) -> admin_pb2.SelfTestResponse:
        self.s.enter("SelfTest", context)
        return admin_pb2.SelfTestResponse(passed=True, cases=[admin_pb2.SelfTestCase(name="x", passed=True)])

    def Reset(self, request: Any, context: Any) -> admin_pb2.ResetResponse:
        self.s.enter("Reset", context)
        return admin_pb2.ResetResponse(self_test_passed=True, duration_us=5)

    def GetStats(self, request: Any, context: Any) -> admin_pb2.Stats:
        self.s.enter("GetStats", context)
        return admin_pb2.Stats(requests=[admin_pb2.MethodStats(method="Solve", code="OK", count=2)], batches=1)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, FakeSolver]]:
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    solver = FakeSolver(Script())
    solver_pb2_grpc.add_SolverServicer_to_server(solver, srv)
    admin_pb2_grpc.add_AdminServicer_to_server(FakeAdmin(solver), srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    yield f"127.0.0.1:{port}", solver
    srv.stop(grace=None)
    solver.engine.close()


@pytest.fixture
def script(server: tuple[str, FakeSolver]) -> Iterator[Script]:
    """A fresh script and an empty registry per test (the server is shared)."""
    fresh = Script()
    server[1].s = fresh
    server[1].programs.clear()
    yield fresh


@pytest.fixture
def client(server: tuple[str, FakeSolver], script: Script) -> Iterator[fpgacsp.Client]:
    with connect(server[0], timeout=10) as c:
        yield c


# --- errors ------------------------------------------------------------------------------------------------

CODES = [
    (grpc.StatusCode.INVALID_ARGUMENT, fpgacsp.InvalidArgumentError, ValueError),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, fpgacsp.QueueFullError, fpgacsp.ResourceExhaustedError),
    (grpc.StatusCode.DEADLINE_EXCEEDED, fpgacsp.DeadlineExceededError, TimeoutError),
    (grpc.StatusCode.CANCELLED, fpgacsp.CancelledError, fpgacsp.FpgacspError),
    (grpc.StatusCode.UNAVAILABLE, fpgacsp.UnavailableError, ConnectionError),
    (grpc.StatusCode.INTERNAL, fpgacsp.ServerError, fpgacsp.FpgacspError),
    (grpc.StatusCode.UNKNOWN, fpgacsp.ServerError, fpgacsp.FpgacspError),
    (grpc.StatusCode.PERMISSION_DENIED, fpgacsp.PermissionDeniedError, PermissionError),
    (grpc.StatusCode.UNAUTHENTICATED, fpgacsp.UnauthenticatedError, PermissionError),
    (grpc.StatusCode.DATA_LOSS, fpgacsp.ServerError, fpgacsp.FpgacspError),
]


@pytest.mark.parametrize(("code", "cls", "base"), CODES, ids=[c[0].name for c in CODES])
def test_every_code_becomes_its_exception(
    client: fpgacsp.Client, script: Script, code: Any, cls: Any, base: Any
) -> None:
    client.register(PROGRAM)
    script.fail("Solve", *[code] * RETRY_MAX_ATTEMPTS, message="domains: the field and the problem")
    with pytest.raises(cls) as exc:
        client.solve(PROGRAM, FULL)
    err = exc.value
    assert type(err) is cls and isinstance(err, base) and isinstance(err, fpgacsp.FpgacspError)
    assert not isinstance(err, grpc.RpcError)
    assert (err.code, err.method) == (code, "Solve")
    assert err.details == f"domains: the field and the problem ({code.name})"  # the server's words, kept
    assert str(err) == f"Solve failed with {code.name}: {err.details}"
    assert pickle.loads(pickle.dumps(err)).code == code  # crosses process boundaries intact
    # UNAVAILABLE: gRPC's own retries; INTERNAL (the device gave up on the batch): the client's, solving is pure
    expected = {
        grpc.StatusCode.UNAVAILABLE: RETRY_MAX_ATTEMPTS,
        grpc.StatusCode.INTERNAL: 1 + SOLVE_RETRIES_ON_INTERNAL,
    }
    assert script.calls["Solve"] == expected.get(code, 1)


def test_resource_exhausted_on_registration_is_a_program_limit(client: fpgacsp.Client, script: Script) -> None:
    script.fail("RegisterProgram", grpc.StatusCode.RESOURCE_EXHAUSTED, message="program: 81 variables > max_vars 16")
    with pytest.raises(fpgacsp.ProgramLimitError, match="max_vars 16") as exc:
        client.solve(sudoku_program(), np.full((1, 81), 511, dtype=np.uint64))  # registration happens inside
    assert isinstance(exc.value, fpgacsp.ResourceExhaustedError) and not isinstance(exc.value, fpgacsp.QueueFullError)
    assert exc.value.method == "RegisterProgram" and script.calls["Solve"] == 0


def test_malformed_response_and_wrong_program_id_are_server_errors(client: fpgacsp.Client, script: Script) -> None:
    script.bad_response = True
    with pytest.raises(fpgacsp.ServerError, match=r"malformed Solve response: domains: expected 48 bytes .*, got 47"):
        client.solve(PROGRAM, FULL)
    script.wrong_id = True
    with pytest.raises(fpgacsp.ServerError, match="disagree on the encoding"):
        client.register(sudoku_program(3))


# --- retries, re-registration, deadlines -------------------------------------------------------------------


def test_service_config_retries_unavailable_only(client: fpgacsp.Client, script: Script) -> None:
    options = dict(channel_options("test"))
    assert options["grpc.enable_retries"] == 1
    config = json.loads(options["grpc.service_config"])
    assert config == SERVICE_CONFIG
    policy = config["methodConfig"][0]
    assert {n["service"] for n in policy["name"]} == {"fpgacsp.v1.Solver", "fpgacsp.v1.Admin"}
    assert policy["retryPolicy"]["maxAttempts"] == 4 and policy["retryPolicy"]["retryableStatusCodes"] == [
        "UNAVAILABLE"
    ]
    assert options["grpc.max_receive_message_length"] == options["grpc.max_send_message_length"] == 128 << 20

    client.register(PROGRAM)
    script.fail("Solve", grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE)
    res = client.solve(PROGRAM, FULL)  # two refusals absorbed by gRPC's retries
    assert script.calls["Solve"] == 3 and res.timing is not None and res.timing.device_batch_size == 4
    script.fail("GetDeviceStatus", grpc.StatusCode.UNAVAILABLE)
    assert client.device_status().queue_depth == 7 and script.calls["GetDeviceStatus"] == 2  # admin plane too


def test_retries_follow_the_channel_option(server: tuple[str, FakeSolver], script: Script) -> None:
    with connect(server[0], enable_retries=0) as c:  # an override, with the grpc. prefix left out
        c.register(PROGRAM)
        script.fail("Solve", grpc.StatusCode.UNAVAILABLE)
        with pytest.raises(fpgacsp.UnavailableError):
            c.solve(PROGRAM, FULL)
    assert script.calls["Solve"] == 1


def test_not_found_reregisters_and_retries_a_bounded_number_of_times(client: fpgacsp.Client, script: Script) -> None:
    client.solve(PROGRAM, FULL)
    assert script.calls == Counter({"RegisterProgram": 1, "Solve": 1})  # registered on first use, once
    client.solve(PROGRAM, FULL)
    assert script.calls["RegisterProgram"] == 1  # cached
    script.fail("Solve", grpc.StatusCode.NOT_FOUND, message="program_id: unknown")
    assert (client.solve(PROGRAM, FULL).status == fpgacsp.Status.SOLVED).all()
    assert script.calls == Counter({"RegisterProgram": 2, "Solve": 4})  # a daemon that forgot: one re-registration
    # a fleet whose daemons have not seen it: the k-th retry registers k times (round robin reaches them all) ...
    script.fail("Solve", *[grpc.StatusCode.NOT_FOUND] * 3, message="program_id: unknown")
    assert (client.solve(PROGRAM, FULL).status == fpgacsp.Status.SOLVED).all()
    assert script.calls == Counter({"RegisterProgram": 2 + 1 + 2 + 3, "Solve": 4 + 4})
    # ... and it is not retried for ever
    script.fail("Solve", *[grpc.StatusCode.NOT_FOUND] * (NOT_FOUND_RETRIES + 1), message="program_id: unknown")
    with pytest.raises(fpgacsp.NotFoundError, match="program_id: unknown"):
        client.solve(PROGRAM, FULL)
    registrations = sum(range(1, NOT_FOUND_RETRIES + 1))
    assert script.calls == Counter({"RegisterProgram": 8 + registrations, "Solve": 8 + NOT_FOUND_RETRIES + 1})


def test_every_call_carries_a_deadline(client: fpgacsp.Client, script: Script) -> None:
    pid = client.register(PROGRAM)
    client.solve(PROGRAM, FULL)
    client.program_info(pid)
    client.list_programs()
    client.device_status(timeout=3)
    client.stats()
    assert client.self_test().passed and client.reset().self_test_passed
    assert client.release(PROGRAM) is True
    methods = {"RegisterProgram", "Solve", "GetProgram", "ListPrograms", "ReleaseProgram"}
    methods |= {"GetDeviceStatus", "GetStats", "SelfTest", "Reset"}
    assert set(script.deadlines) == methods
    for method, remaining in script.deadlines.items():
        limit = 3 if method == "GetDeviceStatus" else 10
        # gRPC rounds the timeout it sends up (units of its grpc-timeout header): allow a little slack
        assert remaining is not None and 0 < remaining <= limit + 0.5, (method, remaining)


def test_tiny_timeout_raises_deadline_exceeded(client: fpgacsp.Client, script: Script) -> None:
    client.register(PROGRAM)
    script.delay_s = 0.5
    start = time.monotonic()
    with pytest.raises(fpgacsp.DeadlineExceededError) as exc:
        client.solve(PROGRAM, FULL, timeout=0.05)
    assert time.monotonic() - start < 0.4 and isinstance(exc.value, TimeoutError)
    assert exc.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    with pytest.raises(fpgacsp.DeadlineExceededError):
        client.device_status(timeout=0.05)


def test_async_client_same_contract(server: tuple[str, FakeSolver], script: Script) -> None:
    async def run() -> None:
        async with connect_async(server[0], timeout=10) as ac:
            res = await ac.solve(PROGRAM, FULL, mode=Mode.PROPAGATE)
            assert res.batch_size == 3 and script.calls["RegisterProgram"] == 1
            script.fail("Solve", grpc.StatusCode.NOT_FOUND)
            await ac.solve(PROGRAM, FULL)
            assert script.calls["RegisterProgram"] == 2
            script.fail("Solve", *[grpc.StatusCode.UNAVAILABLE] * 2)
            await ac.solve(PROGRAM, FULL)
            script.fail("Solve", grpc.StatusCode.INVALID_ARGUMENT, message="priorities: wrong")
            with pytest.raises(fpgacsp.InvalidArgumentError, match=r"priorities: wrong"):
                await ac.solve(PROGRAM, FULL)
            assert (await ac.stats()).count("Solve") == 2 and (await ac.device_status()).queue_depth == 7
            assert [p.program_id for p in await ac.list_programs()] == [program_id(PROGRAM)]
            script.delay_s = 0.5
            with pytest.raises(fpgacsp.DeadlineExceededError):
                await ac.solve(PROGRAM, FULL, timeout=0.05)
            task = asyncio.ensure_future(ac.solve(PROGRAM, FULL))
            await asyncio.sleep(0.1)
            task.cancel()  # the caller's cancellation stays asyncio's, never a library error
            with pytest.raises(asyncio.CancelledError):
                await task
        with pytest.raises(fpgacsp.FpgacspError, match="is closed"):
            await ac.list_programs()

    asyncio.run(run())
    assert set(script.deadlines) >= {"RegisterProgram", "Solve", "GetStats", "GetDeviceStatus", "ListPrograms"}
    assert all(r is not None and r <= 10.5 for r in script.deadlines.values())


# --- client-side checks: nothing is sent ------------------------------------------------------------------


BAD_INPUTS = [
    ({"domains": FULL[:, :15]}, "domains: expected shape [B, 16], got [3, 15]"),
    ({"domains": FULL.astype(np.float64)}, "domains: expected an unsigned integer array, got dtype float64"),
    ({"domains": -FULL.astype(np.int64)}, "domains: negative words are not bitsets"),
    ({"domains": FULL | 0b10000}, "domains[0, 0] = 0x1f has bits set at or above domain_size 4"),
    ({"priorities": np.zeros((3, 16, 3), np.uint8)}, "priorities: expected shape [3, 16, 4], got [3, 16, 3]"),
    ({"priorities": np.zeros((3, 16, 4), np.int32)}, "priorities: expected dtype uint8, got int32"),
    ({"mode": 3}, "mode: must be PROPAGATE (1) or SOLVE (2), got 3"),
    ({"mode": "search"}, "mode: must be PROPAGATE (1) or SOLVE (2), got 'search'"),
    ({"node_limit": 0}, "node_limit: must be an integer in [1, 2^63 - 1], got 0"),
    ({"max_solutions": 1 << 63}, "max_solutions: must be an integer in [1, 2^63 - 1], got 9223372036854775808"),
    ({"max_solutions": True}, "max_solutions: must be an integer in [1, 2^63 - 1], got True"),
]


@pytest.mark.parametrize(
    ("change", "message"), BAD_INPUTS, ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(BAD_INPUTS)]
)
def test_inputs_are_checked_before_any_rpc(
    server: tuple[str, FakeSolver], script: Script, change: dict[str, Any], message: str
) -> None:
    args: dict[str, Any] = {"domains": FULL, "priorities": None, "mode": Mode.SOLVE, **change}
    with connect(server[0]) as c:
        with pytest.raises(fpgacsp.InvalidArgumentError) as exc:
            c.solve(PROGRAM, **args)
        assert str(exc.value) == message and exc.value.code is None and isinstance(exc.value, ValueError)

        async def run() -> None:
            async with connect_async(server[0]) as ac:
                with pytest.raises(fpgacsp.InvalidArgumentError, match=re.escape(message)):
                    await ac.solve(PROGRAM, **args)

        asyncio.run(run())
    assert sum(script.calls.values()) == 0  # nothing reached the server


def test_other_misuse_is_caught_locally() -> None:
    with connect(NOWHERE, timeout=5) as c:
        with pytest.raises(TypeError, match=r"program: expected an fpgacsp\.Program"):
            c.solve("sudoku", FULL)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="timeout: expected a positive number of seconds, got -1"):
            c.solve(PROGRAM, FULL, timeout=-1)
        with pytest.raises(fpgacsp.InvalidArgumentError, match="program_id: expected 64 lowercase hex"):
            c.program_info("ABC")
        assert c.solve(PROGRAM, FULL[:0]).batch_size == 0  # nothing to solve, nothing sent
        with pytest.raises(fpgacsp.UnavailableError):  # the same client does reach the network when asked to
            c.solve(PROGRAM, FULL)
    for bad in ("", " localhost:1"):
        with pytest.raises(ValueError, match="target: expected"):
            connect(bad)
    with pytest.raises(ValueError, match="timeout"):
        connect(NOWHERE, timeout=float("nan"))


# --- processes ---------------------------------------------------------------------------------------------


def test_grpc_client_pickles_as_a_fresh_connection(server: tuple[str, FakeSolver], script: Script) -> None:
    with connect(server[0], timeout=7, keepalive_time_ms=600_000) as c:
        c.register(PROGRAM)
        clone = pickle.loads(pickle.dumps(c))
    assert isinstance(clone, fpgacsp.Client) and clone is not c
    assert (clone.target, clone.timeout) == (server[0], 7.0)
    assert clone.list_programs()  # usable; the closed original is not
    clone.close()
    with pytest.raises(fpgacsp.FpgacspError, match="is closed"):
        c.list_programs()


_FORKED: fpgacsp.Client | None = None


def _use_inherited_client() -> None:
    assert _FORKED is not None
    try:
        _FORKED.list_programs()
    except fpgacsp.FpgacspError as exc:
        raise SystemExit(0 if "cannot be used after fork" in str(exc) else 2) from None
    raise SystemExit(1)


def test_grpc_client_refuses_use_after_fork(server: tuple[str, FakeSolver], script: Script) -> None:
    global _FORKED
    with connect(server[0]) as c:
        c.list_programs()
        _FORKED = c
        try:
            child = multiprocessing.get_context("fork").Process(target=_use_inherited_client)
            child.start()
            child.join(30)
        finally:
            _FORKED = None
        assert child.exitcode == 0
        assert c.list_programs() == [] or True  # the parent's channel is untouched
    assert script.calls["ListPrograms"] == 2
