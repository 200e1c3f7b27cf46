"""The client library against a real ``fpgacspd`` process, over TCP and a Unix socket.

Results must equal the in-process engine bit for bit (sync, asyncio and the ``local`` target alike), a
program the daemon forgot is registered again exactly once, and each error of the contract, provoked for
real, reaches the caller as the library's exception with the daemon's message.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import fpgacsp
import numpy as np
import pytest
from daemon_process import DaemonProcess
from fpgacsp import AllDiff, Mode, Status, connect, connect_async, make_program, sudoku_domains, sudoku_program
from fpgacsp.problems import load_puzzle_file, parse_sudoku
from fpgacsp_proto import full_domains, program_id
from fpgacsp_proto.bitset import pack_domains
from fpgacsp_proto.convert import program_to_proto
from fpgacsp_proto.v1 import solver_pb2
from fpgacspd.engine import FastEngine, SolveOptions

MAGICTOUR = Path(__file__).resolve().parents[2] / "data" / "sudoku" / "magictour_top1465.csv"
# pigeonhole: 14 variables, 13 values, all different: propagation cannot see it, search runs to the node limit
# (a few million nodes per second), so node_limit sets how long the device is busy
PIGEONHOLE = make_program(14, 13, [AllDiff(tuple(range(14)))])
SLOW_NODES = 4_000_000


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    with DaemonProcess(unix_socket=True) as d:
        yield d
        assert d.alive(), d.log_text()


@pytest.fixture(scope="module", params=["tcp", "unix"])
def target(request: pytest.FixtureRequest, daemon: DaemonProcess) -> str:
    return daemon.address if request.param == "tcp" else daemon.unix_address


@pytest.fixture(scope="module")
def puzzles() -> np.ndarray:
    grids = np.stack([parse_sudoku(r.puzzle) for r in load_puzzle_file(MAGICTOUR, 64)])
    return sudoku_domains(grids)


def slow_domains(batch: int = 1) -> np.ndarray:
    return full_domains(batch, PIGEONHOLE.num_vars, PIGEONHOLE.domain_size)


# --- results -----------------------------------------------------------------------------------------------


def test_sync_solve_equals_the_engine(target: str, engine: FastEngine, puzzles: np.ndarray) -> None:
    program = sudoku_program()
    prios = np.random.default_rng(1).integers(0, 256, size=(len(puzzles), 81, 9), dtype=np.uint8)
    with connect(target, timeout=60) as client:
        for batch in (1, 64):
            for mode, priorities, k in ((Mode.SOLVE, None, 1), (Mode.SOLVE, prios, 2), (Mode.PROPAGATE, None, 1)):
                p = None if priorities is None else priorities[:batch]
                got = client.solve(program, puzzles[:batch], p, mode=mode, max_solutions=k)
                want = engine.solve(program, puzzles[:batch], p, SolveOptions(mode=mode, max_solutions=k))
                assert got.equals(want), (batch, mode, k)
                assert got.timing is not None and got.timing.device_batch_size >= batch
                assert got.timing.total_us >= got.timing.device_us
        coloring = make_program(5, 3, [AllDiff((0, 1, 2)), AllDiff((2, 3, 4))])  # a second program, D = 3
        doms = full_domains(4, 5, 3)
        got = client.solve(coloring, doms, node_limit=3)
        assert got.equals(engine.solve(coloring, doms, None, SolveOptions(node_limit=3)))


def test_async_solve_equals_the_engine(target: str, engine: FastEngine, puzzles: np.ndarray) -> None:
    program = sudoku_program()
    want = engine.solve(program, puzzles, None, SolveOptions())

    async def run() -> list[fpgacsp.SolveResult]:
        async with connect_async(target, timeout=60) as client:
            return list(await asyncio.gather(*(client.solve(program, puzzles[i : i + 1]) for i in range(32))))

    results = asyncio.run(run())
    for i, got in enumerate(results):
        assert got.batch_size == 1
        for field in ("domains", "status", "nodes", "solutions", "sweeps"):
            assert np.array_equal(getattr(got, field)[0], getattr(want, field)[i]), (i, field)


def test_local_target_same_api_same_results(daemon: DaemonProcess, puzzles: np.ndarray) -> None:
    program = sudoku_program(2)
    doms = full_domains(5, 16, 4)
    doms[:, 0] = [1, 2, 4, 8, 1]
    outcomes: dict[str, tuple[Any, ...]] = {}
    for target in ("local", daemon.address):
        with connect(target) as client:
            assert isinstance(client, fpgacsp.Client)
            pid = client.register(program, pin=True)
            res = client.solve(program, doms, mode=Mode.SOLVE, max_solutions=2)
            info = client.program_info(pid)
            listed = {p.program_id for p in client.list_programs()}
            status = client.device_status()
            assert client.self_test().passed
            released = client.release(program), client.release(program)
            with pytest.raises(fpgacsp.NotFoundError):
                client.program_info(pid)
            outcomes[target] = (pid, res, info.num_vars, info.domain_size, info.pinned, pid in listed, released)
            assert status.state == fpgacsp.DeviceState.READY
            assert (res.timing is None) == (target == "local")
    local, served = outcomes["local"], outcomes[daemon.address]
    assert local[1].equals(served[1])
    assert local[0] == served[0] == program_id(program)
    assert local[2:] == served[2:] == (16, 4, True, True, (True, False))


# --- programs ----------------------------------------------------------------------------------------------


def test_reregisters_once_after_the_daemon_forgot(daemon: DaemonProcess, puzzles: np.ndarray) -> None:
    program = make_program(81, 9, sudoku_program().constraints[::-1])  # a program no other test registers
    with connect(daemon.address) as client, connect(daemon.unix_address) as other:
        first = client.solve(program, puzzles[:4])
        before = client.stats()
        assert other.release(program_id(program)) is True  # another client releases it: `client` does not know
        again = client.solve(program, puzzles[:4])  # NOT_FOUND, register, retry: the caller sees nothing
        after = client.stats()
        assert again.equals(first)
        assert after.count("RegisterProgram") - before.count("RegisterProgram") == 1
        assert after.count("Solve", "NOT_FOUND") - before.count("Solve", "NOT_FOUND") == 1
        assert after.count("Solve", "OK") - before.count("Solve", "OK") == 1
        client.solve(program, puzzles[:4])
        assert client.stats().count("RegisterProgram") == after.count("RegisterProgram")  # cached again


# --- errors from the daemon --------------------------------------------------------------------------------


def raw_solve(client: fpgacsp.Client, request: solver_pb2.SolveRequest) -> Any:
    """Send a request the client's own checks would refuse, through the client's one error boundary."""
    return client._invoke("Solve", request, time.monotonic() + 30)  # type: ignore[attr-defined]


def test_daemon_errors_become_library_errors(daemon: DaemonProcess) -> None:
    program = sudoku_program()
    with connect(daemon.address) as client:
        pid = client.register(program)
        with pytest.raises(fpgacsp.NotFoundError, match="program_id") as nf:
            client.program_info("ab" * 32)
        assert nf.value.method == "GetProgram" and nf.value.code is not None and nf.value.code.name == "NOT_FOUND"
        with pytest.raises(fpgacsp.NotFoundError):
            raw_solve(client, solver_pb2.SolveRequest(program_id="cd" * 32, batch_size=1, domains=b"\x00" * 162))
        short = solver_pb2.SolveRequest(program_id=pid, batch_size=1, domains=b"\xff\x01" * 80)
        with pytest.raises(fpgacsp.InvalidArgumentError, match="domains") as bad:
            raw_solve(client, short)
        assert isinstance(bad.value, ValueError) and bad.value.method == "Solve"
        high = pack_domains(np.full((1, 81), 0x3FF, dtype=np.uint64), 9)  # bit 9 set with D = 9
        with pytest.raises(fpgacsp.InvalidArgumentError, match="domains"):
            raw_solve(client, solver_pb2.SolveRequest(program_id=pid, batch_size=1, domains=high))
        two = pack_domains(full_domains(2, 81, 9), 9)
        with pytest.raises(fpgacsp.InvalidArgumentError, match="priorities"):
            raw_solve(client, solver_pb2.SolveRequest(program_id=pid, batch_size=2, domains=two, priorities=b"\x01"))
        invalid = program_to_proto(program)
        invalid.constraints[0].alldiff.vars[1] = 500  # a variable out of range
        with pytest.raises(fpgacsp.InvalidArgumentError, match="program"):
            client._invoke(  # type: ignore[attr-defined]
                "RegisterProgram", solver_pb2.RegisterProgramRequest(program=invalid), time.monotonic() + 30
            )
        with pytest.raises(fpgacsp.DeadlineExceededError):
            client.solve(PIGEONHOLE, slow_domains(), node_limit=SLOW_NODES, timeout=1e-4)  # a tiny timeout
        assert client.solve(program, full_domains(1, 81, 9), node_limit=10).status[0] == Status.LIMIT  # still fine


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """A daemon with one-request batches, a two-request queue and a 64-variable program limit."""
    config = tmp_path_factory.mktemp("tight") / "fpgacspd.toml"
    config.write_text("[registry]\nmax_vars = 64\n", encoding="utf-8")
    with DaemonProcess(args=["--config", str(config), "--max-batch", "1", "--max-queue", "2"]) as d:
        yield d


def timed(fn: Callable[[], Any]) -> tuple[str, float]:
    """Outcome class name (``"ok"`` or the exception's) and seconds taken."""
    start = time.monotonic()
    try:
        fn()
        outcome = "ok"
    except fpgacsp.FpgacspError as exc:
        outcome = type(exc).__name__
    return outcome, time.monotonic() - start


def test_oversized_program_is_a_program_limit_error(tight: DaemonProcess) -> None:
    with connect(tight.address) as client:
        with pytest.raises(fpgacsp.ProgramLimitError) as exc:
            client.solve(sudoku_program(), full_domains(1, 81, 9))
        assert exc.value.method == "RegisterProgram" and "64" in exc.value.details


def test_full_queue_is_refused_at_once(tight: DaemonProcess) -> None:
    with connect(tight.address) as client:
        client.register(PIGEONHOLE)

        def slow() -> Any:
            return client.solve(PIGEONHOLE, slow_domains(), node_limit=SLOW_NODES // 4)

        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(lambda _: timed(slow), range(8)))
        ok = [t for name, t in outcomes if name == "ok"]
        refused = [t for name, t in outcomes if name == "QueueFullError"]
        assert len(ok) + len(refused) == 8, outcomes  # every request got exactly one answer of these two kinds
        assert refused and len(ok) >= 2, outcomes
        assert max(refused) < max(ok), outcomes  # refused without waiting for the device
        assert client.stats().rejected_queue_full >= len(refused)


def test_expired_and_cancelled_requests(tight: DaemonProcess) -> None:
    with connect(tight.address) as client:
        before = client.stats()
        # the device stays busy (seconds) while a request expires in the queue and another is cancelled there
        busy = threading.Thread(target=lambda: client.solve(PIGEONHOLE, slow_domains(), node_limit=3 * SLOW_NODES))
        busy.start()
        time.sleep(0.2)
        name, _ = timed(lambda: client.solve(PIGEONHOLE, slow_domains(), node_limit=10, timeout=0.3))
        assert name == "DeadlineExceededError"

        async def cancel_one() -> None:
            async with connect_async(tight.address) as ac:
                task = asyncio.ensure_future(ac.solve(PIGEONHOLE, slow_domains(), node_limit=10))
                await asyncio.sleep(0.3)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task

        asyncio.run(cancel_one())
        assert busy.is_alive(), "the device finished before the test could queue behind it: raise SLOW_NODES"
        busy.join(60)
        after = client.stats()
        dropped = after.dropped_expired + after.dropped_cancelled - before.dropped_expired - before.dropped_cancelled
        assert dropped == 2  # neither reached the device
        assert client.solve(PIGEONHOLE, slow_domains(), node_limit=10).status[0] == Status.LIMIT


def test_draining_daemon_answers_unavailable(puzzles: np.ndarray) -> None:
    with DaemonProcess() as d, connect(d.address) as client:
        client.register(PIGEONHOLE)
        results: list[str] = []
        busy = threading.Thread(
            target=lambda: results.append(
                timed(lambda: client.solve(PIGEONHOLE, slow_domains(), node_limit=2 * SLOW_NODES))[0]
            )
        )
        busy.start()
        time.sleep(0.3)  # in flight on the device
        assert d.proc is not None
        d.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        name, took = timed(lambda: client.solve(sudoku_program(), puzzles[:1]))
        assert name == "UnavailableError", d.log_text()  # refused after gRPC's retries, not hung
        assert took < 10
        busy.join(60)
        assert results == ["ok"]  # the in-flight request finished during the drain
        assert d.terminate() == 0
