"""The files in deploy/ are valid for the tools that consume them, agree with each other and with the daemon.

systemd-analyze verifies the unit, systemd-sysusers dry-runs the user entry, promtool checks the Prometheus
config and rules and runs the alert unit tests, and the example TOML is loaded by the daemon's own config
loader and by a real daemon process. Missing tools fail with the name of the script that installs them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from daemon_process import DaemonProcess
from fpgacsp_proto.v1 import admin_pb2
from fpgacspd.config import SETTINGS, Config, ServerConfig, load_config

from .wire import REPO_ROOT, RPC_TIMEOUT_S, connect

DEPLOY = REPO_ROOT / "deploy"
UNIT = DEPLOY / "fpgacspd.service"
SYSUSERS = DEPLOY / "fpgacspd.sysusers"
EXAMPLE = DEPLOY / "fpgacspd.toml"
PROMETHEUS = DEPLOY / "prometheus"
INSTALL_SCRIPT = REPO_ROOT / "scripts" / "install-system-deps.sh"
# The example config differs from the defaults only in these keys: a Unix socket beside loopback TCP and a metrics
# endpoint, still on loopback (the daemon has no authentication yet, so nothing is exposed by default).
DEPLOYMENT_VALUES = ServerConfig(
    listen=("unix:/run/fpgacsp/fpgacspd.sock", "127.0.0.1:50051"),
    metrics_listen="127.0.0.1:9464",
    shutdown_grace_s=30.0,
)


def require(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} is not on PATH: run {INSTALL_SCRIPT.relative_to(REPO_ROOT)} (it installs what is missing)"
    return path


def run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd, check=False)


def unit_settings() -> dict[str, list[str]]:
    """``Key=value`` lines of the unit, by key (a key may repeat), comments and sections dropped."""
    out: dict[str, list[str]] = {}
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


# -- systemd ----------------------------------------------------------------------------------------------


def fake_root(tmp_path: Path) -> Path:
    """A root for ``systemd-analyze --root``: the unit, a stand-in /usr/bin/fpgacspd (verify checks that
    ExecStart is executable; the console script is not installed system-wide here), the host's own units
    (targets the unit refers to) and empty user databases for systemd-sysusers."""
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/lib/sysusers.d").mkdir(parents=True)
    (root / "etc/passwd").touch()
    (root / "etc/group").touch()
    shutil.copy(UNIT, root / "etc/systemd/system" / UNIT.name)
    shutil.copy(SYSUSERS, root / "usr/lib/sysusers.d/fpgacsp.conf")
    stub = root / "usr/bin/fpgacspd"
    stub.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    stub.chmod(0o755)
    host_units = Path("/usr/lib/systemd/system")
    assert host_units.is_dir(), f"{host_units} missing: systemd is not installed; run {INSTALL_SCRIPT.name}"
    # A copy, not a symlink: under --root an absolute link target is re-rooted, so a link would point at itself.
    shutil.copytree(host_units, root / "usr/lib/systemd/system", symlinks=True)
    return root


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = require("systemd-analyze")
    root = fake_root(tmp_path)
    res = run(tool, "verify", f"--root={root}", "--man=no", "--generators=no", UNIT.name)
    # verify exits 0 on mere warnings (an unknown key, a bad value); any output is a finding too.
    assert res.returncode == 0 and not res.stdout.strip() and not res.stderr.strip(), res.stdout + res.stderr


def test_sysusers_entry(tmp_path: Path) -> None:
    tool = require("systemd-sysusers")
    root = fake_root(tmp_path)
    res = run(tool, f"--root={root}", "--dry-run", "fpgacsp.conf")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Creating user 'fpgacsp'" in res.stdout + res.stderr


def test_unit_contract() -> None:
    unit = unit_settings()
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "30",
        "Restart": "on-failure",
        "ExecStart": "/usr/bin/fpgacspd --config /etc/fpgacsp/fpgacspd.toml",
        "KillSignal": "SIGTERM",
        "User": "fpgacsp",
        "RuntimeDirectory": "fpgacsp",
    }
    assert {k: unit.get(k, [""])[-1] for k in expected} == expected
    # numba's JIT needs writable+executable memory: this option would kill the daemon at its first compile.
    assert "MemoryDenyWriteExecute" not in unit
    assert unit["NoNewPrivileges"] == ["yes"] and unit["ProtectSystem"] == ["strict"]
    assert "AF_UNIX" in unit["RestrictAddressFamilies"][-1], "the Unix socket and sd_notify need AF_UNIX"


def test_unit_agrees_with_the_example_config() -> None:
    unit = unit_settings()
    config = load_config(["--config", str(EXAMPLE)], env={})
    grace = config.server.shutdown_grace_s
    assert float(unit["TimeoutStopSec"][-1]) > grace, "systemd must not SIGKILL a drain that is within its grace"
    sockets = [a.removeprefix("unix:") for a in config.server.listen if a.startswith("unix:")]
    runtime = Path("/run") / unit["RuntimeDirectory"][-1]
    assert sockets and all(Path(s).parent == runtime for s in sockets), "the socket must live in RuntimeDirectory"
    assert unit["ExecStart"][-1].endswith(f"--config /etc/{unit['ConfigurationDirectory'][-1]}/{EXAMPLE.name}")


# -- Prometheus ---------------------------------------------------------------------------------------------


def test_promtool_check_config() -> None:
    res = run(require("promtool"), "check", "config", "prometheus.yml", cwd=PROMETHEUS)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_promtool_check_rules() -> None:
    res = run(require("promtool"), "check", "rules", "alerts.yml", cwd=PROMETHEUS)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS: 6 rules found" in res.stdout


def test_promtool_alert_unit_tests() -> None:
    """Each alert fires on series shaped like the daemon's and stays quiet on a healthy one."""
    res = run(require("promtool"), "test", "rules", "alerts_test.yml", cwd=PROMETHEUS)
    assert res.returncode == 0, res.stdout + res.stderr


