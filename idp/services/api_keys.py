"""Per-client API keys (SPEC §6): ``idp_<keyid>_<secret>``, 256-bit secret, stored as a SHA-256 digest.

Machine-generated 256-bit secrets cannot be guessed or brute-forced from their digest, so a fast hash is the
right tool; a slow password hash would only make the token endpoint slow. The key id finds the row, the digest is
compared in constant time, and the plaintext exists only in the return value of :func:`create_api_key`.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from idp.extensions import db
from idp.models import ApiKey, Client
from idp.models.base import utcnow
from idp.protocol.digests import sha256_hex
from idp.services import audit
from idp.services.errors import Invalid, NotFound

PREFIX = "idp"
_KEY = re.compile(r"^idp_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
MAX_NAME = 255
# A century: longer than any key should live, and well inside the range of a datetime.
MAX_EXPIRES_IN = 36500 * 86400


@dataclass(frozen=True)
class NewApiKey:
    """A just-created key: ``key`` is the only copy of the secret there will ever be."""

    row: ApiKey
    key: str


digest = sha256_hex


def prefix_of(key_id: str) -> str:
    """The public, loggable part of a key."""
    return f"{PREFIX}_{key_id}"


def parse_key_id(key: str) -> str | None:
    """The key id of a well-formed key string, else ``None`` (no lookup for malformed input)."""
    match = _KEY.match(key)
    return match.group(1) if match else None


def digest_matches(row: ApiKey, key: str) -> bool:
    return hmac.compare_digest(row.digest, digest(key))


def create_api_key(
    client_id: str, name: str | None = None, expires_in: int | None = None, actor: str = "cli", commit: bool = True
) -> NewApiKey:
    client = db.session.get(Client, client_id)
    if client is None:
        raise NotFound(f"no client {client_id[:80]!r}")
    if client.is_public:
        raise Invalid(f"client {client_id} is public and cannot hold API keys")
    if not client.token_endpoint_auth_method.startswith("client_secret_"):
        raise Invalid(f"client {client_id} authenticates with {client.token_endpoint_auth_method}, not an API key")
    name = (name or "default").strip()
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise Invalid("API key name must be 1-255 printable characters")
    if expires_in is not None and expires_in <= 0:
        raise Invalid("expiry must be in the future")
    if expires_in is not None and expires_in > MAX_EXPIRES_IN:
        raise Invalid("expiry must be at most 36500 days; omit it for a key that never expires")
    key_id = secrets.token_hex(8)
    key = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    now = utcnow()
    row = ApiKey(
        id=key_id,
        client_id=client_id,
        name=name,
        digest=digest(key),
        created_at=now,
        expires_at=now + timedelta(seconds=expires_in) if expires_in else None,
    )
    db.session.add(row)
    audit.record("api_key.created", actor=actor, client_id=client_id, key_id=key_id, prefix=prefix_of(key_id))
    if commit:
        db.session.commit()
    return NewApiKey(row, key)


def list_api_keys(client_id: str) -> list[ApiKey]:
    if db.session.get(Client, client_id) is None:
        raise NotFound(f"no client {client_id[:80]!r}")
    return list(db.session.scalars(select(ApiKey).where(ApiKey.client_id == client_id).order_by(ApiKey.created_at)))


def revoke_api_key(key_id: str, actor: str = "cli") -> ApiKey:
    row = db.session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"no API key {key_id[:80]!r}")
    if row.revoked_at is not None:
        raise Invalid(f"API key {key_id} is already revoked")
    row.revoked_at = utcnow()
    audit.record("api_key.revoked", actor=actor, client_id=row.client_id, key_id=key_id, prefix=prefix_of(key_id))
    db.session.commit()
    return row


def is_usable(row: ApiKey, now: datetime) -> bool:
    return row.revoked_at is None and (row.expires_at is None or row.expires_at > now)
