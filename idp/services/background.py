"""Writes kept off the request path: API-key ``last_used_at`` and hot-path audit rows (SPEC §6, §10).

The token endpoint only appends to in-memory queues; one daemon thread per process commits them in batches about
once a second. ``last_used_at`` is written at most once a minute per key (deduplicated in the process, and the
UPDATE's WHERE clause skips keys another node touched within the minute). ``flush()`` commits everything now
(tests, shutdown).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections import Counter
from datetime import timedelta
from typing import Any, cast

from flask import Flask
from sqlalchemy import Table, insert, or_, update
from sqlalchemy.exc import SQLAlchemyError

from idp.extensions import db
from idp.logging_setup import batched_lines
from idp.metrics import count_event
from idp.models import ApiKey, AuditEvent
from idp.models.base import utcnow
from idp.services import audit

log = logging.getLogger(__name__)

LAST_USED_RESOLUTION = timedelta(minutes=1)
FLUSH_INTERVAL = 1.0


class BackgroundWriter:
    def __init__(self, app: Flask) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._touched: dict[str, float] = {}
        self._pending_keys: set[str] = set()
        self._events: list[dict[str, Any]] = []
        self._wake = threading.Event()
        self._started = False
        _writers.add(self)

    def _forget_thread(self) -> None:
        self._lock = threading.Lock()
        self._started = False

    def _ensure_thread(self) -> None:
        if self._started:
            return
        with self._lock:
            if self._started:
                return
            self._started = True
            threading.Thread(target=self._run, name="idp-background", daemon=True).start()
            atexit.register(self.flush)

    def touch_key(self, key_id: str, now: float) -> None:
        last = self._touched.get(key_id)
        if last is not None and now - last < LAST_USED_RESOLUTION.total_seconds():
            return
        with self._lock:
            self._touched[key_id] = now
            self._pending_keys.add(key_id)
        self._ensure_thread()

    def audit(self, row: dict[str, Any]) -> None:
        with self._lock:
            self._events.append(row)
        self._ensure_thread()

    def _run(self) -> None:
        while True:
            self._wake.wait(FLUSH_INTERVAL)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        with self._lock:
            keys, self._pending_keys = self._pending_keys, set()
            events, self._events = self._events, []
        if not keys and not events:
            return
        with batched_lines():  # one write for the batch's log lines, not one per line
            for event in events:
                audit.log_event(event)
        for (name, grant_type), amount in Counter((e["event"], e["details"].get("grant_type")) for e in events).items():
            count_event(name, grant_type, amount)
        with self.app.app_context():
            try:
                if keys:
                    now = utcnow()
                    db.session.execute(
                        update(ApiKey)
                        .where(ApiKey.id.in_(keys))
                        .where(or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - LAST_USED_RESOLUTION))
                        .values(last_used_at=now)
                    )
                if events:
                    # One Core INSERT executemany: no per-row ORM bookkeeping.
                    db.session.execute(insert(cast(Table, AuditEvent.__table__)), events)
                db.session.commit()
            except SQLAlchemyError as exc:
                db.session.rollback()
                log.error(
                    "background write failed (%d audit events, %d keys): %s", len(events), len(keys), type(exc).__name__
                )
            finally:
                db.session.remove()


# The thread is started lazily and once per process. It does not survive a fork, so a forked worker starts its
# own: a fork hook resets the writers, instead of comparing os.getpid() on every call (a system call each time).
_writers: weakref.WeakSet[BackgroundWriter] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for found in list(_writers):
        found._forget_thread()


os.register_at_fork(after_in_child=_after_fork_in_child)


def writer(app: Flask) -> BackgroundWriter:
    found = app.extensions.get("idp.background")
    if found is None:
        found = app.extensions["idp.background"] = BackgroundWriter(app)
    return found
