"""A real ``fpgacspd`` process for the serving benchmark (kept apart from ``tests/``: bench imports no tests).

Started as an operator would (``python -m fpgacspd``) on a free loopback port and a Unix socket in a private
temporary folder; the bound address is read from the daemon's JSON log (``"event": "listening"``, then
``"ready"``). A thread keeps draining its stderr so it never blocks on a full pipe; the last lines are kept
for the error message if it dies. Leaving the ``with`` block sends SIGTERM (the graceful drain) and kills
the process if it has not exited within 30 s.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


class DaemonFailedError(RuntimeError):
    """The daemon exited or did not become ready; the message carries its last log lines."""


class Daemon:
    """``with Daemon(["--max-batch", "1"]) as d: connect(d.address)``; also ``d.unix_address``."""

    def __init__(self, args: Sequence[str] = ()) -> None:
        self.args = list(args)
        self.address = ""
        self.unix_address = ""
        self.metrics_address = ""  # when started with --metrics-listen
        self.events: list[dict[str, Any]] = []  # every JSON log line, parsed
        self._tmp = tempfile.TemporaryDirectory(prefix="fpgacsp-bench-", dir="/tmp")  # short AF_UNIX path
        self._tail: collections.deque[str] = collections.deque(maxlen=200)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> Daemon:
        sock = Path(self._tmp.name) / "fpgacspd.sock"
        cmd = [sys.executable, "-m", "fpgacspd", "--listen", "127.0.0.1:0", "--listen", f"unix:{sock}"]
        cmd += ["--log-format", "json", *self.args]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._reader = threading.Thread(target=self._drain, name="fpgacspd-log", daemon=True)
        self._reader.start()
        try:
            self._wait_ready()
        except BaseException:
            self._stop()
            raise
        self.unix_address = f"unix://{sock}"
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop()

    def _drain(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for raw in self._proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._tail.append(line)
            self._lines.put(line)
            if event := _event(line):
                self.events.append(event)
        self._lines.put(None)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise DaemonFailedError(f"fpgacspd exited before it was ready:\n{self.log_tail()}")
            event = _event(line)
            if event.get("event") == "listening" and not str(event.get("address", "")).startswith("unix:"):
                self.address = self.address or str(event["address"])
            elif event.get("event") == "metrics_listening":
                self.metrics_address = str(event["address"])
            elif event.get("event") == "ready" and self.address:
                return
        raise DaemonFailedError(f"fpgacspd not ready after {READY_TIMEOUT_S:.0f} s:\n{self.log_tail()}")

    def _stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._proc is not None and self._proc.stderr is not None:
            self._proc.stderr.close()
        self._tmp.cleanup()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def terminate(self, timeout_s: float = STOP_TIMEOUT_S) -> tuple[int | None, float]:
        """SIGTERM now; ``(exit status, seconds to exit)``, the status ``None`` if it had to be killed."""
        assert self._proc is not None
        start = time.monotonic()
        self._proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - start

    def events_named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if e.get("event") == name]

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the daemon so far (all its threads), from ``/proc``."""
        assert self._proc is not None
        fields = Path(f"/proc/{self._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_tail(self) -> str:
        return "\n".join(self._tail)


def _event(line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
