"""``wait_for_daemon_s``: what is retried, for how long, and what is never retried.

A scripted server on a real loopback socket refuses calls on demand (the channel stays connected, as with a
daemon that is draining or starting up) and counts what reached it; :class:`DaemonWait` itself is checked on a
fake clock. The real restarts are in ``test_client_restart.py`` and ``test_layer_restart.py``.
"""

from __future__ import annotations

import asyncio
import pickle
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import fpgacsp
import grpc
import pytest
from fpgacsp import connect, connect_async
from fpgacsp._channel import RECONNECT_BACKOFF_MS, RETRY_MAX_ATTEMPTS, channel_options
from fpgacsp._retry import MAX_BACKOFF_S, DaemonWait, check_wait_for_daemon
from fpgacsp_proto.v1 import solver_pb2, solver_pb2_grpc

UNAVAILABLE, CANCELLED = grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED


class Refusing(solver_pb2_grpc.SolverServicer):
    """ListPrograms fails with the queued codes (then ``forever``, if set), else answers an empty list."""

    def __init__(self) -> None:
        self.codes: list[grpc.StatusCode] = []
        self.forever: grpc.StatusCode | None = None
        self.calls = 0
        self.lock = threading.Lock()

    def ListPrograms(self, request: Any, context: grpc.ServicerContext) -> solver_pb2.ListProgramsResponse:
        with self.lock:
            self.calls += 1
            code = self.codes.pop(0) if self.codes else self.forever
        if code is not None:
            context.abort(code, f"scripted {code.name}")
        return solver_pb2.ListProgramsResponse()


@pytest.fixture
def server() -> Iterator[tuple[str, Refusing]]:
    """A fresh server (and port) per test: gRPC's retry throttling is kept per server name, across channels."""
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = Refusing()
    solver_pb2_grpc.add_SolverServicer_to_server(servicer, srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    yield f"127.0.0.1:{port}", servicer
    srv.stop(grace=None)


def test_channel_reconnects_promptly() -> None:
    options = dict(channel_options("test"))
    assert RECONNECT_BACKOFF_MS["grpc.initial_reconnect_backoff_ms"] == 100
    assert RECONNECT_BACKOFF_MS["grpc.max_reconnect_backoff_ms"] <= 1_000
    assert all(options[k] == v for k, v in RECONNECT_BACKOFF_MS.items())
    assert dict(channel_options("test", {"max_reconnect_backoff_ms": 5_000}))["grpc.max_reconnect_backoff_ms"] == 5_000


def test_refusals_are_waited_out(server: tuple[str, Refusing]) -> None:
    address, script = server
    script.codes = [UNAVAILABLE] * 6 + [CANCELLED]  # gRPC's own retries absorb 3, the client's loop the rest
    with connect(address, timeout=10, wait_for_daemon_s=5) as client:
        assert client.list_programs() == []
    assert script.calls == 8


def test_the_default_fails_fast(server: tuple[str, Refusing]) -> None:
    address, script = server
    script.codes = [UNAVAILABLE] * 6
    with connect(address, timeout=10) as client:
        assert client.wait_for_daemon_s == 0.0  # type: ignore[attr-defined]
        with pytest.raises(fpgacsp.UnavailableError) as info:
            client.list_programs()
        assert str(info.value) == "ListPrograms failed with UNAVAILABLE: scripted UNAVAILABLE"  # as it came
        assert script.calls == RETRY_MAX_ATTEMPTS
        script.codes = [CANCELLED]
        with pytest.raises(fpgacsp.CancelledError):
            client.list_programs()


NEVER_RETRIED = [
    (grpc.StatusCode.INVALID_ARGUMENT, fpgacsp.InvalidArgumentError),
    (grpc.StatusCode.NOT_FOUND, fpgacsp.NotFoundError),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, fpgacsp.ResourceExhaustedError),
    (grpc.StatusCode.DEADLINE_EXCEEDED, fpgacsp.DeadlineExceededError),
    (grpc.StatusCode.INTERNAL, fpgacsp.ServerError),
    (grpc.StatusCode.PERMISSION_DENIED, fpgacsp.PermissionDeniedError),
    (grpc.StatusCode.UNAUTHENTICATED, fpgacsp.UnauthenticatedError),
]


@pytest.mark.parametrize(("code", "cls"), NEVER_RETRIED, ids=[c.name for c, _ in NEVER_RETRIED])
def test_other_codes_are_never_retried(
    server: tuple[str, Refusing], code: grpc.StatusCode, cls: type[fpgacsp.FpgacspError]
) -> None:
    address, script = server
    script.codes = [code]
    with connect(address, timeout=10, wait_for_daemon_s=5) as client:
        start = time.monotonic()
        with pytest.raises(cls) as info:
            client.list_programs()
        assert type(info.value) is cls and info.value.code == code
        assert time.monotonic() - start < 1 and script.calls == 1


