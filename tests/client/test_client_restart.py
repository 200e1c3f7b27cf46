"""Clients through a daemon restart, against real ``fpgacspd`` processes on a fixed address.

The old daemon is stopped (SIGTERM, drained), nothing listens for ``OUTAGE_S``, then a new daemon starts on the
same address with an empty program registry. A client with ``wait_for_daemon_s`` must never raise, and its first
successful call must come promptly after the new daemon's ``ready`` log line (gRPC's reconnect backoff,
``_channel.RECONNECT_BACKOFF_MS``); a fail-fast client (the default) raises during the outage but reconnects as
promptly. Past the wait, a call raises :class:`UnavailableError` saying how long it waited for which address.
"""

from __future__ import annotations

import asyncio
import re
import time

import numpy as np
import pytest
from daemon_process import free_port
from fpgacsp import DeadlineExceededError, UnavailableError, connect, connect_async, sudoku_program
from restart_helpers import OUTAGE_S, PROMPT_S, CallLoop, daemon_on, ready_at

PROGRAM = sudoku_program(2)
FULL = np.full((4, 16), 0b1111, dtype=np.uint64)


def test_sync_client_rides_through_a_restart() -> None:
    address = f"127.0.0.1:{free_port()}"
    daemons = [daemon_on(address)]
    try:
        with (
            connect(address, timeout=30, wait_for_daemon_s=30) as waiting,
            connect(address, timeout=30) as failfast,
        ):
            with (
                CallLoop(lambda: waiting.solve(PROGRAM, FULL), "waiting") as rides,
                CallLoop(lambda: failfast.solve(PROGRAM, FULL), "failfast") as fails,
            ):
                rides.wait_ok_after(0)
                fails.wait_ok_after(0)
                assert daemons[0].terminate() == 0
                stopped = time.time()
                time.sleep(OUTAGE_S)
                daemons.append(daemon_on(address))
                ready = ready_at(daemons[1])
                first_waiting = rides.wait_ok_after(stopped) - ready
                first_failfast = fails.wait_ok_after(stopped) - ready
                time.sleep(0.3)  # a few more calls on the new daemon
            assert waiting.program_info(PROGRAM).program_id  # registered again after NOT_FOUND
    finally:
        for daemon in daemons:
            daemon.kill()
    print(f"ready -> first success: waiting {first_waiting:+.3f} s, fail-fast {first_failfast:+.3f} s")
    assert rides.errors() == []  # not one call raised across the restart
    assert -0.1 < first_waiting < PROMPT_S, first_waiting
    assert any(e.startswith("UnavailableError") for e in fails.errors())  # it did see the outage ...
    assert -0.1 < first_failfast < PROMPT_S, first_failfast  # ... and came back as promptly


def test_past_the_wait_a_call_raises_unavailable_with_a_clear_message() -> None:
    address = f"127.0.0.1:{free_port()}"
    daemon = daemon_on(address)
    try:
        with connect(address, timeout=30, wait_for_daemon_s=2) as client, connect(address) as failfast:
            client.solve(PROGRAM, FULL)
            failfast.list_programs()
            assert daemon.terminate() == 0

            start = time.monotonic()
            with pytest.raises(UnavailableError) as info:
                client.solve(PROGRAM, FULL)
            took = time.monotonic() - start
            assert 1.9 < took < 3.5, took
            message = str(info.value)
            assert message.startswith(f"Solve failed with UNAVAILABLE: the daemon at {address!r} was unavailable for")
            found = re.search(r"unavailable for (\d+\.\d) s \(wait_for_daemon_s=2, \d+ attempts?\)", message)
            assert found is not None and 1.9 <= float(found[1]) < 3.5, message
            assert "last error: " in message and isinstance(info.value, ConnectionError)

            start = time.monotonic()  # the call's own deadline comes first: the deadline contract holds
            with pytest.raises(DeadlineExceededError) as late:
                client.list_programs(timeout=0.8)
            assert str(late.value).startswith(
                f"ListPrograms failed with DEADLINE_EXCEEDED: the call's deadline passed while waiting for the daemon "
                f"at {address!r}, unavailable for 0."
            )
            assert 0.7 < time.monotonic() - start < 2.0

            start = time.monotonic()  # the default does not wait
            with pytest.raises(UnavailableError) as info:
                failfast.list_programs()
            assert time.monotonic() - start < 1.5 and "was unavailable for" not in str(info.value)
    finally:
        daemon.kill()


def test_async_client_rides_through_a_restart() -> None:
    address = f"127.0.0.1:{free_port()}"
    old = daemon_on(address)
    done: list[float] = []

    async def run() -> float:
        async with connect_async(address, timeout=30, wait_for_daemon_s=30) as client:
            stop = asyncio.Event()

            async def loop() -> None:  # an error ends the task and re-raises at ``await task``
                while not stop.is_set():
                    await client.solve(PROGRAM, FULL)
                    done.append(time.time())
                    await asyncio.sleep(0.005)

            task = asyncio.ensure_future(loop())
            while not done:
                await asyncio.sleep(0.01)
            assert await asyncio.to_thread(old.terminate) == 0
            stopped = time.time()
            await asyncio.sleep(OUTAGE_S)
            new = await asyncio.to_thread(daemon_on, address)
            try:
                ready = ready_at(new)
                deadline = time.monotonic() + 15
                while not (done[-1] > stopped) and time.monotonic() < deadline and not task.done():
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.3)
                stop.set()
                await task
                assert (await client.program_info(PROGRAM)).program_id  # registered again after NOT_FOUND
            finally:
                new.kill()
            return next(t for t in done if t > stopped) - ready

    try:
        first = asyncio.run(run())
    finally:
        old.kill()
    print(f"async: ready -> first success {first:+.3f} s")
    assert -0.1 < first < PROMPT_S, first
