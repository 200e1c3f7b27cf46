"""The metrics HTTP endpoint: a small HTTP/1.1 server on the daemon's own event loop, with hard limits.

The endpoint used to be a thread-per-connection WSGI server without timeouts: 2,000 half-open
``GET /metrics`` connections left 2,011 threads and held up SIGTERM. This one runs on the daemon's event loop
(``asyncio`` streams), so a connection costs a socket and a small task, never a thread, and closing the
endpoint aborts every connection at once. Limits (``[server] metrics_*`` in the configuration):

- at most ``max_connections`` connections at a time. When they are all open, a new one takes the place of the
  connection that has waited longest for its request head (a slowloris holds its slot that way; a scraper
  sends its head at once), which is closed; only when every open connection is being answered is the new one
  closed the moment it is accepted, without an answer (answering would mean reading its request);
- the request head (request line and headers) must arrive complete within ``read_timeout_s`` of the moment
  the server starts waiting for it: one deadline for the whole head, not per read, so a client sending a byte
  a second is dropped at the deadline like a silent one. On a kept-alive connection the wait for the next
  request has the same deadline, so an idle connection is closed after ``read_timeout_s`` too;
- a head larger than ``HEAD_MAX_BYTES`` is answered 431 and the connection closed;
- writing a response must finish within ``write_timeout_s``, or the connection is aborted.

GET and HEAD of any path answer the exposition (as prometheus_client's own server does; Prometheus asks for
``/metrics``), negotiated by ``Accept`` (OpenMetrics or the text format, prometheus_client's
``choose_encoder``), gzip-compressed when ``Accept-Encoding`` allows, with prometheus_client's ``name[]``
filter. Other methods get 405. HTTP/1.1 connections are kept alive unless the client asks otherwise; HTTP/1.0
requests, requests with a body and errors are answered with ``Connection: close``.

The exposition is generated on the event loop: it takes 1-3 ms of pure Python (16 KB of text) that holds the
GIL throughout, so a thread would not give that time back to the loop, and a thread per scrape is what this
module exists to avoid. Nothing is logged per scrape or per refused connection: a scraper every second, or a
flood of connections, must not flood the daemon's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import Collector

HEAD_MAX_BYTES = 8192  # request line + headers; a larger head is answered 431
BACKLOG = 1024  # the kernel's accept queue: a connection waiting there costs no task and no thread
LINGER_S = 1.0  # after an error answer, read (and drop) what the client still sends, so close() sends no RST
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_READ_TIMEOUT_S = 5.0
DEFAULT_WRITE_TIMEOUT_S = 10.0

_REASONS = {200: "OK", 400: "Bad Request", 405: "Method Not Allowed", 431: "Request Header Fields Too Large"}
_PLAIN = "text/plain; charset=utf-8"


class _Response:
    __slots__ = ("body", "headers", "keep_alive", "send_body", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        headers: tuple[tuple[str, str], ...] = (("Content-Type", _PLAIN),),
        keep_alive: bool = False,
        send_body: bool = True,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers
        self.keep_alive = keep_alive
        self.send_body = send_body  # False for HEAD: the headers of a GET, Content-Length included

    def encode(self) -> bytes:
        lines = [f"HTTP/1.1 {self.status} {_REASONS[self.status]}", *(f"{k}: {v}" for k, v in self.headers)]
        lines += [f"Content-Length: {len(self.body)}", f"Connection: {'keep-alive' if self.keep_alive else 'close'}"]
        return "\r\n".join([*lines, "", ""]).encode("latin-1") + (self.body if self.send_body else b"")


class MetricsHTTPServer:
    """``await MetricsHTTPServer(registry).start(host, port)``; ``await close()`` ends it and every connection."""

    def __init__(
        self,
        registry: CollectorRegistry,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
        write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S,
    ) -> None:
        self.registry = registry
        self.max_connections = max_connections
        self.read_timeout_s = read_timeout_s
        self.write_timeout_s = write_timeout_s
        self.refused = 0  # connections closed at once because max_connections were open
        self.evicted = 0  # connections closed to make room while they still waited for their request head
        self._server: asyncio.Server | None = None
        self._closing = False
        self._connections: set[asyncio.Task[None]] = set()
        self._waiting: dict[asyncio.Task[None], float] = {}  # connections waiting for a head, since when

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._connections)

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on the first address ``host`` resolves to (one socket, as the gRPC listeners); the bound address.

        ``SO_REUSEADDR`` only lets a restart bind over TIME_WAIT; without ``SO_REUSEPORT`` a port in use fails.
        """
        info = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, sockaddr = info[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
            self._server = await asyncio.start_server(self._accepted, sock=sock, backlog=BACKLOG, limit=HEAD_MAX_BYTES)
        except BaseException:
            sock.close()
            raise
        bound = sock.getsockname()
        return str(bound[0]), int(bound[1])

    async def close(self) -> None:
        """Stop listening and abort every open connection, whatever it is doing."""
        server, self._server = self._server, None
        self._closing = True
        if server is None:
            return
        server.close()
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    # -- connections -------------------------------------------------------------------------------------

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Run on accept, synchronously: admit the connection (one task) or close it before it costs anything."""
        if not self._closing and len(self._connections) >= self.max_connections and self._waiting:
            oldest = min(self._waiting, key=self._waiting.__getitem__)
            del self._waiting[oldest]
            self._connections.discard(oldest)
            oldest.cancel()  # its finally aborts the socket
            self.evicted += 1
        if self._closing or len(self._connections) >= self.max_connections:
            self.refused += 1
            writer.transport.abort()
            return
        # drain() then waits until the kernel has every byte, so write_timeout_s covers the whole response.
        writer.transport.set_write_buffer_limits(high=0)
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._serve(reader, writer))
        self._connections.add(task)
        self._waiting[task] = loop.time()
        task.add_done_callback(self._connections.discard)
        task.add_done_callback(lambda t: self._waiting.pop(t, None))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            while True:
                self._waiting[task] = asyncio.get_running_loop().time()
                try:
                    async with asyncio.timeout(self.read_timeout_s):
                        head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.LimitOverrunError:
                    response = _Response(431, b"request head too large\n")
                except (TimeoutError, asyncio.IncompleteReadError, asyncio.CancelledError):
                    return  # too slow, gone, or evicted for a newer connection: drop it without a word
                else:
                    response = self._answer(head)
                finally:
                    self._waiting.pop(task, None)
                writer.write(response.encode())
                async with asyncio.timeout(self.write_timeout_s):
                    await writer.drain()
                if not response.keep_alive:
                    await self._linger(reader, writer)
                    return
        except (TimeoutError, OSError):
            pass  # a write that did not finish in time, or a peer that reset the connection
        finally:
            writer.transport.abort()  # the kernel still sends what it holds, then FIN

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Half-close, then drop what the client still sends (a body, the rest of a long head) for at most
        ``LINGER_S``: closing a socket with unread input sends an RST, which can destroy the answer in flight."""
        if reader.at_eof() or not writer.can_write_eof():
            return
        writer.write_eof()
        with contextlib.suppress(TimeoutError, OSError):
            async with asyncio.timeout(LINGER_S):
                while await reader.read(1 << 16):
                    pass

    def _answer(self, head: bytes) -> _Response:
        request_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3 or parts[2] not in ("HTTP/1.0", "HTTP/1.1"):
            return _Response(400, b"bad request line\n")
        method, target, version = parts
        fields: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if not sep or not name.strip():
                return _Response(400, b"bad header line\n")
            key = name.strip().lower()
            fields[key] = f"{fields[key]}, {value.strip()}" if key in fields else value.strip()
        if method not in ("GET", "HEAD"):
            return _Response(405, b"only GET and HEAD\n", (("Allow", "GET, HEAD"), ("Content-Type", _PLAIN)))
        connection = {token.strip().lower() for token in fields.get("connection", "").split(",")}
        has_body = "transfer-encoding" in fields or fields.get("content-length", "0") != "0"
        keep_alive = version == "HTTP/1.1" and "close" not in connection and not has_body
        names = parse_qs(urlsplit(target).query).get("name[]")
        registry: Collector = self.registry.restricted_registry(names) if names else self.registry
        encoder, content_type = choose_encoder(fields.get("accept", ""))
        body = encoder(registry)
        headers: tuple[tuple[str, str], ...] = (("Content-Type", content_type),)
        if gzip_accepted(fields.get("accept-encoding", "")):
            body = gzip.compress(body, compresslevel=6)
            headers += (("Content-Encoding", "gzip"),)
        return _Response(200, body, headers, keep_alive, send_body=method == "GET")
