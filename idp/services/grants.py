"""User grants at the token endpoint: code redemption (RFC 6749 §4.1.3, RFC 7636 §4.6), refresh with rotation
and reuse detection (RFC 6749 §6, RFC 9700 §4.14, SPEC §7), and revoking a whole grant.

A grant is one authorization of one client by one user; its id is the refresh-token family id. Each access token
issued under it is recorded by ``jti`` so revoking the grant can deny them until they expire.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from idp.extensions import db
from idp.models import AuthorizationCode, Grant, GrantAccessToken, RefreshToken, RevokedToken, User
from idp.models.base import new_id, utcnow
from idp.protocol import oidc_core, rfc7636, rfc9068
from idp.protocol.digests import sha256_hex
from idp.protocol.errors import InvalidGrant, InvalidScope, UnauthorizedClient
from idp.services import audit, codes
from idp.services.client_auth import ClientInfo
from idp.services.tokens import resolve_audience, signing_keyring


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


def revoke_grant(
    grant_id: str,
    *,
    reason: str,
    actor: str | None,
    client_id: str | None,
    ip: str | None = None,
    request_id: str | None = None,
    now: datetime | None = None,
) -> None:
    """Revoke a grant, every refresh token of its family and every access token issued under it (SPEC §7),
    audited as ``grant.revoked`` with the ``reason`` (the event that caused it) when the grant was live.

    The first statement locks the grant row, so on PostgreSQL concurrent revocations of one grant run one after
    the other and each later statement sees what the earlier ones committed. A refresh racing this meets it on
    the row of the family's current refresh token, which the second statement locks: whichever commits first,
    the other sees it (``refresh``). ``jti``s already denied (one by one at ``/revoke``) are skipped."""
    now = now or utcnow()
    revoked = db.session.execute(
        update(Grant).where(Grant.id == grant_id, Grant.revoked_at.is_(None)).values(revoked_at=now)
    )
    if revoked.rowcount:  # type: ignore[attr-defined]
        audit.record(
            "grant.revoked",
            actor=actor,
            client_id=client_id,
            ip=ip,
            request_id=request_id,
            grant_id=grant_id,
            reason=reason,
        )
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
    if live:
        _deny([{"jti": jti, "expires_at": exp, "revoked_at": now} for jti, exp in live])


def _deny(rows: list[dict[str, Any]]) -> None:
    """Add ``jti``s to the access-token denylist, ignoring those already there (``ON CONFLICT DO NOTHING``)."""
    insert = postgresql.insert if db.session.get_bind().dialect.name == "postgresql" else sqlite.insert
    db.session.execute(insert(RevokedToken).values(rows).on_conflict_do_nothing(index_elements=["jti"]))


def is_grant_token_live(jti: str) -> bool:
    """Whether ``jti`` is an access token issued under a user grant that is still in force. Client-credentials
    tokens have no grant; a revoked grant's tokens are refused by its ``revoked_at`` as well as the denylist."""
    found = db.session.execute(
        select(Grant.revoked_at)
        .join(GrantAccessToken, GrantAccessToken.grant_id == Grant.id)
        .where(GrantAccessToken.jti == jti)
    ).first()
    return found is not None and found.revoked_at is None


def _audience(client: ClientInfo, requested: list[str]) -> str:
    """RFC 8707 §2: resolved before anything is consumed, so a refused ``resource`` leaves code or token usable.
    Without a registered audience a user token is for our own userinfo endpoint."""
    return resolve_audience(client, requested, default=f"{current_app.config['IDP_ISSUER']}/userinfo")


def _issue(
    client: ClientInfo,
    user: User,
    grant: Grant,
    scopes: list[str],
    audience: str,
    nonce: str | None = None,
    with_refresh: bool = True,
    ip: str | None = None,
    request_id: str | None = None,
    grant_type: str = "authorization_code",
) -> dict[str, Any]:
    """Access token (RFC 9068), ID token when ``openid`` was granted (OIDC Core §3.1.3.3), and a fresh refresh
    token of the same family when the client may refresh."""
    config = current_app.config
    issuer = config["IDP_ISSUER"]
    lifetime = client.access_token_ttl or config["IDP_ACCESS_TOKEN_TTL"]
    now = int(time.time())
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
                digest=sha256_hex(refresh),
                grant_id=grant.id,
                client_id=client.id,
                scope=grant.scope,
                idle_expires_at=min(idle, grant.expires_at),
            )
        )
        body["refresh_token"] = refresh
    audit.record(
        "token.issued",
        actor=client.id,
        client_id=client.id,
        ip=ip,
        request_id=request_id,
        grant_type=grant_type,
        user_id=user.id,
        grant_id=grant.id,
        jti=claims["jti"],
        aud=audience,
        scope=claims.get("scope"),
    )
    return body


def _code_reused(row: AuthorizationCode, ip: str | None, request_id: str | None) -> InvalidGrant:
    """RFC 6749 §4.1.2: a second redemption revokes what the first issued. When the consuming UPDATE found the
    code used, it had waited (on PostgreSQL, on the row lock) for the winner to commit, so its grant is visible."""
    code_digest = row.digest
    db.session.rollback()
    current = db.session.get(AuthorizationCode, code_digest)
    if current is None:
        return InvalidGrant("the authorization code is invalid")
    client_id = current.client_id
    audit.record(
        "authorization_code.reused",
        actor=client_id,
        client_id=client_id,
        ip=ip,
        request_id=request_id,
        user_id=current.user_id,
        grant_id=current.grant_id,
    )
    if current.grant_id:
        revoke_grant(
            current.grant_id,
            reason="authorization_code.reused",
            actor=client_id,
            client_id=client_id,
            ip=ip,
            request_id=request_id,
        )
    db.session.commit()
    return InvalidGrant("the authorization code was already used")


