"""The daemon's life in-process: systemd notifications (READY after the self-test, watchdog pings, STOPPING),
health following the device, the drain's exit status, and a bind failure. The end-to-end tests in tests/e2e/
run the real ``fpgacspd`` process; these check what they cannot see (the sd_notify protocol)."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import grpc
from fpgacspd.config import load_config
from fpgacspd.device import _regmap as regs
from fpgacspd.server import Daemon
from grpc_health.v1 import health_pb2, health_pb2_grpc


class NotifySocket:
    """A stand-in for systemd's notify socket, collecting datagrams."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.messages: list[str] = []

    def poll(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.messages

    async def wait_for(self, message: str, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while message not in self.poll():
            assert time.monotonic() < end, f"no {message!r} within {timeout} s; got {self.messages}"
            await asyncio.sleep(0.01)


async def health(address: str, service: str = "") -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service))
        return int(reply.status)


def test_ready_watchdog_health_and_drain(tmp_path: Path) -> None:
    notify = NotifySocket(tmp_path / "notify.sock")
    unix = tmp_path / "d.sock"
    cfg = load_config(
        ["--listen", "127.0.0.1:0", "--listen", f"unix:{unix}", "--metrics-listen", "127.0.0.1:0",
         "--device-threads", "1"],
        env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "100000"},
    )  # fmt: skip

    async def main() -> None:
        daemon = Daemon(cfg)
        run = asyncio.ensure_future(daemon.run())
        await notify.wait_for("READY=1\nSTATUS=serving")
        tcp = daemon.addresses[0]
        assert tcp.startswith("127.0.0.1:") and not tcp.endswith(":0")
        assert daemon.addresses[1] == f"unix:{unix}" and unix.exists()
        assert daemon.metrics_address is not None and not daemon.metrics_address.endswith(":0")
        assert await health(tcp) == health_pb2.HealthCheckResponse.SERVING
        assert await health(f"unix:{unix}", "fpgacsp.v1.Solver") == health_pb2.HealthCheckResponse.SERVING
        end = time.monotonic() + 10
        while notify.poll().count("WATCHDOG=1") < 3:  # every 50 ms once the device answered
            assert time.monotonic() < end, notify.messages
            await asyncio.sleep(0.01)
        daemon.request_stop()
        assert await asyncio.wait_for(run, 30) == 0
        messages = notify.poll()
        assert messages.index("READY=1\nSTATUS=serving") < messages.index("STOPPING=1")  # pings may go on
        assert set(messages) == {"READY=1\nSTATUS=serving", "WATCHDOG=1", "STOPPING=1"}
        assert not unix.exists()  # gRPC removes its socket file

    asyncio.run(main())


def test_health_is_not_serving_while_the_device_is_not_ready(tmp_path: Path) -> None:
    cfg = load_config(["--listen", "127.0.0.1:0", "--device-threads", "1"], env={})

    async def main() -> None:
        daemon = Daemon(cfg)
        run = asyncio.ensure_future(daemon.run())
        while not daemon.addresses or daemon.worker.state.name != "READY":
            await asyncio.sleep(0.01)
        address = daemon.addresses[0]
        await asyncio.sleep(0.05)  # the health update runs as a task after the state change
        assert await health(address) == health_pb2.HealthCheckResponse.SERVING
        report = await daemon.core.reset()  # RESETTING -> READY, health follows
        assert report.passed
        await asyncio.sleep(0.05)
        assert await health(address, "fpgacsp.v1.Solver") == health_pb2.HealthCheckResponse.SERVING
        daemon.worker.set_state(type(daemon.worker.state).FAILED)
        await asyncio.sleep(0.05)
        assert await health(address) == health_pb2.HealthCheckResponse.NOT_SERVING
        daemon.request_stop()
        assert await asyncio.wait_for(run, 30) == 0

    asyncio.run(main())


def test_an_address_in_use_fails_startup_with_status_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = load_config(["--listen", f"127.0.0.1:{port}", "--device-threads", "1"], env={})
        assert asyncio.run(Daemon(cfg).run()) == 1


def test_a_frozen_heartbeat_stops_the_watchdog_pings(tmp_path: Path) -> None:
    """The card still answers register reads, but its HEARTBEAT no longer ticks: systemd must not be told
    that all is well (it will restart the service once the watchdog interval passes)."""
    notify = NotifySocket(tmp_path / "notify.sock")
    cfg = load_config(
        ["--listen", "127.0.0.1:0", "--device-threads", "1"],
        env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "100000"},
    )

    async def main() -> None:
        daemon = Daemon(cfg)
        run = asyncio.ensure_future(daemon.run())
        await notify.wait_for("WATCHDOG=1")
        card = daemon.worker.device.transport.card  # type: ignore[attr-defined]
        frozen = card.read32(regs.HEARTBEAT.OFFSET)
        live_read = card.read32
        card.read32 = lambda offset: frozen if offset == regs.HEARTBEAT.OFFSET else live_read(offset)
        await asyncio.sleep(0.2)  # pings already on their way arrive
        before = notify.poll().count("WATCHDOG=1")
        await asyncio.sleep(0.5)  # ten ping intervals
        assert notify.poll().count("WATCHDOG=1") == before
        card.read32 = live_read  # the clock ticks again: pings resume
        end = time.monotonic() + 10
        while notify.poll().count("WATCHDOG=1") == before:
            assert time.monotonic() < end
            await asyncio.sleep(0.01)
        daemon.request_stop()
        assert await asyncio.wait_for(run, 30) == 0

    asyncio.run(main())
