"""CORS response headers (Fetch standard §3.2, "CORS protocol"; SPEC §10).

Browsers may call the token, userinfo and revocation endpoints from the origin of a registered redirect URI
(single-page apps), and read JWKS and discovery from anywhere: those are public documents, so they answer ``*``
and stay cacheable by shared caches without ``Vary: Origin``. Never credentials mode (no
``Access-Control-Allow-Credentials``): a cross-origin page cannot ride on the user's idp cookies. ``/authorize``,
``/login``, ``/consent``, ``/logout`` and ``/introspect`` (a server-to-server call) never carry CORS headers.
"""

from __future__ import annotations

from flask import Response, request

from idp.services.cors import is_allowed

PUBLIC = {"wellknown.discovery": "GET", "wellknown.jwks": "GET"}
BY_ORIGIN = {"oauth.token": "POST", "oauth.revoke": "POST", "userinfo.userinfo": "GET, POST"}
ALLOW_HEADERS = "Authorization, Content-Type"
EXPOSE_HEADERS = "WWW-Authenticate, Retry-After"
MAX_AGE = "600"


def _preflight(response: Response, methods: str) -> None:
    """Fetch §3.2.3: a preflight answer is 204 naming what the actual request may use."""
    response.status_code = 204
    response.set_data(b"")
    response.headers["Access-Control-Allow-Methods"] = methods
    response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
    response.headers["Access-Control-Max-Age"] = MAX_AGE


def add_cors_headers(response: Response) -> Response:
    endpoint = request.endpoint
    preflight = request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
    if endpoint in PUBLIC:
        response.headers["Access-Control-Allow-Origin"] = "*"
        if preflight:
            _preflight(response, PUBLIC[endpoint])
    elif endpoint in BY_ORIGIN:
        response.vary.add("Origin")
        origin = request.headers.get("Origin")
        if is_allowed(origin):
            assert origin is not None
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
            if preflight:
                _preflight(response, BY_ORIGIN[endpoint])
    return response
