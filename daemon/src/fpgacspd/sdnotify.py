"""systemd's notify protocol (sd_notify(3)) in a few lines: one datagram per message to ``$NOTIFY_SOCKET``.

No libsystemd binding needed. An address starting with ``@`` is in the abstract namespace. Failures are
reported, never raised: a daemon must not die because its supervisor's socket went away.
"""

from __future__ import annotations

import socket


def notify(socket_path: str, message: str) -> bool:
    """Send ``message`` (e.g. ``READY=1``); ``False`` when not under systemd or the send failed."""
    if not socket_path:
        return False
    address = "\0" + socket_path[1:] if socket_path.startswith("@") else socket_path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError:
        return False
    return True
