"""A real Prometheus (the Debian package, installed by scripts/install-system-deps.sh) scrapes the daemon.

Prometheus runs on a free loopback port with a throw-away TSDB, scrapes the shared daemon's metrics port every
second and evaluates the shipped alert rules (deploy/prometheus/alerts.yml) against the live series. The test
queries the HTTP API like a dashboard would. A missing binary is a failure, never a skip.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_process import DaemonProcess, free_port
from fpgacsp.problems import sudoku_program

from .wire import REPO_ROOT, RPC_TIMEOUT_S, SUDOKU_DIR, Stubs, register, solve_request, sudoku_batch

INSTALL_HINT = "run scripts/install-system-deps.sh (installs the Debian package 'prometheus')"
ALERTS = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
EXPECTED_ALERTS = {
    "FpgacspDaemonDown",
    "FpgacspDeviceNotReady",
    "FpgacspQueueSaturated",
    "FpgacspHighP99Latency",
    "FpgacspHighErrorRate",
    "FpgacspDeviceFaulting",
}


class Prometheus:
    def __init__(self, url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.proc = proc
        self.log = log

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]

    def wait(self, what: str, check: Any, timeout_s: float = 30.0) -> Any:
        """Poll ``check()`` until it returns something truthy; fail with Prometheus' log otherwise."""
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc.poll() is None, f"prometheus exited with {self.proc.returncode}\n{self.log_text()}"
            try:
                result = check()
            except OSError:
                result = None
            if result:
                return result
            assert time.monotonic() < deadline, f"timed out waiting for {what}\n{self.log_text()}"
            time.sleep(0.25)

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]


@pytest.fixture(scope="module")
def prometheus(daemon: DaemonProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    assert binary, f"the prometheus binary is not on PATH: {INSTALL_HINT}"
    tmp = tmp_path_factory.mktemp("prometheus")
    shutil.copy(ALERTS, tmp / "alerts.yml")
    config = tmp / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "rule_files:\n  - alerts.yml\n"
        "scrape_configs:\n"
        "  - job_name: fpgacspd\n    scrape_interval: 1s\n    scrape_timeout: 900ms\n"
        f"    static_configs:\n      - targets: ['{daemon.metrics_address}']\n",
        encoding="utf-8",
    )
    port = free_port()
    log = tmp / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    prom = Prometheus(f"http://127.0.0.1:{port}", proc, log)
    try:
        prom.wait("the Prometheus HTTP API", lambda: urllib.request.urlopen(f"{prom.url}/-/ready", timeout=2))
        yield prom
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_prometheus_scrapes_the_daemon(prometheus: Prometheus, tcp: Stubs) -> None:
    def target_up() -> bool:
        targets = prometheus.api("targets")["activeTargets"]
        return any(t["labels"]["job"] == "fpgacspd" and t["health"] == "up" for t in targets)

    prometheus.wait("the fpgacspd target to be up", target_up)
    # Traffic after the first scrape, so that rate() over the counters and histograms sees an increase.
    program = sudoku_program()
    pid = register(tcp.solver, program)
    domains = sudoku_batch(SUDOKU_DIR / "kaggle_10k.csv", 4)
    for _ in range(3):
        tcp.solver.Solve(solve_request(pid, program, domains), timeout=RPC_TIMEOUT_S)

    def solve_series() -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = prometheus.api("query", query="fpgacsp_requests_total")["result"]
        return [r for r in result if r["metric"].get("method") == "Solve" and float(r["value"][1]) >= 3]

    series = prometheus.wait("fpgacsp_requests_total{method='Solve'} >= 3", solve_series)
    assert {r["metric"]["code"] for r in series} >= {"OK"}
    assert all(r["metric"]["job"] == "fpgacspd" for r in series)
    assert all(r["metric"]["__name__"] == "fpgacsp_requests_total" for r in series)

    up = prometheus.api("query", query='up{job="fpgacspd"}')["result"]
    assert [float(r["value"][1]) for r in up] == [1.0]
    ready = prometheus.api("query", query='fpgacsp_device_state{state="ready"}')["result"]
    assert [float(r["value"][1]) for r in ready] == [1.0]

    # The alert rules' latency expression gives a finite number on the real histogram.
    def p99() -> float:
        query = "histogram_quantile(0.99, sum by (le) (rate(fpgacsp_request_seconds_bucket[1m])))"
        result = prometheus.api("query", query=query)["result"]
        value = float(result[0]["value"][1]) if result else math.nan
        return value if math.isfinite(value) else 0.0

    assert 0 < prometheus.wait("a finite p99 over fpgacsp_request_seconds", p99) < 10


