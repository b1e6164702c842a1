"""Flask helper for :mod:`idp.verify`: a decorator that protects a view with a bearer token (RFC 6750).

Imports only :mod:`idp.verify` and Flask, so a resource server needs nothing else from idp.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from flask import Response, g, jsonify, request

from idp.verify import TokenVerifier, VerificationError

F = TypeVar("F", bound=Callable[..., Any])


def error_response(exc: VerificationError, realm: str | None = None) -> Response:
    """401 or 403 with the RFC 6750 §3 ``WWW-Authenticate`` challenge; the JSON body repeats the error code
    (``null`` for a missing token, which RFC 6750 §3.1 answers without one) and its description."""
    response = jsonify({"error": exc.error, "error_description": exc.description})
    response.status_code = exc.status_code
    response.headers["WWW-Authenticate"] = exc.www_authenticate(realm)
    return response


def require_token(
    verifier: TokenVerifier, scopes: Iterable[str] | str = (), *, realm: str | None = None
) -> Callable[[F], F]:
    """Decorate a view so it runs only for a valid access token carrying every scope in ``scopes``.

    The verified claims are in ``flask.g.token_claims``. A missing token answers 401 with a bare ``Bearer``
    challenge, a bad one 401 ``invalid_token``, a token without a scope 403 ``insufficient_scope``.
    """
    required = tuple(scopes.split() if isinstance(scopes, str) else scopes)

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                g.token_claims = verifier.authenticate(request.headers.get("Authorization"), required)
            except VerificationError as exc:
                return error_response(exc, realm)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator
