"""gRPC's own floor: a bare ``grpc.aio`` server that answers every call with a fixed payload, in its own process.

The serving benchmark measures the daemon against it side by side: the same transport, the same request and
answer sizes as a batch-1 Solve, and none of our work (no decoding, batching, device or encoding). Run as
``python -m bench._echo RESPONSE_BYTES``; it prints its port on stdout and serves until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType

import grpc

METHOD = "/bench.Echo/Echo"
STREAM_METHOD = "/bench.Echo/EchoStream"  # bidirectional: one answer per request, like Solver.SolveStream
_OPTIONS = [("grpc.so_reuseport", 0)]


async def _serve(response_bytes: int) -> None:
    payload = b"\x01" * response_bytes

    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return payload

    async def echo_stream(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        async for _ in requests:
            yield payload

    server = grpc.aio.server(options=_OPTIONS)
    handlers = {  # bytes in, bytes out: no (de)serializer
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "EchoStream": grpc.stream_stream_rpc_method_handler(echo_stream),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(0)


class EchoServer:
    """``with EchoServer(212) as e: grpc.insecure_channel(e.address)``; ``cpu_seconds()`` like the daemon's."""

    def __init__(self, response_bytes: int) -> None:
        self.response_bytes = response_bytes
        self.address = ""
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> EchoServer:
        cmd = [sys.executable, "-m", "bench._echo", str(self.response_bytes)]
        root = str(Path(__file__).resolve().parents[1])
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=root)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.strip().isdigit():
            self.__exit__(None, None, None)
            raise RuntimeError(f"echo server did not start (printed {line!r})")
        self.address = f"127.0.0.1:{int(line)}"
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout=10)

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the server so far (all its threads), from ``/proc``."""
        assert self._proc is not None
        fields = Path(f"/proc/{self._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1])))