def test_alert_rules_load_and_evaluate_on_live_data(prometheus: Prometheus) -> None:
    def evaluated() -> list[dict[str, Any]]:
        groups = prometheus.api("rules")["groups"]
        rules: list[dict[str, Any]] = [r for g in groups for r in g["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules) else []

    rules = prometheus.wait("every alert rule to be evaluated", evaluated)
    assert {r["name"] for r in rules} == EXPECTED_ALERTS
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
    firing = [a for a in prometheus.api("alerts")["alerts"] if a["state"] == "firing"]
    assert not firing, f"a healthy daemon raised alerts: {firing}"


# --- the Grafana dashboard (deploy/grafana) ------------------------------------------------------------------

GRAFANA = REPO_ROOT / "deploy" / "grafana"


def _dashboard_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("fpgacsp_dashboard", GRAFANA / "dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def test_the_committed_dashboard_is_what_the_generator_makes() -> None:
    """deploy/grafana/fpgacsp.json is generated (python deploy/grafana/dashboard.py, make dashboard): never stale."""
    assert (GRAFANA / "fpgacsp.json").read_text(encoding="utf-8") == _dashboard_module().render_json()


def test_every_dashboard_query_follows_the_rules() -> None:
    """The datasource, job and instance variables on every query; every rate over $__rate_interval."""
    import re

    board = json.loads((GRAFANA / "fpgacsp.json").read_text(encoding="utf-8"))
    variables = {t["name"]: t for t in board["templating"]["list"]}
    assert set(variables) == {"datasource", "job", "instance"} and variables["datasource"]["type"] == "datasource"
    titles = set()
    for panel in board["panels"]:
        titles.add(panel["title"])
        assert panel["datasource"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            selectors = re.findall(r"fpgacsp_\w+\{([^}]*)\}", expr)
            assert selectors and all('job=~"$job"' in s and 'instance=~"$instance"' in s for s in selectors), expr
            windows = re.findall(r"\[([^\]]+)\]", expr)
            assert all(w == "$__rate_interval" for w in windows), expr
            assert not re.search(r"\b(rate|irate|increase)\((?![^)]*\[\$__rate_interval\])", expr), expr
    wanted = {"Requests by status code", "Latency by method", "Queue depth", "Device batch size (instances)",
              "Requests merged per batch", "Device state", "Faults, resets, retries", "Instances solved per second",
              "Nodes and sweeps per instance", "Projected hardware time (cycle model) per wall second"}  # fmt: skip
    assert titles == wanted


def test_every_dashboard_panel_returns_data_from_a_real_prometheus(
    prometheus: Prometheus, tcp: Stubs, tmp_path: Path
) -> None:
    """Each panel's queries, variables filled in as Grafana would, return series for the shared daemon under load;
    render.py draws them all from query_range."""
    module = _dashboard_module()
    program = sudoku_program()
    pid = register(tcp.solver, program)
    domains = sudoku_batch(SUDOKU_DIR / "kaggle_10k.csv", 16)
    for i in range(20):  # traffic spread over a few scrapes, so that every rate() sees an increase
        tcp.solver.Solve(solve_request(pid, program, domains[: 1 + i % 16]), timeout=RPC_TIMEOUT_S)
        time.sleep(0.15)

    def expanded(query: str) -> str:
        return query.replace("$job", "fpgacspd").replace("$instance", ".*").replace("$__rate_interval", "20s")

    for panel in module.PANELS:
        for query, _ in panel.queries:

            def has_data(q: str = expanded(query)) -> bool:
                result = prometheus.api("query", query=q)["result"]
                # a method not called within the window has no rate: its quantile is NaN, which Grafana leaves out
                return any(math.isfinite(float(r["value"][1])) for r in result)

            prometheus.wait(f"data for {panel.title!r}: {query}", has_data)
    import runpy

    render = runpy.run_path(str(GRAFANA / "render.py"))
    out = tmp_path / "dashboard.png"
    assert render["render"](prometheus.url, out, 1.0, "fpgacspd") == []
    assert out.stat().st_size > 20_000
