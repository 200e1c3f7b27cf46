"""Serving benchmark: Solve through a real ``fpgacspd`` against the in-process engine, in one run.

Three measurements on the ``magictour_top1465`` Sudoku puzzles (full solve, first solution):

1. Throughput (instances/s) at batch 1, 64 and 1024: ``FastEngine.solve`` called directly (the local
   engine, one thread per core), the same through ``connect("local")``, and one synchronous client of the
   daemon over TCP and over its Unix socket, sending one request at a time. The four are timed in
   interleaved rounds (the machine is shared: background load then falls on all of them alike), and each
   one's first answer is checked bit for bit against the engine. Target: at batch 1024 the daemon over TCP
   reaches 80% of the local engine.
2. 64 concurrent asyncio clients (one process, one ``connect_async`` channel each) sending batch-1 requests
   in a closed loop for a fixed time, against a daemon with the default batching (``max_batch`` 1024,
   ``max_delay_us`` 0) and against one started with ``--max-batch 1`` (batching off), each once with unary
   calls and once with ``connect_async(streaming=True)`` (the Solves as items of one SolveStream call per
   client); beside them a bare grpc.aio echo of the same payload sizes, unary and streaming (gRPC's floor).
3. The register path (bench/_device.py): driver + simulated card against the fast core called directly at
   batch 1, 64 and 1024 (target: 90% at batch 1024), and the time to recover from each injected fault.
4. Latency of sequential batch-1 requests on an otherwise idle daemon (default settings), as the client
   sees it (``time.perf_counter`` around ``Client.solve``), with the daemon's own queue/device split.
   Target: p50 under 1 ms over loopback. For comparison: the bare generated stub with prebuilt requests
   (what the client library adds), and a daemon started with ``--max-delay-us 500`` (waiting for companions).

Run ``python bench/serve.py`` from the repository root; ``--quick`` is the smoke-test size (seconds). The
report is printed and written to ``--out`` (default ``bench/results/serve.md``) with the date, machine, load
average, versions, commit and command. Exit status 1 when an answer check failed or a request errored.
The daemon and the load generator share the machine's cores, as a client and a daemon on one host do.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import shlex
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository root importable for `bench`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fpgacsp
from fpgacsp import connect, connect_async
from fpgacsp.problems import load_puzzle_file, parse_sudoku, sudoku_domains, sudoku_program
from fpgacsp_proto.bitset import pack_domains
from fpgacsp_proto.v1 import solver_pb2, solver_pb2_grpc
from fpgacspd.engine import BatchResult, FastEngine

from bench._device import (
    PathRow,
    RecoveryRow,
    measure_recovery,
    measure_register_path,
    render_recovery,
    render_register_path,
)
from bench._echo import METHOD as ECHO_METHOD
from bench._echo import STREAM_METHOD as ECHO_STREAM_METHOD
from bench._echo import EchoServer
from bench._report import REPO, git_commit, machine, versions
from bench._serving import Daemon
from bench._timing import Rate, timed_rate, windows

DEFAULT_DATA = REPO / "data"
PUZZLES = "sudoku/magictour_top1465.csv"
BATCHES = (1, 64, 1024)
CLIENTS = 64
PROGRAM = sudoku_program()
FIELDS = ("domains", "status", "nodes", "solutions", "sweeps")


@dataclass(frozen=True)
class Settings:
    budget: float  # seconds per throughput cell
    rounds: int  # the cell's budget is spent in this many rounds, interleaved with the other cells
    duration: float  # seconds per concurrency run
    latency_requests: int
    limit: int | None  # puzzles read from the file
    recovery_samples: int  # faulted batches per fault kind
    runs: int  # latency and concurrency rows are measured this many times, side by side each time


FULL = Settings(budget=5.0, rounds=5, duration=8.0, latency_requests=2000, limit=None, recovery_samples=5, runs=3)
QUICK = Settings(budget=0.3, rounds=1, duration=1.0, latency_requests=200, limit=300, recovery_samples=1, runs=1)
ECHO_LATENCY = "bare grpc.aio echo, TCP"
IDLE_LATENCY = "default, TCP"
STUB_LATENCY = "default, TCP, bare stub"
ECHO_LOAD = "bare grpc.aio echo (same payload sizes)"
LOAD_ON = "batching on (max_batch 1024, max_delay_us 0)"
LOAD_OFF = "batching off (--max-batch 1)"
ECHO_STREAM_LOAD = "bare grpc.aio echo, one stream per client"
STREAM_ON = "streaming, batching on"
STREAM_OFF = "streaming, batching off"


@dataclass
class ThroughputRow:
    batch: int
    rates: dict[str, Rate] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)

    def ratio(self) -> float:
        return self.rates["daemon_tcp"].per_s / self.rates["engine"].per_s


@dataclass(frozen=True)
class LoadResult:
    label: str
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    merged: float  # requests per device batch, from the daemon's stats over the run
    client_cores: float  # CPU seconds per second of the load generator (all its threads)
    daemon_cores: float  # the same for the daemon process

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_ms_per_request(self) -> float:
        """CPU time of both processes (the load generator and the server) per answered request."""
        return (self.client_cores + self.daemon_cores) * self.seconds / max(1, self.requests) * 1e3


@dataclass(frozen=True)
class LatencyResult:
    label: str
    samples: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    queue_us: float  # medians of the daemon's Timing
    device_us: float
    daemon_us: float


# --- measurements ------------------------------------------------------------------------------------------


def compare(label: str, got: fpgacsp.SolveResult, want: BatchResult) -> list[str]:
    bad = [f for f in FIELDS if not np.array_equal(getattr(got, f), getattr(want, f))]
    return [f"{label}: {', '.join(bad)} differ from the local engine"] if bad else []


def measure_throughput(daemon: Daemon, domains: np.ndarray, settings: Settings) -> list[ThroughputRow]:
    """Each batch size: the four ways to solve, in interleaved rounds, so that background load on the machine
    falls on all of them alike; every way's first answer is checked against the engine's."""
    engine = FastEngine()
    compiled = engine.compile(PROGRAM)
    rows = []
    with (
        connect("local") as local,
        connect(daemon.address, timeout=120) as tcp,
        connect(daemon.unix_address, timeout=120) as unix,
    ):
        calls: dict[str, Callable[[np.ndarray], object]] = {
            "engine": lambda d: engine.solve(compiled, d),
            "local": lambda d: local.solve(PROGRAM, d),
            "daemon_tcp": lambda d: tcp.solve(PROGRAM, d),
            "daemon_unix": lambda d: unix.solve(PROGRAM, d),
        }
        for batch in BATCHES:
            work = windows(domains, batch, max(3, 4096 // batch))
            want = engine.solve(compiled, work[0])  # also warms the kernels and the thread pool
            row = ThroughputRow(batch, rates={key: Rate() for key in calls})
            for key in ("local", "daemon_tcp", "daemon_unix"):
                got = calls[key](work[0])
                assert isinstance(got, fpgacsp.SolveResult)
                row.checks += compare(f"batch {batch}, {key}", got, want)
            for _ in range(settings.rounds):
                for key, call in calls.items():
                    timed_rate(call, work, settings.budget / settings.rounds, row.rates[key])
            rows.append(row)
    engine.close()
    return rows


@dataclass(frozen=True)
class _Loop:
    latencies: list[float]
    errors: int
    seconds: float
    client_cpu: float
    server_cpu: float


async def _closed_loop(
    calls: Sequence[Callable[[int], Awaitable[object]]], duration: float, server_cpu: Callable[[], float]
) -> _Loop:
    """One task per ``calls[i]``, each calling it back to back for ``duration`` s (its argument counts up by the
    number of tasks, to walk the puzzles). A call started before the end is waited for; the span runs from the
    start to the last answer, and both processes' CPU time is taken over it."""
    latencies: list[float] = []
    errors = 0
    cpu = (time.process_time(), server_cpu())
    start = time.perf_counter()
    stop = start + duration
    last = start

    async def worker(i: int, call: Callable[[int], Awaitable[object]]) -> None:
        nonlocal errors, last
        j = i
        while time.perf_counter() < stop:
            sent = time.perf_counter()
            try:
                await call(j)
                last = time.perf_counter()
                latencies.append(last - sent)
            except (fpgacsp.FpgacspError, grpc.RpcError):
                errors += 1
            j += len(calls)

    await asyncio.gather(*(worker(i, c) for i, c in enumerate(calls)))
    seconds = last - start
    return _Loop(latencies, errors, seconds, time.process_time() - cpu[0], server_cpu() - cpu[1])


