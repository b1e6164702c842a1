"""Client authentication at the token, introspection and revocation endpoints (RFC 6749 §2.3, RFC 7523 §2.2).

Methods: ``client_secret_basic`` and ``client_secret_post`` with a per-client API key as the secret (SPEC §6),
``private_key_jwt`` with a registered JWKS or ``jwks_uri``, and ``none`` for public clients. A client must use
the method it registered, and exactly one method per request (RFC 6749 §2.3).

Hot path: client and key rows come from a 5-second cache (so a revocation reaches every node within 5 s), the
secret is checked with a constant-time digest compare, and ``last_used_at`` is queued for the background writer.
A commit that changes a client or an API key in this process drops their cached rows at once.
"""

from __future__ import annotations

import hmac
import json
import time
import urllib.request
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from flask import current_app
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, KeySetSerialization
from joserfc.jws import extract_compact
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from idp.extensions import db
from idp.models import ApiKey, Client, UsedAssertion
from idp.models.base import utcnow
from idp.protocol import rfc7523
from idp.protocol.errors import InvalidClient, InvalidRequest
from idp.protocol.rfc6749 import parse_basic
from idp.services import api_keys
from idp.services.background import writer
from idp.services.cache import TTLCache

CACHE_SECONDS = 5.0
JWKS_URI_CACHE_SECONDS = 300.0
_DUMMY_DIGEST = "0" * 64


@dataclass(frozen=True)
class ClientInfo:
    """An immutable snapshot of a client row, safe to share between threads and requests."""

    id: str
    name: str
    is_public: bool
    auth_method: str
    grant_types: tuple[str, ...]
    scopes: tuple[str, ...]
    audiences: tuple[str, ...]
    access_token_ttl: int | None
    jwks: dict[str, Any] | None
    jwks_uri: str | None
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    skip_consent: bool = False
    require_nonce: bool = False
    logo_uri: str | None = None


@dataclass(frozen=True)
class KeyInfo:
    id: str
    client_id: str
    digest: str
    expires_at: datetime | None
    revoked_at: datetime | None


_clients: TTLCache[str, ClientInfo | None] = TTLCache(CACHE_SECONDS)
_keys: TTLCache[str, KeyInfo | None] = TTLCache(CACHE_SECONDS)
_remote_jwks: TTLCache[str, dict[str, Any]] = TTLCache(JWKS_URI_CACHE_SECONDS, max_entries=1000)


def _load_client(client_id: str) -> ClientInfo | None:
    row = db.session.get(Client, client_id)
    if row is None:
        return None
    return ClientInfo(
        row.id,
        row.name,
        row.is_public,
        row.token_endpoint_auth_method,
        tuple(row.grant_types),
        tuple(row.scopes),
        tuple(row.audiences),
        row.access_token_ttl,
        row.jwks,
        row.jwks_uri,
        tuple(row.redirect_uris),
        tuple(row.post_logout_redirect_uris),
        row.skip_consent,
        row.require_nonce,
        row.logo_uri,
    )


def _load_key(key_id: str) -> KeyInfo | None:
    row = db.session.get(ApiKey, key_id)
    if row is None:
        return None
    return KeyInfo(row.id, row.client_id, row.digest, row.expires_at, row.revoked_at)


def find_client(client_id: str) -> ClientInfo | None:
    """The client, or ``None`` for an id that cannot exist: no lookup for oversized ids or ids with control
    characters (PostgreSQL refuses a NUL in a string parameter; that must be a 401, not a 500)."""
    if not client_id or len(client_id) > 64 or not client_id.isprintable():
        return None
    return _clients.get(client_id, _load_client)


def forget(client_id: str | None = None, key_id: str | None = None) -> None:
    """Drop cached rows after a change made in this process (other nodes see it within ``CACHE_SECONDS``)."""
    if client_id:
        _clients.invalidate(client_id)
    if key_id:
        _keys.invalidate(key_id)


_CHANGED = "idp.client_auth.changed"


@event.listens_for(Session, "after_flush")
def _note_changed_rows(session: Session, _context: Any) -> None:
    """Remember which clients and keys a flush touched (``new``/``dirty``/``deleted`` still hold their
    pre-flush state here); they are forgotten only once the change is committed, so no request can re-cache
    the old row in between."""
    changed = session.info.setdefault(_CHANGED, set())
    for row in (*session.new, *session.dirty, *session.deleted):
        if isinstance(row, Client):
            changed.add((row.id, None))
        elif isinstance(row, ApiKey):
            changed.add((row.client_id, row.id))


@event.listens_for(Session, "after_commit")
def _forget_committed(session: Session) -> None:
    for client_id, key_id in session.info.pop(_CHANGED, ()):
        forget(client_id, key_id)


@event.listens_for(Session, "after_rollback")
def _discard_uncommitted(session: Session) -> None:
    session.info.pop(_CHANGED, None)


@dataclass(frozen=True)
class Credentials:
    """What the request offered: which method and the values it carried."""

    method: str
    client_id: str
    secret: str | None = None
    assertion: str | None = None


