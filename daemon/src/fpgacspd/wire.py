"""Protobuf messages to and from the daemon's plain objects: the decode and encode halves of each servicer.

Every input check of the Solve contract happens here, before a request reaches the batcher, and raises
:class:`~fpgacspd.errors.InvalidArgument` with a message naming the field.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
from fpgacsp_proto.bitset import DomainError, pack_domains, unpack_domains, unpack_priorities
from fpgacsp_proto.convert import pack_u64, program_from_proto
from fpgacsp_proto.isa import Mode, Program, ProgramError
from fpgacsp_proto.limits import MAX_LIMIT
from fpgacsp_proto.v1 import admin_pb2, solver_pb2

from .batcher import BatcherStats, SolveAnswer
from .config import SolveConfig
from .device import DeviceInfo
from .engine import SolveOptions
from .errors import InvalidArgument
from .registry import ProgramEntry
from .selftest import SelfTestReport
from .solve_batch import SolveBatch


def decode_program(msg: object) -> Program:
    return _as_invalid(lambda: program_from_proto(msg))  # type: ignore[arg-type]


def _as_invalid(decode: Callable[[], Program]) -> Program:
    try:
        return decode()
    except ProgramError as e:
        raise InvalidArgument(f"program: {e}") from e


def decode_solve(request: solver_pb2.SolveRequest, entry: ProgramEntry, config: SolveConfig) -> SolveBatch:
    """Check sizes and options against the program and the limits, then unpack the bitsets: the one check of
    each input; the value made here travels unchanged through the core, the batcher and the device worker."""
    b = request.batch_size
    if b == 0:
        raise InvalidArgument("batch_size: must be at least 1, got 0")
    if b > config.max_request_instances:
        raise InvalidArgument(
            f"batch_size: {b} exceeds solve.max_request_instances = {config.max_request_instances}; split the batch"
        )
    mode = request.mode or Mode.SOLVE
    if mode not in (Mode.PROPAGATE, Mode.SOLVE):
        raise InvalidArgument(f"mode: unknown value {request.mode} (expected MODE_PROPAGATE = 1 or MODE_SOLVE = 2)")
    node_limit = request.node_limit or config.default_node_limit
    if node_limit > config.max_node_limit:
        # one request must not hold the device for hours: the operator's ceiling (the deadline bounds it too)
        raise InvalidArgument(
            f"node_limit: {node_limit} exceeds this daemon's solve.max_node_limit = {config.max_node_limit}"
        )
    max_solutions = request.max_solutions or 1
    if max_solutions > MAX_LIMIT:
        raise InvalidArgument(f"max_solutions: must be at most 2^63 - 1, got {max_solutions}")
    n, d = entry.num_vars, entry.domain_size
    try:
        domains = unpack_domains(request.domains, b, n, d)
        priorities = unpack_priorities(request.priorities, b, n, d)
    except DomainError as e:
        raise InvalidArgument(str(e)) from e
    return SolveBatch(entry, domains, priorities, _options(mode, node_limit, max_solutions))


@functools.lru_cache(maxsize=1024)
def _options(mode: int, node_limit: int, max_solutions: int) -> SolveOptions:
    """Validated once per distinct combination: clients send the same few over and over."""
    return SolveOptions(Mode(mode), node_limit, max_solutions)


def encode_solve(answer: SolveAnswer, domain_size: int) -> solver_pb2.SolveResponse:
    res = answer.result
    return solver_pb2.SolveResponse(
        domains=pack_domains(res.domains, domain_size),
        status=np.ascontiguousarray(res.status, dtype=np.uint8).tobytes(),
        nodes=pack_u64(res.nodes),
        solutions=pack_u64(res.solutions),
        sweeps=pack_u64(res.sweeps),
        timing=solver_pb2.Timing(
            queue_us=_us(answer.queue_s),
            device_us=_us(answer.device_s),
            total_us=_us(answer.total_s, up=True),
            device_batch_size=answer.device_batch_size,
            merged_requests=answer.merged_requests,
        ),
    )


def _us(seconds: float, up: bool = False) -> int:
    """Whole microseconds: the parts (queue, device) rounded down and the total up, so that, as in real time,
    ``total_us >= queue_us + device_us`` (rounding each to nearest broke that by 1 us now and then)."""
    us = seconds * 1e6
    return max(0, math.ceil(us) if up else math.floor(us))


def program_info(entry: ProgramEntry) -> solver_pb2.ProgramInfo:
    return solver_pb2.ProgramInfo(
        program_id=entry.program_id,
        num_vars=entry.num_vars,
        domain_size=entry.domain_size,
        num_constraints=entry.num_constraints,
        encoded_bytes=entry.encoded_bytes,
        pinned=entry.pinned,
        solves=entry.solves,
        registered_unix_ms=entry.registered_unix_ms,
        last_used_unix_ms=entry.last_used_unix_ms,
    )


def self_test_response(report: SelfTestReport) -> admin_pb2.SelfTestResponse:
    return admin_pb2.SelfTestResponse(
        passed=report.passed,
        cases=[admin_pb2.SelfTestCase(name=c.name, passed=c.passed, detail=c.detail) for c in report.cases],
        duration_us=_us(report.duration_s),
    )


def device_status(
    info: DeviceInfo, state: int, version: str, uptime_s: float, queue_depth: int, programs: int, max_batch: int,
    max_delay_us: int,
) -> admin_pb2.DeviceStatus:  # fmt: skip
    return admin_pb2.DeviceStatus(
        backend=info.backend,
        description=info.description,
        state=state,  # type: ignore[arg-type]
        daemon_version=version,
        uptime_s=int(uptime_s),
        batches=info.batches,
        instances=info.instances,
        nodes=info.nodes,
        sweeps=info.sweeps,
        resets=info.resets,
        faults=info.faults,
        programs_loaded=programs,
        queue_depth=queue_depth,
        max_batch=min(max_batch, 2**32 - 1),
        max_delay_us=max_delay_us,
        card_nodes=info.card_nodes,
        busy_ms=round(info.busy_s * 1e3),
    )


def stats(
    batcher: BatcherStats, requests: dict[tuple[str, str], int], queue_depth: int, programs: int
) -> admin_pb2.Stats:
    batches = batcher.batches
    return admin_pb2.Stats(
        requests=[admin_pb2.MethodStats(method=m, code=c, count=n) for (m, c), n in sorted(requests.items())],
        batches=batches,
        instances=batcher.instances,
        mean_batch_size=batcher.instances / batches if batches else 0.0,
        mean_merged_requests=batcher.merged_requests / batches if batches else 0.0,
        queue_depth=queue_depth,
        programs_loaded=programs,
        dropped_expired=batcher.dropped_expired,
        dropped_cancelled=batcher.dropped_cancelled,
        rejected_queue_full=batcher.rejected_queue_full,
    )
