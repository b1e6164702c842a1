"""Audit events (SPEC §10): one database row and one JSON log line per security event, named `subject.verb`.

There is one way to record an event: ``record(event, actor=..., client_id=..., ip=..., request_id=..., **details)``
(or ``record_later`` with the same arguments on the token hot path). ``actor`` is who did it: a user id for what a
person does in the browser, the authenticated client id at the token, introspection and revocation endpoints,
``cli:<os user>`` for the ``idp`` command, ``None`` when nobody was authenticated. ``client_id`` is the client the
event concerns. Details carry identifiers only — key ids and prefixes, ``jti``s, grant and session ids — never a
password, secret, code or whole token; detail names that could only hold one are refused outright.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app, g, has_request_context
from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.extensions import db
from idp.metrics import count_event
from idp.models import AuditEvent
from idp.models.base import utcnow
from idp.services.retention import DEFAULT_BATCH_SIZE, delete_in_batches

log = logging.getLogger("idp.audit")

# Every event the product records, with what it means (README "Audit log" lists the same names).
EVENTS: dict[str, str] = {
    "client.created": "a client was registered",
    "client.updated": "a client's registration changed",
    "client.deleted": "a client was deleted with its keys, codes and grants",
    "api_key.created": "an API key was created (details: key_id, prefix)",
    "api_key.revoked": "an API key was revoked (details: key_id, prefix)",
    "user.created": "a user was created",
    "user.disabled": "a user was disabled",
    "user.enabled": "a user was enabled again",
    "user.password_changed": "a user's password was set",
    "user.deleted": "a user was deleted",
    "key.created": "the first signing keys were generated (details: kids by state)",
    "key.rotated": "signing keys rotated (details: retired, active, next kids)",
    "key.retired": "a signing key was retired (details: kids by new state)",
    "key.pruned": "retired signing keys were unpublished (details: kids)",
    "login.succeeded": "a user signed in (details: sid, amr)",
    "login.failed": "a sign-in failed (details: reason; username_hmac if the name matches no user)",
    "session.ended": "a user signed out (details: sid)",
    "consent.granted": "a user allowed a client scopes (details: scope)",
    "consent.denied": "a user denied a client (details: scope)",
    "token.issued": "an access token was issued (details: grant_type, jti, aud, scope; user_id, grant_id)",
    "token.revoked": "a token was revoked at /revoke (details: jti, or token_type and grant_id)",
    "grant.revoked": "a grant, its refresh tokens and access tokens were revoked (details: grant_id, reason)",
    "authorization_code.reused": "an authorization code was presented again (details: grant_id)",
    "refresh_token.reused": "a rotated refresh token was presented again (details: grant_id)",
    "client.auth_failed": (
        "client authentication failed (details: method, endpoint; claimed_id_hmac if the id is not registered)"
    ),
    "client.auth_throttled": (
        "a caller went over the failed-client-authentication limit; its further failures (same client id and "
        "address) are answered 429 and not audited for a minute (details: as client.auth_failed)"
    ),
    "audit.pruned": "audit events older than the retention were deleted (details: deleted, before)",
    "db.pruned": "expired codes, tokens, grants, sessions and denylist entries were deleted (details: count per table)",
}

# Detail names that could only hold what the audit trail must never contain (SPEC §10).
_FORBIDDEN_DETAILS = frozenset(
    {
        "password",
        "secret",
        "client_secret",
        "key",
        "api_key",
        "code",
        "code_verifier",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "client_assertion",
        "assertion",
        "cookie",
        "csrf_token",
    }
)


def _row(
    event: str, actor: str | None, client_id: str | None, ip: str | None, request_id: str | None, details: Any
) -> dict[str, Any]:
    if event not in EVENTS:
        raise ValueError(f"unknown audit event {event!r}: add it to idp.services.audit.EVENTS")
    refused = _FORBIDDEN_DETAILS.intersection(details)
    if refused:
        raise ValueError(f"audit details must not carry {sorted(refused)}")
    if request_id is None and has_request_context():
        request_id = g.get("request_id")
    return {
        "event": event,
        "actor": actor,
        "client_id": client_id,
        "ip": ip,
        "request_id": request_id,
        "details": details,
        "created_at": utcnow(),
    }


def record(
    event: str,
    *,
    actor: str | None,
    client_id: str | None = None,
    ip: str | None = None,
    request_id: str | None = None,
    commit: bool = False,
    **details: Any,
) -> AuditEvent:
    """Add an audit row to the current transaction (committed with it, or now if ``commit``). Its log line and
    metric follow the commit: an event whose transaction rolls back (a crash, a 503) was never recorded."""
    row = _row(event, actor, client_id, ip, request_id, details)
    stored = AuditEvent(**row)
    db.session.add(stored)
    db.session.info.setdefault(_UNCOMMITTED, []).append(row)
    if commit:
        db.session.commit()
    return stored


_UNCOMMITTED = "idp.audit.uncommitted"


@sa_event.listens_for(Session, "after_commit")
def _log_committed(session: Session) -> None:
    for row in session.info.pop(_UNCOMMITTED, []):
        count_event(row["event"], row["details"].get("grant_type"))
        log_event(row)


@sa_event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    session.info.pop(_UNCOMMITTED, None)


def log_event(row: dict[str, Any]) -> None:
    """The JSON log line of an audit event (SPEC §10)."""
    fields = {k: row.get(k) for k in ("event", "actor", "client_id", "ip", "request_id")}
    log.info(row["event"], extra={"audit": {**fields, **row.get("details", {})}})


def record_later(
    event: str,
    *,
    actor: str | None,
    client_id: str | None = None,
    ip: str | None = None,
    request_id: str | None = None,
    **details: Any,
) -> None:
    """Queue the row and its log line for the background writer, about a second later: for events on the
    token hot path, which must not wait for a database write or a log write."""
    from idp.services.background import writer

    row = _row(event, actor, client_id, ip, request_id, details)
    writer(current_app._get_current_object()).audit(row)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class AuditQuery:
    """Which events :func:`tail` returns: all filters optional, the newest ``limit`` of the matches."""

    since: datetime | None = None
    event: str | None = None
    actor: str | None = None
    client_id: str | None = None
    limit: int = 50


def tail(query: AuditQuery) -> list[AuditEvent]:
    """The newest matching events, oldest first (``idp audit tail``)."""
    statement = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(query.limit)
    if query.since is not None:
        statement = statement.where(AuditEvent.created_at >= query.since)
    if query.event:
        statement = statement.where(AuditEvent.event == query.event)
    if query.actor:
        statement = statement.where(AuditEvent.actor == query.actor)
    if query.client_id:
        statement = statement.where(AuditEvent.client_id == query.client_id)
    return list(reversed(db.session.scalars(statement).all()))


@dataclass(frozen=True)
class Pruned:
    """What :func:`prune` did: how many events it deleted, and the cut-off (``None``: retention is off)."""

    deleted: int
    before: datetime | None


def prune(
    *,
    actor: str | None,
    older_than: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    now: datetime | None = None,
) -> Pruned:
    """Delete audit events older than ``older_than`` seconds (default ``IDP_AUDIT_RETENTION``; ``0`` keeps
    everything), in batches, safe to run on several nodes at once. The deletion is itself recorded, so the
    trail shows where it was cut."""
    retention = current_app.config["IDP_AUDIT_RETENTION"] if older_than is None else older_than
    if retention == 0:
        return Pruned(0, None)
    before = (now or utcnow()) - timedelta(seconds=retention)
    deleted = delete_in_batches(AuditEvent, AuditEvent.created_at < before, batch_size)
    if deleted:
        record("audit.pruned", actor=actor, commit=True, deleted=deleted, before=before.isoformat())
    return Pruned(deleted, before)
