"""Bearer tokens with a role each: who may solve, who may also reset the card.

``server.auth_tokens`` names a file of ``TOKEN ROLE`` lines (``#`` starts a comment; blank lines are skipped),
re-read on SIGHUP. A call carries ``authorization: Bearer TOKEN`` metadata. Roles (:class:`Role`): ``solve``
(the data plane, and the read-only admin calls ``GetDeviceStatus`` and ``GetStats``) and ``admin`` (everything,
``Admin.Reset`` and ``Admin.SelfTest`` included). No valid token is ``UNAUTHENTICATED``; a ``solve`` token on an
admin-only method is ``PERMISSION_DENIED``; health and reflection stay open (load balancers and grpcurl need
them). Tokens are compared in constant time (``hmac.compare_digest`` over their SHA-256, against every token, so
neither the length nor the position of a match shows in the time), and never logged: the table keeps digests.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc


class Role(enum.Enum):
    SOLVE = "solve"
    ADMIN = "admin"


ADMIN_ONLY = frozenset({"/fpgacsp.v1.Admin/Reset", "/fpgacsp.v1.Admin/SelfTest"})
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                 "/grpc.reflection.v1.ServerReflection/")  # fmt: skip
_MIN_TOKEN_CHARS = 16


class TokenFileError(ValueError):
    """The token file cannot be used; the message names the file and line."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


@dataclass(frozen=True)
class TokenTable:
    entries: tuple[tuple[bytes, Role], ...]  # (sha256 of the token, its role)

    @classmethod
    def load(cls, path: str | Path) -> TokenTable:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise TokenFileError(f"server.auth_tokens: cannot read {path} ({getattr(e, 'strerror', None) or e})") from e
        entries = []
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            where = f"server.auth_tokens: {path}:{number}"
            if len(parts) != 2:
                raise TokenFileError(f"{where}: expected 'TOKEN ROLE', got {len(parts)} fields")
            token, role = parts
            if len(token) < _MIN_TOKEN_CHARS:
                raise TokenFileError(f"{where}: a token must have at least {_MIN_TOKEN_CHARS} characters")
            try:
                entries.append((_digest(token), Role(role)))
            except ValueError:
                known = ", ".join(r.value for r in Role)
                raise TokenFileError(f"{where}: unknown role {role!r} (known: {known})") from None
        if not entries:
            raise TokenFileError(f"server.auth_tokens: {path} holds no token (every call would be refused)")
        return cls(tuple(entries))

    def role_of(self, token: str) -> Role | None:
        """The token's role, or None; the time taken does not depend on which token matches, or whether one does."""
        wanted = _digest(token)
        found: Role | None = None
        for digest, role in self.entries:
            if hmac.compare_digest(digest, wanted) and found is None:
                found = role
        return found


def bearer_token(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuse calls without a valid token (``UNAUTHENTICATED``) or with too small a role (``PERMISSION_DENIED``).

    ``table()`` is asked on every call, so a reload (SIGHUP) takes effect at once. A refusal is a handler that
    answers the code, so :class:`fpgacspd.interceptors.CallAccounting` counts it like any other answer."""

    def __init__(self, table: Callable[[], TokenTable | None]) -> None:
        self.table = table

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        table = self.table()
        path = details.method
        if table is None or path.startswith(OPEN_SERVICES):
            return await continuation(details)
        token = bearer_token(details.invocation_metadata)
        role = table.role_of(token) if token else None
        method = path.rpartition("/")[2]
        if role is None:
            why = "token rejected" if token else "no token: send 'authorization: Bearer TOKEN' metadata"
            return _refusal(grpc.StatusCode.UNAUTHENTICATED, f"auth: {why} (this daemon requires one)")
        if path in ADMIN_ONLY and role != Role.ADMIN:
            service = path.split("/")[1].rpartition(".")[2]
            return _refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                f"auth: permission denied for {service}.{method}: the token's role is {role.value}, it needs admin",
            )
        return await continuation(details)


def _refusal(code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    """A handler that answers ``code``: refusing needs no request, so none is parsed."""

    async def refuse(request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(refuse, request_deserializer=lambda b: b)
