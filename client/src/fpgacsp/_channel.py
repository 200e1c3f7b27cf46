"""Every gRPC channel setting of the client, in one place.

Targets: ``"host:port"`` (TCP), ``"unix:///abs/path.sock"`` or ``"unix:relative.sock"`` (gRPC's own unix
scheme), any other gRPC target URI (``dns:///``, ``ipv4:``, ...). ``"local"`` never reaches this module.

Retries: gRPC's service-config retry policy retries ``UNAVAILABLE`` (the daemon draining or resetting, a
connection refused) for every method of ``fpgacsp.v1.Solver`` and ``fpgacsp.v1.Admin`` with exponential
backoff. That is safe because every fpgacsp RPC is idempotent: registering is content-addressed, solving is
pure, the admin calls are repeatable. Calls do not wait for the channel to become ready (no
``wait_for_ready``), so by default an unreachable daemon fails fast with ``UnavailableError`` instead of
hanging until the deadline; ``connect(..., wait_for_daemon_s=...)`` waits for it instead (``_retry``, with
:func:`wait_ready` / :func:`aio_wait_ready` below). Retry throttling stops a client from hammering a daemon
that keeps refusing.

Reconnecting: gRPC's defaults (first reconnect after 1 s, growing by 1.6x up to 120 s) left a client refusing
calls for seconds after a restarted daemon was ready (12 s after a 30 s outage), because the channel sits in
``TRANSIENT_FAILURE`` until its next connection attempt. ``RECONNECT_BACKOFF_MS`` tries again after 100 ms,
growing to at most 1 s (gRPC adds +-20 % jitter), so a new daemon is noticed within about a second however long
the outage was; an attempt to a closed port costs the daemon's host nothing. ``grpc.min_reconnect_backoff_ms``
is, despite its name, gRPC's *minimum connect timeout* (default 20 s): 1 s bounds an attempt that gets no
answer at all (a host that is down and drops packets) while leaving a slow link room for its handshake; 100 ms
would fail every handshake slower than that.

Keepalive: a ping after 5 minutes without activity, which is gRPC servers' default minimum ping interval
(pinging more often gets the connection closed with ``too_many_pings``), so only long solves are probed and
a dead peer is detected within ``keepalive_time + keepalive_timeout``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from fpgacsp_proto.limits import MAX_MESSAGE_BYTES  # the daemon's too (fpgacspd.server): one value, 128 MiB

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
CLOSE_POLL_S = 0.2  # how often an asyncio wait for the channel checks whether its client was closed
HEALTH_CHECK = "/grpc.health.v1.Health/Check"  # the probe of a sync wait for the channel (see wait_ready)
RECONNECT_BACKOFF_MS: dict[str, int] = {
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1_000,
    "grpc.min_reconnect_backoff_ms": 1_000,  # gRPC's minimum connect timeout (see above)
}


# A fleet (a target that names several daemons: "ipv4:h1:p1,h2:p2" or "dns:///name:port"): gRPC's own round robin
# over them, with client-side health checking of the Solver service, so a draining (NOT_SERVING), starting or
# failed daemon is skipped and a dead one drops out when its connection does. Not for one daemon: there a
# NOT_SERVING daemon must still answer Admin (status, reset) and say UNAVAILABLE itself.
FLEET_SERVICE_CONFIG: dict[str, Any] = {
    **SERVICE_CONFIG,
    "loadBalancingConfig": [{"round_robin": {}}],
    "healthCheckConfig": {"serviceName": "fpgacsp.v1.Solver"},
}


def is_fleet(target: str) -> bool:
    """Whether ``target`` names several daemons to balance over (gRPC's resolver syntax)."""
    if target.startswith("dns:"):
        return True
    return target.startswith(("ipv4:", "ipv6:")) and "," in target


def fleet_size(target: str) -> int:
    """How many daemons ``target`` names now: the addresses of an ``ipv4:``/``ipv6:`` list, the distinct addresses
    a ``dns:`` name resolves to (1 if it does not resolve yet), 1 for any other target.

    Only a count, for sending a registration to every daemon of a fleet (``_retry.registrations``); gRPC's own
    resolver still decides where calls go.
    """
    if target.startswith(("ipv4:", "ipv6:")):
        return max(1, len([a for a in target.split(":", 1)[1].split(",") if a]))
    if not target.startswith("dns:"):
        return 1
    name = target[len("dns:") :]
    if name.startswith("//"):
        name = name[2:].split("/", 1)[-1]  # dns://authority/host:port: the authority is the DNS server
    host, _, port = name.rpartition(":") if not name.endswith("]") else (name, "", "")
    host = host.strip("[]") or name
    try:
        infos = socket.getaddrinfo(host, port or None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return 1
    return max(1, len({info[4][:2] for info in infos}))


def channel_options(
    user_agent: str, overrides: Mapping[str, Any] | None = None, fleet: bool = False
) -> list[tuple[str, Any]]:
    """The channel arguments of every client channel; ``overrides`` (from ``connect(**kwargs)``) win.

    An override's key is a gRPC channel argument with or without its ``grpc.`` prefix
    (``keepalive_time_ms=60_000`` sets ``grpc.keepalive_time_ms``).
    """
    options: dict[str, Any] = {
        "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
        "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
        "grpc.enable_retries": 1,
        "grpc.service_config": json.dumps(FLEET_SERVICE_CONFIG if fleet else SERVICE_CONFIG),
        "grpc.keepalive_time_ms": 300_000,
        "grpc.keepalive_timeout_ms": 20_000,
        "grpc.keepalive_permit_without_calls": 0,
        **RECONNECT_BACKOFF_MS,
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
        raise ValueError(
            f"target: expected 'host:port', 'unix:///path', 'local', or a fleet ('ipv4:h1:p1,h2:p2', "
            f"'dns:///name:port'), got {target!r}"
        )
    return target


@dataclass(frozen=True)
class TLS:
    """TLS to a daemon started with ``--tls-cert``: ``connect(address, tls=TLS(ca="ca.pem"))``.

    ``ca``: PEM file of the CA that signed the daemon's certificate (None: the system's trusted roots); ``cert``
    and ``key``: PEM files of the client certificate a daemon with ``--tls-client-ca`` requires (mutual TLS);
    ``server_name``: the name to check the daemon's certificate against, when it is not the address's host.
    """

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        if bool(self.cert) != bool(self.key):
            raise ValueError("tls: give both cert and key (the client certificate and its key) or neither")
        return grpc.ssl_channel_credentials(
            root_certificates=_pem(self.ca, "ca"), private_key=_pem(self.key, "key"),
            certificate_chain=_pem(self.cert, "cert"),
        )  # fmt: skip

    def options(self) -> list[tuple[str, Any]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def _pem(path: str | None, field: str) -> bytes | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"tls.{field}: cannot read {path} ({e.strerror or e})") from None


def check_tls(tls: TLS | bool | None) -> TLS | None:
    """``tls=`` of connect(): a :class:`TLS`, True (TLS with the system's roots), or None/False (plaintext)."""
    if tls is True:
        return TLS()
    if tls is None or tls is False:
        return None
    if not isinstance(tls, TLS):
        raise ValueError(f"tls: expected fpgacsp.TLS(ca=..., cert=..., key=...), True or None, got {tls!r}")
    return tls


def sync_channel(target: str, options: list[tuple[str, Any]], tls: TLS | None = None) -> grpc.Channel:
    """A plaintext channel (loopback, a Unix socket, a trusted network), or a TLS one with ``tls``."""
    if tls is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, tls.credentials(), options=options + tls.options())


def aio_channel(target: str, options: list[tuple[str, Any]], tls: TLS | None = None) -> grpc.aio.Channel:
    """The asyncio twin of :func:`sync_channel`; create it inside the event loop that will use it."""
    if tls is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(target, tls.credentials(), options=options + tls.options())


def wait_ready(channel: grpc.Channel, timeout_s: float) -> bool:
    """Block until ``channel`` is connected (``READY``), at most ``timeout_s``; True if it is.

    The wait is a health check sent with ``wait_for_ready``: gRPC sends it the moment the channel connects, and
    any answer (even ``UNIMPLEMENTED`` or ``NOT_SERVING``) proves the connection. Not a connectivity
    subscription (``grpc.channel_ready_future``): its poller thread outlives the unsubscribe by up to 0.2 s and
    dies with "Cannot monitor channel state: Channel closed!" when the client closes the channel meanwhile.
    Closing the client cancels the probe at once (True: the next attempt says the client is closed).
    """
    if timeout_s <= 0:
        return False
    probe = channel.unary_unary(HEALTH_CHECK)  # bytes in and out: b"" is an empty HealthCheckRequest
    try:
        probe(b"", timeout=timeout_s, wait_for_ready=True)
    except grpc.RpcError as exc:
        code = getattr(exc, "code", None)
        return not (callable(code) and code() == grpc.StatusCode.DEADLINE_EXCEEDED)
    except ValueError:  # "Cannot invoke RPC on closed channel!"
        pass
    return True


async def aio_wait_ready(channel: grpc.aio.Channel, timeout_s: float, closed: Callable[[], bool]) -> bool:
    """The asyncio twin of :func:`wait_ready`, also True as soon as ``closed()``.

    Here the channel's own ``channel_ready()`` (no thread behind it); it does not notice a close, so ``closed`` is
    polled every ``CLOSE_POLL_S``. Not a probe RPC: closing a ``grpc.aio`` channel cancels its calls by cancelling
    the awaiting task, which would look like the caller's own cancellation.
    """
    deadline = time.monotonic() + timeout_s
    while not closed():
        try:
            await asyncio.wait_for(channel.channel_ready(), max(0.0, min(CLOSE_POLL_S, deadline - time.monotonic())))
            return True
        except TimeoutError:  # asyncio.wait_for raises the builtin (Python >= 3.11)
            if time.monotonic() >= deadline:
                return False
        except Exception:  # the channel was closed under the wait
            if closed():
                break
            raise
    return True


TOKEN_ENV = "FPGACSP_TOKEN"  # the bearer token when connect() is given none


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """The call metadata that carries ``token`` (or ``$FPGACSP_TOKEN``; none when neither is set)."""
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    if token is None:
        return ()
    if not isinstance(token, str) or not token or any(ch.isspace() for ch in token):
        raise ValueError("token: expected a non-empty string without spaces (the daemon's 'TOKEN ROLE' file)")
    return (("authorization", f"Bearer {token}"),)
