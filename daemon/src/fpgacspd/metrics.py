"""Prometheus metrics, all named ``fpgacsp_*``, in the daemon's own registry, served on their own port.

Histograms (never summaries) for latencies and batch sizes so dashboards can aggregate across hosts;
counters by method and status code; gauges for queue depth, programs loaded and device state. The
:class:`Metrics` object is also the batcher's observer, and keeps the per-method counts ``GetStats`` reports.
Its HTTP endpoint (:mod:`.metrics_http`) runs on the daemon's event loop, with a connection limit and timeouts.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client import Counter as PromCounter

from .device import DeviceState
from .metrics_http import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_READ_TIMEOUT_S,
    DEFAULT_WRITE_TIMEOUT_S,
    MetricsHTTPServer,
)

# 50 us .. 10 s, roughly x2.5 per step: batch-1 loopback latency sits in the first buckets, big batches in the last
SECONDS_BUCKETS = (
    50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
FAULT_KINDS = ("timeout", "device_error", "bad_completion", "job_error", "lost_interrupt")
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = PromCounter(
            "fpgacsp_requests", "RPCs answered, by method and gRPC status code", ["method", "code"], registry=r
        )
        self.queue_seconds = Histogram(
            "fpgacsp_queue_seconds", "Solve request wait from acceptance to the device", buckets=SECONDS_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.device_seconds = Histogram(
            "fpgacsp_device_seconds", "Device time per batch", buckets=SECONDS_BUCKETS, registry=r
        )
        self.request_seconds = Histogram(
            "fpgacsp_request_seconds", "Solve request time from acceptance to answer", buckets=SECONDS_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.rpc_seconds = Histogram(
            "fpgacsp_rpc_seconds", "Time from a call reaching its handler to its answer, by method", ["method"],
            buckets=SECONDS_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_instances = Histogram(
            "fpgacsp_batch_instances", "Instances per device batch", buckets=SIZE_BUCKETS, registry=r
        )
        self.batch_requests = Histogram(
            "fpgacsp_batch_requests", "Requests merged per device batch", buckets=SIZE_BUCKETS, registry=r
        )
        self.queue_depth = Gauge("fpgacsp_queue_depth", "Solve requests waiting for the device", registry=r)
        self.programs_loaded = Gauge("fpgacsp_programs_loaded", "Programs in the registry", registry=r)
        self.device_state = Gauge(
            "fpgacsp_device_state", "1 for the device's current state, 0 for the others", ["state"], registry=r
        )
        self.instances = PromCounter("fpgacsp_instances", "Solved instances by result status", ["status"], registry=r)
        self.dropped_requests = PromCounter(
            "fpgacsp_dropped", "Solve requests not run: expired, cancelled or queue_full", ["reason"], registry=r
        )
        for reason in ("expired", "cancelled", "queue_full"):
            self.dropped_requests.labels(reason=reason)
        self.device_faults = PromCounter(
            "fpgacsp_device_faults", "Device faults detected, by kind (timeout, device_error, bad_completion, "
            "job_error, lost_interrupt)", ["kind"], registry=r,
        )  # fmt: skip
        self.device_resets = PromCounter(
            "fpgacsp_device_resets", "Device resets, by the kind that took (soft, function)", ["kind"], registry=r
        )
        self.device_retries = PromCounter(
            "fpgacsp_device_retries", "Batches run again after a fault and a reset", registry=r
        )
        self.nodes = PromCounter("fpgacsp_nodes", "Search nodes of the instances answered", registry=r)
        self.sweeps = PromCounter(
            "fpgacsp_sweeps", "Synchronous propagation sweeps of the instances answered", registry=r
        )
        self.device_cycles = PromCounter(
            "fpgacsp_device_cycles", "Engine cycles of the RUN jobs completed, from the card's cycle model", registry=r
        )
        self.device_clock_hz = Gauge(
            "fpgacsp_device_clock_hz", "The engine clock (CAP_CLOCK): cycles / clock = projected hardware seconds",
            registry=r,
        )  # fmt: skip
        self.device_recoveries = PromCounter(
            "fpgacsp_device_recoveries", "Automatic recovery attempts of a FAILED device (reset and self-test), by "
            "outcome", ["outcome"], registry=r,
        )  # fmt: skip
        self.device_recovery_backoff = Gauge(
            "fpgacsp_device_recovery_backoff_seconds", "While the device is FAILED: the wait before the next "
            "recovery attempt; 0 otherwise", registry=r,
        )  # fmt: skip
        self.device_aborts = PromCounter(
            "fpgacsp_device_aborted_jobs", "Batches aborted on the device: every caller's deadline passed, or the "
            "daemon stopped", registry=r,
        )  # fmt: skip
        for outcome in ("passed", "failed"):
            self.device_recoveries.labels(outcome=outcome)
        for kind in FAULT_KINDS:
            self.device_faults.labels(kind=kind)
        for kind in ("soft", "function"):
            self.device_resets.labels(kind=kind)
        self.set_device_state(DeviceState.STARTING)
        self._counts: Counter[tuple[str, str]] = Counter()
        self._request_children: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self.http: MetricsHTTPServer | None = None

    # -- RPC outcomes ------------------------------------------------------------------------------------

    def count_request(self, method: str, code: str) -> None:
        key = (method, code)
        child = self._request_children.get(key)
        if child is None:  # labels() costs a lock and a dict walk: once per (method, code) is enough
            child = self._request_children[key] = self.requests.labels(method=method, code=code)
        child.inc()
        with self._lock:
            self._counts[key] += 1

    def observe_rpc(self, method: str, seconds: float) -> None:
        self.rpc_seconds.labels(method=method).observe(seconds)

    def request_counts(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)

    def observe_request(self, seconds: float) -> None:
        self.request_seconds.observe(seconds)

    def count_work(self, nodes: int, sweeps: int) -> None:
        self.nodes.inc(nodes)
        self.sweeps.inc(sweeps)

    def count_statuses(self, statuses: dict[str, int]) -> None:
        for status, n in statuses.items():
            self.instances.labels(status=status).inc(n)

    # -- batcher observer --------------------------------------------------------------------------------

    def observe_batch(self, instances: int, requests: int, device_s: float) -> None:
        self.batch_instances.observe(instances)
        self.batch_requests.observe(requests)
        self.device_seconds.observe(device_s)

    def observe_queue(self, queue_s: float) -> None:
        self.queue_seconds.observe(queue_s)

    def set_queue_depth(self, depth: int) -> None:
        self.queue_depth.set(depth)

    def dropped(self, reason: str) -> None:
        self.dropped_requests.labels(reason=reason).inc()

    # -- device events (DeviceEvents; called on the device thread) ------------------------------------

    def device_fault(self, kind: str) -> None:
        self.device_faults.labels(kind=kind).inc()

    def device_reset(self, kind: str) -> None:
        self.device_resets.labels(kind=kind).inc()

    def device_retry(self) -> None:
        self.device_retries.inc()

    def device_aborted(self) -> None:
        self.device_aborts.inc()

    def device_job_cycles(self, cycles: int) -> None:
        self.device_cycles.inc(cycles)

    def set_device_clock(self, hz: int) -> None:
        self.device_clock_hz.set(hz)

    # -- recovery of a FAILED device (event loop) --------------------------------------------------------

    def recovery_scheduled(self, in_s: float) -> None:
        self.device_recovery_backoff.set(in_s)

    def recovery_attempted(self, passed: bool) -> None:
        self.device_recoveries.labels(outcome="passed" if passed else "failed").inc()
        if passed:
            self.device_recovery_backoff.set(0)

    # -- gauges --------------------------------------------------------------------------------------------

    def set_device_state(self, state: DeviceState) -> None:
        for s in DeviceState:
            self.device_state.labels(state=s.name.lower()).set(1 if s == state else 0)

    def set_programs_loaded(self, n: int) -> None:
        self.programs_loaded.set(n)

    # -- exposition ----------------------------------------------------------------------------------------

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    async def serve(
        self,
        host: str,
        port: int,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
        write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S,
    ) -> tuple[str, int]:
        """Start the HTTP endpoint (any path answers) on the running event loop; returns the bound (host, port).

        No thread per connection and no thread of its own: see :mod:`.metrics_http` for the limits.
        """
        http = MetricsHTTPServer(self.registry, max_connections, read_timeout_s, write_timeout_s)
        bound = await http.start(host, port)
        self.http = http
        return bound

    async def shutdown(self) -> None:
        """Stop listening and close every open metrics connection at once."""
        http, self.http = self.http, None
        if http is not None:
            await http.close()
