"""The ``"local"`` target: the client API over the in-process engine, equal to the engine bit for bit."""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
from collections.abc import Iterator
from pathlib import Path

import fpgacsp
import numpy as np
import pytest
from fpgacsp import Mode, Status, connect, connect_async, sudoku_domains, sudoku_program
from fpgacsp.problems import load_puzzle_file, parse_sudoku
from fpgacsp_proto import program_id
from fpgacspd.engine import FastEngine, SolveOptions
from fpgacspd.selftest import known_answers

MAGICTOUR = Path(__file__).resolve().parents[2] / "data" / "sudoku" / "magictour_top1465.csv"


@pytest.fixture(scope="module")
def puzzles() -> np.ndarray:
    grids = np.stack([parse_sudoku(r.puzzle) for r in load_puzzle_file(MAGICTOUR, 40)])
    return sudoku_domains(grids)


@pytest.fixture
def client() -> Iterator[fpgacsp.Client]:
    with connect("local") as c:
        yield c


def test_local_equals_the_engine(client: fpgacsp.Client, engine: FastEngine, puzzles: np.ndarray) -> None:
    program = sudoku_program()
    prios = np.random.default_rng(0).integers(0, 256, size=(len(puzzles), 81, 9), dtype=np.uint8)
    for mode, priorities, k in ((Mode.SOLVE, None, 1), (Mode.SOLVE, prios, 2), (Mode.PROPAGATE, None, 1)):
        got = client.solve(program, puzzles, priorities, mode=mode, max_solutions=k)
        want = engine.solve(program, puzzles, priorities, SolveOptions(mode=mode, max_solutions=k))
        assert got.equals(want), mode
        assert got.timing is None
        assert got.domains.dtype == np.uint64 and got.status.dtype == np.uint8 and got.nodes.dtype == np.int64
    assert (client.solve(program, puzzles).status == Status.SOLVED).all()


def test_node_limit_default_and_explicit(client: fpgacsp.Client, engine: FastEngine, puzzles: np.ndarray) -> None:
    program = sudoku_program()
    limited = client.solve(program, puzzles, node_limit=2)
    assert limited.equals(engine.solve(program, puzzles, None, SolveOptions(node_limit=2)))
    assert (limited.status == Status.LIMIT).any()


def test_zero_instances_answer_without_solving(client: fpgacsp.Client) -> None:
    res = client.solve(sudoku_program(), np.zeros((0, 81), dtype=np.uint64))
    assert res.batch_size == 0 and res.domains.shape == (0, 81)
    assert client.device_status().batches == 0


def test_registry_api(client: fpgacsp.Client, puzzles: np.ndarray) -> None:
    nine, four = sudoku_program(), sudoku_program(2)
    pid = client.register(nine)
    assert pid == program_id(nine)
    assert client.register(nine, pin=True) == pid  # idempotent; the pin sticks
    client.solve(four, np.full((3, 16), 0b1111, dtype=np.uint64))  # solve registers on first use
    infos = {p.program_id: p for p in client.list_programs()}
    assert set(infos) == {pid, program_id(four)}
    assert infos[pid].pinned and infos[pid].num_vars == 81 and infos[pid].num_constraints == 27
    assert infos[program_id(four)].solves == 1 and infos[program_id(four)].last_used_unix_ms > 0
    assert client.program_info(pid) == infos[pid]
    assert client.release(nine) is True
    assert client.release(pid) is False  # releasing is idempotent
    with pytest.raises(fpgacsp.NotFoundError, match="unknown program") as exc:
        client.program_info(nine)
    assert exc.value.code is not None and exc.value.code.name == "NOT_FOUND"
    with pytest.raises(fpgacsp.InvalidArgumentError, match="program_id: expected 64 lowercase hex"):
        client.release("not-an-id")


def test_admin_api(client: fpgacsp.Client, puzzles: np.ndarray) -> None:
    client.solve(sudoku_program(), puzzles[:5])
    with pytest.raises(fpgacsp.InvalidArgumentError):
        client.solve(sudoku_program(), puzzles[:, :80])
    status = client.device_status()
    assert status.backend == "local" and status.state == fpgacsp.DeviceState.READY
    assert (status.batches, status.instances, status.programs_loaded, status.queue_depth) == (1, 5, 1, 0)
    assert status.nodes >= 5 and status.sweeps >= status.nodes
    stats = client.stats()
    assert stats.count("Solve", "OK") == 1 and stats.count("Solve", "INVALID_ARGUMENT") == 1
    assert stats.instances == 5 and stats.mean_batch_size == 5.0
    test = client.self_test()
    assert test.passed and [c.name for c in test.cases] == [ka.name for ka in known_answers()]  # the daemon's
    reset = client.reset()
    assert reset.self_test_passed and client.device_status().resets == 1
    assert client.solve(sudoku_program(), puzzles[:2]).status.tolist() == [Status.SOLVED] * 2  # works after reset


def test_local_options() -> None:
    with connect("local", threads=1, timeout=5) as c:
        assert "1 threads" in c.device_status().description and c.timeout == 5.0
    with pytest.raises(TypeError, match="only threads="):
        connect("local", keepalive_time_ms=1000)
    with pytest.raises(ValueError, match="timeout: expected a positive number"):
        connect("local", timeout=0)


def test_local_client_pickles_and_survives_fork(client: fpgacsp.Client, puzzles: np.ndarray) -> None:
    client.solve(sudoku_program(), puzzles[:1])  # engine threads running in the parent
    clone = pickle.loads(pickle.dumps(client))
    assert isinstance(clone, fpgacsp.Client) and clone.target == "local" and clone.list_programs() == []
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        statuses = pool.apply(_solve_in_child, (client, puzzles[:8]))
    assert statuses == [int(Status.SOLVED)] * 8


def _solve_in_child(client: fpgacsp.Client, domains: np.ndarray) -> list[int]:
    return [int(s) for s in client.solve(sudoku_program(), domains).status]


def test_async_local_equals_sync(client: fpgacsp.Client, puzzles: np.ndarray) -> None:
    program = sudoku_program()
    want = client.solve(program, puzzles, mode=Mode.PROPAGATE)

    async def run() -> list[fpgacsp.SolveResult]:
        async with connect_async("local") as ac:
            assert isinstance(ac, fpgacsp.AsyncClient)
            results = await asyncio.gather(*(ac.solve(program, puzzles, mode="propagate") for _ in range(3)))
            assert (await ac.device_status()).batches == 3
            assert [p.solves for p in await ac.list_programs()] == [3]
            return list(results)

    for got in asyncio.run(run()):
        assert got.equals(want) and got.timing is None
