"""Soak: a real fpgacspd under everything at once, every answer checked, then a SIGTERM.

Run on demand (``python bench/soak.py``; ``--quick`` is a short smoke run with a 100,000-constraint registration
limit). Each scenario starts its own daemon and, at the same time:

- **load**: client threads send Sudoku Solve requests of 1-8 puzzles over raw gRPC stubs (10 s deadline each);
  every OK answer is compared bit for bit with the local engine;
- **faults**: the simulated card hangs, errors, corrupts completions, drops and delays interrupts now and then
  (``--sim-faults``) with a 500 ms job timeout;
- **fuzz**: a thread sends random bytes and structurally valid but wrong messages to every method
  (bench/_hostile.py); none may be answered UNKNOWN or INTERNAL;
- **long job**: a thread keeps asking for an 8-colouring of queen8_8 with a node limit of 10^8 and a 2 s
  deadline: each must end DEADLINE_EXCEEDED near its deadline (the card aborts the job), not hold the device;
- **huge registration**: once, a program of 1,048,577 NEQ constraints (one over the limit: refused at once)
  and one of 1,048,576 (accepted after seconds of decoding, off the event loop), then released;
- **slowloris**: 500 half-open connections to the metrics port that trickle bytes and never finish, reopened as
  the server closes them, while a scraper scrapes every second;
- **status**: GetDeviceStatus every 100 ms, its latency recorded (target: under 100 ms throughout);
- **resources**: the daemon's RSS and thread count sampled every half second.

Then SIGTERM, with all of it still running; the clients keep calling until the daemon is gone. The report
prints, per scenario: calls sent, answers by status code, lost (a call that never returned), wrong (an OK
answer that differs from the engine), the longest wait past a request's own deadline, status latency, RSS and
threads, and how long SIGTERM took. Targets: 0 lost, 0 wrong, no UNKNOWN or INTERNAL from the fuzz, no wait
beyond a deadline (0.5 s of slack), status under 100 ms, exit 0 within the unit's 45 s stop timeout. Two more
scenarios stop the daemon in the middle of a huge registration and of a long search without a deadline.

The report is written to ``--out`` (default ``bench/results/soak.md``) with the machine, versions, commit and
command; the exit status is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import multiprocessing
import os
import shlex
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import grpc
import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository root importable for `bench`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fpgacsp import SolveResult
from fpgacsp._codec import solve_result  # the client's own decoding of a SolveResponse
from fpgacsp.problems import load_puzzle_file, parse_sudoku, sudoku_domains, sudoku_program
from fpgacsp.problems.coloring import coloring_program, load_dimacs
from fpgacsp_proto.bitset import pack_domains
from fpgacsp_proto.convert import program_to_proto
from fpgacsp_proto.limits import MAX_MESSAGE_BYTES
from fpgacsp_proto.v1 import admin_pb2, admin_pb2_grpc, solver_pb2, solver_pb2_grpc
from fpgacspd.engine import BatchResult, FastEngine

from bench._hostile import Slowloris, fuzz_request, neq_register_request_bytes, timed
from bench._report import REPO, git_commit, machine, versions
from bench._serving import Daemon

FAULTS = "hang/97,error/53,corrupt/61,drop_irq/17,slow/29,late_irq/23"
STOP_TIMEOUT_S = 45.0  # deploy/fpgacspd.service's TimeoutStopSec
LOAD_DEADLINE_S = 10.0
LONG_DEADLINE_S = 2.0
DEADLINE_SLACK_S = 0.5
STATUS_TARGET_S = 0.1
MAX_CONSTRAINTS = 1_048_576
SUDOKU = sudoku_program()


@dataclass
class Tally:
    """Outcomes of one kind of caller."""

    codes: Counter[str] = field(default_factory=Counter)
    after_stop: Counter[str] = field(default_factory=Counter)  # answers to calls sent once SIGTERM was sent
    stopping: threading.Event = field(default_factory=threading.Event)  # set when SIGTERM is sent
    wrong: int = 0
    overrun_s: float = 0.0  # the longest a call ran past its own deadline
    why: dict[str, Counter[str]] = field(default_factory=dict)  # before SIGTERM: code -> its messages, counted
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, code: str, elapsed: float, deadline: float, wrong: bool = False, details: str = "") -> None:
        with self.lock:
            self.codes[code] += 1
            if code not in ("OK", "INVALID_ARGUMENT") and details and not self.stopping.is_set():
                self.why.setdefault(code, Counter())[details.split(";")[0][:90]] += 1
            if self.stopping.is_set():
                self.after_stop[code] += 1
            self.wrong += wrong
            self.overrun_s = max(self.overrun_s, elapsed - deadline)

    @property
    def sent(self) -> int:
        return sum(self.codes.values())


@dataclass
class Samples:
    status_s: list[float] = field(default_factory=list)
    status_at: list[float] = field(default_factory=list)  # time.monotonic() when each status was sent
    rss_mb: list[float] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    scrapes_ok: int = 0
    scrapes_failed: int = 0


@dataclass
class Result:
    name: str
    load: Tally
    fuzz: Tally
    long: Tally
    samples: Samples
    lost: int
    exit_code: int | None
    stop_s: float
    books: str  # the daemon's own "stopped" accounting
    huge: dict[str, str] = field(default_factory=dict)
    slowloris_closed: int = 0
    crashes: list[str] = field(default_factory=list)


def same(got: BatchResult | SolveResult, want: BatchResult, rows: slice) -> bool:
    return all(
        np.array_equal(getattr(got, f), getattr(want, f)[rows])
        for f in ("domains", "status", "nodes", "solutions", "sweeps")
    )


def _raw(data: bytes) -> bytes:
    return data


def details_of(error: BaseException | None) -> str:
    return str(error.details()) if isinstance(error, grpc.RpcError) else ""


def code_of(error: BaseException | None) -> str:
    if error is None:
        return "OK"
    return error.code().name if isinstance(error, grpc.RpcError) else f"client:{type(error).__name__}"


class Soak:
    """Every hostile caller of one scenario, as threads against one daemon."""

    def __init__(self, daemon: Daemon, domains: np.ndarray, want: BatchResult, clients: int) -> None:
        self.daemon = daemon
        self.domains = domains
        self.want = want
        self.clients = clients
        self.stop = threading.Event()  # set once the daemon is gone: callers stop
        self.stopping = threading.Event()  # set when SIGTERM is sent
        self.load, self.fuzz, self.long = (Tally(stopping=self.stopping) for _ in range(3))
        self.samples = Samples()
        self.threads: list[threading.Thread] = []
        self.crashes: list[str] = []
        channel = grpc.insecure_channel(daemon.address)
        solver = solver_pb2_grpc.SolverStub(channel)
        self.sudoku_id = solver.RegisterProgram(
            solver_pb2.RegisterProgramRequest(program=program_to_proto(SUDOKU)), timeout=30
        ).program_id
        self.queens = coloring_program(load_dimacs(REPO / "data" / "coloring" / "queen8_8.col"), 8)
        self.queens_id = solver.RegisterProgram(
            solver_pb2.RegisterProgramRequest(program=program_to_proto(self.queens)), timeout=30
        ).program_id
        channel.close()

    def spawn(self, target: Callable[..., None], *args: object) -> None:
        def guarded() -> None:  # a caller that crashes is a failure of the soak, not a silent thread
            try:
                target(*args)
            except BaseException as e:
                self.crashes.append(f"{target.__name__}: {type(e).__name__}: {e}")
                raise

        thread = threading.Thread(target=guarded, name=target.__name__, daemon=True)
        thread.start()
        self.threads.append(thread)

    def start(self, fuzz: bool, long_jobs: bool, slowloris: bool) -> None:
        for seed in range(self.clients):
            self.spawn(self._load_client, seed)
        if fuzz:
            self.spawn(self._fuzzer, 1000)
        if long_jobs:
            self.spawn(self._long_jobs)
        self.spawn(self._status_probe)
        self.spawn(self._sampler)
        if slowloris and self.daemon.metrics_address:
            self.spawn(self._scraper)

    def _load_client(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        with grpc.insecure_channel(self.daemon.address) as channel:
            stub = solver_pb2_grpc.SolverStub(channel)
            while not self.stop.is_set():
                size = int(rng.integers(1, 9))
                first = int(rng.integers(0, len(self.domains) - size))
                rows = slice(first, first + size)
                request = solver_pb2.SolveRequest(
                    program_id=self.sudoku_id, batch_size=size, domains=pack_domains(self.domains[rows], 9)
                )
                start = time.monotonic()
                try:
                    resp = stub.Solve(request, timeout=LOAD_DEADLINE_S)
                    self.load.add(
                        "OK",
                        time.monotonic() - start,
                        LOAD_DEADLINE_S,
                        not same(solve_result(resp, SUDOKU, size), self.want, rows),
                    )
                except grpc.RpcError as e:
                    self.load.add(e.code().name, time.monotonic() - start, LOAD_DEADLINE_S, details=str(e.details()))

    def _fuzzer(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        with grpc.insecure_channel(self.daemon.address) as channel:
            calls: dict[str, grpc.UnaryUnaryMultiCallable] = {}
            while not self.stop.is_set():
                path, body = fuzz_request(rng, self.sudoku_id)
                if path not in calls:
                    calls[path] = channel.unary_unary(path, request_serializer=_raw, response_deserializer=_raw)
                call = calls[path]
                elapsed, error = timed(functools.partial(call, body, timeout=LOAD_DEADLINE_S))
                self.fuzz.add(code_of(error), elapsed, LOAD_DEADLINE_S)

    def _long_jobs(self) -> None:
        full = np.full((1, self.queens.num_vars), 0xFF, dtype=np.uint64)
        request = solver_pb2.SolveRequest(
            program_id=self.queens_id, batch_size=1, domains=pack_domains(full, 8), node_limit=100_000_000
        )
        with grpc.insecure_channel(self.daemon.address) as channel:
            stub = solver_pb2_grpc.SolverStub(channel)
            while not self.stop.is_set():
                elapsed, error = timed(lambda: stub.Solve(request, timeout=LONG_DEADLINE_S))
                self.long.add(code_of(error), elapsed, LONG_DEADLINE_S, details=details_of(error))
                self.stop.wait(1.0)  # one every few seconds: the device is shared with the load

    def _status_probe(self) -> None:
        """GetDeviceStatus every 100 ms from a process of its own: the soak's own threads (load clients
        decoding answers) must not add their GIL waits to the daemon's latency."""
        ctx = multiprocessing.get_context("spawn")
        receive, send = ctx.Pipe(duplex=False)
        probe = ctx.Process(target=_status_probe_process, args=(self.daemon.address, send), daemon=True)
        probe.start()
        send.close()
        while True:
            try:
                sent, elapsed = receive.recv()
            except EOFError:
                break
            self.samples.status_s.append(elapsed)
            self.samples.status_at.append(sent)
        probe.join(timeout=10)

    def _sampler(self) -> None:
        status = Path(f"/proc/{self.daemon.pid}/status")
        while not self.stop.is_set():
            try:
                fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
            except OSError:
                return  # the daemon exited
            self.samples.rss_mb.append(int(fields["VmRSS"].split()[0]) / 1024)
            self.samples.threads.append(int(fields["Threads"]))
            self.stop.wait(0.5)

    def _scraper(self) -> None:
        url = f"http://{self.daemon.metrics_address}/metrics"
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    resp.read()
                self.samples.scrapes_ok += 1
            except OSError:
                self.samples.scrapes_failed += 1
            self.stop.wait(1.0)

    def huge_registration(self, limit: int) -> dict[str, str]:
        """One over the limit (refused before decoding), then one at it (decoded off the loop), then released."""
        out = {}
        with grpc.insecure_channel(
            self.daemon.address, options=[("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
        ) as ch:
            register = ch.unary_unary(
                "/fpgacsp.v1.Solver/RegisterProgram", request_serializer=lambda b: b,
                response_deserializer=solver_pb2.RegisterProgramResponse.FromString,
            )  # fmt: skip
            over = neq_register_request_bytes(1000, limit + 1)
            elapsed, error = timed(lambda: register(over, timeout=60))
            out[f"{limit + 1:,} NEQ"] = f"{code_of(error)} in {elapsed:.3f} s"
            at = neq_register_request_bytes(1000, limit)
            got: list[solver_pb2.RegisterProgramResponse] = []
            elapsed, error = timed(lambda: got.append(register(at, timeout=120)))
            out[f"{limit:,} NEQ"] = f"{code_of(error)} in {elapsed:.1f} s"
            if got:
                solver_pb2_grpc.SolverStub(ch).ReleaseProgram(
                    solver_pb2.ReleaseProgramRequest(program_id=got[0].program_id), timeout=30
                )
        return out

    def finish(self, join_s: float = 30.0) -> int:
        """Stop the callers (the daemon is gone); the calls still not returned after ``join_s`` are lost."""
        self.stop.set()
        deadline = time.monotonic() + join_s
        for t in self.threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        return sum(t.is_alive() for t in self.threads)


def _status_probe_process(address: str, send: Connection) -> None:
    """The status probe's own process: one ``(sent, seconds)`` per answered status, until the daemon is gone."""
    failures = 0
    with grpc.insecure_channel(address) as channel:
        admin = admin_pb2_grpc.AdminStub(channel)
        while failures < 10:  # the daemon has gone for a second: the scenario is over
            sent = time.monotonic()
            elapsed, error = timed(lambda: admin.GetDeviceStatus(admin_pb2.GetDeviceStatusRequest(), timeout=5))
            if error is None:
                send.send((sent, elapsed))
                failures = 0
            else:
                failures += 1
            time.sleep(0.1)
    send.close()


def books(daemon: Daemon) -> str:
    stopped = daemon.events_named("stopped")
    if not stopped:
        return "no stopped event"
    s = stopped[-1]
    return f"submitted {s.get('submitted')}, answered {s.get('answered')}, forced {s.get('forced')}"


def run_combined(
    name: str, duration: float, clients: int, domains: np.ndarray, want: BatchResult, limit: int = MAX_CONSTRAINTS
) -> Result:
    args = ["--metrics-listen", "127.0.0.1:0", "--sim-faults", FAULTS, "--job-timeout-ms", "500", "--max-delay-us",
            "1000", "--max-constraints", str(limit)]  # fmt: skip
    with Daemon(args) as daemon:
        soak = Soak(daemon, domains, want, clients)
        with Slowloris(daemon.metrics_address, 500) as slow:
            soak.start(fuzz=True, long_jobs=True, slowloris=True)
            time.sleep(duration / 3)
            huge = soak.huge_registration(limit)
            time.sleep(max(0.0, duration / 3))
            soak.stopping.set()
            code, stop_s = daemon.terminate(STOP_TIMEOUT_S)
            lost = soak.finish()
            closed = slow.closed_by_server
        return Result(
            name, soak.load, soak.fuzz, soak.long, soak.samples, lost, code, stop_s, books(daemon), huge, closed
        )


def run_stop_during(name: str, what: str, domains: np.ndarray, want: BatchResult) -> Result:
    """SIGTERM one second into a huge registration, or into a long search that has no deadline."""
    with Daemon(["--metrics-listen", "127.0.0.1:0"]) as daemon:
        soak = Soak(daemon, domains, want, clients=2)
        soak.start(fuzz=False, long_jobs=False, slowloris=False)
        with grpc.insecure_channel(daemon.address, options=[("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]) as ch:
            if what == "registration":
                call = ch.unary_unary("/fpgacsp.v1.Solver/RegisterProgram", request_serializer=lambda b: b,
                                      response_deserializer=lambda b: b)  # fmt: skip
                body = neq_register_request_bytes(1000, MAX_CONSTRAINTS)
            else:
                call = ch.unary_unary("/fpgacsp.v1.Solver/Solve", request_serializer=lambda b: b,
                                      response_deserializer=lambda b: b)  # fmt: skip
                full = np.full((1, soak.queens.num_vars), 0xFF, dtype=np.uint64)
                body = solver_pb2.SolveRequest(
                    program_id=soak.queens_id, batch_size=1, domains=pack_domains(full, 8), node_limit=100_000_000
                ).SerializeToString()
            outcome: list[str] = []
            caller = threading.Thread(target=lambda: outcome.append(code_of(timed(lambda: call(body, timeout=120))[1])))
            caller.start()
            time.sleep(1.0)
            soak.stopping.set()
            code, stop_s = daemon.terminate(STOP_TIMEOUT_S)
            caller.join(timeout=30)
        lost = soak.finish() + caller.is_alive()
        long = Tally()
        for c in outcome:
            long.add(c, 0.0, 0.0)
        return Result(
            name, soak.load, Tally(), long, soak.samples, lost, code, stop_s, books(daemon), crashes=soak.crashes
        )


def check(results: list[Result]) -> list[str]:
    misses = []
    for r in results:
        if r.lost:
            misses.append(f"{r.name}: {r.lost} calls lost")
        misses += [f"{r.name}: a caller crashed: {c}" for c in r.crashes]
        if r.load.wrong:
            misses.append(f"{r.name}: {r.load.wrong} wrong answers")
        bad = {c: n for c, n in r.fuzz.codes.items() if c in ("UNKNOWN", "INTERNAL") or c.startswith("client:")}
        if bad:
            misses.append(f"{r.name}: the fuzz got {bad}")
        for tally, what in ((r.load, "load"), (r.long, "long job")):
            if tally.codes and tally.overrun_s > DEADLINE_SLACK_S:
                misses.append(f"{r.name}: a {what} call ran {tally.overrun_s:.2f} s past its deadline")
        if r.samples.status_s and max(r.samples.status_s) > STATUS_TARGET_S:
            misses.append(f"{r.name}: a status took {max(r.samples.status_s) * 1e3:.0f} ms")
        if r.exit_code != 0 or r.stop_s > STOP_TIMEOUT_S:
            misses.append(f"{r.name}: SIGTERM gave exit {r.exit_code} after {r.stop_s:.1f} s")
    return misses


def render(results: list[Result], misses: list[str], meta: dict[str, str]) -> str:
    def codes(t: Tally) -> str:
        if not t.codes:
            return "-"
        before = t.codes - t.after_stop
        text = ", ".join(f"{c} {n:,}" for c, n in before.most_common()) or "none"
        if t.after_stop:
            text += " (after SIGTERM: " + ", ".join(f"{c} {n:,}" for c, n in t.after_stop.most_common()) + ")"
        return text

    out = [
        "# Soak: load, faults, fuzz, long jobs, huge programs, slowloris and SIGTERM at once",
        "",
        f"- Date: {meta['date']}; commit {git_commit()}",
        f"- Machine: {machine()}; load average at start {meta['load']}",
        f"- Software: {versions(['numpy', 'numba', 'grpcio', 'protobuf'])}",
        f"- Command: `{meta['command']}` ({meta['total']})",
        f"- Faults injected in the combined scenario: `{FAULTS}`, job timeout 500 ms; the daemon and every caller "
        "share this machine's cores.",
        "",
        "| scenario | calls | answers by code | lost | wrong | past deadline | status p50 / p99 / max "
        "| RSS start / max / end | threads start / max | SIGTERM |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        s = r.samples
        status = "-"
        if s.status_s:
            p50, p99 = np.percentile(s.status_s, [50, 99]) * 1e3
            over = sum(x > STATUS_TARGET_S for x in s.status_s)
            status = f"{p50:.1f} / {p99:.1f} / {max(s.status_s) * 1e3:.1f} ms ({over} of {len(s.status_s)} over 100 ms)"
        rss = f"{s.rss_mb[0]:.0f} / {max(s.rss_mb):.0f} / {s.rss_mb[-1]:.0f} MB" if s.rss_mb else "-"
        threads = f"{s.threads[0]} / {max(s.threads)}" if s.threads else "-"
        past = max(r.load.overrun_s, r.long.overrun_s if r.long.codes else -1.0)
        total = r.load.sent + r.fuzz.sent + r.long.sent
        out.append(
            f"| {r.name} | {total:,} | load: {codes(r.load)}; fuzz: {codes(r.fuzz)}; long: {codes(r.long)} | {r.lost} "
            f"| {r.load.wrong} | {max(past, 0.0):.2f} s | {status} | {rss} | {threads} "
            f"| exit {r.exit_code} in {r.stop_s:.1f} s |"
        )
    out.append("")
    for r in results:
        extra = [f"daemon's books at stop: {r.books}"]
        for who, tally in (("load", r.load), ("long job", r.long)):
            for code, messages in sorted(tally.why.items()):
                common = "; ".join(f"{n} x '{m}'" for m, n in messages.most_common(3))
                extra.append(f"{who} {code} before SIGTERM: {common}")
        extra += [f"{k}: {v}" for k, v in r.huge.items()]
        if r.slowloris_closed or r.samples.scrapes_ok or r.samples.scrapes_failed:
            extra.append(
                f"slowloris connections closed by the server: {r.slowloris_closed:,}; scrapes meanwhile: "
                f"{r.samples.scrapes_ok} answered, {r.samples.scrapes_failed} failed"
            )
        out.append(f"- **{r.name}**: " + "; ".join(extra) + ".")
    out += ["", "## Targets", ""]
    out += [f"- missed: {m}" for m in misses] or ["- all met: 0 lost, 0 wrong, no UNKNOWN or INTERNAL from the fuzz, "
                                                 f"no call more than {DEADLINE_SLACK_S} s past its deadline, status "
                                                 f"under {STATUS_TARGET_S * 1e3:.0f} ms, exit 0 within "
                                                 f"{STOP_TIMEOUT_S:.0f} s in every scenario."]  # fmt: skip
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="a short smoke run: the combined scenario only, for 8 s, "
                   "with a registration limit of 100,000 constraints")  # fmt: skip
    p.add_argument("--duration-s", type=float, default=90.0, help="length of the combined scenario")
    p.add_argument("--clients", type=int, default=8, help="load client threads")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "soak.md", help="Markdown report")
    args = p.parse_args(argv)
    started = time.perf_counter()
    load = os.getloadavg()
    grids = [parse_sudoku(r.puzzle) for r in load_puzzle_file(REPO / "data" / "sudoku" / "kaggle_10k.csv", 512)]
    domains = sudoku_domains(np.stack(grids))
    want = FastEngine(threads=1).solve(SUDOKU, domains)
    duration = 8.0 if args.quick else args.duration_s
    limit = 100_000 if args.quick else MAX_CONSTRAINTS
    results = [run_combined("combined", duration, args.clients, domains, want, limit)]
    print(f"  combined ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    if not args.quick:
        results.append(
            run_stop_during("SIGTERM during a 1,048,576-constraint registration", "registration", domains, want)
        )
        results.append(run_stop_during("SIGTERM during a search without deadline", "search", domains, want))
    misses = check(results)
    words = sys.argv[1:] if argv is None else list(argv)
    meta = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load": " / ".join(f"{x:.2f}" for x in load),
        "command": "python bench/soak.py" + "".join(f" {shlex.quote(a)}" for a in words),
        "total": f"{time.perf_counter() - started:.0f} s",
    }
    text = render(results, misses, meta)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
