"""Authorization-server metadata: OpenID Connect Discovery 1.0 §3 and RFC 8414 §2.

Only what is implemented and enforced is advertised; each feature adds its fields here when it lands.
"""

from __future__ import annotations

from typing import Any


def provider_metadata(issuer: str) -> dict[str, Any]:
    """The metadata document shared by ``/.well-known/openid-configuration`` and
    ``/.well-known/oauth-authorization-server`` (same facts, RFC 8414 §3)."""
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/jwks",
    }