def test_a_daemon_that_keeps_refusing_is_given_up_on_without_hammering(server: tuple[str, Refusing]) -> None:
    address, script = server
    script.forever = UNAVAILABLE
    with connect(address, timeout=10, wait_for_daemon_s=1.5) as client:
        start = time.monotonic()
        with pytest.raises(fpgacsp.UnavailableError) as info:
            client.list_programs()
        took = time.monotonic() - start
    assert 1.5 <= took < 2.5, took
    err = info.value
    assert err.code == UNAVAILABLE and err.method == "ListPrograms"
    assert str(err).startswith(
        f"ListPrograms failed with UNAVAILABLE: the daemon at {address!r} was unavailable for 1."
    )
    assert "(wait_for_daemon_s=1.5, " in str(err) and str(err).endswith("last error: scripted UNAVAILABLE")
    # the client backs off (at most every MAX_BACKOFF_S after the first few), each try with gRPC's own retries
    assert script.calls <= RETRY_MAX_ATTEMPTS * (4 + 1.5 / (MAX_BACKOFF_S / 2)), script.calls


def test_async_client_waits_the_same_way(server: tuple[str, Refusing]) -> None:
    address, script = server

    async def run() -> None:
        async with connect_async(address, timeout=10, wait_for_daemon_s=5) as client:
            script.codes = [UNAVAILABLE] * 6 + [CANCELLED]
            assert await client.list_programs() == []
            assert script.calls == 8
            script.codes = [grpc.StatusCode.INVALID_ARGUMENT]
            with pytest.raises(fpgacsp.InvalidArgumentError):
                await client.list_programs()
            assert script.calls == 9
            script.forever = UNAVAILABLE
            with pytest.raises(fpgacsp.DeadlineExceededError, match=r"the call's deadline passed while waiting"):
                await client.list_programs(timeout=0.5)
            task = asyncio.ensure_future(client.list_programs())  # waiting; the caller's cancel is not retried
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(run())


def test_the_option_is_checked_and_travels() -> None:
    for bad in (-1, float("nan"), "5", None, True):
        with pytest.raises(ValueError, match=r"wait_for_daemon_s: expected a number of seconds >= 0"):
            connect("localhost:1", wait_for_daemon_s=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"wait_for_daemon_s: expected a number of seconds >= 0"):
            connect_async("localhost:1", wait_for_daemon_s=bad)  # type: ignore[arg-type]
    assert check_wait_for_daemon(3) == 3.0
    with connect("localhost:1", timeout=7, wait_for_daemon_s=12) as client:
        clone = pickle.loads(pickle.dumps(client))
        assert (clone.timeout, clone.wait_for_daemon_s) == (7.0, 12.0)
        clone.close()
    clone_async = pickle.loads(pickle.dumps(connect_async("localhost:1", wait_for_daemon_s=12)))
    assert clone_async.wait_for_daemon_s == 12.0
    with connect("local", wait_for_daemon_s=30) as local:  # accepted, moot: the engine is in-process
        assert local.target == "local"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_daemon_wait_policy_on_a_fake_clock() -> None:
    clock = FakeClock()
    refused = fpgacsp.UnavailableError("connection refused", UNAVAILABLE, "Solve")
    wait = DaemonWait("host:1", 2.0, deadline=160.0, clock=clock, jitter=lambda: 1.0)
    pauses = []
    for _ in range(6):
        pauses.append(wait.pause_after(refused))
        wait.resume(True)
        clock.now += 0.1
    assert pauses == [0.05, 0.1, 0.2, MAX_BACKOFF_S, MAX_BACKOFF_S, MAX_BACKOFF_S]  # doubling, capped
    assert wait.left() == pytest.approx(1.4)
    with pytest.raises(fpgacsp.UnavailableError, match=r"for 0\.6 s \(wait_for_daemon_s=2, 6 attempts\)"):
        wait.resume(False)  # the channel did not come back in the time left
    clock.now = 102.0
    with pytest.raises(fpgacsp.UnavailableError) as info:
        wait.pause_after(fpgacsp.CancelledError("CANCELLED", CANCELLED, "Solve"))
    assert info.value.code == UNAVAILABLE and info.value.details == (
        "the daemon at 'host:1' was unavailable for 2.0 s (wait_for_daemon_s=2, 7 attempts); "
        "last error: Solve failed with CANCELLED: CANCELLED"
    )

    short = DaemonWait("host:1", 30.0, deadline=101.0, clock=clock, jitter=lambda: 0.0)
    clock.now = 100.0
    assert short.pause_after(refused) == 0.025  # jitter: between half and all of the backoff
    clock.now = 101.0
    with pytest.raises(fpgacsp.DeadlineExceededError) as late:
        short.resume(True)
    assert late.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and late.value.details == (
        "the call's deadline passed while waiting for the daemon at 'host:1', unavailable for 1.0 s "
        "(wait_for_daemon_s=30, 1 attempt); last error: connection refused"
    )
    expired = fpgacsp.DeadlineExceededError("Deadline Exceeded", grpc.StatusCode.DEADLINE_EXCEEDED, "Solve")
    with pytest.raises(fpgacsp.DeadlineExceededError, match="while waiting for the daemon"):
        short.pause_after(expired)  # during the wait (gRPC's own retries backing off): said the same way
    with pytest.raises(fpgacsp.DeadlineExceededError) as info_expired:  # before any wait: as it came
        DaemonWait("host:1", 30.0, deadline=200.0, clock=clock).pause_after(expired)
    assert info_expired.value is expired
    with pytest.raises(fpgacsp.UnavailableError) as info:  # not waiting: the error exactly as it came
        DaemonWait("host:1", 0.0, deadline=200.0, clock=clock).pause_after(refused)
    assert info.value is refused
