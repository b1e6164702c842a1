"""Client registration (SPEC §6; RFC 7591 §2 metadata semantics, managed from the CLI).

Everything is validated before anything is written, so a refused command changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select

from idp.extensions import db
from idp.models import Client
from idp.models.base import new_id
from idp.protocol.uris import InvalidURI, validate_audience, validate_logo_uri, validate_redirect_uri
from idp.services import audit
from idp.services.api_keys import NewApiKey, create_api_key
from idp.services.errors import Invalid, NotFound

GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
PUBLIC_GRANTS = ("authorization_code", "refresh_token")
CONFIDENTIAL_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
DEFAULT_CODE_FLOW_SCOPE = ["openid", "profile", "email"]
MAX_TTL = 86400
MAX_NAME = 255


@dataclass
class ClientSpec:
    """What an operator asks for; ``None`` means "not given" (defaults on create, unchanged on update)."""

    name: str | None = None
    public: bool | None = None
    grant_types: list[str] | None = None
    redirect_uris: list[str] | None = None
    post_logout_redirect_uris: list[str] | None = None
    scope: str | None = None
    audiences: list[str] | None = None
    skip_consent: bool | None = None
    require_nonce: bool | None = None
    token_endpoint_auth_method: str | None = None
    jwks_uri: str | None = None
    jwks_file: str | None = None
    access_token_ttl: int | None = None
    logo_uri: str | None = None  # "" removes the logo


def _scopes(scope: str) -> list[str]:
    # RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
    tokens = scope.split()
    for token in tokens:
        if any(ord(c) < 0x21 or ord(c) > 0x7E or c in '"\\' for c in token) or len(token) > 128:
            raise Invalid(f"scope {token[:40]!r} is not a valid scope token")
    return list(dict.fromkeys(tokens))


def _uris(values: list[str], check: Any, what: str) -> list[str]:
    try:
        return list(dict.fromkeys(check(v, what) if what else check(v) for v in values))
    except InvalidURI as exc:
        raise Invalid(str(exc)) from None


def _load_jwks(path: str) -> dict[str, Any]:
    try:
        document = json.loads(Path(path).read_text("utf-8"))
        keys = KeySet.import_key_set(document)
    except OSError as exc:
        raise Invalid(f"cannot read JWKS file {path}: {exc.strerror}") from None
    except (ValueError, JoseError, TypeError, KeyError) as exc:
        raise Invalid(f"{path} is not a JWK Set ({exc})") from None
    if not keys.keys or any(k.is_private for k in keys.keys):
        raise Invalid(f"{path} must hold public keys only, at least one")
    return {"keys": [k.as_dict(private=False) for k in keys.keys]}


def _apply(client: Client, spec: ClientSpec, creating: bool) -> None:
    """Validate ``spec`` against ``client``'s current values and set them; raise before any change is flushed."""
    name = spec.name if spec.name is not None else client.name
    if not name or len(name.strip()) == 0 or len(name) > MAX_NAME or not name.isprintable():
        raise Invalid("client name must be 1-255 printable characters")
    public = spec.public if spec.public is not None else client.is_public
    redirect_uris = (
        _uris(spec.redirect_uris, validate_redirect_uri, "redirect URI")
        if spec.redirect_uris is not None
        else list(client.redirect_uris or [])
    )
    logout_uris = (
        _uris(spec.post_logout_redirect_uris, validate_redirect_uri, "post-logout redirect URI")
        if spec.post_logout_redirect_uris is not None
        else list(client.post_logout_redirect_uris or [])
    )
    audiences = (
        _uris(spec.audiences, validate_audience, "") if spec.audiences is not None else list(client.audiences or [])
    )
    if spec.grant_types is not None:
        grant_types = list(dict.fromkeys(spec.grant_types))
    elif creating:
        grant_types = ["authorization_code"] if (public or redirect_uris) else ["client_credentials"]
    else:
        grant_types = list(client.grant_types)
    for grant in grant_types:
        if grant not in GRANT_TYPES:
            raise Invalid(f"unknown grant type {grant[:40]!r}; use one of {', '.join(GRANT_TYPES)}")
    if not grant_types:
        raise Invalid("a client needs at least one grant type")
    if public and set(grant_types) - set(PUBLIC_GRANTS):
        raise Invalid("a public client may use only authorization_code and refresh_token")
    if "authorization_code" in grant_types and not redirect_uris:
        raise Invalid("grant authorization_code needs at least one --redirect-uri")
    if spec.scope is not None:
        scopes = _scopes(spec.scope)
    elif creating:
        scopes = list(DEFAULT_CODE_FLOW_SCOPE) if "authorization_code" in grant_types else []
    else:
        scopes = list(client.scopes)

    method = spec.token_endpoint_auth_method or (client.token_endpoint_auth_method if not creating else None)
    if public:
        if method not in (None, "none"):
            raise Invalid("a public client has no secret; its auth method is 'none'")
        method = "none"
    else:
        if method == "none" and spec.token_endpoint_auth_method:
            raise Invalid("auth method 'none' is for public clients; use --public")
        method = method if method not in (None, "none") else "client_secret_basic"
        if method not in CONFIDENTIAL_AUTH_METHODS:
            raise Invalid(f"unknown auth method {method[:40]!r}; use one of {', '.join(CONFIDENTIAL_AUTH_METHODS)}")
    jwks_uri = client.jwks_uri if spec.jwks_uri is None else spec.jwks_uri
    jwks = client.jwks if spec.jwks_file is None else _load_jwks(spec.jwks_file)
    if spec.jwks_uri is not None and spec.jwks_file is not None:
        raise Invalid("give --jwks-uri or --jwks-file, not both")
    if spec.jwks_uri:
        jwks, jwks_uri = None, _uris([spec.jwks_uri], validate_audience, "")[0]
        if not jwks_uri.startswith("https://"):
            raise Invalid("--jwks-uri must use https")
    if spec.jwks_file:
        jwks_uri = None
    if method == "private_key_jwt" and not (jwks or jwks_uri):
        raise Invalid("private_key_jwt needs --jwks-uri or --jwks-file")
    if spec.logo_uri is None:
        logo_uri = client.logo_uri
    else:
        logo_uri = _uris([spec.logo_uri], validate_logo_uri, "")[0] if spec.logo_uri else None
    ttl = spec.access_token_ttl if spec.access_token_ttl is not None else client.access_token_ttl
    if ttl is not None and not 0 < ttl <= MAX_TTL:
        raise Invalid(f"access-token TTL must be between 1 and {MAX_TTL} seconds")

    client.name = name.strip()
    client.is_public = public
    client.token_endpoint_auth_method = method
    client.grant_types = grant_types
    client.redirect_uris = redirect_uris
    client.post_logout_redirect_uris = logout_uris
    client.scopes = scopes
    client.audiences = audiences
    client.access_token_ttl = ttl
    client.jwks, client.jwks_uri = jwks, jwks_uri
    client.logo_uri = logo_uri
    if spec.skip_consent is not None:
        client.skip_consent = spec.skip_consent
    if spec.require_nonce is not None:
        client.require_nonce = spec.require_nonce


