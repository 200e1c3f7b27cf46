"""Structured logs on stderr: one JSON object per line (``ts``, ``level``, ``event``, fields) or readable text.

Every record is an *event* name plus fields, so operators and tests read the same thing: the end-to-end
tests learn the bound ports from the ``listening`` and ``metrics_listening`` events and wait for ``ready``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

LOGGER_NAME = "fpgacspd"
_FIELDS = "fpgacsp_fields"


def get_logger(name: str = "") -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)


def log_event(logger: logging.Logger, level: int, event: str, *, exc_info: bool = False, **fields: Any) -> None:
    """Log ``event`` with structured ``fields`` (JSON-serialisable; others are logged with ``str``).

    ``exc_info=True`` attaches the exception being handled (its traceback goes to the record's ``exception``), as
    for ``logging``; it is never a field.
    """
    if logger.isEnabledFor(level):
        logger.log(level, event, exc_info=exc_info, extra={_FIELDS: fields})


def _timestamp(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "logger": record.name,
        }
        for key, value in getattr(record, _FIELDS, {}).items():
            out.setdefault(key, value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(", ", ": "))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in getattr(record, _FIELDS, {}).items())
        line = f"{_timestamp(record.created)} {record.levelname:<7} {record.getMessage()} {fields}".rstrip()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(fmt: str = "json", level: str = "info", stream: IO[str] | None = None) -> None:
    """Send the daemon's loggers to ``stream`` (stderr) in ``fmt``; replaces any earlier configuration."""
    logger = logging.getLogger(LOGGER_NAME)
    for h in list(logger.handlers):
        logger.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