def _load_result(label: str, run: _Loop, merged: float) -> LoadResult:
    ms = np.array(run.latencies) * 1e3 if run.latencies else np.zeros(1)
    p50, p99 = np.percentile(ms, [50, 99])
    return LoadResult(
        label, len(run.latencies), run.errors, run.seconds, float(p50), float(p99), merged,
        run.client_cpu / run.seconds, run.server_cpu / run.seconds,
    )  # fmt: skip


async def closed_loop(
    label: str, daemon: Daemon, domains: np.ndarray, duration: float, streaming: bool = False
) -> LoadResult:
    """``CLIENTS`` client-library connections, one channel each, sending batch-1 Solves back to back (each as
    its own unary call, or with ``streaming`` as items of the client's one SolveStream call).

    Clients connect and solve once before the clock starts; the daemon's stats are taken over the same span."""
    conns = [connect_async(daemon.address, timeout=30, streaming=streaming) for _ in range(CLIENTS)]
    for c in conns:
        await c.register(PROGRAM)
        await c.solve(PROGRAM, domains[:1])
    admin = connect_async(daemon.address, timeout=30)
    before = await admin.stats()

    def solver(client: fpgacsp.AsyncClient) -> Callable[[int], Awaitable[object]]:
        return lambda j: client.solve(PROGRAM, domains[j % len(domains)][None])

    run = await _closed_loop([solver(c) for c in conns], duration, daemon.cpu_seconds)
    after = await admin.stats()
    for c in [*conns, admin]:
        await c.close()
    batches = after.batches - before.batches
    merged = (after.count("Solve", "OK") - before.count("Solve", "OK")) / batches if batches else 0.0
    return _load_result(label, run, merged)


