"""The server's bookkeeping: phases only move forward, and the drain's quiet test counts running calls."""

from __future__ import annotations

import asyncio
import time

import pytest
from fpgacspd.config import load_config
from fpgacspd.server import Daemon
from fpgacspd.server_state import ServerPhase, ServerState


def test_phases_move_forward_and_never_back() -> None:
    state = ServerState()
    for phase in ServerPhase:
        state.enter(phase)
        assert state.phase == phase
    with pytest.raises(AssertionError, match="phase serving after stopped"):
        state.enter(ServerPhase.SERVING)


def test_quiet_only_once_no_call_runs_and_none_started_lately() -> None:
    state = ServerState()
    assert state.quiet_for(0.05)
    state.call_started()
    assert state.active_rpcs == 1 and not state.quiet_for(0.0)
    state.call_ended()
    assert not state.quiet_for(10.0)  # one started just now
    time.sleep(0.06)
    assert state.quiet_for(0.05)


def test_constructing_a_daemon_attaches_nothing_start_does() -> None:
    """The device is opened in the startup phase, off the event loop, not by the constructor."""
    cfg = load_config(["--listen", "127.0.0.1:0", "--device-threads", "1"], env={})

    async def main() -> None:
        daemon = Daemon(cfg)
        assert daemon.state.phase == ServerPhase.CREATED
        with pytest.raises(RuntimeError, match="not attached yet"):
            daemon.core  # noqa: B018 (the property raises)
        assert daemon.report()["phase"] == "created"
        run = asyncio.ensure_future(daemon.run())
        while daemon.state.phase != ServerPhase.SERVING:
            await asyncio.sleep(0.01)
        assert daemon.worker.state.name == "READY" and daemon.addresses
        daemon.request_stop()
        assert await asyncio.wait_for(run, 30) == 0
        assert daemon.state.phase == ServerPhase.STOPPED and daemon.state.active_rpcs == 0

    asyncio.run(main())


def test_a_device_that_cannot_be_attached_fails_startup_with_status_1() -> None:
    cfg = load_config(["--listen", "127.0.0.1:0", "--device-backend", "vfio", "--device", "0000:ff:1f.7"], env={})
    daemon = Daemon(cfg)
    assert asyncio.run(daemon.run()) == 1
    assert daemon.state.phase == ServerPhase.STOPPED and not daemon.addresses  # nothing was bound
