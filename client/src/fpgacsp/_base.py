"""What every target offers: the abstract :class:`Client` and :class:`AsyncClient`, and the defaults of ``connect``.

The bottom of the client's imports: the gRPC clients (``_client``, ``_async_client``) and the local one
(``_local_client``) all derive from these, and this module imports none of them, so the import graph has no cycle
(``connect`` in ``_client`` builds a ``LocalClient``; ``_local_client`` never imports ``_client``).
"""

from __future__ import annotations

import abc
import time
from typing import Any

from fpgacsp_proto.isa import Mode, Program

from . import _codec
from ._types import DeviceStatus, ProgramInfo, ResetResult, SelfTestResult, SolveResult, Stats

DEFAULT_TARGET = "localhost:50051"
DEFAULT_TIMEOUT = 60.0
LOCAL_TARGET = "local"


def deadline_of(timeout: float | None, default: float) -> float:
    """Absolute ``time.monotonic()`` deadline of one call: its ``timeout``, else the client's ``default``."""
    return time.monotonic() + (default if timeout is None else _codec.check_timeout(timeout))


class Client(abc.ABC):
    """What every target offers, synchronously. Use as a context manager, or call :meth:`close`."""

    target: str
    timeout: float

    @abc.abstractmethod
    def register(self, program: Program, *, pin: bool = False, timeout: float | None = None) -> str:
        """Register ``program`` (idempotent) and return its id; ``pin`` keeps it from LRU eviction."""

    @abc.abstractmethod
    def solve(
        self,
        program: Program,
        domains: Any,
        priorities: Any | None = None,
        *,
        mode: Mode | str = Mode.SOLVE,
        node_limit: int | None = None,
        max_solutions: int = 1,
        timeout: float | None = None,
    ) -> SolveResult:
        """Solve ``domains`` ``uint64[B, N]`` (optional ``priorities`` ``uint8[B, N, D]``); row b answers b.

        ``node_limit`` None means the target's default (the daemon's ``solve.default_node_limit``; 1,000,000
        for ``local``). Inputs are checked before any RPC and raise :class:`InvalidArgumentError`.
        """

    @abc.abstractmethod
    def release(self, program: Program | str, *, timeout: float | None = None) -> bool:
        """Unpin and forget a program (or program id); False when the target did not know it."""

    @abc.abstractmethod
    def program_info(self, program: Program | str, *, timeout: float | None = None) -> ProgramInfo:
        """The target's record of one program; :class:`NotFoundError` when it does not know it."""

    @abc.abstractmethod
    def list_programs(self, *, timeout: float | None = None) -> list[ProgramInfo]: ...

    @abc.abstractmethod
    def device_status(self, *, timeout: float | None = None) -> DeviceStatus: ...

    @abc.abstractmethod
    def stats(self, *, timeout: float | None = None) -> Stats: ...

    @abc.abstractmethod
    def self_test(self, *, timeout: float | None = None) -> SelfTestResult: ...

    @abc.abstractmethod
    def reset(self, *, timeout: float | None = None) -> ResetResult: ...

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection (or engine threads). Idempotent."""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} target={self.target!r}>"

    def _deadline(self, timeout: float | None) -> float:
        """Absolute ``time.monotonic()`` deadline of one call."""
        return deadline_of(timeout, self.timeout)


class AsyncClient(abc.ABC):
    """What every target offers, as coroutines. Use with ``async with``, or ``await close()``."""

    target: str
    timeout: float

    @abc.abstractmethod
    async def register(self, program: Program, *, pin: bool = False, timeout: float | None = None) -> str: ...

    @abc.abstractmethod
    async def solve(
        self,
        program: Program,
        domains: Any,
        priorities: Any | None = None,
        *,
        mode: Mode | str = Mode.SOLVE,
        node_limit: int | None = None,
        max_solutions: int = 1,
        timeout: float | None = None,
    ) -> SolveResult: ...

    @abc.abstractmethod
    async def release(self, program: Program | str, *, timeout: float | None = None) -> bool: ...

    @abc.abstractmethod
    async def program_info(self, program: Program | str, *, timeout: float | None = None) -> ProgramInfo: ...

    @abc.abstractmethod
    async def list_programs(self, *, timeout: float | None = None) -> list[ProgramInfo]: ...

    @abc.abstractmethod
    async def device_status(self, *, timeout: float | None = None) -> DeviceStatus: ...

    @abc.abstractmethod
    async def stats(self, *, timeout: float | None = None) -> Stats: ...

    @abc.abstractmethod
    async def self_test(self, *, timeout: float | None = None) -> SelfTestResult: ...

    @abc.abstractmethod
    async def reset(self, *, timeout: float | None = None) -> ResetResult: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} target={self.target!r}>"

    def _deadline(self, timeout: float | None) -> float:
        return deadline_of(timeout, self.timeout)
