"""What every benchmark report records about where it ran: the machine, the software, the commit.

Kept apart from the benchmarks themselves so that a report header costs no heavy imports (``bench/serve.py``
must not load the SAT and CP-SAT baselines that ``bench/engine.py`` measures).
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _first_line(path: str, key: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith(key)), None)
    except OSError:
        return None


def machine() -> str:
    """CPU model, core count and RAM, as the report's reader needs them to compare numbers across runs."""
    cpu = _first_line("/proc/cpuinfo", "model name") or platform.processor() or "unknown CPU"
    family, model = _first_line("/proc/cpuinfo", "cpu family"), _first_line("/proc/cpuinfo", "model\t")
    mhz = _first_line("/proc/cpuinfo", "cpu MHz")
    if family and model:
        cpu += f" (family {family} model {model}" + (f", {float(mhz):.0f} MHz)" if mhz else ")")
    if " hypervisor" in (_first_line("/proc/cpuinfo", "flags") or ""):
        cpu += ", virtual machine"
    mem = _first_line("/proc/meminfo", "MemTotal")
    ram = f"{int(mem.split()[0]) / 2**20:.1f} GiB RAM" if mem else "RAM unknown"
    return f"{cpu}, {os.cpu_count()} cores, {ram}, {platform.system()} {platform.release()}"


def versions(dists: Sequence[str]) -> str:
    """``Python x.y.z, numpy a.b, ...`` for the distributions a report depends on."""
    from importlib.metadata import PackageNotFoundError, version

    parts = [f"Python {platform.python_version()}"]
    for dist in dists:
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            parts.append(f"{dist} (not installed)")
    return ", ".join(parts)


def git_commit() -> str:
    """Short commit, marked when the tree has uncommitted changes; a tree without commits says so."""

    def git(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True, check=False)

    try:
        head, dirty = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain")
    except OSError:
        return "unknown (git not available)"
    if head.returncode != 0:
        return "none (no commit yet)"
    return head.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")
