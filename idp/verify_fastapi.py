"""FastAPI/Starlette helper for :mod:`idp.verify`: a dependency that requires a bearer token (RFC 6750).

Imports only :mod:`idp.verify` and FastAPI, so a resource server needs nothing else from idp.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import HTTPException, Request

from idp.verify import TokenVerifier, VerificationError


class RequireToken:
    """``Depends(RequireToken(verifier, scopes=["items:read"]))``: the verified claims, or 401/403.

    A plain (not ``async``) callable on purpose: FastAPI runs it in its thread pool, so the rare JWKS fetch
    never blocks the event loop. Errors are ``HTTPException``s with the RFC 6750 §3 ``WWW-Authenticate``
    challenge; their ``detail`` is the error description.
    """

    def __init__(self, verifier: TokenVerifier, scopes: Iterable[str] | str = (), *, realm: str | None = None) -> None:
        self.verifier = verifier
        self.scopes = tuple(scopes.split() if isinstance(scopes, str) else scopes)
        self.realm = realm

    def __call__(self, request: Request) -> dict[str, Any]:
        try:
            return self.verifier.authenticate(request.headers.get("Authorization"), self.scopes)
        except VerificationError as exc:
            raise HTTPException(
                status_code=exc.status_code,
                detail=exc.description,
                headers={"WWW-Authenticate": exc.www_authenticate(self.realm)},
            ) from None
