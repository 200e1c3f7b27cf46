"""``connect_async(target, streaming=True)`` against a real ``fpgacspd``: the Solves of every task travel as items of
one ``SolveStream`` call, with the same answers, errors and recovery as unary calls (the same flow sends them).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import fpgacsp
import numpy as np
import pytest
from daemon_process import DaemonProcess
from fpgacsp import connect_async, make_program, sudoku_domains, sudoku_program
from fpgacsp.problems import load_puzzle_file, parse_sudoku
from fpgacsp_proto import full_domains, program_id
from fpgacspd.engine import FastEngine, SolveOptions

MAGICTOUR = Path(__file__).resolve().parents[2] / "data" / "sudoku" / "magictour_top1465.csv"
PIGEONHOLE = make_program(14, 13, [fpgacsp.AllDiff(tuple(range(14)))])  # search runs to the node limit


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    with DaemonProcess(unix_socket=True) as d:
        yield d
        assert d.alive(), d.log_text()


@pytest.fixture(scope="module")
def puzzles() -> np.ndarray:
    return sudoku_domains(np.stack([parse_sudoku(r.puzzle) for r in load_puzzle_file(MAGICTOUR, 64)]))


def stream_calls(stats: fpgacsp.Stats) -> int:
    return stats.count("SolveStream")


def test_concurrent_solves_share_one_stream_and_equal_the_engine(
    daemon: DaemonProcess, engine: FastEngine, puzzles: np.ndarray
) -> None:
    program = sudoku_program()
    want = engine.solve(program, puzzles, None, SolveOptions())

    async def run() -> tuple[list[fpgacsp.SolveResult], int, int]:
        async with connect_async(daemon.unix_address, streaming=True) as client:
            before = await client.stats()
            results = await asyncio.gather(*(client.solve(program, puzzles[i : i + 1]) for i in range(64)))
            more = await client.solve(program, puzzles[:8])  # a batch of 8 as one item
            assert more.equals(engine.solve(program, puzzles[:8], None, SolveOptions()))
            after = await client.stats()
        return list(results), after.count("Solve", "OK") - before.count("Solve", "OK"), stream_calls(after)

    results, solves, streams_running = asyncio.run(run())
    for i, got in enumerate(results):
        for field in ("domains", "status", "nodes", "solutions", "sweeps"):
            assert np.array_equal(getattr(got, field)[0], getattr(want, field)[i]), (i, field)
        assert got.timing is not None and got.timing.device_batch_size >= 1
    assert solves == 65  # each item counted as one Solve
    assert streams_running == 0  # the stream is counted when it ends; it was still open at the last GetStats


def test_item_errors_are_the_unary_errors_and_a_forgotten_program_is_registered_again(
    daemon: DaemonProcess, puzzles: np.ndarray
) -> None:
    program = make_program(81, 9, sudoku_program().constraints[1:])  # a program no other test registers

    async def run() -> None:
        async with connect_async(daemon.address, streaming=True) as client, connect_async(daemon.address) as other:
            first = await client.solve(program, puzzles[:2])
            before = await client.stats()
            assert await other.release(program_id(program))  # `client` does not know: NOT_FOUND, register, retry
            again = await client.solve(program, puzzles[:2])
            after = await client.stats()
            assert again.equals(first)
            assert after.count("Solve", "NOT_FOUND") - before.count("Solve", "NOT_FOUND") == 1
            assert after.count("RegisterProgram") - before.count("RegisterProgram") == 1
            with pytest.raises(fpgacsp.DeadlineExceededError):
                await client.solve(PIGEONHOLE, full_domains(1, 14, 13), node_limit=4_000_000, timeout=0.05)
            assert (await client.solve(program, puzzles[:1])).status[0] == fpgacsp.Status.SOLVED  # stream still up

    asyncio.run(run())


def test_a_restarted_daemon_ends_the_stream_and_the_next_solve_opens_a_new_one(puzzles: np.ndarray) -> None:
    program = sudoku_program()
    with DaemonProcess() as first:
        address = first.address

        async def run() -> tuple[fpgacsp.SolveResult, fpgacsp.SolveResult]:
            async with connect_async(address, streaming=True, wait_for_daemon_s=30) as client:
                before = await client.solve(program, puzzles[:1])
                first.send_signal(signal.SIGTERM)
                assert first.wait() == 0
                port = address.rpartition(":")[2]
                with DaemonProcess(args=["--listen", f"127.0.0.1:{port}"]):
                    after = await client.solve(program, puzzles[:1])  # UNAVAILABLE, waited out, new stream
                return before, after

        before, after = asyncio.run(run())
    assert after.equals(before)
