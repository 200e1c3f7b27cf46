"""A real ``fpgacspd`` process for end-to-end tests.

Not a conftest: the e2e tests and the client-library tests import it. The daemon is started exactly as an
operator would (``python -m fpgacspd``), on port 0, and the bound ports are learned from its structured
JSON log (``"event": "listening" | "metrics_listening" | "ready"`` on stderr), so tests never race for a fixed
port. A background thread keeps draining stderr so the daemon never blocks on a full pipe, and every line is
kept for assertions and for the error message when the daemon dies early. The process is always killed on exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now, chosen below the kernel's ephemeral port range.

    For a port that must stay free after we look (a daemon restarted on the address its clients already use, a
    Prometheus told where to listen). Port 0 would give one from the ephemeral range, and that range is where Linux
    picks the source port of every outgoing connection: while a daemon is down, its clients' reconnects sweep the
    source ports towards the daemon's, and a connect to 127.0.0.1:P from source port P connects to itself (TCP
    simultaneous open) and holds P, so the restarted daemon cannot bind (seen in CI: "cannot bind 127.0.0.1:42083").
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(1000):
        port = random.randrange(low // 2, low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in [{low // 2}, {low})")


class DaemonError(RuntimeError):
    """The daemon died or did not become ready; the message carries its captured log."""


class DaemonProcess:
    """``with DaemonProcess() as d: grpc.insecure_channel(d.address)``.

    ``args`` are extra command-line flags (after the defaults, so a later ``--listen`` adds an address);
    ``env`` entries are added to (not replacing) the current environment; ``unix_socket`` also listens on a
    Unix socket in a private temporary folder; ``until`` names the log event that ends startup.
    """

    def __init__(
        self,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        unix_socket: bool = False,
        ready_timeout_s: float = READY_TIMEOUT_S,
        until: str = "ready",
    ) -> None:
        self.args = list(args or [])
        self.env = dict(env or {})
        self.unix_socket = unix_socket
        self.ready_timeout_s = ready_timeout_s
        self.until = until  # the log event start() waits for: "ready", or "self_test" for a daemon that fails it
        self.log_lines: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.address = ""
        self.unix_address = ""
        self.unix_path = ""
        self.metrics_url = ""
        self.metrics_address = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------------------

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "fpgacspd", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"]
        cmd += ["--log-format", "json"]
        if self.unix_socket:
            cmd += ["--listen", f"unix:{self.unix_path}"]
        return cmd + self.args

    def start(self) -> DaemonProcess:
        if self.unix_socket:
            # A short path: AF_UNIX paths are limited to 107 bytes.
            self._tmpdir = tempfile.TemporaryDirectory(prefix="fpgacspd-", dir="/tmp")
            self.unix_path = str(Path(self._tmpdir.name) / "fpgacspd.sock")
            self.unix_address = f"unix://{self.unix_path}"
        env = {**os.environ, **self.env}
        self.proc = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )
        self._reader = threading.Thread(target=self._read_stderr, name="fpgacspd-stderr", daemon=True)
        self._reader.start()
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                self.log_lines.append(line)
                event = _parse(line)
                if event is not None:
                    self.events.append(event)
            self._lines.put(line)
        self._lines.put(None)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DaemonError(f"fpgacspd not ready after {self.ready_timeout_s:.0f} s\n{self.log_text()}")
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                assert self.proc is not None
                code = self.proc.wait()
                raise DaemonError(f"fpgacspd exited with code {code} before ready\n{self.log_text()}")
            event = _parse(line)
            if event is None:
                continue
            name = event.get("event")
            if name == "listening":
                addr = str(event.get("address", ""))
                if addr.startswith("unix:"):
                    continue
                if not self.address:
                    self.address = addr
            elif name == "metrics_listening":
                self.metrics_address = str(event.get("address", ""))
                self.metrics_url = f"http://{self.metrics_address}/metrics"
            elif name == self.until:
                if not self.address:
                    raise DaemonError(f"fpgacspd ready without a 'listening' TCP address\n{self.log_text()}")
                return

    def terminate(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, wait for the drain, return the exit code (kills and raises after ``timeout_s``)."""
        self.send_signal(signal.SIGTERM)
        return self.wait(timeout_s)

    def send_signal(self, sig: int = signal.SIGTERM) -> None:
        """Signal without waiting (a second SIGTERM cuts the daemon's drain short, so send it once)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """Wait for the process to exit and return its code (kills and raises after ``timeout_s``)."""
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise DaemonError(f"fpgacspd did not exit within {timeout_s:.0f} s\n{self.log_text()}") from None
        if self._reader is not None:
            self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        if self.proc is not None and self.proc.stderr is not None and self._reader is not None:
            self._reader.join(timeout=5)
            self.proc.stderr.close()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()

    # -- inspection --------------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        with self._lock:
            return "\n".join(self.log_lines[-200:])

    def events_named(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e.get("event") == name]

    def wait_for_event(self, name: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """The first log event called ``name``, waiting for it if it has not been logged yet."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.events_named(name)
            if found:
                return found[0]
            time.sleep(0.05)
        raise DaemonError(f"no {name!r} event within {timeout_s:.0f} s\n{self.log_text()}")


def _parse(line: str) -> dict[str, Any] | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
