"""The daemon's domain exceptions, one per answer of the error contract (solver.proto header).

Named after the gRPC status codes they become, hence no ``Error`` suffix. Plain Python, no grpc: the
registry, batcher and device raise these, and ``service.py`` turns them into gRPC status codes in one
place. Messages name the field or setting and the problem, because they reach the caller verbatim.
"""

from __future__ import annotations


class DaemonError(Exception):
    """Base class; ``code`` is the name of the gRPC status code the servicer answers with."""

    code = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DaemonError):  # noqa: N818 (named after the gRPC status code)
    """Bad input: the message names the field."""

    code = "INVALID_ARGUMENT"


class NotFound(DaemonError):  # noqa: N818 (named after the gRPC status code)
    """Unknown program id (never registered, released or evicted); clients re-register and retry."""

    code = "NOT_FOUND"


class ResourceExhausted(DaemonError):  # noqa: N818 (named after the gRPC status code)
    """Full queue (answered at once), a program over the size limits, or a registry full of pinned programs."""

    code = "RESOURCE_EXHAUSTED"


class Unavailable(DaemonError):  # noqa: N818 (named after the gRPC status code)
    """Draining, resetting or a failed device: retryable elsewhere or later."""

    code = "UNAVAILABLE"


class DeadlineExpired(DaemonError):  # noqa: N818 (named after the gRPC status code)
    """The caller's deadline passed before the request reached the device."""

    code = "DEADLINE_EXCEEDED"


class Cancelled(DaemonError):  # noqa: N818 (named after the gRPC status code)
    """The caller cancelled before the request reached the device."""

    code = "CANCELLED"


class DeviceFailure(DaemonError):  # noqa: N818 (named after the gRPC status code)
    """The device failed a batch even after a reset and a retry; only that batch's requests get this."""

    code = "INTERNAL"


class DeviceLost(DeviceFailure):
    """The device could not be brought back: no reset took, or the self-test failed after one.

    The batch that found out gets INTERNAL; the device goes FAILED (health NOT_SERVING, new work
    UNAVAILABLE) until an admin reset passes its self-test.
    """
