"""A daemon that cannot start says why and exits non-zero (what systemd's Restart=on-failure relies on)."""

from __future__ import annotations

from pathlib import Path

import pytest
from daemon_process import DaemonError, DaemonProcess


def test_a_taken_port_fails_the_start(daemon: DaemonProcess) -> None:
    """A second daemon on the shared daemon's port must fail to bind, not share the port."""
    with pytest.raises(DaemonError, match=r"exited with code [1-9]") as info:
        DaemonProcess(["--listen", daemon.address]).start()
    assert daemon.address in str(info.value), "the log should name the address that could not be bound"
    assert daemon.alive()


def test_a_bad_config_file_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[batching]\nmax_batch = 0\n", encoding="utf-8")
    with pytest.raises(DaemonError, match=r"exited with code [1-9]") as info:
        DaemonProcess(["--config", str(config)]).start()
    assert "max_batch" in str(info.value)