def test_scrape_target_matches_the_example_metrics_port() -> None:
    config = load_config(["--config", str(EXAMPLE)], env={})
    port = config.server.metrics_listen.rpartition(":")[2]
    text = (PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8")
    assert f"localhost:{port}" in text and "job_name: fpgacspd" in text


# -- the example configuration ------------------------------------------------------------------------------


def test_example_config_has_every_key() -> None:
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    present = {(section, key) for section, table in data.items() for key in table}
    assert present == {(s.section, s.key) for s in SETTINGS}


def test_example_config_equals_the_defaults_where_it_says_so() -> None:
    loaded = load_config(["--config", str(EXAMPLE)], env={})
    assert loaded.server == DEPLOYMENT_VALUES
    assert asdict(replace(loaded, server=ServerConfig())) == asdict(Config())


def test_example_config_runs_a_real_daemon() -> None:
    """The daemon accepts the file; flags (here the harness's --listen/--metrics-listen) override its addresses."""
    with DaemonProcess(["--config", str(EXAMPLE)]) as daemon:
        stubs = connect(daemon.address)
        status = stubs.admin.GetDeviceStatus(admin_pb2.GetDeviceStatusRequest(), timeout=RPC_TIMEOUT_S)
        stubs.channel.close()
        assert (status.max_batch, status.max_delay_us, status.backend) == (1024, 0, "sim")
        assert daemon.terminate() == 0


# -- the install script ---------------------------------------------------------------------------------------


TOOLS = ("prometheus", "promtool", "systemd-analyze", "systemd-sysusers")


@pytest.mark.parametrize("tool", TOOLS)
def test_install_script_covers_the_tool(tool: str) -> None:
    require(tool)
    assert f"need {tool} " in INSTALL_SCRIPT.read_text(encoding="utf-8")


def test_install_script_is_idempotent() -> None:
    """With everything present it installs nothing (and needs neither root nor the network)."""
    for tool in TOOLS:
        require(tool)
    assert os.access(INSTALL_SCRIPT, os.X_OK), f"{INSTALL_SCRIPT} must be executable"
    res = run("sh", str(INSTALL_SCRIPT))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "nothing to do" in res.stdout