def extract_credentials(authorization: str | None, form: Mapping[str, str]) -> Credentials:
    """Find the one authentication method the request uses (RFC 6749 §2.3: never more than one)."""
    used = [
        name
        for name, present in (
            ("client_secret_basic", bool(authorization)),
            ("client_secret_post", "client_secret" in form),
            ("private_key_jwt", "client_assertion" in form or "client_assertion_type" in form),
        )
        if present
    ]
    if len(used) > 1:
        raise InvalidRequest("use exactly one client authentication method")
    method = used[0] if used else "none"
    if method == "client_secret_basic":
        basic = parse_basic(authorization or "")
        if "client_id" in form and form["client_id"] != basic.client_id:
            raise InvalidRequest("client_id in the body differs from the Authorization header")
        return Credentials(method, basic.client_id, secret=basic.client_secret)
    if method == "private_key_jwt":
        if form.get("client_assertion_type") != rfc7523.ASSERTION_TYPE:
            raise InvalidClient("unsupported client_assertion_type")
        assertion = form.get("client_assertion", "")
        if not assertion:
            raise InvalidClient("client_assertion is missing")
        client_id = form.get("client_id") or _unverified_subject(assertion)
        return Credentials(method, client_id, assertion=assertion)
    client_id = form.get("client_id", "")
    if not client_id:
        raise InvalidClient("client authentication is required")
    return Credentials(method, client_id, secret=form.get("client_secret"))


def _unverified_subject(assertion: str) -> str:
    """The ``sub`` of an assertion, read before verification only to find whose keys verify it."""
    try:
        claims = json.loads(extract_compact(assertion.encode()).payload)
        sub = claims.get("sub") if isinstance(claims, dict) else None
    except (JoseError, ValueError, TypeError, RecursionError):  # RecursionError: deeply nested JSON
        sub = None
    if not isinstance(sub, str) or not sub:
        raise InvalidClient("client_assertion is malformed")
    return sub


def authenticate(credentials: Credentials, endpoint_url: str, issuer: str, now_ts: float | None = None) -> ClientInfo:
    """Return the authenticated client or raise ``invalid_client`` (401). The reason is never more specific
    than the client could already know, so the answer does not reveal which client ids exist."""
    client = find_client(credentials.client_id)
    if credentials.method in ("client_secret_basic", "client_secret_post"):
        _check_api_key(client, credentials, now_ts or time.time())
    elif credentials.method == "private_key_jwt":
        _check_assertion(client, credentials, (endpoint_url, issuer, f"{issuer}/token"))
    elif client is None or not client.is_public:
        raise InvalidClient("client authentication failed")
    assert client is not None
    if client.auth_method != credentials.method:
        raise InvalidClient("client authentication failed")
    return client


def _check_api_key(client: ClientInfo | None, credentials: Credentials, now_ts: float) -> None:
    secret = credentials.secret or ""
    key_id = api_keys.parse_key_id(secret)
    key = _keys.get(key_id, _load_key) if key_id else None
    # Compare even when there is nothing to compare against, so timing does not tell which part was wrong.
    matches = hmac.compare_digest(key.digest if key else _DUMMY_DIGEST, api_keys.digest(secret))
    if client is None or key is None or not matches or key.client_id != client.id:
        raise InvalidClient("client authentication failed")
    now = utcnow()
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
        raise InvalidClient("client authentication failed")
    writer(current_app._get_current_object()).touch_key(key.id, now_ts)  # type: ignore[attr-defined]


def _client_keys(client: ClientInfo) -> KeySet:
    document = client.jwks
    if document is None and client.jwks_uri:
        document = _remote_jwks.get(client.jwks_uri, _fetch_jwks)
    try:
        return KeySet.import_key_set(cast(KeySetSerialization, document or {"keys": []}))
    except (JoseError, ValueError, TypeError, KeyError):
        raise InvalidClient("client keys are unusable") from None


def _fetch_jwks(uri: str) -> dict[str, Any]:
    """Fetch a client's ``jwks_uri`` (https only, enforced at registration), small and with a short timeout."""
    request = urllib.request.Request(uri, headers={"Accept": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=3) as response:  # noqa: S310
            document = json.loads(response.read(256 * 1024))
    except (OSError, ValueError):
        raise InvalidClient("client jwks_uri could not be fetched") from None
    return document if isinstance(document, dict) else {"keys": []}


def _check_assertion(client: ClientInfo | None, credentials: Credentials, audiences: Collection[str]) -> None:
    if client is None or client.auth_method != "private_key_jwt":
        raise InvalidClient("client authentication failed")
    try:
        token = jwt.decode(credentials.assertion or "", _client_keys(client), algorithms=rfc7523.ALGORITHMS)
    except (JoseError, ValueError, TypeError):
        raise InvalidClient("client assertion signature is invalid") from None
    now = int(time.time())
    exp = rfc7523.check_assertion_claims(dict(token.claims), client.id, audiences, now)
    _remember_jti(client.id, str(token.claims["jti"]), exp)


def _remember_jti(client_id: str, jti: str, exp: int) -> None:
    """RFC 7523 §3 item 7: a ``jti`` is accepted once; the shared database makes that hold across nodes."""
    db.session.add(UsedAssertion(client_id=client_id, jti=jti, expires_at=datetime.fromtimestamp(exp, UTC)))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise InvalidClient("client assertion was already used") from None
