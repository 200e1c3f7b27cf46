"""Raw-stub helpers for the end-to-end tests: build requests, decode responses, compare with the engine.

The e2e tests speak the wire protocol through the generated stubs only (never the client library), so a
bug in the client cannot hide a bug in the daemon and the other way round. Decoding goes through the shared
codecs in ``fpgacsp_proto`` because they are the definition of the wire format.
"""

from __future__ import annotations

import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import grpc
import numpy as np
from fpgacsp.problems import load_puzzle_file, parse_sudoku, sudoku_domains
from fpgacsp_proto.bitset import pack_domains, unpack_domains
from fpgacsp_proto.convert import program_to_proto, unpack_status, unpack_u64
from fpgacsp_proto.isa import Mode, Program
from fpgacsp_proto.v1 import admin_pb2_grpc, isa_pb2, solver_pb2, solver_pb2_grpc
from fpgacspd.engine import BatchResult, FastEngine, SolveOptions
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from bench._hostile import neq_register_request_bytes  # noqa: F401 (re-exported for the tests)

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / "data"  # as in tests/conftest.py
SUDOKU_DIR = DATA_DIR / "sudoku"
COLORING_DIR = DATA_DIR / "coloring"

# Generous for a shared 2-core machine; a hang still fails well inside the suite's budget.
RPC_TIMEOUT_S = 30.0


@dataclass
class Stubs:
    channel: grpc.Channel
    solver: solver_pb2_grpc.SolverStub
    admin: admin_pb2_grpc.AdminStub


def connect(target: str, ready_timeout_s: float = 15.0) -> Stubs:
    """A plain insecure channel (``host:port`` or ``unix:///path``), waited until connected."""
    channel = grpc.insecure_channel(target)
    grpc.channel_ready_future(channel).result(timeout=ready_timeout_s)
    return Stubs(channel, solver_pb2_grpc.SolverStub(channel), admin_pb2_grpc.AdminStub(channel))


def register(solver: solver_pb2_grpc.SolverStub, program: Program, pin: bool = False) -> str:
    resp = solver.RegisterProgram(
        solver_pb2.RegisterProgramRequest(program=program_to_proto(program), pin=pin), timeout=RPC_TIMEOUT_S
    )
    return str(resp.program_id)


def solve_request(
    program_id: str,
    program: Program,
    domains: np.ndarray,
    mode: Mode = Mode.SOLVE,
    priorities: np.ndarray | None = None,
    node_limit: int = 0,
    max_solutions: int = 0,
) -> solver_pb2.SolveRequest:
    return solver_pb2.SolveRequest(
        program_id=program_id,
        batch_size=len(domains),
        domains=pack_domains(domains, program.domain_size),
        priorities=b"" if priorities is None else np.ascontiguousarray(priorities, dtype=np.uint8).tobytes(),
        mode=wire_mode(int(mode)),
        node_limit=node_limit,
        max_solutions=max_solutions,
    )


def wire_mode(value: int) -> isa_pb2.Mode:
    """Any integer as the proto enum (open enums carry unknown values: the daemon must reject them)."""
    return cast(isa_pb2.Mode, value)


def decode(resp: solver_pb2.SolveResponse, program: Program, batch: int) -> BatchResult:
    """The response as the engine's :class:`BatchResult` (raises on any wrongly sized field)."""
    return BatchResult(
        domains=unpack_domains(resp.domains, batch, program.num_vars, program.domain_size, "response.domains"),
        status=unpack_status(resp.status, batch),
        nodes=unpack_u64(resp.nodes, batch, "response.nodes"),
        solutions=unpack_u64(resp.solutions, batch, "response.solutions"),
        sweeps=unpack_u64(resp.sweeps, batch, "response.sweeps"),
    )


