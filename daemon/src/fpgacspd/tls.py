"""TLS (and mutual TLS) for the daemon's TCP listeners, with certificates re-read on SIGHUP.

``server.tls_cert`` and ``server.tls_key`` (PEM files) make every TCP listener speak TLS; ``server.tls_client_ca``
also requires each client to present a certificate signed by that CA (mTLS). Unix sockets stay plaintext: only
local processes reach them, and the socket file's mode (``server.unix_socket_mode``) says which. The credentials are
grpc's *dynamic* ones: grpc asks :meth:`ServerTLS.fetch` for the configuration at each new handshake, so after
:meth:`ServerTLS.reload` (SIGHUP) new connections get the new certificate while established ones, and the calls on
them, carry on undisturbed.
"""

from __future__ import annotations

import threading
from pathlib import Path

import grpc


class TLSConfigError(ValueError):
    """A certificate, key or CA file cannot be used; the message names the setting and the file."""


def _read(path: str, setting: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise TLSConfigError(f"server.{setting}: cannot read {path} ({e.strerror or e})") from e
    if b"-----BEGIN " not in data:
        raise TLSConfigError(f"server.{setting}: {path} is not a PEM file (no '-----BEGIN' line)")
    return data


class ServerTLS:
    def __init__(self, cert: str, key: str, client_ca: str = "") -> None:
        self.cert, self.key, self.client_ca = cert, key, client_ca
        self._lock = threading.Lock()
        self._config = self._load()
        self._pending: grpc.ServerCertificateConfiguration | None = None

    @property
    def mutual(self) -> bool:
        return bool(self.client_ca)

    def _load(self) -> grpc.ServerCertificateConfiguration:
        pair = (_read(self.key, "tls_key"), _read(self.cert, "tls_cert"))
        ca = _read(self.client_ca, "tls_client_ca") if self.client_ca else None
        return grpc.ssl_server_certificate_configuration([pair], root_certificates=ca)

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(self._config, self.fetch, require_client_authentication=self.mutual)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """grpc's question at each handshake (on its own thread): a new configuration, or None to keep the last."""
        with self._lock:
            pending, self._pending = self._pending, None
            return pending

    def reload(self) -> None:
        """Read the files again; new handshakes use them. Raises :class:`TLSConfigError` (the old ones stay)."""
        config = self._load()
        with self._lock:
            self._pending = config
