"""Many concurrent clients with mixed programs: every answer is right and every request is answered once.

Thread clients (each with its own channel, as separate processes would have) and asyncio clients (many
calls in flight on one channel) send small Solve requests for five programs at the same time, so the
batcher merges requests of the same program and keeps different programs apart. Every response is compared
bit for bit with the local engine on that request's own rows (a row from another request, or rows in the
wrong order, would show), and the daemon's own counters must grow by exactly the number of requests sent.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
import numpy as np
from daemon_process import DaemonProcess
from fpgacsp.problems import coloring_program, load_dimacs, queens_program, sudoku_program
from fpgacsp_proto.isa import Mode, Program
from fpgacsp_proto.v1 import admin_pb2, solver_pb2, solver_pb2_grpc
from fpgacspd.engine import FastEngine

from .wire import (
    COLORING_DIR,
    RPC_TIMEOUT_S,
    SUDOKU_DIR,
    Stubs,
    decode,
    first_difference,
    local,
    register,
    solve_request,
    sudoku_batch,
)

THREAD_CLIENTS = 24
ASYNC_CLIENTS = 8
REQUESTS_PER_CLIENT = 20
SOLUTION_4X4 = np.array([[0, 1, 2, 3], [2, 3, 0, 1], [1, 0, 3, 2], [3, 2, 1, 0]])


@dataclass(frozen=True)
class Workload:
    name: str
    program: Program
    mode: Mode
    pool: np.ndarray  # uint64[M, N] instances to draw from
    priorities: bool = False


@dataclass
class Sent:
    workload: Workload
    domains: np.ndarray
    priorities: np.ndarray | None
    response: solver_pb2.SolveResponse | None = None
    error: str = ""


def sudoku4_pool(rng: np.random.Generator, count: int) -> np.ndarray:
    full = (np.uint64(1) << SOLUTION_4X4.reshape(-1).astype(np.uint64)).astype(np.uint64)
    pool = np.repeat(full[None, :], count, axis=0)
    pool[rng.random(pool.shape) < 0.6] = np.uint64(0xF)
    return pool


def single_fix_pool(num_vars: int, domain_size: int, var: int) -> np.ndarray:
    """One instance per value of ``var`` (the rest of the domains full)."""
    pool = np.full((domain_size, num_vars), (1 << domain_size) - 1, dtype=np.uint64)
    pool[:, var] = np.uint64(1) << np.arange(domain_size, dtype=np.uint64)
    return pool


def workloads(rng: np.random.Generator) -> list[Workload]:
    sudoku = sudoku_program()
    queens = queens_program(8)
    graph = load_dimacs(COLORING_DIR / "queen6_6.col")
    coloring = coloring_program(graph, 7)
    hard = sudoku_batch(SUDOKU_DIR / "magictour_top1465.csv", 64)
    return [
        Workload("sudoku9-solve", sudoku, Mode.SOLVE, hard, priorities=True),
        Workload("sudoku9-propagate", sudoku, Mode.PROPAGATE, hard),
        Workload("sudoku4-solve", sudoku_program(2), Mode.SOLVE, sudoku4_pool(rng, 64)),
        Workload("queens8-solve", queens, Mode.SOLVE, single_fix_pool(8, 8, 0)),
        Workload("queen6_6-colour7", coloring, Mode.SOLVE, single_fix_pool(graph.num_vertices, 7, 5)),
    ]


def plan(rng: np.random.Generator, loads: list[Workload], count: int) -> list[Sent]:
    out = []
    for _ in range(count):
        w = loads[int(rng.integers(len(loads)))]
        rows = rng.integers(0, len(w.pool), size=int(rng.integers(1, 9)))
        prios = None
        if w.priorities and rng.random() < 0.5:
            shape = (len(rows), w.program.num_vars, w.program.domain_size)
            prios = rng.integers(0, 256, size=shape, dtype=np.uint8)
        out.append(Sent(w, w.pool[rows], prios))
    return out


def solve_ok_count(stubs: Stubs) -> int:
    stats = stubs.admin.GetStats(admin_pb2.GetStatsRequest(), timeout=RPC_TIMEOUT_S)
    return sum(int(m.count) for m in stats.requests if m.method == "Solve" and m.code == "OK")


def solves_by_program(stubs: Stubs, pids: set[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for pid in pids:
        info = stubs.solver.GetProgram(solver_pb2.GetProgramRequest(program_id=pid), timeout=RPC_TIMEOUT_S).info
        counts[pid] = int(info.solves)
    return counts


def run_thread_client(target: str, ids: dict[str, str], requests: list[Sent]) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = solver_pb2_grpc.SolverStub(channel)
        for s in requests:
            req = solve_request(ids[s.workload.name], s.workload.program, s.domains, s.workload.mode, s.priorities)
            try:
                s.response = stub.Solve(req, timeout=RPC_TIMEOUT_S)
            except grpc.RpcError as err:
                s.error = f"{err.code().name}: {err.details()}"


async def run_async_clients(target: str, ids: dict[str, str], groups: list[list[Sent]]) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = solver_pb2_grpc.SolverStub(channel)

        async def client(requests: list[Sent]) -> None:
            for s in requests:
                w = s.workload
                req = solve_request(ids[w.name], w.program, s.domains, w.mode, s.priorities)
                try:
                    s.response = await stub.Solve(req, timeout=RPC_TIMEOUT_S)
                except grpc.aio.AioRpcError as err:
                    s.error = f"{err.code().name}: {err.details()}"

        await asyncio.gather(*(client(g) for g in groups))


def check_answers(engine: FastEngine, sent: list[Sent]) -> None:
    errors = [f"{s.workload.name}: {s.error}" for s in sent if s.error]
    assert not errors, f"{len(errors)} of {len(sent)} requests failed, first: {errors[0]}"
    for i, s in enumerate(sent):
        assert s.response is not None
        w = s.workload
        got = decode(s.response, w.program, len(s.domains))
        want = local(engine, w.program, s.domains, w.mode, s.priorities)
        diff = first_difference(got, want)
        assert diff == "", f"request {i} ({w.name}, B={len(s.domains)}): {diff}"
        assert s.response.timing.device_batch_size >= len(s.domains)


def test_many_concurrent_clients_with_mixed_programs(daemon: DaemonProcess, tcp: Stubs, engine: FastEngine) -> None:
    rng = np.random.default_rng(2024)
    loads = workloads(rng)
    ids = {w.name: register(tcp.solver, w.program) for w in loads}
    per_client = [plan(rng, loads, REQUESTS_PER_CLIENT) for _ in range(THREAD_CLIENTS + ASYNC_CLIENTS)]
    sent = [s for group in per_client for s in group]
    ok_before = solve_ok_count(tcp)
    solves_before = solves_by_program(tcp, set(ids.values()))

    # Thread clients alternate between TCP and the Unix socket; the asyncio clients share one TCP channel.
    targets = [daemon.address, daemon.unix_address]
    async_thread = threading.Thread(
        target=lambda: asyncio.run(run_async_clients(daemon.address, ids, per_client[THREAD_CLIENTS:]))
    )
    async_thread.start()
    with ThreadPoolExecutor(THREAD_CLIENTS) as pool:
        futures = [pool.submit(run_thread_client, targets[i % 2], ids, per_client[i]) for i in range(THREAD_CLIENTS)]
        for f in futures:
            f.result(timeout=120)
    async_thread.join(timeout=120)
    assert not async_thread.is_alive(), "asyncio clients hung"

    check_answers(engine, sent)
    # Exactly one answer per request on the daemon's side too: its counters grew by what we sent, no more.
    assert solve_ok_count(tcp) - ok_before == len(sent)
    # Two workloads share the 9x9 Sudoku program (solve and propagate): one id, counted together.
    grown = solves_by_program(tcp, set(ids.values()))
    grown.subtract(solves_before)
    assert {k: v for k, v in grown.items() if v} == Counter(ids[s.workload.name] for s in sent)
    merged = max(s.response.timing.merged_requests for s in sent if s.response is not None)
    assert merged > 1, "no two concurrent requests were ever merged into one device batch"


def test_random_interleaving_of_sizes_on_one_program(tcp: Stubs, engine: FastEngine) -> None:
    """Requests of very different sizes for one program, in flight together: each gets its own rows back."""
    program = sudoku_program()
    pid = register(tcp.solver, program)
    pool = sudoku_batch(SUDOKU_DIR / "kaggle_10k.csv", 512)
    sizes = [1, 300, 2, 7, 64, 1, 129, 3]
    starts = np.cumsum([0, *sizes[:-1]])
    order = list(range(len(sizes)))
    random.Random(5).shuffle(order)
    futures = {}
    for i in order:
        doms = pool[starts[i] : starts[i] + sizes[i]]
        futures[i] = tcp.solver.Solve.future(solve_request(pid, program, doms), timeout=RPC_TIMEOUT_S)
    for i, fut in futures.items():
        doms = pool[starts[i] : starts[i] + sizes[i]]
        got = decode(fut.result(), program, sizes[i])
        assert first_difference(got, local(engine, program, doms)) == "", f"request {i} (B={sizes[i]})"
