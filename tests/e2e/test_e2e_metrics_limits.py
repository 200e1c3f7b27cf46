"""The metrics endpoint under abuse, on real sockets against real daemon processes.

The old endpoint ran one thread per connection with no timeout: 2,000 half-open ``GET /metrics`` connections left
2,011 threads in the daemon and held up SIGTERM. Here hundreds of half-open connections (a request head that never
ends) and a slowloris (one byte at a time) must cost the daemon no thread, must not delay a normal scrape, and must
be closed by the server at the head deadline; a connection beyond the limit takes the place of the one that waited
longest for its head; a SIGTERM with the endpoint full still exits promptly. The HTTP details Prometheus relies on
(content negotiation, gzip, keep-alive, HEAD) and the error answers are checked on the same daemon.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import os
import selectors
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from daemon_process import DaemonProcess
from prometheus_client.parser import text_string_to_metric_families

HALF_OPEN = 500
READ_TIMEOUT_S = 2.0
SLACK_S = 3.0  # a shared 2-core machine: timers fire late, never early
PARTIAL_HEAD = b"GET /metrics HTTP/1.1\r\nHost: fpgacspd\r\nAccept: text/plain\r\n"  # no blank line: never ends
SMALL_LIMIT = 8


@pytest.fixture(scope="module")
def roomy() -> Iterator[DaemonProcess]:
    """Room for every half-open connection, so that a scrape still gets a slot; a short head deadline."""
    args = ["--metrics-max-connections", str(HALF_OPEN + 100), "--metrics-read-timeout-s", str(READ_TIMEOUT_S)]
    with DaemonProcess([*args, "--device-threads", "1"]) as d:
        yield d
        assert d.alive(), d.log_text()


def endpoint(d: DaemonProcess) -> tuple[str, int]:
    host, _, port = d.metrics_address.rpartition(":")
    return host, int(port)


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def half_open(d: DaemonProcess, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(endpoint(d), timeout=10)
        with contextlib.suppress(OSError):  # beyond the limit the server may have closed it already
            s.sendall(PARTIAL_HEAD)
        socks.append(s)
    return socks


def closed_by_peer(s: socket.socket) -> bool:
    """Non-blocking: has the server closed (FIN or RST) this connection?"""
    s.setblocking(False)
    try:
        return s.recv(1 << 16) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        s.setblocking(True)


def wait_closed(socks: list[socket.socket], timeout_s: float) -> dict[socket.socket, float]:
    """When (monotonic) the server closed each socket, for those it closed within ``timeout_s``."""
    when: dict[socket.socket, float] = {}
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as sel:
        for s in socks:
            sel.register(s, selectors.EVENT_READ, s)
        while len(when) < len(socks) and (left := deadline - time.monotonic()) > 0:
            for key, _ in sel.select(timeout=left):
                s = key.data
                if closed_by_peer(s):
                    when[s] = time.monotonic()
                    sel.unregister(s)
    return when


def get(
    d: DaemonProcess, path: str = "/metrics", timeout_s: float = 10.0, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(*endpoint(d), timeout=timeout_s)
    try:
        conn.request("GET", path, headers={k.replace("_", "-"): v for k, v in headers.items()})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def raw(d: DaemonProcess, request: bytes, timeout_s: float = 10.0) -> bytes:
    """Send ``request`` and read until the server closes the connection."""
    with socket.create_connection(endpoint(d), timeout=timeout_s) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(1 << 16):
            chunks.append(chunk)
    return b"".join(chunks)


def families(body: bytes) -> set[str]:
    return {f.name for f in text_string_to_metric_families(body.decode())}


# -- what Prometheus relies on -----------------------------------------------------------------------------


def test_text_format_openmetrics_and_gzip(roomy: DaemonProcess) -> None:
    status, headers, body = get(roomy)
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "fpgacsp_queue_depth" in families(body)
    status, headers, body = get(roomy, accept="application/openmetrics-text; version=1.0.0,text/plain;q=0.5")
    assert status == 200 and headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n")
    status, headers, body = get(roomy, accept_encoding="gzip")
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert "fpgacsp_requests" in families(gzip.decompress(body))
    status, _, body = get(roomy, "/metrics?name[]=fpgacsp_queue_depth")
    assert families(body) == {"fpgacsp_queue_depth"}
    status, _, body = get(roomy, "/anything")  # as before: any path answers
    assert status == 200 and "fpgacsp_queue_depth" in families(body)


def test_keep_alive_head_and_idle_close(roomy: DaemonProcess) -> None:
    conn = http.client.HTTPConnection(*endpoint(roomy), timeout=10)
    try:
        conn.request("HEAD", "/metrics")
        head = conn.getresponse()
        assert head.status == 200 and int(head.getheader("Content-Length", "0")) > 0 and head.read() == b""
        first = conn.sock
        conn.request("GET", "/metrics")  # on the same connection: the HEAD answer carried no body
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Connection") == "keep-alive"
        assert "fpgacsp_queue_depth" in families(resp.read())
        assert conn.sock is first
        idle = time.monotonic()
        assert wait_closed([first], READ_TIMEOUT_S + SLACK_S), "an idle kept-alive connection must be closed"
        assert time.monotonic() - idle >= READ_TIMEOUT_S - 0.1
    finally:
        conn.close()


def test_http_1_0_and_errors_close_the_connection(roomy: DaemonProcess) -> None:
    answer = raw(roomy, b"GET /metrics HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nConnection: close\r\n" in answer
    answer = raw(roomy, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    assert answer.startswith(b"HTTP/1.1 405 ") and b"\r\nAllow: GET, HEAD\r\n" in answer
    answer = raw(roomy, b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert raw(roomy, b"nonsense\r\n\r\n").startswith(b"HTTP/1.1 400 ")


# -- limits ------------------------------------------------------------------------------------------------------


def test_half_open_connections_cost_no_thread_and_end_at_the_head_deadline(roomy: DaemonProcess) -> None:
    assert get(roomy)[0] == 200
    before = threads(roomy.pid)
    opened = time.monotonic()
    socks = half_open(roomy, HALF_OPEN)
    slow_closed: list[float] = []
    slow_started = time.monotonic()

    def slowloris() -> None:
        """One byte of a never-ending head every 0.2 s: a per-read timeout would never fire."""
        with socket.create_connection(endpoint(roomy), timeout=10) as s:
            data = PARTIAL_HEAD + b"X-Pad: " + b"a" * 1000
            for byte in data:
                try:
                    s.sendall(bytes([byte]))
                except OSError:
                    break
                if closed_by_peer(s):
                    break
                time.sleep(0.2)
            slow_closed.append(time.monotonic())

    slow = threading.Thread(target=slowloris, daemon=True)
    slow.start()
    try:
        time.sleep(0.3)
        t0 = time.monotonic()
        status, _, body = get(roomy, timeout_s=5)
        latency = time.monotonic() - t0
        assert status == 200 and "fpgacsp_queue_depth" in families(body)
        assert latency < 1.0, f"a scrape took {latency:.3f} s next to {HALF_OPEN} half-open connections"
        during = threads(roomy.pid)
        assert during <= before + 2, f"{before} threads before, {during} with {HALF_OPEN} half-open connections"
        when = wait_closed(socks, READ_TIMEOUT_S + SLACK_S)
        assert len(when) == HALF_OPEN, f"{HALF_OPEN - len(when)} half-open connections still open"
        assert min(when.values()) - opened >= READ_TIMEOUT_S - 0.1
        slow.join(timeout=READ_TIMEOUT_S + SLACK_S)
        assert slow_closed, "the slowloris connection was never closed"
        assert READ_TIMEOUT_S - 0.1 <= slow_closed[0] - slow_started <= READ_TIMEOUT_S + SLACK_S
    finally:
        for s in socks:
            s.close()
    assert get(roomy)[0] == 200
    assert threads(roomy.pid) <= before + 2


def test_a_full_endpoint_makes_room_by_closing_the_longest_waiting_connection_and_sigterm_exits_promptly() -> None:
    """A slowloris that fills every slot must not lock scrapers out: a new connection takes the place of the one
    that has waited longest for its request head, so the newest connections and a real scrape get in."""
    args = ["--metrics-max-connections", str(SMALL_LIMIT), "--metrics-read-timeout-s", "60"]
    with DaemonProcess([*args, "--device-threads", "1"]) as d:
        held = half_open(d, SMALL_LIMIT)
        time.sleep(0.2)  # the server has admitted them
        extra = half_open(d, 3)
        closed = wait_closed(held, 5.0)
        assert len(closed) == 3 and set(closed) <= set(held[:4]), "the longest-waiting connections make room"
        assert not wait_closed(extra, 0.2), "the newcomers are admitted (and wait for their 60 s deadline)"
        for _ in range(3):  # a scrape gets in while the endpoint is full of connections that never finish
            assert get(d, timeout_s=5)[0] == 200
        held = [s for s in held if s not in closed]
        held += extra
        held += half_open(d, 1)
        stopping = time.monotonic()
        try:
            assert d.terminate(timeout_s=20) == 0
            took = time.monotonic() - stopping
            assert took < 10, f"SIGTERM took {took:.1f} s with the metrics endpoint full"
            assert len(wait_closed(held, 1.0)) == len(held), "the daemon exited: every connection must be closed"
        finally:
            for s in held:
                s.close()
        assert d.events_named("stopped")
