"""Server-side login sessions (SPEC §10). The browser holds a random cookie value; the row holds its SHA-256
digest and the public ``sid`` that goes into ID tokens (OIDC Front-Channel Logout §3)."""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import select, update

from idp.extensions import db
from idp.models import LoginSession, User
from idp.models.base import new_id, utcnow
from idp.protocol.digests import sha256_hex
from idp.services import audit


def start_session(
    user: User,
    amr: list[str],
    ttl: int,
    previous: LoginSession | None = None,
    ip: str | None = None,
    request_id: str | None = None,
) -> tuple[LoginSession, str]:
    """A new session with a new id and cookie value (the id is rotated at every login); ends ``previous``.
    Audited as ``login.succeeded`` in the caller's transaction."""
    now = utcnow()
    if previous is not None and previous.ended_at is None:
        previous.ended_at = now
    cookie = secrets.token_urlsafe(32)
    row = LoginSession(
        id=new_id(),
        cookie_digest=sha256_hex(cookie),
        user_id=user.id,
        auth_time=now,
        amr=amr,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl),
    )
    db.session.add(row)
    audit.record("login.succeeded", actor=user.id, ip=ip, request_id=request_id, sid=row.id, amr=amr)
    return row, cookie


def find_session(cookie: str | None) -> tuple[LoginSession, User] | None:
    """The live session behind a cookie value: not ended, not expired, and its user not disabled."""
    if not cookie or len(cookie) > 128:
        return None
    found = db.session.execute(
        select(LoginSession, User)
        .join(User, User.id == LoginSession.user_id)
        .where(LoginSession.cookie_digest == sha256_hex(cookie))
    ).first()
    if found is None:
        return None
    session, user = found
    if session.ended_at is not None or session.expires_at <= utcnow() or user.disabled:
        return None
    return session, user


def end_session(
    session_id: str,
    user_id: str,
    client_id: str | None = None,
    ip: str | None = None,
    request_id: str | None = None,
) -> bool:
    """End a session by its ``sid`` (the user signed out, at ``client_id``'s request if one is named); True if
    it was live. Audited as ``session.ended`` in the caller's transaction."""
    result = db.session.execute(
        update(LoginSession)
        .where(LoginSession.id == session_id, LoginSession.ended_at.is_(None))
        .values(ended_at=utcnow())
    )
    ended = bool(result.rowcount)  # type: ignore[attr-defined]
    if ended:
        audit.record("session.ended", actor=user_id, client_id=client_id, ip=ip, request_id=request_id, sid=session_id)
    return ended
