"""Fixtures for the end-to-end tests: one shared fpgacspd process for every test that does not disturb it.

Starting a daemon costs seconds (interpreter, kernels, self-test), so tests that only send ordinary traffic
share one session-wide process listening on a free loopback port and on a Unix socket. Tests that need a
special configuration, kill the daemon or watch its readiness protocol start their own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from daemon_process import DaemonProcess

from .wire import Stubs, connect


@pytest.fixture(scope="session")
def daemon() -> Iterator[DaemonProcess]:
    with DaemonProcess(unix_socket=True) as d:
        yield d
        assert d.alive(), f"the shared daemon died during the tests\n{d.log_text()}"


@pytest.fixture(scope="session")
def tcp(daemon: DaemonProcess) -> Iterator[Stubs]:
    stubs = connect(daemon.address)
    yield stubs
    stubs.channel.close()


@pytest.fixture(scope="session")
def unix(daemon: DaemonProcess) -> Iterator[Stubs]:
    stubs = connect(daemon.unix_address)
    yield stubs
    stubs.channel.close()


@pytest.fixture(params=["tcp", "unix"])
def stubs(request: pytest.FixtureRequest) -> Stubs:
    """Both transports: the results must not depend on how the client reached the daemon."""
    stubs: Stubs = request.getfixturevalue(request.param)
    return stubs
