"""Log output: human-readable text on a terminal, one JSON object per line otherwise (SPEC §3)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from flask import g, has_request_context


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the request id when there is a request."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if has_request_context() and g.get("request_id"):
            entry["request_id"] = g.request_id
        audit = getattr(record, "audit", None)
        if audit:
            entry["audit"] = audit
        if record.exc_info and record.levelno >= logging.ERROR:
            entry["exception"] = record.exc_info[0].__name__ if record.exc_info[0] else None
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname:<7} {record.name}: {record.getMessage()}"
        audit = getattr(record, "audit", None)
        if audit:
            line += " " + " ".join(f"{k}={v}" for k, v in audit.items() if v is not None and k != "event")
        return line


def setup_logging(fmt: str) -> None:
    """Install one handler on the ``idp`` logger (idempotent, so tests may build many apps)."""
    logger = logging.getLogger("idp")
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    for handler in logger.handlers:
        if getattr(handler, "_idp", False):
            handler.setFormatter(formatter)
            return
    handler = logging.StreamHandler(sys.stderr)
    handler._idp = True  # type: ignore[attr-defined]
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