def local(
    engine: FastEngine,
    program: Program,
    domains: np.ndarray,
    mode: Mode = Mode.SOLVE,
    priorities: np.ndarray | None = None,
    node_limit: int | None = None,
    max_solutions: int = 1,
) -> BatchResult:
    """What the in-process engine answers; the daemon must answer the same, bit for bit."""
    options = SolveOptions(mode=mode, max_solutions=max_solutions)
    if node_limit is not None:
        options = SolveOptions(mode=mode, node_limit=node_limit, max_solutions=max_solutions)
    return engine.solve(program, domains, priorities, options)


def first_difference(got: BatchResult, want: BatchResult) -> str:
    """Human-readable first mismatch, or "" when bit-identical."""
    for name in ("domains", "status", "nodes", "solutions", "sweeps"):
        a, b = getattr(got, name), getattr(want, name)
        if a.shape != b.shape:
            return f"{name}: shape {a.shape} != {b.shape}"
        if not np.array_equal(a, b):
            idx = np.argwhere(a != b)[0]
            at = tuple(int(i) for i in idx)
            return f"{name}{list(at)}: daemon {a[at]!r} != local {b[at]!r} ({int((a != b).sum())} entries differ)"
    return ""


def sudoku_batch(path: Path, count: int) -> np.ndarray:
    """``count`` puzzles from a benchmark file as ``uint64[count, N]`` (cycled if the file is shorter)."""
    records = load_puzzle_file(path, limit=count)
    assert records, f"no puzzles in {path}"
    grids = np.stack([parse_sudoku(records[i % len(records)].puzzle) for i in range(count)])
    return sudoku_domains(grids)


def random_priorities(rng: np.random.Generator, batch: int, program: Program) -> np.ndarray:
    return rng.integers(0, 256, size=(batch, program.num_vars, program.domain_size), dtype=np.uint8)


def expect_error(call: Callable[[], object], code: grpc.StatusCode, *fragments: str) -> str:
    """Run ``call``, require a gRPC error with ``code`` whose details contain every fragment; return details."""
    try:
        call()
    except grpc.RpcError as err:
        details = str(err.details() or "")
        assert err.code() == code, f"expected {code.name}, got {err.code().name}: {details!r}"
        for fragment in fragments:
            assert fragment in details, f"{code.name} details {details!r} do not mention {fragment!r}"
        return details
    raise AssertionError(f"expected {code.name}, but the call succeeded")


class Scrape:
    """One scrape of a metrics endpoint, parsed with prometheus_client's parser (the format Prometheus reads)."""

    def __init__(self, url: str) -> None:
        with urllib.request.urlopen(url, timeout=10) as resp:
            self.content_type = resp.headers["Content-Type"]
            text = resp.read().decode("utf-8")
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples: list[Sample] = [s for f in self.families.values() for s in f.samples]

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` whose labels include ``labels`` (0 when there are none)."""
        return sum(s.value for s in self.samples if s.name == name and labels.items() <= s.labels.items())

    def by_label(self, name: str, label: str) -> Counter[str]:
        out: Counter[str] = Counter()
        for s in self.samples:
            if s.name == name:
                out[s.labels[label]] += int(s.value)
        return out


def settled_value(url: str, name: str, want: float, timeout: float = 5.0, **labels: str) -> float:
    """:meth:`Scrape.value` once it reaches ``want`` (or what it reads after ``timeout`` seconds).

    An answer can reach the client before the daemon counts it: ``context.abort`` sends the status, and the
    accounting interceptor counts the call as the abort unwinds through it, a moment later.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = Scrape(url).value(name, **labels)
        if value >= want or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def raw_register(channel: grpc.Channel) -> Callable[..., solver_pb2.RegisterProgramResponse]:
    """``RegisterProgram`` taking request bytes as they are (see :func:`neq_register_request_bytes`)."""
    return channel.unary_unary(
        "/fpgacsp.v1.Solver/RegisterProgram",
        request_serializer=lambda b: b,
        response_deserializer=solver_pb2.RegisterProgramResponse.FromString,
    )
