"""Every gRPC channel setting of the client, in one place.

Targets: ``"host:port"`` (TCP), ``"unix:///abs/path.sock"`` or ``"unix:relative.sock"`` (gRPC's own unix
scheme), any other gRPC target URI (``dns:///``, ``ipv4:``, ...). ``"local"`` never reaches this module.

Retries: gRPC's service-config retry policy retries ``UNAVAILABLE`` (the daemon draining or resetting, a
connection refused) for every method of ``fpgacsp.v1.Solver`` and ``fpgacsp.v1.Admin`` with exponential
backoff. That is safe because every fpgacsp RPC is idempotent: registering is content-addressed, solving is
pure, the admin calls are repeatable. Calls do not wait for the channel to become ready (no
``wait_for_ready``), so an unreachable daemon fails fast with ``UnavailableError`` instead of hanging until
the deadline. Retry throttling stops a client from hammering a daemon that keeps refusing.

Keepalive: a ping after 5 minutes without activity, which is gRPC servers' default minimum ping interval
(pinging more often gets the connection closed with ``too_many_pings``), so only long solves are probed and
a dead peer is detected within ``keepalive_time + keepalive_timeout``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import grpc
import grpc.aio

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
RETRY_MAX_ATTEMPTS = 4
RETRY_POLICY: dict[str, Any] = {
    "maxAttempts": RETRY_MAX_ATTEMPTS,
    "initialBackoff": "0.05s",
    "maxBackoff": "1s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
SERVICE_CONFIG: dict[str, Any] = {
    "methodConfig": [
        {
            "name": [{"service": "fpgacsp.v1.Solver"}, {"service": "fpgacsp.v1.Admin"}],
            "retryPolicy": RETRY_POLICY,
        }
    ],
    "retryThrottling": {"maxTokens": 100, "tokenRatio": 0.1},
}


def channel_options(user_agent: str, overrides: Mapping[str, Any] | None = None) -> list[tuple[str, Any]]:
    """The channel arguments of every client channel; ``overrides`` (from ``connect(**kwargs)``) win.

    An override's key is a gRPC channel argument with or without its ``grpc.`` prefix
    (``keepalive_time_ms=60_000`` sets ``grpc.keepalive_time_ms``).
    """
    options: dict[str, Any] = {
        "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
        "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
        "grpc.enable_retries": 1,
        "grpc.service_config": json.dumps(SERVICE_CONFIG),
        "grpc.keepalive_time_ms": 300_000,
        "grpc.keepalive_timeout_ms": 20_000,
        "grpc.keepalive_permit_without_calls": 0,
        "grpc.primary_user_agent": user_agent,
    }
    for key, value in (overrides or {}).items():
        options[key if key.startswith("grpc.") else f"grpc.{key}"] = value
    return list(options.items())


def check_target(target: object) -> str:
    """The target string, or ``ValueError`` naming what is wrong with it (before any channel exists)."""
    if not isinstance(target, str):
        raise TypeError(f"target: expected a string such as 'localhost:50051', got {type(target).__name__}")
    if not target.strip() or target != target.strip():
        raise ValueError(f"target: expected 'host:port', 'unix:///path' or 'local', got {target!r}")
    return target


def sync_channel(target: str, options: list[tuple[str, Any]]) -> grpc.Channel:
    """A plaintext channel (the daemon serves loopback, a Unix socket or a trusted network)."""
    return grpc.insecure_channel(target, options=options)


def aio_channel(target: str, options: list[tuple[str, Any]]) -> grpc.aio.Channel:
    """The asyncio twin of :func:`sync_channel`; create it inside the event loop that will use it."""
    return grpc.aio.insecure_channel(target, options=options)
