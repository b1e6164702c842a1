"""Authorization codes (RFC 6749 §4.1.2, SPEC §7): 256-bit random, stored as a digest, single use.

Redemption is one conditional ``UPDATE ... WHERE consumed_at IS NULL``: of any number of concurrent
redemptions, on one node or many, exactly one changes the row. A second presentation revokes what the first
issued (RFC 6749 §4.1.2; RFC 9700 §4.5).
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import update

from idp.extensions import db
from idp.models import AuthorizationCode, LoginSession
from idp.models.base import utcnow
from idp.protocol.digests import sha256_hex
from idp.protocol.rfc6749_authorization import AuthorizationRequest

digest = sha256_hex


def issue_code(request: AuthorizationRequest, session: LoginSession, ttl: int) -> str:
    code = secrets.token_urlsafe(32)
    now = utcnow()
    db.session.add(
        AuthorizationCode(
            digest=digest(code),
            client_id=request.client_id,
            user_id=session.user_id,
            session_id=session.id,
            redirect_uri=request.redirect_uri,
            scope=" ".join(request.scopes),
            nonce=request.nonce,
            code_challenge=request.code_challenge,
            code_challenge_method="S256",
            auth_time=session.auth_time,
            amr=list(session.amr),
            created_at=now,
            expires_at=now + timedelta(seconds=ttl),
        )
    )
    db.session.commit()
    return code


def find_code(code: str) -> AuthorizationCode | None:
    if not code or len(code) > 256:
        return None
    return db.session.get(AuthorizationCode, digest(code))


def consume(row: AuthorizationCode, grant_id: str) -> bool:
    """Mark the code used by grant ``grant_id``, in one statement; True only for the one caller whose UPDATE
    changed the row. On PostgreSQL (READ COMMITTED) a concurrent caller's UPDATE waits for the row lock, then
    re-checks ``consumed_at IS NULL`` against the committed row and changes nothing."""
    result = db.session.execute(
        update(AuthorizationCode)
        .where(AuthorizationCode.digest == row.digest, AuthorizationCode.consumed_at.is_(None))
        .values(consumed_at=utcnow(), grant_id=grant_id)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]
