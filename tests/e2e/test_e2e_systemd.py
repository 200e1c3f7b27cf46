"""The systemd notify protocol, with the test as the supervisor: READY=1, WATCHDOG=1 pings, STOPPING=1.

The test owns a datagram socket (a path, as systemd uses, and an abstract '@' name, as systemd may use), starts
the daemon with NOTIFY_SOCKET and WATCHDOG_USEC=1 s, and reads what arrives: READY=1 once the daemon serves
(the self-test passed: health is SERVING when it arrives), then watchdog pings at about half the interval,
and STOPPING=1 on SIGTERM before a clean exit.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_process import DaemonProcess
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .wire import connect

WATCHDOG_USEC = 1_000_000


class NotifySocket:
    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value
        self.received: list[tuple[float, str]] = []

    def receive(self, timeout_s: float) -> list[str]:
        """Messages arriving within ``timeout_s`` (each datagram may hold several newline-separated fields)."""
        self.sock.settimeout(timeout_s)
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return []
        fields = data.decode("utf-8").split("\n")
        now = time.monotonic()
        self.received.extend((now, f) for f in fields)
        return fields

    def wait_for(self, field: str, timeout_s: float) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if field in self.receive(max(0.01, deadline - time.monotonic())):
                return time.monotonic()
        raise AssertionError(f"no {field!r} within {timeout_s} s; received {[f for _, f in self.received]}")


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NotifySocket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        path = tmp_path / "notify.sock"
        sock.bind(str(path))
        env_value = str(path)
    else:
        name = f"fpgacsp-test-{os.getpid()}-{time.monotonic_ns()}"
        sock.bind("\0" + name)
        env_value = "@" + name
    try:
        yield NotifySocket(sock, env_value)
    finally:
        sock.close()


def test_ready_watchdog_and_stopping(notify_socket: NotifySocket) -> None:
    env = {"NOTIFY_SOCKET": notify_socket.env_value, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    with DaemonProcess(env=env) as daemon:
        notify_socket.wait_for("READY=1", timeout_s=10)
        # READY=1 means serving: the self-test passed and health says so at once.
        stubs = connect(daemon.address)
        health = health_pb2_grpc.HealthStub(stubs.channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        assert any(e.get("passed") is True for e in daemon.events_named("self_test")), daemon.log_text()
        stubs.channel.close()

        if notify_socket.env_value.startswith("@"):
            # The address form is what this variant checks; the pings are the same code as the path variant's.
            notify_socket.wait_for("WATCHDOG=1", timeout_s=WATCHDOG_USEC / 1e6)
        pings = []
        deadline = time.monotonic() + (0 if notify_socket.env_value.startswith("@") else 2.0)
        while time.monotonic() < deadline:
            if "WATCHDOG=1" in notify_socket.receive(0.1):
                pings.append(time.monotonic())
        if not notify_socket.env_value.startswith("@"):
            assert len(pings) >= 3, f"expected a WATCHDOG=1 about every 0.5 s, got {len(pings)} in 2 s"
            gaps = [b - a for a, b in itertools.pairwise(pings)]
            assert max(gaps) < WATCHDOG_USEC / 1e6, f"a watchdog gap of {max(gaps):.2f} s would trip systemd: {gaps}"

        daemon.send_signal(signal.SIGTERM)
        notify_socket.wait_for("STOPPING=1", timeout_s=10)
        assert daemon.wait(30) == 0, daemon.log_text()
    fields = [f for _, f in notify_socket.received]
    assert fields.index("READY=1") < fields.index("STOPPING=1")
    assert fields.count("READY=1") == 1
