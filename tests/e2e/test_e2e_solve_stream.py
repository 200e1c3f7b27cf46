"""``Solver.SolveStream`` on the real daemon, through the generated stub: each tagged item gets exactly one answer,
bit-identical to the engine; a bad item gets its own error, the status a unary Solve answers, and the stream goes
on; items are counted as Solves and the call as SolveStream; a drain answers every item read, then ends the call
UNAVAILABLE."""

from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from daemon_process import DaemonProcess
from fpgacsp.problems import sudoku_program
from fpgacsp_proto.bitset import pack_domains
from fpgacsp_proto.v1 import admin_pb2, solver_pb2
from fpgacspd.engine import FastEngine

from .wire import (
    RPC_TIMEOUT_S,
    SUDOKU_DIR,
    Stubs,
    connect,
    decode,
    first_difference,
    local,
    register,
    solve_request,
    sudoku_batch,
)

SUDOKU = sudoku_program()


def items(pid: str, domains: np.ndarray, batch: int = 1, first_tag: int = 100) -> list[solver_pb2.SolveStreamRequest]:
    """One item per ``batch`` rows, tagged ``first_tag``, ``first_tag + 1``, ... (any distinct tags do)."""
    return [
        solver_pb2.SolveStreamRequest(tag=first_tag + i, request=solve_request(pid, SUDOKU, domains[s : s + batch]))
        for i, s in enumerate(range(0, len(domains), batch))
    ]


def answers_by_tag(responses: Iterator[solver_pb2.SolveStreamResponse]) -> dict[int, solver_pb2.SolveStreamResponse]:
    got: dict[int, solver_pb2.SolveStreamResponse] = {}
    for r in responses:
        assert r.tag not in got, f"tag {r.tag} answered twice"
        got[r.tag] = r
    return got


def test_every_item_is_answered_once_with_its_tag_and_equals_the_engine(stubs: Stubs, engine: FastEngine) -> None:
    domains = sudoku_batch(SUDOKU_DIR / "magictour_top1465.csv", 48)
    pid = register(stubs.solver, SUDOKU)
    # batch-1 items tagged from 100, batch-4 ones from 1,000: tag 100 + i holds row i, 1,000 + j rows 40 + 4j on
    sent = items(pid, domains[:40]) + items(pid, domains[40:], batch=4, first_tag=1000)
    got = answers_by_tag(stubs.solver.SolveStream(iter(sent), timeout=RPC_TIMEOUT_S))
    assert sorted(got) == [item.tag for item in sent]
    for item in sent:
        answer = got[item.tag]
        assert answer.WhichOneof("answer") == "response"
        rows = item.request.batch_size
        start = item.tag - 100 if item.tag < 1000 else 40 + (item.tag - 1000) * 4
        want = local(engine, SUDOKU, domains[start : start + rows])
        assert first_difference(decode(answer.response, SUDOKU, rows), want) == ""


def test_a_bad_item_gets_the_unary_status_and_the_stream_goes_on(stubs: Stubs) -> None:
    domains = sudoku_batch(SUDOKU_DIR / "forum_hardest_1106.csv", 2)
    pid = register(stubs.solver, SUDOKU)
    bad_bits = solve_request(pid, SUDOKU, domains[:1])
    bad_bits.domains = pack_domains(domains[:1] | np.uint64(1 << 12), 16)  # 16-bit words: bit 12 >= domain_size 9
    sent = [
        solver_pb2.SolveStreamRequest(tag=1, request=solve_request(pid, SUDOKU, domains[:1])),
        solver_pb2.SolveStreamRequest(tag=2, request=bad_bits),
        solver_pb2.SolveStreamRequest(tag=3, request=solve_request("0" * 64, SUDOKU, domains[:1])),
        solver_pb2.SolveStreamRequest(tag=4, request=solve_request(pid, SUDOKU, domains[1:2])),
    ]
    got = answers_by_tag(stubs.solver.SolveStream(iter(sent), timeout=RPC_TIMEOUT_S))
    assert got[1].WhichOneof("answer") == got[4].WhichOneof("answer") == "response"
    assert grpc.StatusCode.INVALID_ARGUMENT.value[0] == got[2].error.code
    assert "domains" in got[2].error.message
    assert grpc.StatusCode.NOT_FOUND.value[0] == got[3].error.code
    assert "0" * 64 in got[3].error.message


