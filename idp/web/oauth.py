"""Token, introspection and revocation endpoints (RFC 6749 §3.2, RFC 7662 §2, RFC 7009 §2).

Each view: parse the form strictly, authenticate the client, call one service, answer JSON with
``Cache-Control: no-store`` (RFC 6749 §5.1).
"""

from __future__ import annotations

import hmac
import json
import re
from typing import Any

from flask import Blueprint, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from idp.protocol.errors import InvalidClient, InvalidRequest, OAuthError, TooManyRequests, UnsupportedGrantType
from idp.protocol.rfc6749 import parse_form, parse_scope, single_params
from idp.services import api_keys, audit, grants, limits, tokens
from idp.services.client_auth import ClientInfo, Credentials, authenticate, extract_credentials, find_client

bp = Blueprint("oauth", __name__)

GRANT_TYPES = ("client_credentials", "authorization_code", "refresh_token")
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """RFC 6749 §5.1: JSON with ``Cache-Control: no-store`` and ``Pragma: no-cache``."""
    return Response(
        json.dumps(body, separators=(",", ":")),
        status=status,
        mimetype="application/json",
        headers={**NO_STORE, **(headers or {})},
    )


@bp.errorhandler(OAuthError)
def oauth_error(error: OAuthError) -> Response:
    return _json(error.body(), error.status, error.headers())


@bp.errorhandler(HTTPException)
def http_error(error: HTTPException) -> Response:
    """Werkzeug's refusals inside these views (413 for an oversized body, 400 for an unreadable one) keep the
    RFC 6749 §5.2 shape and ``no-store``."""
    status = error.code or 400
    return _json({"error": "invalid_request", "error_description": str(error.description)[:200]}, status)


def _form() -> tuple[dict[str, str], dict[str, list[str]]]:
    """The request's form parameters, each once (``resource`` may repeat, RFC 8707 §2)."""
    if request.mimetype != "application/x-www-form-urlencoded":
        raise InvalidRequest("the body must be application/x-www-form-urlencoded")
    if request.args:
        raise InvalidRequest("parameters belong in the request body, not the query")
    multi = single_params(parse_form(request.get_data(cache=False)))
    return {name: values[0] for name, values in multi.items()}, multi


def _client(form: dict[str, str], endpoint: str) -> ClientInfo:
    """RFC 6749 §2.3: the authenticated client; every ``invalid_client`` is audited (SPEC §10) until the caller
    is over the failure limit. From then on its failures are answered 429 and counted in ``/metrics``
    (``idp_rate_limited_total``); one ``client.auth_throttled`` row a minute per client id and address keeps who
    and where in the trail, so a flood cannot grow the audit table at request rate."""
    credentials: Credentials | None = None
    issuer = current_app.config["IDP_ISSUER"]
    try:
        credentials = extract_credentials(request.headers.get("Authorization"), form)
        return authenticate(credentials, f"{issuer}{endpoint}", issuer)
    except InvalidClient:
        try:
            limits.client_auth_failed(credentials.client_id if credentials else None)
        except TooManyRequests:
            if limits.first_refusal_in_a_minute():
                _audit_auth_failure(credentials, endpoint, "client.auth_throttled")
            raise
        _audit_auth_failure(credentials, endpoint)
        raise


_EMBEDDED_KEY = re.compile(r"idp_([0-9a-f]{16})_")


def _claimed(client_id: str) -> dict[str, str | None]:
    """Who claimed to authenticate, as the audit row may show it: a registered client id (not a secret); for an
    API key sent in place of the id (swapped fields, even with quotes or a line end around it), only the key's
    public prefix; for anything else only a short keyed digest, since the string could be a pasted secret."""
    if find_client(client_id) is not None:
        return {"client_id": client_id}
    embedded = _EMBEDDED_KEY.search(client_id)
    if embedded:
        return {"client_id": api_keys.prefix_of(embedded.group(1)) + "_..."}
    if not client_id:
        return {"client_id": None}
    secret = str(current_app.config["SECRET_KEY"]).encode()
    digest = hmac.new(secret, b"client.auth_failed client_id\0" + client_id.encode(errors="replace"), "sha256")
    return {"client_id": None, "claimed_id_hmac": digest.hexdigest()[:16]}


def _audit_auth_failure(credentials: Credentials | None, endpoint: str, event: str = "client.auth_failed") -> None:
    """Record who tried, never what they presented: the claimed id and the method."""
    audit.record_later(
        event,
        actor=None,
        ip=request.remote_addr,
        request_id=g.get("request_id"),
        method=credentials.method if credentials else "malformed",
        endpoint=endpoint,
        **_claimed(credentials.client_id if credentials else ""),
    )


@bp.route("/token", methods=["POST"])
def token() -> Response:
    """RFC 6749 §3.2 token endpoint."""
    form, multi = _form()
    grant_type = form.get("grant_type")
    if not grant_type:
        raise InvalidRequest("grant_type is required")
    if grant_type not in GRANT_TYPES:
        raise UnsupportedGrantType(f"grant_type {grant_type[:40]!r} is not supported")
    client = _client(form, "/token")
    limits.token_request(client.id)  # the optional per-client ceiling; nothing when it is not set
    audiences = multi.get("resource", []) + ([form["audience"]] if "audience" in form else [])
    origin = {"ip": request.remote_addr, "request_id": g.get("request_id")}
    if grant_type == "authorization_code":
        if not form.get("code"):
            raise InvalidRequest("code is required")
        body = grants.redeem_code(
            client, form["code"], form.get("redirect_uri"), form.get("code_verifier"), audiences, **origin
        )
    elif grant_type == "refresh_token":
        if not form.get("refresh_token"):
            raise InvalidRequest("refresh_token is required")
        body = grants.refresh(client, form["refresh_token"], parse_scope(form.get("scope")), audiences, **origin)
    else:
        body = tokens.client_credentials(client, parse_scope(form.get("scope")), audiences, **origin)
    return _json(body)


@bp.route("/introspect", methods=["POST"])
def introspect() -> Response:
    """RFC 7662 §2: any authenticated confidential client may introspect; inactive is ``{"active": false}``."""
    form, _ = _form()
    client = _client(form, "/introspect")
    if client.is_public:
        raise InvalidClient("introspection needs client authentication")
    if "token" not in form:
        raise InvalidRequest("token is required")
    return _json(tokens.introspect(form["token"]))


@bp.route("/revoke", methods=["POST"])
def revoke() -> Response:
    """RFC 7009 §2: unknown tokens and unknown ``token_type_hint`` values are answered 200 (§2.2)."""
    form, _ = _form()
    client = _client(form, "/revoke")
    if "token" not in form:
        raise InvalidRequest("token is required")
    origin = {"ip": request.remote_addr, "request_id": g.get("request_id")}
    if not grants.revoke_refresh_token(client, form["token"], **origin):
        tokens.revoke(client, form["token"], **origin)
    return _json({})
