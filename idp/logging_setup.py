"""Log output: human-readable text on a terminal, one JSON object per line otherwise (SPEC §3)."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

from flask import g, has_request_context

_encode = json.JSONEncoder(default=str).encode


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
        return _encode(entry)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname:<7} {record.name}: {record.getMessage()}"
        audit = getattr(record, "audit", None)
        if audit:
            line += " " + " ".join(f"{k}={v}" for k, v in audit.items() if v is not None and k != "event")
        return line


class BatchingStreamHandler(logging.StreamHandler[TextIO]):
    """A stream handler that can gather one thread's lines into a single write (:func:`batched_lines`).

    ``StreamHandler`` writes and flushes once per record: a system call, and a release of the GIL that the
    request threads then take from the writing thread, once per line. The background writer logs thousands of
    audit lines a second, so it writes each batch of them at once."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self._batch = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        lines: list[str] | None = getattr(self._batch, "lines", None)
        if lines is None:
            super().emit(record)
            return
        try:
            lines.append(self.format(record) + self.terminator)
        except Exception:  # as StreamHandler.emit: a record that cannot be formatted must not stop the others
            self.handleError(record)

    @contextmanager
    def batch(self) -> Iterator[None]:
        if getattr(self._batch, "lines", None) is not None:  # already batching on this thread
            yield
            return
        self._batch.lines = []
        try:
            yield
        finally:
            lines, self._batch.lines = self._batch.lines, None
            if lines:
                self.acquire()
                try:
                    self.stream.write("".join(lines))
                    self.flush()
                except Exception:  # as StreamHandler.emit: logging trouble never fails the caller
                    self.handleError(logging.makeLogRecord({"msg": f"{len(lines)} batched log lines"}))
                finally:
                    self.release()


def _idp_handler() -> BatchingStreamHandler | None:
    return next((h for h in logging.getLogger("idp").handlers if isinstance(h, BatchingStreamHandler)), None)


@contextmanager
def batched_lines() -> Iterator[None]:
    """Within this block, the lines this thread logs through the ``idp`` handler go out in one write at its end.
    Records still pass through ``logging`` one by one (levels, filters, other handlers see each as usual)."""
    handler = _idp_handler()
    if handler is None:
        yield
        return
    with handler.batch():
        yield


def setup_logging(fmt: str) -> None:
    """Install one handler on the ``idp`` logger (idempotent, so tests may build many apps)."""
    logger = logging.getLogger("idp")
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    handler = _idp_handler()
    if handler is not None:
        handler.setFormatter(formatter)
        return
    handler = BatchingStreamHandler()
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