def create_client(spec: ClientSpec, actor: str = "cli") -> tuple[Client, NewApiKey | None]:
    """Register a client; a confidential client authenticating with an API key gets its first key."""
    client = Client(
        id=new_id(),
        skip_consent=False,
        require_nonce=False,
        redirect_uris=[],
        post_logout_redirect_uris=[],
        audiences=[],
        grant_types=[],
        scopes=[],
        name="",
    )
    _apply(client, spec, creating=True)
    db.session.add(client)
    db.session.flush()
    audit.record("client.created", actor=actor, client_id=client.id)
    first_key = None
    if client.token_endpoint_auth_method.startswith("client_secret_"):
        first_key = create_api_key(client.id, "default", actor=actor, commit=False)
    db.session.commit()
    return client, first_key


def get_client(client_id: str) -> Client:
    client = db.session.get(Client, client_id) if len(client_id) <= 64 else None
    if client is None:
        raise NotFound(f"no client {client_id[:80]!r}")
    return client


def list_clients() -> list[Client]:
    return list(db.session.scalars(select(Client).order_by(Client.created_at)))


def update_client(client_id: str, spec: ClientSpec, actor: str = "cli") -> Client:
    client = get_client(client_id)
    try:
        _apply(client, spec, creating=False)
    except Invalid:
        db.session.rollback()
        raise
    audit.record("client.updated", actor=actor, client_id=client.id)
    db.session.commit()
    return client


def delete_client(client_id: str, actor: str = "cli") -> None:
    client = get_client(client_id)
    audit.record("client.deleted", actor=actor, client_id=client.id)
    db.session.delete(client)
    db.session.commit()


def client_as_dict(client: Client) -> dict[str, Any]:
    return {
        "client_id": client.id,
        "name": client.name,
        "public": client.is_public,
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "grant_types": client.grant_types,
        "redirect_uris": client.redirect_uris,
        "post_logout_redirect_uris": client.post_logout_redirect_uris,
        "scope": " ".join(client.scopes),
        "audiences": client.audiences,
        "access_token_ttl": client.access_token_ttl,
        "skip_consent": client.skip_consent,
        "require_nonce": client.require_nonce,
        "jwks_uri": client.jwks_uri,
        "has_jwks": client.jwks is not None,
        "logo_uri": client.logo_uri,
        "created_at": client.created_at.isoformat() if client.created_at else None,
    }
