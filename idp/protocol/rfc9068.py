"""JWT profile for OAuth 2.0 access tokens (RFC 9068).

Header ``typ=at+jwt`` (§2.1); claims ``iss``, ``exp``, ``aud``, ``sub``, ``client_id``, ``iat``, ``jti`` (§2.2),
``scope`` (§2.2.3) and, for user tokens, ``auth_time`` (§2.2.1) and ``sid``.
"""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass
from typing import Any

TYP = "at+jwt"


@dataclass(frozen=True)
class AccessTokenRequest:
    issuer: str
    subject: str
    client_id: str
    audience: str
    scopes: list[str]
    lifetime: int
    auth_time: int | None = None
    sid: str | None = None


def new_jti() -> str:
    """128 bits from OpenSSL's CSPRNG, base64url (as ``secrets.token_urlsafe(16)``). Not ``os.urandom``: that
    releases the GIL for its system call, and on a busy worker each release hands the GIL to another thread and
    costs the caller a wait to get it back, once per token."""
    return base64.urlsafe_b64encode(ssl.RAND_bytes(16)).rstrip(b"=").decode()


def access_token_claims(request: AccessTokenRequest, now: int) -> dict[str, Any]:
    """The claim set of one access token; ``jti`` is 128 random bits, unique per token (§2.2)."""
    claims: dict[str, Any] = {
        "iss": request.issuer,
        "sub": request.subject,
        "aud": request.audience,
        "client_id": request.client_id,
        "iat": now,
        "exp": now + request.lifetime,
        "jti": new_jti(),
    }
    if request.scopes:
        claims["scope"] = " ".join(request.scopes)
    if request.auth_time is not None:
        claims["auth_time"] = request.auth_time
    if request.sid is not None:
        claims["sid"] = request.sid
    return claims


def token_response(token: str, lifetime: int, scopes: list[str]) -> dict[str, Any]:
    """RFC 6749 §5.1 success body."""
    body: dict[str, Any] = {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}
    if scopes:
        body["scope"] = " ".join(scopes)
    return body
