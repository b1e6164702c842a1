"""OIDC UserInfo endpoint (OIDC Core §5.3) protected by Bearer tokens (RFC 6750 §2, §3).

Only an access token issued to a user under a grant still in force is accepted: client-credentials tokens (no
user), tokens revoked at ``/revoke`` or with their grant, expired tokens and anything not signed by our keys are
``invalid_token``.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from idp.extensions import db
from idp.models import User
from idp.protocol import oidc_core
from idp.protocol.errors import InvalidRequest
from idp.protocol.rfc6749 import parse_form
from idp.services.grants import is_grant_token_live, user_profile
from idp.services.tokens import decode_access_token, is_revoked

bp = Blueprint("userinfo", __name__)


def _challenge(
    status: int, error: str | None = None, description: str | None = None, scope: str | None = None
) -> Response:
    """RFC 6750 §3: a ``WWW-Authenticate: Bearer`` challenge, with ``error`` once a token was presented."""
    params = ['realm="idp"']
    if error:
        params.append(f'error="{error}"')
    if description:
        params.append(f'error_description="{description}"')
    if scope:
        params.append(f'scope="{scope}"')
    response = jsonify({"error": error, "error_description": description} if error else {})
    response.status_code = status
    response.headers["WWW-Authenticate"] = "Bearer " + ", ".join(params)
    response.headers["Cache-Control"] = "no-store"
    return response


def _presented_token() -> tuple[str | None, Response | None]:
    """RFC 6750 §2.1 header or §2.2 form body; exactly one method (§2). A request without a Bearer token gets
    the bare challenge, without an error code (§3.1)."""
    header = request.headers.get("Authorization")
    form_token = None
    if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
        try:
            pairs = parse_form(request.get_data())
        except InvalidRequest:
            return None, _challenge(400, "invalid_request", "the form body is malformed")
        if any("\x00" in name or "\x00" in value for name, value in pairs):
            return None, _challenge(400, "invalid_request", "the form body contains NUL")
        values = [value for name, value in pairs if name == "access_token"]
        if len(values) > 1:
            return None, _challenge(400, "invalid_request", "access_token is repeated")
        form_token = values[0] if values else None
    if header and form_token:
        return None, _challenge(400, "invalid_request", "use one way of sending the token")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, _challenge(401)
        return token.strip(), None
    if form_token:
        return form_token, None
    return None, _challenge(401)


@bp.route("/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    token, refused = _presented_token()
    if refused is not None:
        return refused
    claims = decode_access_token(token or "")
    if claims is None or not is_grant_token_live(claims["jti"]) or is_revoked(claims["jti"]):
        return _challenge(401, "invalid_token", "the access token is invalid, expired or revoked")
    user = db.session.get(User, claims.get("sub")) if isinstance(claims.get("sub"), str) else None
    if user is None or user.disabled:
        return _challenge(401, "invalid_token", "the access token does not belong to a user")
    scopes = str(claims.get("scope", "")).split()
    if "openid" not in scopes:
        return _challenge(403, "insufficient_scope", "the token lacks the openid scope", "openid")
    body = {"sub": user.id, **oidc_core.user_claims(scopes, user_profile(user))}
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response
