"""User grants at the token endpoint: code redemption (RFC 6749 §4.1.3, RFC 7636 §4.6), refresh with rotation
and reuse detection (RFC 6749 §6, RFC 9700 §4.14, SPEC §7), and revoking a whole grant.

A grant is one authorization of one client by one user; its id is the refresh-token family id. Each access token
issued under it is recorded by ``jti`` so revoking the grant can deny them until they expire.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select, update

from idp.extensions import db
from idp.models import AuthorizationCode, Grant, GrantAccessToken, RefreshToken, RevokedToken, User
from idp.models.base import utcnow
from idp.protocol import oidc_core, rfc7636, rfc9068
from idp.protocol.errors import InvalidGrant, InvalidScope, UnauthorizedClient
from idp.services import audit, codes
from idp.services.client_auth import ClientInfo
from idp.services.tokens import resolve_audience, signing_keyring


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _epoch(value: datetime) -> int:
    return int(value.timestamp())


def may_refresh(client: ClientInfo) -> bool:
    return "refresh_token" in client.grant_types


def user_profile(user: User) -> dict[str, Any]:
    return {
        "name": user.name,
        "preferred_username": user.username,
        "email": user.email,
        "email_verified": bool(user.email_verified) if user.email else None,
        "updated_at": _epoch(user.updated_at) if user.updated_at else None,
    }


def revoke_grant(grant_id: str, now: datetime | None = None) -> None:
    """Revoke a grant, every refresh token of its family and every access token issued under it (SPEC §7)."""
    now = now or utcnow()
    db.session.execute(update(Grant).where(Grant.id == grant_id, Grant.revoked_at.is_(None)).values(revoked_at=now))
    db.session.execute(
        update(RefreshToken)
        .where(RefreshToken.grant_id == grant_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    live = db.session.execute(
        select(GrantAccessToken.jti, GrantAccessToken.expires_at).where(
            GrantAccessToken.grant_id == grant_id, GrantAccessToken.expires_at > now
        )
    ).all()
    known = set(db.session.scalars(select(RevokedToken.jti).where(RevokedToken.jti.in_([j for j, _ in live]))))
    db.session.add_all(RevokedToken(jti=jti, expires_at=exp, revoked_at=now) for jti, exp in live if jti not in known)


def _issue(
    client: ClientInfo,
    user: User,
    grant: Grant,
    scopes: list[str],
    audiences: list[str],
    nonce: str | None = None,
    with_refresh: bool = True,
) -> dict[str, Any]:
    """Access token (RFC 9068), ID token when ``openid`` was granted (OIDC Core §3.1.3.3), and a fresh refresh
    token of the same family when the client may refresh."""
    config = current_app.config
    issuer = config["IDP_ISSUER"]
    lifetime = client.access_token_ttl or config["IDP_ACCESS_TOKEN_TTL"]
    now = int(time.time())
    audience = resolve_audience(client, audiences, default=f"{issuer}/userinfo")
    claims = rfc9068.access_token_claims(
        rfc9068.AccessTokenRequest(
            issuer, user.id, client.id, audience, scopes, lifetime, _epoch(grant.auth_time), grant.session_id
        ),
        now,
    )
    keyring = signing_keyring()
    access_token = keyring.sign(claims, typ=rfc9068.TYP)
    db.session.add(
        GrantAccessToken(jti=claims["jti"], grant_id=grant.id, expires_at=datetime.fromtimestamp(claims["exp"], UTC))
    )
    body = rfc9068.token_response(access_token, lifetime, scopes)
    if "openid" in scopes:
        id_claims = oidc_core.id_token_claims(
            oidc_core.IdTokenRequest(
                issuer,
                user.id,
                client.id,
                config["IDP_ID_TOKEN_TTL"],
                _epoch(grant.auth_time),
                grant.session_id,
                list(grant.amr),
                nonce,
                access_token,
            ),
            oidc_core.user_claims(scopes, user_profile(user)),
            now,
        )
        body["id_token"] = keyring.sign(id_claims, typ="JWT")
    if with_refresh:
        refresh = secrets.token_urlsafe(32)
        idle = utcnow() + timedelta(seconds=config["IDP_REFRESH_TOKEN_IDLE_TTL"])
        db.session.add(
            RefreshToken(
                digest=_digest(refresh),
                grant_id=grant.id,
                client_id=client.id,
                scope=grant.scope,
                idle_expires_at=min(idle, grant.expires_at),
            )
        )
        body["refresh_token"] = refresh
    audit.record(
        "token.issued",
        actor=user.id,
        client_id=client.id,
        grant_id=grant.id,
        jti=claims["jti"],
        aud=audience,
        scope=claims.get("scope"),
    )
    return body


def _code_reused(row: AuthorizationCode) -> InvalidGrant:
    db.session.rollback()
    db.session.refresh(row)
    if row.grant_id:
        revoke_grant(row.grant_id)
    audit.record("code.reused", client_id=row.client_id, actor=row.user_id, grant_id=row.grant_id)
    db.session.commit()
    return InvalidGrant("the authorization code was already used")


def redeem_code(
    client: ClientInfo, code: str, redirect_uri: str | None, verifier: str | None, audiences: list[str]
) -> dict[str, Any]:
    """RFC 6749 §4.1.3 with RFC 7636 §4.6: every binding is checked before the code is consumed."""
    if "authorization_code" not in client.grant_types:
        raise UnauthorizedClient("the client is not registered for authorization_code")
    row = codes.find_code(code)
    now = utcnow()
    if row is None or row.client_id != client.id:
        raise InvalidGrant("the authorization code is invalid")
    if row.consumed_at is not None:
        raise _code_reused(row)
    if row.expires_at <= now:
        raise InvalidGrant("the authorization code has expired")
    if redirect_uri != row.redirect_uri:
        raise InvalidGrant("redirect_uri does not match the authorization request")
    if not verifier:
        raise InvalidGrant("code_verifier is required")
    if not rfc7636.verify(verifier, row.code_challenge):
        raise InvalidGrant("code_verifier does not match the code_challenge")
    user = db.session.get(User, row.user_id)
    if user is None or user.disabled:
        raise InvalidGrant("the user can no longer sign in")
    if not codes.consume(row):
        raise _code_reused(row)
    grant = Grant(
        id=secrets.token_urlsafe(16),
        client_id=client.id,
        user_id=user.id,
        session_id=row.session_id,
        scope=row.scope,
        auth_time=row.auth_time,
        amr=list(row.amr),
        created_at=now,
        expires_at=now + timedelta(seconds=current_app.config["IDP_REFRESH_TOKEN_TTL"]),
    )
    db.session.add(grant)
    db.session.flush()
    db.session.execute(
        update(AuthorizationCode)
        .where(AuthorizationCode.digest == row.digest)
        .values(grant_id=grant.id)
        .execution_options(synchronize_session=False)
    )
    scopes = row.scope.split()
    body = _issue(
        client,
        user,
        grant,
        scopes,
        audiences,
        nonce=row.nonce,
        with_refresh=may_refresh(client) or "offline_access" in scopes,
    )
    db.session.commit()
    return body


def _refresh_reused(row: RefreshToken) -> InvalidGrant:
    db.session.rollback()
    db.session.refresh(row)
    grace = current_app.config["IDP_REFRESH_TOKEN_REUSE_GRACE"]
    if row.rotated_at is not None and grace and (utcnow() - row.rotated_at).total_seconds() <= grace:
        return InvalidGrant("the refresh token was already used")
    revoke_grant(row.grant_id)
    audit.record("refresh_token.reused", client_id=row.client_id, grant_id=row.grant_id)
    db.session.commit()
    return InvalidGrant("the refresh token was already used; the grant is revoked")


def refresh(client: ClientInfo, token: str, scopes: list[str] | None, audiences: list[str]) -> dict[str, Any]:
    """RFC 6749 §6: rotate on every use; a rotated token presented again revokes the family (RFC 9700 §4.14.2),
    except within ``IDP_REFRESH_TOKEN_REUSE_GRACE`` seconds of its rotation."""
    row = db.session.get(RefreshToken, _digest(token)) if token and len(token) <= 256 else None
    if row is None or row.client_id != client.id:
        raise InvalidGrant("the refresh token is invalid")
    grant = db.session.get(Grant, row.grant_id)
    granted = row.scope.split()
    if not (may_refresh(client) or "offline_access" in granted):
        raise UnauthorizedClient("the client is not registered for refresh_token")
    if grant is None or row.revoked_at is not None or grant.revoked_at is not None:
        raise InvalidGrant("the refresh token is revoked")
    if row.rotated_at is not None:
        raise _refresh_reused(row)
    now = utcnow()
    if row.idle_expires_at <= now or grant.expires_at <= now:
        raise InvalidGrant("the refresh token has expired")
    if scopes is not None and not set(scopes) <= set(granted):
        raise InvalidScope("a refresh cannot widen the granted scope")
    user = db.session.get(User, grant.user_id)
    if user is None or user.disabled:
        raise InvalidGrant("the user can no longer sign in")
    rotated = db.session.execute(
        update(RefreshToken)
        .where(RefreshToken.digest == row.digest, RefreshToken.rotated_at.is_(None), RefreshToken.revoked_at.is_(None))
        .values(rotated_at=now)
        .execution_options(synchronize_session=False)
    )
    if rotated.rowcount != 1:  # type: ignore[attr-defined]
        raise _refresh_reused(row)
    body = _issue(client, user, grant, scopes if scopes is not None else granted, audiences)
    db.session.commit()
    return body


def revoke_refresh_token(client: ClientInfo, token: str) -> bool:
    """RFC 7009 §2.1: revoking a refresh token revokes its grant (and so its access tokens, §2.1 "SHOULD").
    Returns False when ``token`` is no refresh token of ours, so the caller can try it as an access token."""
    row = db.session.get(RefreshToken, _digest(token)) if token and len(token) <= 256 else None
    if row is None:
        return False
    if row.client_id != client.id:
        raise UnauthorizedClient("the token was not issued to this client")
    revoke_grant(row.grant_id)
    kind = "refresh_token"
    audit.record("token.revoked", actor=client.id, client_id=client.id, grant_id=row.grant_id, token_type=kind)
    db.session.commit()
    return True
