"""Waiting out an unavailable daemon: the one retry policy of the sync and the asyncio gRPC clients.

``connect(target, wait_for_daemon_s=W)``: an RPC answered ``UNAVAILABLE`` (connection refused while the daemon
restarts, a daemon draining, starting up or with a failed device), after gRPC's own few quick retries
(``_channel.RETRY_POLICY``), is tried again until ``W`` seconds have passed since its first ``UNAVAILABLE``;
then it raises :class:`UnavailableError` saying how long it waited for which address (or
:class:`DeadlineExceededError`, saying the same, when the call's own deadline comes first). Between attempts
the client backs off a little (``INITIAL_BACKOFF_S`` doubling to ``MAX_BACKOFF_S``, jittered: a daemon that
answers ``UNAVAILABLE`` on a live connection is not hammered) and then waits for the channel to be ``READY``
(a channel in ``TRANSIENT_FAILURE`` fails every call at once, so trying without waiting would only spin): the
next attempt goes out the moment gRPC reconnects, which its reconnect backoff (``_channel.RECONNECT_BACKOFF_MS``)
keeps within about a second of a new daemon listening.

What is retried: ``UNAVAILABLE``, and ``CANCELLED`` that the caller did not ask for: a daemon that stops
cancels the calls reaching it in its last moments (after its drain, while gRPC shuts the server down), and the
daemon itself answers ``CANCELLED`` only to a caller that is gone. A caller's own cancellation never gets here:
asyncio's ``CancelledError`` is not an RPC error, and a closed client fails its next attempt with "is closed".
Retrying is safe because every fpgacsp RPC is idempotent (registering is content-addressed, solving is pure,
the admin calls are repeatable); a program the restarted daemon no longer knows is registered again by
``solve``'s ``NOT_FOUND`` handling. Every other code (``INVALID_ARGUMENT``, ``NOT_FOUND``,
``DEADLINE_EXCEEDED``, ``RESOURCE_EXHAUSTED``, ``INTERNAL``, ...) is raised at once. ``W = 0`` (the client's
default) is the old fail-fast behaviour: the error after gRPC's own retries is raised as it came.

:class:`DaemonWait` holds the policy and the bookkeeping of one RPC; the loop around it is written once, in
``_flow.rpc``, and the clients only supply the sleeping and the waiting for the channel (``time.sleep`` and
``_channel.wait_ready``, or their asyncio twins) when that flow asks for them.
"""

from __future__ import annotations

import math
import numbers
import random
import time
from collections.abc import Callable

import grpc

from ._errors import CancelledError, DeadlineExceededError, FpgacspError, UnavailableError

DEFAULT_WAIT_FOR_DAEMON_S = 0.0  # the client's default: fail fast (CLI, health probes, callers with a fallback)
INITIAL_BACKOFF_S = 0.05
MAX_BACKOFF_S = 0.25  # also bounds how late the first attempt after a restarted daemon's self-test comes
BACKOFF_MULTIPLIER = 2.0
RETRYABLE: tuple[type[FpgacspError], ...] = (UnavailableError, CancelledError)
HANDLED: tuple[type[FpgacspError], ...] = (*RETRYABLE, DeadlineExceededError)  # what the clients' loops catch


# A Solve answered INTERNAL (the daemon's device failed the batch even after its own resets and retries) is
# sent again this many more times: solving is pure, so a retry is safe, and a card that faults every few jobs
# usually gets the next try through. Only Solve, and only INTERNAL: every other error means the same next time.
SOLVE_RETRIES_ON_INTERNAL = 2


def registrations(daemons: int, rounds: int = 1) -> int:
    """How many RegisterPrograms to send in a row so that every daemon of a fleet of ``daemons`` gets one.

    Round robin sends consecutive calls to consecutive daemons, so ``daemons`` in a row reach each daemon once
    while the picker stays the same; a Solve that still finds a daemon without the program registers ``rounds``
    (its retry number) times that many, for another thread's calls interleaved with ours and for a picker rebuilt
    meanwhile (a daemon leaving or joining restarts it at a random daemon). Fewer is not enough: registering once
    per miss, with three daemons, a Solve could start on daemon C (miss), register on A and succeed on B, every
    time, and C never got the program (seen in the fleet test: half the fresh fleets of three served every Solve
    from one daemon). Registering is idempotent and cheap on a daemon that has the program.
    """
    return max(1, daemons) * max(1, rounds)


