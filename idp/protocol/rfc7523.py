"""JWT client assertions for client authentication: ``private_key_jwt`` (RFC 7523 §2.2, §3; OIDC Core §9).

Pure validation of an already signature-checked claim set.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any, TypeGuard

from idp.protocol.errors import InvalidClient

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ["RS256", "PS256", "ES256"]
MAX_LIFETIME = 300
LEEWAY = 30


def _numeric_date(value: Any) -> TypeGuard[float]:
    """RFC 7519 §2 NumericDate: a finite JSON number of seconds, possibly fractional (never a boolean; Python's
    JSON parser also accepts ``NaN`` and ``Infinity``, which compare as neither past nor future)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_assertion_claims(claims: dict[str, Any], client_id: str, audiences: Collection[str], now: int) -> int:
    """RFC 7523 §3 items 1-7; returns until when its ``jti`` must be remembered: ``exp`` plus the leeway it was
    accepted with, so a replay is refused for as long as the assertion itself would be accepted."""
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise InvalidClient("assertion iss and sub must be the client_id")
    aud = claims.get("aud")
    aud_values = aud if isinstance(aud, list) else [aud]
    if not any(isinstance(a, str) and a in audiences for a in aud_values):
        raise InvalidClient("assertion aud must be the token endpoint or the issuer")
    exp = claims.get("exp")
    if not _numeric_date(exp):
        raise InvalidClient("assertion needs a numeric exp")
    if exp <= now - LEEWAY:
        raise InvalidClient("assertion has expired")
    if exp > now + MAX_LIFETIME + LEEWAY:
        raise InvalidClient(f"assertion lifetime must not exceed {MAX_LIFETIME} s")
    nbf = claims.get("nbf")
    if _numeric_date(nbf) and nbf > now + LEEWAY:
        raise InvalidClient("assertion is not valid yet")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= 255:
        raise InvalidClient("assertion needs a jti")
    return math.ceil(exp) + LEEWAY
