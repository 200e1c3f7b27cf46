"""Metrics series and their HTTP endpoint, structured log lines, and the sd_notify datagrams."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import socket
import threading
import urllib.request
from pathlib import Path

import pytest
from fpgacspd import sdnotify
from fpgacspd.device import DeviceState
from fpgacspd.logs import configure_logging, get_logger, log_event
from fpgacspd.metrics import Metrics
from prometheus_client.parser import text_string_to_metric_families

EXPECTED_FAMILIES = {
    "fpgacsp_requests": "counter",
    "fpgacsp_queue_seconds": "histogram",
    "fpgacsp_device_seconds": "histogram",
    "fpgacsp_request_seconds": "histogram",
    "fpgacsp_batch_instances": "histogram",
    "fpgacsp_batch_requests": "histogram",
    "fpgacsp_queue_depth": "gauge",
    "fpgacsp_programs_loaded": "gauge",
    "fpgacsp_device_state": "gauge",
    "fpgacsp_instances": "counter",
    "fpgacsp_dropped": "counter",
    "fpgacsp_device_faults": "counter",
    "fpgacsp_device_resets": "counter",
    "fpgacsp_device_retries": "counter",
}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_every_series_is_exposed_with_its_type() -> None:
    m = Metrics()
    families = {f.name: f.type for f in text_string_to_metric_families(m.exposition().decode())}
    assert {k: families.get(k) for k in EXPECTED_FAMILIES} == EXPECTED_FAMILIES
    assert all(name.startswith("fpgacsp_") for name in families)


def test_observations_land_in_the_right_series() -> None:
    m = Metrics()
    m.count_request("Solve", "OK")
    m.count_request("Solve", "OK")
    m.count_request("Solve", "RESOURCE_EXHAUSTED")
    m.observe_batch(instances=64, requests=3, device_s=0.002)
    m.observe_queue(0.0004)
    m.observe_request(0.003)
    m.set_queue_depth(7)
    m.set_programs_loaded(2)
    m.set_device_state(DeviceState.READY)
    m.count_statuses({"solved": 60, "unsat": 4})
    m.dropped("expired")
    s = samples(m.exposition().decode())
    assert s[("fpgacsp_requests_total", (("code", "OK"), ("method", "Solve")))] == 2
    assert s[("fpgacsp_requests_total", (("code", "RESOURCE_EXHAUSTED"), ("method", "Solve")))] == 1
    assert s[("fpgacsp_batch_instances_bucket", (("le", "64.0"),))] == 1
    assert s[("fpgacsp_batch_instances_bucket", (("le", "32.0"),))] == 0
    assert s[("fpgacsp_batch_requests_sum", ())] == 3
    assert s[("fpgacsp_device_seconds_bucket", (("le", "0.0025"),))] == 1
    assert s[("fpgacsp_queue_seconds_bucket", (("le", "0.0005"),))] == 1
    assert s[("fpgacsp_queue_seconds_bucket", (("le", "5e-05"),))] == 0
    assert s[("fpgacsp_request_seconds_count", ())] == 1
    assert s[("fpgacsp_queue_depth", ())] == 7 and s[("fpgacsp_programs_loaded", ())] == 2
    assert s[("fpgacsp_device_state", (("state", "ready"),))] == 1
    assert s[("fpgacsp_device_state", (("state", "starting"),))] == 0
    assert s[("fpgacsp_instances_total", (("status", "solved"),))] == 60
    assert s[("fpgacsp_dropped_total", (("reason", "expired"),))] == 1
    assert s[("fpgacsp_dropped_total", (("reason", "queue_full"),))] == 0  # present before the first drop
    assert m.request_counts() == {("Solve", "OK"): 2, ("Solve", "RESOURCE_EXHAUSTED"): 1}


def test_http_endpoint_on_a_free_port() -> None:
    """The endpoint runs on the caller's event loop: serving it starts no thread."""

    def get(url: str) -> str:
        with urllib.request.urlopen(url, timeout=5) as r:
            return str(r.read().decode())

    async def main() -> None:
        m = Metrics()
        threads = threading.active_count()
        host, port = await m.serve("127.0.0.1", 0)
        try:
            assert host == "127.0.0.1" and port > 0
            assert threading.active_count() == threads
            m.set_queue_depth(3)
            body = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/metrics")
            assert samples(body)[("fpgacsp_queue_depth", ())] == 3
        finally:
            await m.shutdown()
        with pytest.raises(OSError):
            await asyncio.to_thread(get, f"http://127.0.0.1:{port}/metrics")

    asyncio.run(main())


def test_two_metrics_objects_do_not_share_series() -> None:
    a, b = Metrics(), Metrics()
    a.set_queue_depth(5)
    assert samples(b.exposition().decode())[("fpgacsp_queue_depth", ())] == 0


def test_json_log_lines_carry_event_and_fields() -> None:
    stream = io.StringIO()
    configure_logging("json", "info", stream)
    log = get_logger("test")
    log_event(log, logging.INFO, "listening", address="127.0.0.1:4242", pid=1)
    log_event(log, logging.DEBUG, "hidden")
    line = json.loads(stream.getvalue().strip())
    assert line["event"] == "listening" and line["address"] == "127.0.0.1:4242" and line["level"] == "info"
    assert line["ts"].endswith("Z") and line["logger"] == "fpgacspd.test"
    assert len(stream.getvalue().splitlines()) == 1


def test_exc_info_attaches_the_traceback_not_a_field() -> None:
    """``log_event(..., exc_info=True)`` used to land among the fields, printed as the literal ``true``."""
    stream = io.StringIO()
    configure_logging("json", "info", stream)
    try:
        raise RuntimeError("card on fire")
    except RuntimeError:
        log_event(get_logger("test"), logging.ERROR, "rpc_failed", method="Solve", exc_info=True)
    configure_logging("json", "info")
    line = json.loads(stream.getvalue().strip())
    assert "exc_info" not in line and line["method"] == "Solve"
    assert "Traceback" in line["exception"] and "RuntimeError: card on fire" in line["exception"]


def test_text_log_lines() -> None:
    stream = io.StringIO()
    configure_logging("text", "debug", stream)
    log_event(get_logger(), logging.WARNING, "watchdog_missed", state="ready")
    assert "WARNING" in stream.getvalue() and "watchdog_missed state=ready" in stream.getvalue()
    configure_logging("json", "info")  # back to stderr for the rest of the session


@pytest.mark.parametrize("abstract", [False, True])
def test_sd_notify_sends_one_datagram(tmp_path: Path, abstract: bool) -> None:
    name = f"@fpgacsp-test-{os.getpid()}" if abstract else str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name[1:] if abstract else name)
        sock.settimeout(5)
        assert sdnotify.notify(name, "READY=1\nSTATUS=serving")
        assert sock.recv(1024) == b"READY=1\nSTATUS=serving"


def test_sd_notify_without_systemd_or_with_a_dead_socket(tmp_path: Path) -> None:
    assert not sdnotify.notify("", "READY=1")
    assert not sdnotify.notify(str(tmp_path / "absent.sock"), "READY=1")