async def echo_closed_loop(echo: EchoServer, request: bytes, duration: float) -> LoadResult:
    """The same load on the bare echo server: ``CLIENTS`` grpc.aio channels, requests of a Solve's size."""
    channels = [grpc.aio.insecure_channel(echo.address) for _ in range(CLIENTS)]
    methods = [ch.unary_unary(ECHO_METHOD) for ch in channels]
    for m in methods:
        await m(request, timeout=30)

    def caller(method: grpc.aio.UnaryUnaryMultiCallable) -> Callable[[int], Awaitable[object]]:
        return lambda _j: method(request, timeout=30)

    run = await _closed_loop([caller(m) for m in methods], duration, echo.cpu_seconds)
    for ch in channels:
        await ch.close()
    return _load_result(ECHO_LOAD, run, 1.0)


async def echo_stream_closed_loop(echo: EchoServer, request: bytes, duration: float) -> LoadResult:
    """The streaming load on the bare echo server: ``CLIENTS`` channels, one bidirectional call each, one
    request written and its answer read at a time (what a streaming client's closed loop does)."""
    channels = [grpc.aio.insecure_channel(echo.address) for _ in range(CLIENTS)]
    calls = [ch.stream_stream(ECHO_STREAM_METHOD)() for ch in channels]

    def caller(call: grpc.aio.StreamStreamCall) -> Callable[[int], Awaitable[object]]:
        async def one(_j: int) -> object:
            await call.write(request)
            return await call.read()

        return one

    callers = [caller(c) for c in calls]
    for one in callers:
        await one(0)
    run = await _closed_loop(callers, duration, echo.cpu_seconds)
    for call, ch in zip(calls, channels, strict=True):
        await call.done_writing()
        await ch.close()
    return _load_result(ECHO_STREAM_LOAD, run, 1.0)


