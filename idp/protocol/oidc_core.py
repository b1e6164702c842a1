"""OpenID Connect Core 1.0: ID token claims (§2, §3.1.3.6), standard claims by scope (§5.4) and the
authentication-freshness rules of ``prompt`` and ``max_age`` (§3.1.2.1)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SCOPE_CLAIMS = {
    "profile": ("name", "preferred_username", "updated_at"),
    "email": ("email", "email_verified"),
}
SUPPORTED_SCOPES = ("openid", "profile", "email", "offline_access")
PROMPTS = frozenset({"none", "login", "consent", "select_account"})


def at_hash(access_token: str) -> str:
    """§3.1.3.6: left half of SHA-256 of the ASCII access token, base64url (for RS256)."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def user_claims(scopes: list[str] | tuple[str, ...], profile: Mapping[str, Any]) -> dict[str, Any]:
    """§5.4: the standard claims the granted scopes release, omitting those with no value."""
    claims: dict[str, Any] = {}
    for scope in scopes:
        for name in SCOPE_CLAIMS.get(scope, ()):
            if profile.get(name) is not None:
                claims[name] = profile[name]
    return claims


@dataclass(frozen=True)
class IdTokenRequest:
    issuer: str
    subject: str
    client_id: str
    lifetime: int
    auth_time: int
    sid: str | None
    amr: list[str]
    nonce: str | None = None
    access_token: str | None = None


def id_token_claims(request: IdTokenRequest, extra: Mapping[str, Any], now: int) -> dict[str, Any]:
    """§2 and §3.1.3.6: the ID token's claim set."""
    claims: dict[str, Any] = dict(extra)
    claims.update(
        iss=request.issuer,
        sub=request.subject,
        aud=request.client_id,
        azp=request.client_id,
        iat=now,
        exp=now + request.lifetime,
        auth_time=request.auth_time,
        amr=list(request.amr),
    )
    if request.sid:
        claims["sid"] = request.sid
    if request.nonce is not None:
        claims["nonce"] = request.nonce
    if request.access_token:
        claims["at_hash"] = at_hash(request.access_token)
    return claims


def parse_prompt(value: str | None) -> frozenset[str]:
    """§3.1.2.1: space-delimited; ``none`` must stand alone. Raises ``ValueError`` on a bad value."""
    if value is None:
        return frozenset()
    prompts = frozenset(value.split())
    if not prompts or prompts - PROMPTS:
        raise ValueError("unsupported prompt value")
    if "none" in prompts and len(prompts) > 1:
        raise ValueError("prompt=none cannot be combined with other values")
    return prompts


def parse_max_age(value: str | None) -> int | None:
    """§3.1.2.1: a non-negative integer number of seconds. Raises ``ValueError`` on a bad value."""
    if value is None:
        return None
    if not value.isdigit() or len(value) > 10:
        raise ValueError("max_age must be a non-negative integer")
    return int(value)


def needs_login(
    has_session: bool, auth_age: float | None, prompts: frozenset[str], max_age: int | None, fresh_login: bool
) -> bool:
    """Whether the user must (re-)authenticate before this request can be answered."""
    if not has_session:
        return True
    if fresh_login:
        return False
    if "login" in prompts or "select_account" in prompts:
        return True
    return max_age is not None and auth_age is not None and auth_age > max_age