def solve_failed_on_the_device(err: FpgacspError) -> bool:
    """The Solve failure worth another try: ``INTERNAL`` from the daemon (its device gave up on the batch)."""
    return err.code == grpc.StatusCode.INTERNAL


def check_wait_for_daemon(value: object, name: str = "wait_for_daemon_s") -> float:
    """``value`` as seconds (a finite number >= 0), or ``ValueError`` naming the option."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(float(value))
        or float(value) < 0
    ):
        raise ValueError(f"{name}: expected a number of seconds >= 0 (0: do not wait), got {value!r}")
    return float(value)


class DaemonWait:
    """One RPC's wait for an unavailable daemon (create one per RPC, not per attempt).

    The loop around an attempt (``_flow.rpc``, where each step is an operation the client performs)::

        wait = DaemonWait(target, wait_for_daemon_s, deadline)
        while True:
            try:
                return attempt()
            except HANDLED as err:
                backoff = wait.pause_after(err)  # raises once there is no waiting left
            sleep(backoff)
            wait.resume(wait_ready(channel, wait.left()))  # raises if the daemon did not come back in time

    The wait ends with :class:`UnavailableError` when ``wait_s`` runs out, and with
    :class:`DeadlineExceededError` when the call's own deadline comes first (the deadline contract holds: a call
    whose ``timeout`` passes raises that, whatever it was doing); both say whom they waited for, how long.
    """

    def __init__(
        self,
        target: str,
        wait_s: float,
        deadline: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.target = target
        self.wait_s = wait_s
        self.deadline = deadline  # the call's own, absolute (clock)
        self.attempts = 0  # failed attempts so far
        self._clock = clock
        self._jitter = jitter
        self._since: float | None = None  # the first retryable failure
        self._until = deadline
        self._backoff = INITIAL_BACKOFF_S
        self._last: FpgacspError | None = None  # the last retryable failure

    def pause_after(self, err: FpgacspError) -> float:
        """After an attempt failed with ``err``: seconds to back off before waiting for the channel, or raise."""
        if not isinstance(err, RETRYABLE):
            # a deadline that passed during an attempt: gRPC's own retries may have been backing off at the time
            raise err if self._since is None else self.gave_up() from None
        self.attempts += 1
        self._last = err
        if self.wait_s <= 0:
            raise err  # not waiting: the error exactly as gRPC's own retries left it
        now = self._clock()
        if self._since is None:
            self._since = now
            self._until = min(now + self.wait_s, self.deadline)
        left = self._until - now
        if left <= 0:
            raise self.gave_up() from None
        backoff = self._backoff * (0.5 + 0.5 * self._jitter())
        self._backoff = min(self._backoff * BACKOFF_MULTIPLIER, MAX_BACKOFF_S)
        return min(backoff, left)

    def left(self) -> float:
        """Seconds of waiting left (never negative)."""
        return max(0.0, self._until - self._clock())

    def resume(self, ready: bool) -> None:
        """Before the next attempt: raise unless the channel came back ``ready`` with time left to use it."""
        if not ready or self._until - self._clock() <= 0:
            raise self.gave_up()

    def gave_up(self) -> UnavailableError | DeadlineExceededError:
        """The error that ends the wait: for whom, how long, and the daemon's last answer."""
        last = self._last
        assert last is not None and self._since is not None, "gave_up() before any retryable failure"
        waited = self._clock() - self._since
        tries = f"{self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        how = f"unavailable for {waited:.1f} s (wait_for_daemon_s={self.wait_s:g}, {tries})"
        answer = last.details if isinstance(last, UnavailableError) else str(last)
        if self._until < self._since + self.wait_s:  # the call's deadline came first
            details = f"the call's deadline passed while waiting for the daemon at {self.target!r}, {how}"
            return DeadlineExceededError(
                f"{details}; last error: {answer}", grpc.StatusCode.DEADLINE_EXCEEDED, last.method
            )
        details = f"the daemon at {self.target!r} was {how}; last error: {answer}"
        return UnavailableError(details, grpc.StatusCode.UNAVAILABLE, last.method)