def redeem_code(
    client: ClientInfo,
    code: str,
    redirect_uri: str | None,
    verifier: str | None,
    audiences: list[str],
    ip: str | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """RFC 6749 §4.1.3 with RFC 7636 §4.6: every binding is checked before the code is consumed. The one
    conditional UPDATE that consumes it (``codes.consume``) decides between concurrent redemptions."""
    if "authorization_code" not in client.grant_types:
        raise UnauthorizedClient("the client is not registered for authorization_code")
    row = codes.find_code(code)
    now = utcnow()
    if row is None or row.client_id != client.id:
        raise InvalidGrant("the authorization code is invalid")
    if row.consumed_at is not None:
        raise _code_reused(row, ip, request_id)
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
    audience = _audience(client, audiences)
    grant = Grant(
        id=new_id(),
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
    if not codes.consume(row, grant.id):
        raise _code_reused(row, ip, request_id)
    scopes = row.scope.split()
    body = _issue(
        client,
        user,
        grant,
        scopes,
        audience,
        nonce=row.nonce,
        with_refresh=may_refresh(client) or "offline_access" in scopes,
        ip=ip,
        request_id=request_id,
    )
    db.session.commit()
    return body


def _refresh_reused(row: RefreshToken, ip: str | None, request_id: str | None) -> InvalidGrant:
    """RFC 9700 §4.14.2: a rotated token presented again revokes its family, except within the grace period
    after its rotation (SPEC §7). A token the family revocation got to first is merely refused."""
    token_digest = row.digest
    db.session.rollback()
    current = db.session.get(RefreshToken, token_digest)
    if current is None or current.revoked_at is not None:
        return InvalidGrant("the refresh token is revoked")
    grace = current_app.config["IDP_REFRESH_TOKEN_REUSE_GRACE"]
    if current.rotated_at is not None and grace and (utcnow() - current.rotated_at).total_seconds() <= grace:
        return InvalidGrant("the refresh token was already used")
    client_id = current.client_id
    audit.record(
        "refresh_token.reused",
        actor=client_id,
        client_id=client_id,
        ip=ip,
        request_id=request_id,
        grant_id=current.grant_id,
    )
    revoke_grant(
        current.grant_id,
        reason="refresh_token.reused",
        actor=client_id,
        client_id=client_id,
        ip=ip,
        request_id=request_id,
    )
    db.session.commit()
    return InvalidGrant("the refresh token was already used; the grant is revoked")


def refresh(
    client: ClientInfo,
    token: str,
    scopes: list[str] | None,
    audiences: list[str],
    ip: str | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """RFC 6749 §6: rotate on every use; a rotated token presented again revokes the family (RFC 9700 §4.14.2),
    except within ``IDP_REFRESH_TOKEN_REUSE_GRACE`` seconds of its rotation.

    Of concurrent refreshes with one token, the conditional UPDATE that rotates it lets exactly one through; on
    PostgreSQL the others wait for its row lock and then find the token rotated (or revoked)."""
    row = db.session.get(RefreshToken, sha256_hex(token)) if token and len(token) <= 256 else None
    if row is None or row.client_id != client.id:
        raise InvalidGrant("the refresh token is invalid")
    grant = db.session.get(Grant, row.grant_id)
    granted = row.scope.split()
    if not (may_refresh(client) or "offline_access" in granted):
        raise UnauthorizedClient("the client is not registered for refresh_token")
    if grant is None or row.revoked_at is not None or grant.revoked_at is not None:
        raise InvalidGrant("the refresh token is revoked")
    if row.rotated_at is not None:
        raise _refresh_reused(row, ip, request_id)
    now = utcnow()
    if row.idle_expires_at <= now or grant.expires_at <= now:
        raise InvalidGrant("the refresh token has expired")
    if scopes is not None and not set(scopes) <= set(granted):
        raise InvalidScope("a refresh cannot widen the granted scope")
    user = db.session.get(User, grant.user_id)
    if user is None or user.disabled:
        raise InvalidGrant("the user can no longer sign in")
    audience = _audience(client, audiences)
    rotated = db.session.execute(
        update(RefreshToken)
        .where(RefreshToken.digest == row.digest, RefreshToken.rotated_at.is_(None), RefreshToken.revoked_at.is_(None))
        .values(rotated_at=now)
        .execution_options(synchronize_session=False)
    )
    if rotated.rowcount != 1:  # type: ignore[attr-defined]
        raise _refresh_reused(row, ip, request_id)
    body = _issue(
        client,
        user,
        grant,
        scopes if scopes is not None else granted,
        audience,
        ip=ip,
        request_id=request_id,
        grant_type="refresh_token",
    )
    db.session.commit()
    return body


def revoke_refresh_token(client: ClientInfo, token: str, ip: str | None = None, request_id: str | None = None) -> bool:
    """RFC 7009 §2.1: revoking a refresh token revokes its grant (and so its access tokens, §2.1 "SHOULD").
    Returns False when ``token`` is no refresh token of ours, so the caller can try it as an access token."""
    row = db.session.get(RefreshToken, sha256_hex(token)) if token and len(token) <= 256 else None
    if row is None:
        return False
    if row.client_id != client.id:
        raise UnauthorizedClient("the token was not issued to this client")
    kind = "refresh_token"
    audit.record(
        "token.revoked",
        actor=client.id,
        client_id=client.id,
        ip=ip,
        request_id=request_id,
        grant_id=row.grant_id,
        token_type=kind,
    )
    revoke_grant(
        row.grant_id, reason="token.revoked", actor=client.id, client_id=client.id, ip=ip, request_id=request_id
    )
    db.session.commit()
    return True