def payload_sizes(address: str, domains: np.ndarray) -> tuple[bytes, int]:
    """A batch-1 SolveRequest's bytes (the echo is sent those) and the size of the daemon's answer to it."""
    with connect(address) as client, grpc.insecure_channel(address) as channel:
        pid = client.register(PROGRAM)
        request = solver_pb2.SolveRequest(
            program_id=pid, batch_size=1, domains=pack_domains(domains[:1], PROGRAM.domain_size)
        )
        answer = solver_pb2_grpc.SolverStub(channel).Solve(request, timeout=30)
    return request.SerializeToString(), answer.ByteSize()


def measure_load(
    label: str, daemon: Daemon, domains: np.ndarray, settings: Settings, streaming: bool = False
) -> LoadResult:
    return asyncio.run(closed_loop(label, daemon, domains, settings.duration, streaming))


def measure_echo_latency(echo: EchoServer, request: bytes, count: int) -> LatencyResult:
    """Sequential calls of the bare echo server, timed like :func:`measure_latency`."""
    with grpc.insecure_channel(echo.address) as channel:
        method = channel.unary_unary(ECHO_METHOD)
        for _ in range(20):
            method(request, timeout=30)
        lat = []
        for _ in range(count):
            start = time.perf_counter()
            method(request, timeout=30)
            lat.append(time.perf_counter() - start)
            time.sleep(0.0005)
    ms = np.array(lat) * 1e3
    p50, p99 = np.percentile(ms, [50, 99])
    return LatencyResult("bare grpc.aio echo, TCP", count, float(p50), float(p99), float(ms.mean()), 0.0, 0.0, 0.0)


def measure_latency(label: str, target: str, domains: np.ndarray, count: int, raw: bool = False) -> LatencyResult:
    """Sequential batch-1 solves through ``Client.solve``, or (``raw``) through the bare generated stub with
    requests built beforehand, which shows what the client library itself adds."""
    with connect(target) as client:
        pid = client.register(PROGRAM)
        channel = grpc.insecure_channel(target)
        stub = solver_pb2_grpc.SolverStub(channel)
        requests = [
            solver_pb2.SolveRequest(
                program_id=pid, batch_size=1, domains=pack_domains(domains[i][None], PROGRAM.domain_size)
            )
            for i in range(min(count, len(domains)))
        ]

        def one(i: int) -> tuple[int, int, int]:
            if raw:
                t = stub.Solve(requests[i % len(requests)], timeout=30).timing
            else:
                res = client.solve(PROGRAM, domains[i % len(domains)][None])
                assert res.timing is not None
                t = res.timing
            return t.queue_us, t.device_us, t.total_us

        for i in range(20):
            one(i)  # warm connection and program
        lat, timings = [], []
        for i in range(count):
            start = time.perf_counter()
            timings.append(one(i))
            lat.append(time.perf_counter() - start)
            time.sleep(0.0005)  # idle between requests: no request waits behind another
        channel.close()
    ms = np.array(lat) * 1e3
    p50, p99 = np.percentile(ms, [50, 99])
    med = np.median(np.array(timings, dtype=np.float64), axis=0)
    return LatencyResult(label, count, float(p50), float(p99), float(ms.mean()), *(float(x) for x in med))


# --- report ------------------------------------------------------------------------------------------------


def fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def spread(values: Sequence[float], digits: int = 3) -> str:
    """Median and (min-max) over the runs."""
    med = float(np.median(values))
    if len(values) < 2:
        return f"{med:.{digits}g}" if med < 100 else f"{med:,.0f}"
    lo, hi = min(values), max(values)
    if med >= 100:
        return f"{med:,.0f} ({lo:,.0f}-{hi:,.0f})"
    return f"{med:.{digits}g} ({lo:.{digits}g}-{hi:.{digits}g})"


def ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Run by run: each ratio compares two measurements taken side by side in the same round."""
    return [x / y if y else 0.0 for x, y in zip(a, b, strict=True)]


def render(
    rows: Sequence[ThroughputRow],
    loads: dict[str, list[LoadResult]],
    lats: dict[str, list[LatencyResult]],
    device: tuple[Sequence[PathRow], Sequence[RecoveryRow]],
    failures: Sequence[str],
    meta: dict[str, str],
    quick: bool,
) -> str:
    echo_lat, idle = lats[ECHO_LATENCY], lats[IDLE_LATENCY]
    echo_load, on, off = loads[ECHO_LOAD], loads[LOAD_ON], loads[LOAD_OFF]
    big = next(r for r in rows if r.batch == 1024)
    paths, recoveries = device
    one = next(r for r in paths if r.batch == 1)
    runs = len(idle)
    out = [
        "# Serving benchmark" + (" (quick)" if quick else ""),
        "",
        f"- Date: {meta['date']}",
        f"- Machine: {machine()}; load average at start {meta['load']}",
        f"- Software: {versions(('numpy', 'numba', 'grpcio', 'protobuf'))}",
        f"- Commit: {git_commit()}",
        f"- Command: `{meta['command']}`",
        f"- Puzzles: `{PUZZLES}` ({meta['puzzles']} puzzles), full solve; {meta['settings']}",
        f"- Whole run: {meta['total']}",
        "- The daemon and the load generator share this machine's cores (the daemon's device uses one thread per "
        "core, as does the local engine).",
        f"- Latency and concurrency: {runs} runs, each measuring every row side by side; cells give the median "
        "and (min-max) over the runs, ratios are taken run by run. The echo rows are a bare `grpc.aio` server in "
        f"its own process answering requests of a batch-1 Solve's size ({meta['sizes']}): gRPC's own floor.",
        "",
        "## Throughput: one client, one request at a time (instances/s)",
        "",
        '| batch | local engine | connect("local") | daemon TCP | daemon unix | daemon TCP ÷ engine | checks |',
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        cells = [fmt(r.rates[k].per_s) for k in ("engine", "local", "daemon_tcp", "daemon_unix")]
        out.append(f"| {r.batch} | {' | '.join(cells)} | {r.ratio():.0%} | {'ok' if not r.checks else 'FAILED'} |")
    out += [
        "",
        f"## {CLIENTS} concurrent clients, batch 1 (asyncio, one process, one channel per client, closed loop)",
        "",
        "| server | requests/s | p50 ms | p99 ms | CPU ms per request (clients + server) | ÷ echo | "
        "requests per device batch | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    echo_cpu = [lr.cpu_ms_per_request for lr in echo_load]
    for label, load_runs in loads.items():
        cpu = [lr.cpu_ms_per_request for lr in load_runs]
        out.append(
            f"| {label} | {spread([lr.per_s for lr in load_runs])} | {spread([lr.p50_ms for lr in load_runs])} | "
            f"{spread([lr.p99_ms for lr in load_runs])} | {spread(cpu)} | {spread(ratios(cpu, echo_cpu))} | "
            f"{spread([lr.merged for lr in load_runs])} | {sum(lr.errors for lr in load_runs)} |"
        )
    out += [
        "",
        "## Latency of one batch-1 request on an idle server (sequential requests)",
        "",
        "| server | p50 ms | ÷ echo p50 | p99 ms | daemon queue µs (median) | device µs | daemon total µs | "
        "samples per run |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    echo_p50 = [lt.p50_ms for lt in echo_lat]
    for label, results in lats.items():
        p50 = [lt.p50_ms for lt in results]
        vs = spread(ratios(p50, echo_p50)) if len(results) == runs else "-"
        daemon_cells = (
            " | ".join(spread([getattr(lt, f) for lt in results]) for f in ("queue_us", "device_us", "daemon_us"))
            if label != ECHO_LATENCY
            else "- | - | -"
        )
        out.append(
            f"| {label} | {spread(p50)} | {vs} | {spread([lt.p99_ms for lt in results])} | {daemon_cells} | "
            f"{results[0].samples:,} |"
        )
    out += ["", *render_register_path(paths), *render_recovery(recoveries)]
    idle_vs_echo = float(np.median(ratios([lt.p50_ms for lt in idle], echo_p50)))
    cpu_vs_echo = float(np.median(ratios([lr.cpu_ms_per_request for lr in on], echo_cpu)))
    batching = ratios([lr.per_s for lr in on], [lr.per_s for lr in off])
    speedup = float(np.median(batching))
    s_on, s_off = loads[STREAM_ON], loads[STREAM_OFF]
    s_cpu = [lr.cpu_ms_per_request for lr in s_on]
    s_cpu_vs_echo = float(np.median(ratios(s_cpu, echo_cpu)))
    s_cpu_vs_stream_echo = spread(ratios(s_cpu, [lr.cpu_ms_per_request for lr in loads[ECHO_STREAM_LOAD]]))
    s_batching = ratios([lr.per_s for lr in s_on], [lr.per_s for lr in s_off])
    s_vs_unary = spread(ratios([lr.per_s for lr in s_on], [lr.per_s for lr in on]))
    out += [
        "",
        "## Targets",
        "",
        f"- idle batch-1 p50 through the client library at most 1.5x the echo's: {idle_vs_echo:.2f}x "
        f"({spread([lt.p50_ms for lt in idle])} vs {spread(echo_p50)} ms) {verdict(idle_vs_echo <= 1.5)}",
        f"- CPU per request with {CLIENTS} concurrent batch-1 clients at most 1.5x the echo's: {cpu_vs_echo:.2f}x "
        f"({spread([lr.cpu_ms_per_request for lr in on])} vs {spread(echo_cpu)} ms) {verdict(cpu_vs_echo <= 1.5)}",
        f"- batching on vs off at {CLIENTS} clients at least 3x: {spread(batching)}x "
        f"({spread([lr.per_s for lr in on])} vs {spread([lr.per_s for lr in off])} requests/s) "
        f"{verdict(speedup >= 3)}",
        f"- the same two with the streaming mechanism (`connect_async(streaming=True)`, one SolveStream call per "
        f"client; {s_vs_unary}x the requests/s of unary calls): CPU per request {s_cpu_vs_echo:.2f}x "
        f"the unary echo's ({spread(s_cpu)} vs {spread(echo_cpu)} ms; {s_cpu_vs_stream_echo}x the streaming echo's) "
        f"{verdict(s_cpu_vs_echo <= 1.5)}; batching on vs off {spread(s_batching)}x "
        f"{verdict(float(np.median(s_batching)) >= 3)}",
        f"- the register path with the simulated card adds at most 0.1 ms per batch-1 job: {one.overhead_ms:.2f} ms "
        f"{verdict(one.overhead_ms <= 0.1)}",
        f"- batch 1024 through the daemon at least 95% of the local engine: {big.ratio():.0%} "
        f"({fmt(big.rates['daemon_tcp'].per_s)} vs {fmt(big.rates['engine'].per_s)} instances/s) "
        f"{verdict(big.ratio() >= 0.95)}",
    ]
    if quick:
        out.append("- (quick run: short samples; its verdicts are not the benchmark's)")
    out += ["", "## Check failures", "", *([f"- {f}" for f in failures] or ["- none: every check passed"]), ""]
    return "\n".join(out)


# --- driver ------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="short samples (smoke test): seconds instead of minutes")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "serve.md", help="Markdown report")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="benchmark data folder (data/ in the repository)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    grids = [parse_sudoku(r.puzzle) for r in load_puzzle_file(args.data / PUZZLES, settings.limit)]
    domains = sudoku_domains(np.stack(grids))
    load = os.getloadavg()
    started = time.perf_counter()

    def progress(what: str) -> None:
        print(f"  {what} ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)

    paths = measure_register_path(PROGRAM, domains, BATCHES, settings.budget, settings.rounds)
    progress("register path")
    recoveries = measure_recovery(PROGRAM, domains, settings.recovery_samples)
    progress("recovery")
    lats: dict[str, list[LatencyResult]] = {}
    loads: dict[str, list[LoadResult]] = {}
    n = settings.latency_requests
    with Daemon() as daemon, Daemon(["--max-batch", "1"]) as unbatched:
        rows = measure_throughput(daemon, domains, settings)
        progress("throughput")
        request, response_bytes = payload_sizes(daemon.address, domains)
        with EchoServer(response_bytes) as echo:
            for run in range(settings.runs):  # every row of a run side by side, so ratios compare like with like
                for label, lat in (
                    (ECHO_LATENCY, lambda: measure_echo_latency(echo, request, n)),
                    (IDLE_LATENCY, lambda: measure_latency(IDLE_LATENCY, daemon.address, domains, n)),
                    ("default, unix", lambda: measure_latency("default, unix", daemon.unix_address, domains, n)),
                    (STUB_LATENCY, lambda: measure_latency(STUB_LATENCY, daemon.address, domains, n, raw=True)),
                ):
                    lats.setdefault(label, []).append(lat())
                progress(f"latency, run {run + 1}")
                loads.setdefault(ECHO_LOAD, []).append(asyncio.run(echo_closed_loop(echo, request, settings.duration)))
                loads.setdefault(LOAD_ON, []).append(measure_load(LOAD_ON, daemon, domains, settings))
                loads.setdefault(LOAD_OFF, []).append(measure_load(LOAD_OFF, unbatched, domains, settings))
                loads.setdefault(ECHO_STREAM_LOAD, []).append(
                    asyncio.run(echo_stream_closed_loop(echo, request, settings.duration))
                )
                loads.setdefault(STREAM_ON, []).append(measure_load(STREAM_ON, daemon, domains, settings, True))
                loads.setdefault(STREAM_OFF, []).append(measure_load(STREAM_OFF, unbatched, domains, settings, True))
                progress(f"{CLIENTS} clients, run {run + 1}")
    with Daemon(["--max-delay-us", "500"]) as daemon:
        label = "--max-delay-us 500, TCP"
        lats[label] = [measure_latency(label, daemon.address, domains, n)]
        progress("latency with a batching delay")

    failures = [c for r in rows for c in r.checks]
    failures += [f"{lr.label}: {lr.errors} requests failed" for rs in loads.values() for lr in rs if lr.errors]
    failures += [f"register path, batch {r.batch}: answer differs from the fast core" for r in paths if not r.checked]
    failures += [f"recovery from {r.fault}: a wrong answer" for r in recoveries if not r.correct]
    words = sys.argv[1:] if argv is None else list(argv)
    meta = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load": " / ".join(f"{x:.2f}" for x in load),
        "command": "python bench/serve.py" + "".join(f" {shlex.quote(a)}" for a in words),
        "puzzles": f"{len(domains):,}",
        "settings": f"{settings.budget:g} s per throughput cell (in {settings.rounds} interleaved rounds), "
        f"{settings.duration:g} s per concurrency run, "
        f"{settings.latency_requests:,} latency samples per run",
        "sizes": f"{len(request)} request bytes, {response_bytes} answer bytes",
        "total": f"{time.perf_counter() - started:.0f} s",
    }
    text = render(rows, loads, lats, (paths, recoveries), failures, meta, args.quick)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
