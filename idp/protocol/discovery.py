"""Authorization-server metadata: OpenID Connect Discovery 1.0 §3 and RFC 8414 §2.

Only what is implemented and enforced is advertised; each feature adds its fields here when it lands.
"""

from __future__ import annotations

from typing import Any

CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
CLIENT_ASSERTION_ALGS = ["RS256", "PS256", "ES256"]


def provider_metadata(issuer: str) -> dict[str, Any]:
    """The metadata document shared by ``/.well-known/openid-configuration`` and
    ``/.well-known/oauth-authorization-server`` (same facts, RFC 8414 §3)."""
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/jwks",
        "token_endpoint": f"{issuer}/token",
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": CLIENT_ASSERTION_ALGS,
        "introspection_endpoint": f"{issuer}/introspect",
        "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "introspection_endpoint_auth_signing_alg_values_supported": CLIENT_ASSERTION_ALGS,
        "revocation_endpoint": f"{issuer}/revoke",
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_signing_alg_values_supported": CLIENT_ASSERTION_ALGS,
    }
