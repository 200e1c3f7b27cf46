"""The fpgacsp Grafana dashboard, generated with grafanalib: ``python deploy/grafana/dashboard.py`` writes
``deploy/grafana/fpgacsp.json`` (import it in Grafana; ``make dashboard`` does the same, and
``tests/e2e/test_e2e_prometheus.py`` checks the file is current, lints every query and runs each against a real
Prometheus scraping a real daemon).

Variables: ``datasource`` (a Prometheus), ``job`` and ``instance`` (one daemon, several, or all). Every rate uses
``$__rate_interval``; every query filters on ``job`` and ``instance``. ``PANELS`` is also what
``deploy/grafana/render.py`` draws from Prometheus' query_range, so the README can show the dashboard.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from grafanalib import core as g
from grafanalib._gen import DashboardEncoder

OUT = Path(__file__).with_name("fpgacsp.json")
SEL = 'job=~"$job", instance=~"$instance"'
RATE = "$__rate_interval"
DATASOURCE = "${datasource}"


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    queries: tuple[tuple[str, str], ...]  # (PromQL, legend)
    kind: str = "timeseries"  # or "heatmap"


PANELS: tuple[Panel, ...] = (
    Panel("Requests by status code", "reqps",
          ((f"sum by (code) (rate(fpgacsp_requests_total{{{SEL}}}[{RATE}]))", "{{code}}"),)),
    Panel("Latency by method", "s", (
        (f"histogram_quantile(0.5, sum by (le, method) (rate(fpgacsp_rpc_seconds_bucket{{{SEL}}}[{RATE}])))",
         "p50 {{method}}"),
        (f"histogram_quantile(0.99, sum by (le, method) (rate(fpgacsp_rpc_seconds_bucket{{{SEL}}}[{RATE}])))",
         "p99 {{method}}"),
        (f"histogram_quantile(0.99, sum by (le) (rate(fpgacsp_queue_seconds_bucket{{{SEL}}}[{RATE}])))",
         "p99 Solve queue"),
    )),
    Panel("Queue depth", "short", ((f"sum by (instance) (fpgacsp_queue_depth{{{SEL}}})", "{{instance}}"),)),
    Panel("Device batch size (instances)", "short",
          ((f"sum by (le) (rate(fpgacsp_batch_instances_bucket{{{SEL}}}[{RATE}]))", "{{le}}"),), kind="heatmap"),
    Panel("Requests merged per batch", "short", (
        (f"sum(rate(fpgacsp_batch_requests_sum{{{SEL}}}[{RATE}])) / sum(rate(fpgacsp_batch_requests_count{{{SEL}}}"
         f"[{RATE}]))", "mean"),
    )),
    Panel("Device state", "short", ((f"max by (state) (fpgacsp_device_state{{{SEL}}})", "{{state}}"),)),
    Panel("Faults, resets, retries", "ops", (
        (f"sum by (kind) (rate(fpgacsp_device_faults_total{{{SEL}}}[{RATE}]))", "fault {{kind}}"),
        (f"sum by (kind) (rate(fpgacsp_device_resets_total{{{SEL}}}[{RATE}]))", "reset {{kind}}"),
        (f"sum(rate(fpgacsp_device_retries_total{{{SEL}}}[{RATE}]))", "retries"),
    )),
    Panel("Instances solved per second", "ops",
          ((f"sum by (status) (rate(fpgacsp_instances_total{{{SEL}}}[{RATE}]))", "{{status}}"),)),
    Panel("Nodes and sweeps per instance", "short", (
        (f"sum(rate(fpgacsp_nodes_total{{{SEL}}}[{RATE}])) / sum(rate(fpgacsp_instances_total{{{SEL}}}[{RATE}]))",
         "nodes"),
        (f"sum(rate(fpgacsp_sweeps_total{{{SEL}}}[{RATE}])) / sum(rate(fpgacsp_instances_total{{{SEL}}}[{RATE}]))",
         "sweeps"),
    )),
    Panel("Projected hardware time (cycle model) per wall second", "percentunit", (
        (f"sum by (instance) (rate(fpgacsp_device_cycles_total{{{SEL}}}[{RATE}]) / fpgacsp_device_clock_hz{{{SEL}}})",
         "{{instance}}"),
    )),
)  # fmt: skip


def _panel(p: Panel, x: int, y: int) -> g.Panel:
    targets = [g.Target(expr=q, legendFormat=legend, refId=chr(65 + i)) for i, (q, legend) in enumerate(p.queries)]
    grid = g.GridPos(h=8, w=12, x=x, y=y)
    if p.kind == "heatmap":
        return g.Heatmap(title=p.title, dataSource=DATASOURCE, targets=targets, gridPos=grid, dataFormat="tsbuckets")
    return g.TimeSeries(title=p.title, dataSource=DATASOURCE, targets=targets, gridPos=grid, unit=p.unit)


def dashboard() -> g.Dashboard:
    templates = [
        g.Template(name="datasource", query="prometheus", type="datasource", label="Prometheus"),
        g.Template(name="job", query="label_values(fpgacsp_requests_total, job)", dataSource=DATASOURCE,
                   includeAll=True, multi=True, default="$__all", label="job"),
        g.Template(name="instance", query='label_values(fpgacsp_requests_total{job=~"$job"}, instance)',
                   dataSource=DATASOURCE, includeAll=True, multi=True, default="$__all", label="instance"),
    ]  # fmt: skip
    panels = [_panel(p, 12 * (i % 2), 8 * (i // 2)) for i, p in enumerate(PANELS)]
    return g.Dashboard(
        title="fpgacsp", uid="fpgacsp", tags=["fpgacsp"], timezone="utc", refresh="10s",
        templating=g.Templating(list=templates), panels=panels,
    ).auto_panel_ids()  # fmt: skip


def render_json() -> str:
    return json.dumps(dashboard().to_json_data(), cls=DashboardEncoder, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    OUT.write_text(render_json(), encoding="utf-8")
    print(f"wrote {OUT}", file=sys.stderr)
