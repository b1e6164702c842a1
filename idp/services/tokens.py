"""Issuing, introspecting and revoking access tokens (RFC 6749 §4.4, RFC 9068, RFC 7662, RFC 7009).

``client_credentials`` is the hot path: it reads only cached rows, signs with the already-parsed active key and
leaves its audit row to the background writer.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from flask import current_app
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from idp.extensions import db
from idp.models import RevokedToken
from idp.protocol import rfc9068
from idp.protocol.errors import InvalidScope, InvalidTarget, UnauthorizedClient
from idp.protocol.uris import InvalidURI, validate_audience
from idp.services import audit
from idp.services.client_auth import ClientInfo
from idp.services.keyring import Keyring, KeyringView

_verification_sets: dict[str, KeySet] = {}


def signing_keyring() -> KeyringView:
    """The current keyring view: the active key signs, every published key verifies."""
    keyring: Keyring = current_app.extensions["idp.keyring"]
    return keyring.current()


def _granted_scopes(client: ClientInfo, requested: list[str] | None) -> list[str]:
    """RFC 6749 §3.3: the requested scopes if all are allowed, the client's registered scopes if none asked."""
    if requested is None:
        return list(client.scopes)
    refused = [s for s in requested if s not in client.scopes]
    if refused:
        raise InvalidScope(f"scope not allowed for this client: {' '.join(refused)[:200]}")
    return requested


def resolve_audience(client: ClientInfo, requested: list[str], default: str | None = None) -> str:
    """RFC 8707 §2: one audience per token, from ``resource``/``audience`` or the client's default (its first
    registered audience, else ``default``)."""
    distinct = list(dict.fromkeys(requested))
    if len(distinct) > 1:
        raise InvalidTarget("request one audience per token")
    if distinct:
        try:
            validate_audience(distinct[0])
        except InvalidURI:
            raise InvalidTarget("resource must be an absolute URI without a fragment") from None
        if distinct[0] not in client.audiences:
            raise InvalidTarget("audience not allowed for this client")
        return distinct[0]
    if client.audiences:
        return client.audiences[0]
    if default is None:
        raise InvalidTarget("no audience requested and the client has no default audience")
    return default


def client_credentials(
    client: ClientInfo,
    scopes: list[str] | None,
    audiences: list[str],
    ip: str | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """RFC 6749 §4.4: an access token for the client itself; never a refresh token (§4.4.3)."""
    if client.is_public or "client_credentials" not in client.grant_types:
        raise UnauthorizedClient("client is not registered for client_credentials")
    granted = _granted_scopes(client, scopes)
    audience = resolve_audience(client, audiences)
    config = current_app.config
    lifetime = client.access_token_ttl or config["IDP_ACCESS_TOKEN_TTL"]
    claims = rfc9068.access_token_claims(
        rfc9068.AccessTokenRequest(config["IDP_ISSUER"], client.id, client.id, audience, granted, lifetime),
        int(time.time()),
    )
    token = signing_keyring().sign(claims, typ=rfc9068.TYP)
    audit.record_later(
        "token.issued",
        actor=client.id,
        client_id=client.id,
        ip=ip,
        request_id=request_id,
        grant_type="client_credentials",
        jti=claims["jti"],
        aud=audience,
        scope=claims.get("scope"),
    )
    return rfc9068.token_response(token, lifetime, granted)


def _verification_keys(view: KeyringView) -> KeySet:
    found = _verification_sets.get(view.jwks_etag)
    if found is None:
        _verification_sets.clear()
        found = _verification_sets[view.jwks_etag] = KeySet.import_key_set(
            {"keys": [dict(key.as_dict(private=False), kid=kid) for kid, key in view.verification_keys.items()]}
        )
    return found


def _decode_own(token: str, typ: str, allow_expired: bool) -> dict[str, Any] | None:
    """Claims of a JWT we signed with the given ``typ``, or ``None``. Only RS256 and only our published keys:
    ``alg=none``/HS256 tricks fail, and header ``jku``/``x5u``/``jwk`` are never followed."""
    if not token or len(token) > 8192:
        return None
    try:
        decoded = jwt.decode(token, _verification_keys(signing_keyring()), algorithms=["RS256"])
    except (JoseError, ValueError, TypeError, KeyError):
        return None
    if decoded.header.get("typ") != typ:
        return None
    claims = dict(decoded.claims)
    if claims.get("iss") != current_app.config["IDP_ISSUER"]:
        return None
    exp = claims.get("exp")
    if not isinstance(exp, int) or (not allow_expired and exp <= time.time()):
        return None
    return claims


def decode_access_token(token: str, allow_expired: bool = False) -> dict[str, Any] | None:
    """Our own RFC 9068 access token's claims, or ``None`` for anything else: another ``typ``, issuer or key,
    a bad signature or (unless ``allow_expired``) expiry. No clock leeway: we issued the token on this clock,
    and RFC 7662 §2.2 ``active`` means not yet expired."""
    claims = _decode_own(token, rfc9068.TYP, allow_expired)
    if claims is None or not isinstance(claims.get("jti"), str):
        return None
    return claims


def decode_id_token(token: str, allow_expired: bool = False) -> dict[str, Any] | None:
    """Our own ID token (``typ=JWT``), e.g. an ``id_token_hint`` (OIDC Core §3.1.2.1; RP-Initiated Logout §2,
    where an expired hint is still accepted)."""
    claims = _decode_own(token, "JWT", allow_expired)
    if claims is None or not isinstance(claims.get("sub"), str) or not isinstance(claims.get("aud"), str):
        return None
    return claims


def is_revoked(jti: str) -> bool:
    return db.session.scalar(select(RevokedToken.jti).where(RevokedToken.jti == jti)) is not None


def introspect(token: str) -> dict[str, Any]:
    """RFC 7662 §2.2: the token's claims with ``active: true``, or exactly ``{"active": false}``."""
    claims = decode_access_token(token)
    if claims is None or is_revoked(claims["jti"]):
        return {"active": False}
    return {"active": True, "token_type": "Bearer", **claims}


def revoke(client: ClientInfo, token: str, ip: str | None = None, request_id: str | None = None) -> None:
    """RFC 7009 §2.1: deny the token's ``jti`` until its ``exp``. Tokens we cannot recognise are answered with
    success (§2.2); a token issued to another client is refused."""
    claims = decode_access_token(token, allow_expired=True)
    if claims is None:
        return
    if claims.get("client_id") != client.id:
        raise UnauthorizedClient("the token was not issued to this client")
    if claims["exp"] <= time.time() or is_revoked(claims["jti"]):
        return
    db.session.add(
        RevokedToken(jti=claims["jti"], client_id=client.id, expires_at=datetime.fromtimestamp(claims["exp"], UTC))
    )
    audit.record("token.revoked", actor=client.id, client_id=client.id, ip=ip, request_id=request_id, jti=claims["jti"])
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # already revoked: revocation is idempotent
