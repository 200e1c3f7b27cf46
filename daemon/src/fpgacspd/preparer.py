"""Huge registrations prepared in a child process, so the daemon's own process never pays for them.

``python -m fpgacspd.program_body`` gets the request body on stdin and returns the canonical encoding (see
:mod:`fpgacspd.program_body` for why): decoding a million-constraint program holds the GIL in C calls of up to
0.1 s (protobuf's parse, a million deallocations), which on a thread still stalled health checks and status
by 100-300 ms, and it left 190-380 MB behind. The child imports only the ISA package and protobuf (a few tenths
of a second to start), works on one registration, and exits; the event loop awaits it like any other I/O. One
registration at a time: a second huge one waits instead of doubling the memory. ``close`` kills a running child,
so a stop never waits for it.
"""

from __future__ import annotations

import asyncio
import pickle
import sys

from .errors import DaemonError, Unavailable
from .program_body import PreparedBody, SizeLimits


class Preparer:
    def __init__(self) -> None:
        self._one_at_a_time = asyncio.Lock()
        self._child: asyncio.subprocess.Process | None = None
        self._closed = False

    async def prepare(self, body: bytes, limits: SizeLimits) -> PreparedBody:
        """Raises the registration's own error (``InvalidArgument``, ``ResourceExhausted``), or ``Unavailable``
        when the daemon stops meanwhile."""
        async with self._one_at_a_time:
            if self._closed:
                raise Unavailable("daemon: draining (shutting down), not accepting new work; retry on another daemon")
            child = self._child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "fpgacspd.program_body", *(str(x) for x in limits),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            try:
                out, err = await child.communicate(body)
            finally:
                self._child = None
            if self._closed:
                raise Unavailable("daemon: stopped while the program was being prepared; retry on another daemon")
            if child.returncode != 0 or not out:
                detail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit {child.returncode}"]
                raise DaemonError(f"registration: the preparing process failed ({detail[0]})")
            result = pickle.loads(out)  # our own child's answer
            if isinstance(result, DaemonError):
                raise result
            assert isinstance(result, PreparedBody)
            return result

    def close(self) -> None:
        self._closed = True
        if self._child is not None and self._child.returncode is None:
            self._child.kill()
