"""The repository stands on its own: its benchmark data inside, intact, and nothing reading a sibling folder.

A user clones the project anywhere and runs the README's two commands; `.ci/run` does exactly that in an empty
temporary directory. These checks catch the ways that could break again: a data file edited or missing, a file
in data/ that its README does not describe, or code that reaches outside the checkout for its inputs (the data
used to live in a ``shared/data`` folder beside the repository).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"

# A path that climbs out of the checkout towards a sibling folder: dot-dot then "shared", parent / "shared", or a
# parents[...] chain ending in .parent before a folder name.
OUTSIDE_PATTERNS = (
    re.compile(r"\.\./shared\b"),
    re.compile(r"""\.parent\s*/\s*["']shared["']"""),
    re.compile(r"""parents\[\d+\]\.parent\s*/"""),
)


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, check=True, capture_output=True, text=True).stdout
    return [REPO_ROOT / name for name in out.split("\0") if name]


def checksums() -> dict[str, str]:
    lines = (DATA_DIR / "SHA256SUMS").read_text().splitlines()
    return {name.strip(): digest for digest, name in (line.split(maxsplit=1) for line in lines if line.strip())}


def test_every_data_file_matches_its_recorded_checksum() -> None:
    sums = checksums()
    assert sums, "data/SHA256SUMS is empty"
    for name, digest in sums.items():
        path = DATA_DIR / name
        assert path.is_file(), f"data/{name} is listed in data/SHA256SUMS but missing"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"data/{name} differs from its checksum"


def test_every_data_file_is_checksummed_and_described() -> None:
    sums = checksums()
    readme = (DATA_DIR / "README.md").read_text()
    files = sorted(
        p.relative_to(DATA_DIR).as_posix()
        for p in DATA_DIR.rglob("*")
        if p.is_file() and p.name not in ("README.md", "SHA256SUMS")
    )
    assert files, "data/ holds no data files"
    assert sorted(sums) == files, "data/SHA256SUMS and the files in data/ disagree"
    for name in files:
        assert Path(name).name in readme, f"data/README.md does not describe {name}"


@pytest.mark.parametrize("pattern", OUTSIDE_PATTERNS, ids=lambda p: p.pattern)
def test_no_tracked_file_reads_a_folder_beside_the_checkout(pattern: re.Pattern[str]) -> None:
    offenders = []
    for path in tracked_files():
        if path.suffix not in (".py", ".sh", ".md", ".toml", ".cfg", ".txt", ".yml", ".yaml") and path.name not in (
            "Makefile",
            "run",
        ):
            continue
        if path == Path(__file__).resolve():
            continue  # this file names the patterns it looks for
        for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{lineno}: {line.strip()}")
    assert not offenders, "paths outside the repository:\n" + "\n".join(offenders)


def test_no_results_table_holds_an_unfilled_placeholder() -> None:
    """A README once shipped a table whose cells read ADDITION_ROW and ADDITION_STATUS: a number never filled in.
    No table cell of the README or a results file is a bare upper-case token with an underscore (register names
    in docs/regmap.md are such tokens by right)."""
    placeholder = re.compile(r"[A-Z][A-Z0-9]*_[A-Z0-9_]+")
    tracked = subprocess.run(
        ["git", "ls-files", "README.md", "*RESULTS.md", "bench/results/*.md"], cwd=REPO_ROOT, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    bad = []
    for name in tracked.stdout.split():
        for number, line in enumerate((REPO_ROOT / name).read_text(encoding="utf-8").splitlines(), 1):
            if line.startswith("|"):
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                bad += [f"{name}:{number}: {c}" for c in cells if placeholder.fullmatch(c)]
    assert not bad, bad
