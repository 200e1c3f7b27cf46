"""A daemon that cannot start says why and exits non-zero (what systemd's Restart=on-failure relies on)."""

from __future__ import annotations

import socket
from pathlib import Path

import grpc
import pytest
from daemon_process import DaemonError, DaemonProcess
from grpc_health.v1 import health_pb2, health_pb2_grpc


def test_a_taken_port_fails_the_start(daemon: DaemonProcess) -> None:
    """A second daemon on the shared daemon's port must fail to bind, not share the port."""
    with pytest.raises(DaemonError, match=r"exited with code [1-9]") as info:
        DaemonProcess(["--listen", daemon.address]).start()
    assert daemon.address in str(info.value), "the log should name the address that could not be bound"
    assert daemon.alive()


def test_a_unix_socket_in_use_fails_the_start_and_the_first_daemon_keeps_it() -> None:
    """gRPC unlinks the path before binding: a second daemon used to take the socket from a running one."""
    with DaemonProcess(unix_socket=True) as first:
        with pytest.raises(DaemonError, match=r"exited with code [1-9]") as info:
            DaemonProcess(["--listen", f"unix:{first.unix_path}"]).start()
        assert f"a running process listens on {first.unix_path}" in str(info.value)
        assert first.alive() and Path(first.unix_path).exists()
        with grpc.insecure_channel(first.unix_address) as channel:  # still answering on its socket
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_a_stale_unix_socket_file_is_replaced(tmp_path: Path) -> None:
    """A socket file nobody listens on (a crashed daemon's) does not stop a new daemon from starting."""
    path = tmp_path / "stale.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, with no listener behind it
    assert path.exists()
    with DaemonProcess(["--listen", f"unix:{path}"]) as daemon:
        assert daemon.alive()
        with grpc.insecure_channel(f"unix://{path}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_a_bad_config_file_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[batching]\nmax_batch = 0\n", encoding="utf-8")
    with pytest.raises(DaemonError, match=r"exited with code [1-9]") as info:
        DaemonProcess(["--config", str(config)]).start()
    assert "max_batch" in str(info.value)
