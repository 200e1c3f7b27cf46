"""What the Grafana dashboard shows, drawn with matplotlib from Prometheus' query_range (no Grafana runs here).

``python deploy/grafana/render.py --prometheus http://127.0.0.1:9090 --out dashboard.png`` draws every panel of
``deploy/grafana/dashboard.py`` over the last ``--minutes``, with the variables set to ``--job`` and every instance.
``--demo`` starts what it needs itself: a daemon on the simulated card with a few injected faults, a Prometheus
scraping it every second, and a minute of mixed Solve traffic; that is how ``docs/images/dashboard.png`` (in the
README) was made. A panel whose queries return nothing is drawn empty and named on stderr; the exit status is 1
then.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dashboard import PANELS, Panel  # this folder is not a package: imported by path

REPO = Path(__file__).resolve().parents[2]


def expand(query: str, job: str, step_s: int) -> str:
    """The panel's PromQL with the dashboard's variables filled in."""
    return query.replace("$job", job).replace("$instance", ".*").replace("$__rate_interval", f"{max(4 * step_s, 10)}s")


def query_range(prometheus: str, query: str, start: float, end: float, step_s: int) -> list[dict[str, Any]]:
    params = urllib.parse.urlencode({"query": query, "start": start, "end": end, "step": step_s})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{params}", timeout=30) as resp:
        body = json.load(resp)
    if body.get("status") != "success":
        raise RuntimeError(f"query_range failed for {query}: {body}")
    return list(body["data"]["result"])


def render(prometheus: str, out: Path, minutes: float, job: str) -> list[str]:
    """Draw the panels; returns the titles of those that had no data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end = time.time()
    start = end - 60 * minutes
    step = max(1, int(60 * minutes / 240))
    rows = -(-len(PANELS) // 2)
    fig, axes = plt.subplots(rows, 2, figsize=(14, 3.0 * rows), squeeze=False)
    empty = []
    for ax, panel in zip(axes.flat, PANELS, strict=False):
        drawn = _draw(ax, panel, [query_range(prometheus, expand(q, job, step), start, end, step)
                                  for q, _ in panel.queries], start)  # fmt: skip
        if not drawn:
            empty.append(panel.title)
    for ax in list(axes.flat)[len(PANELS) :]:
        ax.axis("off")
    fig.suptitle(f"fpgacsp dashboard (job={job}), last {minutes:g} min, from Prometheus query_range")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return empty


def _draw(ax: Any, panel: Panel, results: list[list[dict[str, Any]]], start: float) -> bool:
    ax.set_title(panel.title, fontsize=10)
    drawn = False
    for (_, legend), series in zip(panel.queries, results, strict=True):
        for s in series:
            xs = [float(t) - start for t, _ in s["values"]]
            ys = [float(v) for _, v in s["values"]]
            label = legend
            for key, value in s["metric"].items():
                label = label.replace("{{" + key + "}}", value)
            ax.plot(xs, ys, label=label[:24], linewidth=1)
            drawn = drawn or bool(xs)
    if drawn and len(ax.get_lines()) <= 8:
        ax.legend(fontsize=7, loc="upper left")
    ax.set_xlabel("seconds", fontsize=8)
    ax.tick_params(labelsize=7)
    return drawn


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo(out: Path, seconds: float) -> list[str]:
    """A daemon, a Prometheus and traffic, then :func:`render` of what Prometheus saw."""
    sys.path.insert(0, str(REPO))
    import numpy as np
    from fpgacsp import connect
    from fpgacsp.problems import load_puzzle_file, parse_sudoku, sudoku_domains, sudoku_program

    from bench._serving import Daemon

    binary = shutil.which("prometheus")
    if binary is None:
        raise SystemExit("render.py --demo: no prometheus binary (scripts/install-system-deps.sh installs it)")
    grids = [parse_sudoku(r.puzzle) for r in load_puzzle_file(REPO / "data/sudoku/magictour_top1465.csv", 512)]
    domains = sudoku_domains(np.stack(grids))
    with tempfile.TemporaryDirectory() as tmp, Daemon(
        ["--metrics-listen", "127.0.0.1:0", "--sim-faults", "slow/40,drop_irq/25,corrupt/90", "--max-delay-us", "2000"]
    ) as daemon:  # fmt: skip
        config = Path(tmp) / "prometheus.yml"
        config.write_text("scrape_configs:\n  - job_name: fpgacspd\n    scrape_interval: 1s\n"
                          f"    static_configs:\n      - targets: ['{daemon.metrics_address}']\n")  # fmt: skip
        port = _free_port()
        prom = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp}/data",
                                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=error"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            time.sleep(3)
            rng = np.random.default_rng(0)
            with connect(daemon.address) as client:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    size = int(rng.choice([1, 4, 16, 64]))
                    lo = int(rng.integers(0, len(domains) - size))
                    client.solve(sudoku_program(), domains[lo : lo + size])
            time.sleep(3)
            return render(f"http://127.0.0.1:{port}", out, seconds / 60 + 0.1, "fpgacspd")
        finally:
            prom.terminate()
            prom.wait(timeout=15)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus base URL")
    p.add_argument("--job", default="fpgacspd", help="the job label of the daemons")
    p.add_argument("--minutes", type=float, default=15.0, help="time range to draw")
    p.add_argument("--out", type=Path, default=Path("dashboard.png"), help="PNG to write")
    p.add_argument("--demo", type=float, metavar="SECONDS", help="start a daemon, a Prometheus and traffic first")
    args = p.parse_args(argv)
    empty = demo(args.out, args.demo) if args.demo else render(args.prometheus, args.out, args.minutes, args.job)
    for title in empty:
        print(f"render.py: no data for the panel {title!r}", file=sys.stderr)
    print(f"wrote {args.out}", file=sys.stderr)
    return 1 if empty else 0


if __name__ == "__main__":
    sys.exit(main())
