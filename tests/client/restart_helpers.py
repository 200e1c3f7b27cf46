"""Helpers for the daemon-restart tests: a fixed address, the daemon's ``ready`` time, a call loop.

Not a conftest (the tests import it, like ``daemon_process``). A restarted daemon must come back on the address
the clients already use, so these tests pick a free port (or a socket path) once and pass it as ``--listen``.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import TracebackType

from daemon_process import DaemonProcess
from fpgacsp import FpgacspError

OUTAGE_S = 2.0  # between the old daemon's exit and the new one's start
PROMPT_S = 1.5  # new daemon ready -> first successful call: gRPC's reconnect backoff is at most 1 s +- 20 %


@contextmanager
def unix_socket_path() -> Iterator[str]:
    """A short socket path (AF_UNIX paths are limited to 107 bytes) that outlives one daemon."""
    with tempfile.TemporaryDirectory(prefix="fpgacsp-restart-", dir="/tmp") as folder:
        yield str(Path(folder) / "d.sock")


def daemon_on(listen: str) -> DaemonProcess:
    """A daemon that also listens on ``listen`` (``HOST:PORT`` or ``unix:PATH``), started and ready."""
    return DaemonProcess(["--listen", listen]).start()


def ready_at(daemon: DaemonProcess) -> float:
    """Wall-clock time (``time.time()``) of the daemon's ``ready`` log line, from its own timestamp."""
    ts = str(daemon.wait_for_event("ready")["ts"])
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


class CallLoop:
    """Calls ``fn`` back to back in a thread, recording when each call ended (wall clock) and how."""

    def __init__(self, fn: Callable[[], object], name: str = "calls") -> None:
        self.fn = fn
        self.results: list[tuple[float, str]] = []  # (time.time() at the end, "ok" or "ErrorName: message")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> CallLoop:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None):
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.fn()
                outcome = "ok"
            except FpgacspError as e:
                outcome = f"{type(e).__name__}: {e}"
            self.results.append((time.time(), outcome))
            time.sleep(0.005)

    def errors(self) -> list[str]:
        return [outcome for _, outcome in list(self.results) if outcome != "ok"]

    def first_ok_after(self, t: float) -> float | None:
        return next((at for at, outcome in list(self.results) if outcome == "ok" and at > t), None)

    def wait_ok_after(self, t: float, timeout_s: float = 15.0) -> float:
        """The end of the first successful call after ``t``, waiting up to ``timeout_s`` for it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.first_ok_after(t)
            if found is not None:
                return found
            time.sleep(0.01)
        raise AssertionError(f"no successful call within {timeout_s} s; last outcomes: {self.results[-3:]}")