def test_items_count_as_solves_and_the_call_as_solvestream(stubs: Stubs) -> None:
    domains = sudoku_batch(SUDOKU_DIR / "forum_hardest_1106.csv", 5)
    pid = register(stubs.solver, SUDOKU)

    def counts() -> tuple[int, int]:
        stats = stubs.admin.GetStats(admin_pb2.GetStatsRequest(), timeout=RPC_TIMEOUT_S)
        by = {(m.method, m.code): m.count for m in stats.requests}
        return by.get(("Solve", "OK"), 0), by.get(("SolveStream", "OK"), 0)

    solves, streams = counts()
    answers_by_tag(stubs.solver.SolveStream(iter(items(pid, domains)), timeout=RPC_TIMEOUT_S))
    assert counts() == (solves + 5, streams + 1)


def test_an_item_past_its_own_timeout_is_deadline_exceeded() -> None:
    # one engine thread busy on a long search, so the short item waits in the queue past its timeout
    with DaemonProcess(args=["--device-threads", "1"]) as daemon:
        stubs = connect(daemon.address)
        pid = register(stubs.solver, SUDOKU)
        domains = sudoku_batch(SUDOKU_DIR / "magictour_top1465.csv", 512)
        sent = [
            solver_pb2.SolveStreamRequest(tag=1, request=solve_request(pid, SUDOKU, domains)),
            solver_pb2.SolveStreamRequest(tag=2, request=solve_request(pid, SUDOKU, domains[:1]), timeout_us=1),
        ]
        got = answers_by_tag(stubs.solver.SolveStream(iter(sent), timeout=RPC_TIMEOUT_S))
        stubs.channel.close()
    assert got[1].WhichOneof("answer") == "response"
    assert grpc.StatusCode.DEADLINE_EXCEEDED.value[0] == got[2].error.code


def test_sigterm_answers_every_item_read_then_ends_the_stream_unavailable() -> None:
    with DaemonProcess() as daemon:
        stubs = connect(daemon.address)
        pid = register(stubs.solver, SUDOKU)
        domains = sudoku_batch(SUDOKU_DIR / "magictour_top1465.csv", 256)
        outbox: queue.Queue[solver_pb2.SolveStreamRequest | None] = queue.Queue()
        for item in items(pid, domains[:200]):
            outbox.put(item)

        def requests() -> Iterator[solver_pb2.SolveStreamRequest]:
            while (item := outbox.get()) is not None:
                yield item

        call = stubs.solver.SolveStream(requests(), timeout=RPC_TIMEOUT_S)
        got: dict[int, solver_pb2.SolveStreamResponse] = {}
        first = next(call)
        got[first.tag] = first
        daemon.send_signal(signal.SIGTERM)
        with pytest.raises(grpc.RpcError) as ended:
            for r in call:
                assert r.tag not in got
                got[r.tag] = r
        threading.Thread(target=outbox.put, args=(None,), daemon=True).start()
        assert daemon.wait() == 0
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "draining" in (ended.value.details() or "")
    # every item the daemon read was answered OK or UNAVAILABLE (it came after the drain began), never dropped:
    # the call ended only after the last of them, and nothing else was in flight
    assert got, "no item answered"
    codes = {r.error.code for r in got.values() if r.WhichOneof("answer") == "error"}
    assert codes <= {grpc.StatusCode.UNAVAILABLE.value[0]}
    served = [t for t, r in got.items() if r.WhichOneof("answer") == "response"]
    assert served, "the items accepted before the SIGTERM were not answered"
