"""Metrics scraped from the daemon's real HTTP endpoint: the fpgacsp_* series exist and move as traffic says.

The endpoint is parsed with prometheus_client's own parser (the exposition format Prometheus reads), and
the counters are compared before and after a known amount of traffic, so a metric that exists but counts
the wrong thing fails too.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter

import grpc
import numpy as np
from daemon_process import DaemonProcess
from fpgacsp.problems import sudoku_program
from fpgacsp_proto.isa import Mode, Status
from fpgacsp_proto.v1 import solver_pb2

from .wire import RPC_TIMEOUT_S, SUDOKU_DIR, Scrape, Stubs, decode, expect_error, register, solve_request, sudoku_batch

HISTOGRAMS = (
    "fpgacsp_queue_seconds",
    "fpgacsp_device_seconds",
    "fpgacsp_request_seconds",
    "fpgacsp_batch_instances",
    "fpgacsp_batch_requests",
)
GAUGES = ("fpgacsp_queue_depth", "fpgacsp_programs_loaded", "fpgacsp_device_state")
COUNTERS = ("fpgacsp_requests", "fpgacsp_instances", "fpgacsp_dropped")
SUDOKU = sudoku_program()


def test_exposition_format_and_names(daemon: DaemonProcess) -> None:
    scrape = Scrape(daemon.metrics_url)
    assert scrape.content_type.startswith("text/plain")
    assert all(name.startswith("fpgacsp_") for name in scrape.families), sorted(scrape.families)
    for name in HISTOGRAMS:
        assert scrape.families[name].type == "histogram", f"{name} must be a histogram (never a summary)"
    for name in GAUGES:
        assert scrape.families[name].type == "gauge", name
    for name in COUNTERS:
        assert scrape.families[name].type == "counter", name
    assert set(scrape.by_label("fpgacsp_dropped_total", "reason")) == {"expired", "cancelled", "queue_full"}


def test_gauges_describe_an_idle_ready_daemon(daemon: DaemonProcess, tcp: Stubs) -> None:
    register(tcp.solver, SUDOKU)
    scrape = Scrape(daemon.metrics_url)
    assert scrape.value("fpgacsp_queue_depth") == 0
    listed = tcp.solver.ListPrograms(solver_pb2.ListProgramsRequest(), timeout=RPC_TIMEOUT_S).programs
    assert scrape.value("fpgacsp_programs_loaded") == len(listed) >= 1
    states = {s.labels["state"]: s.value for s in scrape.samples if s.name == "fpgacsp_device_state"}
    assert states["ready"] == 1 and sum(states.values()) == 1, states


def test_series_move_with_traffic(daemon: DaemonProcess, tcp: Stubs) -> None:
    domains = sudoku_batch(SUDOKU_DIR / "magictour_top1465.csv", 16)
    sizes = [1, 2, 5, 8]
    before = Scrape(daemon.metrics_url)
    pid = register(tcp.solver, SUDOKU)
    statuses: Counter[str] = Counter()
    for i, b in enumerate(sizes):
        mode = Mode.PROPAGATE if i % 2 else Mode.SOLVE
        resp = tcp.solver.Solve(solve_request(pid, SUDOKU, domains[:b], mode), timeout=RPC_TIMEOUT_S)
        statuses.update(Status(int(s)).name.lower() for s in decode(resp, SUDOKU, b).status)
    unknown = hashlib.sha256(b"metrics test").hexdigest()
    expect_error(
        lambda: tcp.solver.Solve(solve_request(unknown, SUDOKU, domains[:1]), timeout=RPC_TIMEOUT_S),
        grpc.StatusCode.NOT_FOUND,
    )
    after = Scrape(daemon.metrics_url)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("fpgacsp_requests_total", method="Solve", code="OK") == len(sizes)
    assert delta("fpgacsp_requests_total", method="Solve", code="NOT_FOUND") == 1
    assert delta("fpgacsp_requests_total", method="RegisterProgram", code="OK") == 1
    # Sequential requests: one device batch each, of exactly the request's size.
    assert delta("fpgacsp_batch_instances_count") == len(sizes)
    assert delta("fpgacsp_batch_instances_sum") == sum(sizes)
    assert delta("fpgacsp_batch_requests_sum") == len(sizes)
    for name in ("fpgacsp_queue_seconds", "fpgacsp_request_seconds"):
        assert delta(f"{name}_count") == len(sizes), name
    assert delta("fpgacsp_device_seconds_count") == len(sizes)
    assert 0 < delta("fpgacsp_device_seconds_sum") <= delta("fpgacsp_request_seconds_sum")
    grown = after.by_label("fpgacsp_instances_total", "status")
    grown.subtract(before.by_label("fpgacsp_instances_total", "status"))
    assert {k: v for k, v in grown.items() if v} == statuses


def test_histograms_are_well_formed(daemon: DaemonProcess) -> None:
    scrape = Scrape(daemon.metrics_url)
    for name in HISTOGRAMS:
        buckets = [(float(s.labels["le"]), s.value) for s in scrape.samples if s.name == f"{name}_bucket"]
        assert len(buckets) >= 10, f"{name}: too few buckets {buckets}"
        bounds = [b for b, _ in buckets]
        assert bounds == sorted(bounds) and math.isinf(bounds[-1]), name
        counts = np.array([c for _, c in buckets])
        assert (np.diff(counts) >= 0).all(), f"{name}: buckets are not cumulative"
        assert counts[-1] == scrape.value(f"{name}_count") > 0, name
        assert scrape.value(f"{name}_sum") > 0, name
    seconds = [float(s.labels["le"]) for s in scrape.samples if s.name == "fpgacsp_request_seconds_bucket"]
    assert min(seconds) <= 100e-6, "batch-1 loopback latency (< 1 ms) needs sub-millisecond buckets"
    assert max(b for b in seconds if not math.isinf(b)) >= 5.0
