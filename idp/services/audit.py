"""Audit events (SPEC §10): one database row and one JSON log line per security event, named `subject.verb`.

Callers pass identifiers only — client ids, key ids and prefixes, `jti`s — never a secret, code or whole token.
"""

from __future__ import annotations

import logging
from typing import Any

from idp.extensions import db
from idp.models import AuditEvent

log = logging.getLogger("idp.audit")


def record(
    event: str,
    *,
    actor: str | None = None,
    client_id: str | None = None,
    ip: str | None = None,
    request_id: str | None = None,
    commit: bool = False,
    **details: Any,
) -> AuditEvent:
    """Add an audit row to the current transaction (committed with it, or now if ``commit``) and log it."""
    row = AuditEvent(event=event, actor=actor, client_id=client_id, ip=ip, request_id=request_id, details=details)
    db.session.add(row)
    if commit:
        db.session.commit()
    log.info(
        event,
        extra={
            "audit": {
                "event": event,
                "actor": actor,
                "client_id": client_id,
                "ip": ip,
                "request_id": request_id,
                **details,
            }
        },
    )
    return row


def log_event(row: dict[str, Any]) -> None:
    """The JSON log line of an audit event (SPEC §10)."""
    fields = {k: row.get(k) for k in ("event", "actor", "client_id", "ip", "request_id")}
    log.info(row["event"], extra={"audit": {**fields, **row.get("details", {})}})


def record_later(
    event: str,
    *,
    actor: str | None = None,
    client_id: str | None = None,
    ip: str | None = None,
    request_id: str | None = None,
    **details: Any,
) -> None:
    """Queue the row and its log line for the background writer, about a second later: for events on the
    token hot path, which must not wait for a database write or a log write."""
    from flask import current_app

    from idp.models.base import utcnow
    from idp.services.background import writer

    row = {
        "event": event,
        "actor": actor,
        "client_id": client_id,
        "ip": ip,
        "request_id": request_id,
        "details": details,
        "created_at": utcnow(),
    }
    writer(current_app._get_current_object()).audit(row)  # type: ignore[attr-defined]
