"""The browser-facing endpoints: ``/authorize``, ``/login``, ``/consent`` and ``/logout`` (SPEC §5, §10).

``/authorize`` is a pipeline (client → redirect URI → request → session → consent → code). When it needs the
user, it sends the browser to ``/login`` or ``/consent`` carrying the original request as ``return_to``; those
pages send it back to ``/authorize``, which validates everything again. No authorization state lives anywhere
but in that URL, the server-side login session and a one-time marker in the signed Flask session (so that
``prompt=login``/``max_age`` are satisfied by the login they caused, and ``prompt=consent`` by the consent).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from flask import Blueprint, Response, current_app, g, redirect, render_template, request, session
from flask_wtf.csrf import CSRFError, validate_csrf
from werkzeug.wrappers import Response as WResponse
from wtforms.validators import ValidationError

from idp.extensions import db
from idp.models import LoginSession, User
from idp.protocol import oidc_core
from idp.protocol.rfc6749_authorization import (
    AuthorizationRequest,
    FatalRequestError,
    RedirectError,
    validate,
)
from idp.services import audit, codes, consent, sessions
from idp.services.client_auth import ClientInfo, find_client
from idp.services.login import authenticate_user
from idp.services.tokens import decode_id_token

bp = Blueprint("pages", __name__)

SCOPE_TEXT = {
    "openid": "Know who you are (your account id)",
    "profile": "See your name and username",
    "email": "See your email address",
    "offline_access": "Stay connected when you are not using it",
}
MAX_RETURN_TO = 16 * 1024
FRESH_MARKER_SECONDS = 300


# --- helpers ---------------------------------------------------------------------------------------------


def session_cookie_name() -> str:
    secure = current_app.config["IDP_ISSUER"].startswith("https://")
    return "__Host-idp_session" if secure else "idp_session"


def _current_login() -> tuple[LoginSession, User] | None:
    return sessions.find_session(request.cookies.get(session_cookie_name()))


def _page(template: str, status: int = 200, **context: Any) -> Response:
    response = Response(
        render_template(template, product="idp", **context), status=status, content_type="text/html; charset=utf-8"
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def error_page(message: str, status: int = 400) -> Response:
    return _page("error.html", status=status, message=message)


def _request_params() -> dict[str, list[str]]:
    source = request.form if request.method == "POST" else request.args
    return {name: source.getlist(name) for name in source}


def _return_to(params: dict[str, list[str]]) -> str:
    return "/authorize?" + urlencode([(k, v) for k, values in params.items() for v in values])


def _parse_return_to(value: str | None) -> dict[str, list[str]] | None:
    """Only ever a relative ``/authorize?…`` URL of our own, so the login page cannot be an open redirector."""
    if not value or len(value) > MAX_RETURN_TO or not value.startswith("/authorize?"):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or parts.path != "/authorize":
        return None
    return parse_qs(parts.query, keep_blank_values=True)


def _request_key(params: dict[str, list[str]]) -> str:
    canonical = urlencode(sorted((k, v) for k, values in params.items() for v in values))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _set_marker(name: str, params: dict[str, list[str]]) -> None:
    session[name] = {"key": _request_key(params), "at": int(time.time())}


def _take_marker(name: str, params: dict[str, list[str]]) -> bool:
    marker = session.get(name)
    return (
        isinstance(marker, dict)
        and marker.get("key") == _request_key(params)
        and time.time() - int(marker.get("at", 0)) <= FRESH_MARKER_SECONDS
    )


def _check_csrf() -> Response | None:
    try:
        validate_csrf(request.form.get("csrf_token"))
    except (ValidationError, CSRFError):
        return error_page("Your form expired or did not come from this site. Go back and try again.")
    return None


def _with_params(uri: str, params: dict[str, str]) -> str:
    parts = urlsplit(uri)
    query = parts.query + ("&" if parts.query else "") + urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def _respond(redirect_uri: str, response_mode: str, params: dict[str, str | None]) -> WResponse:
    """RFC 6749 §4.1.2 with RFC 9207 ``iss``; ``form_post`` per OAuth 2.0 Form Post Response Mode."""
    values = {k: v for k, v in params.items() if v is not None}
    values["iss"] = current_app.config["IDP_ISSUER"]
    if response_mode == "form_post":
        nonce = secrets.token_urlsafe(16)
        page = _page("form_post.html", action=redirect_uri, fields=list(values.items()), nonce=nonce)
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(redirect_uri))
        page.headers["Content-Security-Policy"] = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; form-action {origin}; frame-ancestors 'none'; "
            "base-uri 'none'"
        )
        return page
    response = redirect(_with_params(redirect_uri, values), code=303 if request.method == "POST" else 302)
    response.headers["Cache-Control"] = "no-store"
    return response


def _redirect_error(error: RedirectError) -> WResponse:
    return _respond(
        error.redirect_uri,
        error.response_mode,
        {"error": error.error, "error_description": error.description, "state": error.state},
    )


def _to_page(endpoint: str, params: dict[str, list[str]]) -> WResponse:
    response = redirect(
        f"/{endpoint}?" + urlencode({"return_to": _return_to(params)}), code=303 if request.method == "POST" else 302
    )
    response.headers["Cache-Control"] = "no-store"
    return response


# --- /authorize ------------------------------------------------------------------------------------------


@bp.route("/authorize", methods=["GET", "POST"])
def authorize() -> WResponse:
    """RFC 6749 §4.1.1 / OIDC Core §3.1.2: validate, then log in, consent and answer with a code."""
    if request.method == "POST" and request.mimetype != "application/x-www-form-urlencoded":
        return error_page("The authorization request is malformed.")
    params = _request_params()
    try:
        client, req = validate(params, find_client)
    except FatalRequestError as exc:
        return error_page(f"The sign-in request is not valid: {exc}.")
    except RedirectError as exc:
        return _redirect_error(exc)
    assert isinstance(client, ClientInfo)
    try:
        return _decide(client, req, params)
    except RedirectError as exc:
        return _redirect_error(exc)


def _decide(client: ClientInfo, req: AuthorizationRequest, params: dict[str, list[str]]) -> WResponse:
    def fail(error: str, description: str) -> RedirectError:
        return RedirectError(error, description, req.redirect_uri, req.state, req.response_mode)

    current = _current_login()
    if req.id_token_hint is not None:
        hint = decode_id_token(req.id_token_hint)
        if hint is None:
            raise fail("invalid_request", "id_token_hint is not a valid ID token of this issuer")
        if current is not None and hint.get("sub") != current[1].id:
            if "none" in req.prompts:
                raise fail("login_required", "the signed-in user is not the one in id_token_hint")
            current = None
    auth_age = time.time() - current[0].auth_time.timestamp() if current else None
    fresh = current is not None and _take_marker("fresh_login", params)
    if oidc_core.needs_login(current is not None, auth_age, req.prompts, req.max_age, fresh):
        if "none" in req.prompts:
            raise fail("login_required", "the user is not signed in")
        return _to_page("login", params)
    assert current is not None
    login, user = current
    consented = _take_marker("consented", params)
    if not (
        client.skip_consent
        or consented
        or ("consent" not in req.prompts and consent.has_consent(user.id, client.id, req.scopes))
    ):
        if "none" in req.prompts:
            raise fail("consent_required", "the user has not consented to this client")
        return _to_page("consent", params)
    code = codes.issue_code(req, login, current_app.config["IDP_AUTH_CODE_TTL"])
    session.pop("fresh_login", None)
    session.pop("consented", None)
    return _respond(req.redirect_uri, req.response_mode, {"code": code, "state": req.state})


# --- /login ----------------------------------------------------------------------------------------------


def _client_name(params: dict[str, list[str]] | None) -> str | None:
    client_id = (params or {}).get("client_id", [None])[0]
    client = find_client(client_id) if client_id else None
    return client.name if client else None


@bp.route("/login", methods=["GET"])
def login_form() -> WResponse:
    return_to = request.args.get("return_to", "")
    params = _parse_return_to(return_to)
    return _page(
        "login.html",
        return_to=return_to if params else "",
        client_name=_client_name(params),
        username=params.get("login_hint", [""])[0] if params else "",
        error=None,
    )


@bp.route("/login", methods=["POST"], endpoint="login")
def login_submit() -> WResponse:
    """SPEC §10: identical answers for unknown user and wrong password; new session id at every login."""
    refused = _check_csrf()
    if refused is not None:
        return refused
    return_to = request.form.get("return_to", "")
    params = _parse_return_to(return_to)
    username = request.form.get("username", "")[:255]
    user = authenticate_user(username, request.form.get("password", ""))
    if user is None:
        audit.record(
            "login.failed", actor=username[:64], ip=request.remote_addr, request_id=g.get("request_id"), commit=True
        )
        return _page(
            "login.html",
            return_to=return_to if params else "",
            client_name=_client_name(params),
            username=username,
            error="Incorrect username or password.",
        )
    previous = _current_login()
    login, cookie = sessions.start_session(
        user, ["pwd"], current_app.config["IDP_SESSION_TTL"], previous[0] if previous else None
    )
    audit.record("login.succeeded", actor=user.id, ip=request.remote_addr, request_id=g.get("request_id"), sid=login.id)
    db.session.commit()
    session.clear()  # a new Flask session (and CSRF token) for the new login
    if params is not None:
        _set_marker("fresh_login", params)
    response = redirect(return_to if params is not None else "/login/done", code=303)
    response.set_cookie(
        session_cookie_name(),
        cookie,
        max_age=current_app.config["IDP_SESSION_TTL"],
        httponly=True,
        samesite="Lax",
        path="/",
        secure=current_app.config["IDP_ISSUER"].startswith("https://"),
    )
    return response


@bp.route("/login/done", methods=["GET"])
def login_done() -> WResponse:
    return _page("signed_in.html")


# --- /consent --------------------------------------------------------------------------------------------


def _consent_context() -> tuple[ClientInfo, AuthorizationRequest, dict[str, list[str]], User] | WResponse:
    return_to = request.values.get("return_to", "")
    params = _parse_return_to(return_to)
    if params is None:
        return error_page("The consent request is not valid.")
    try:
        client, req = validate(params, find_client)
    except FatalRequestError as exc:
        return error_page(f"The sign-in request is not valid: {exc}.")
    except RedirectError as exc:
        return _redirect_error(exc)
    current = _current_login()
    if current is None:
        return _to_page("login", params)
    assert isinstance(client, ClientInfo)
    return client, req, params, current[1]


@bp.route("/consent", methods=["GET"])
def consent_form() -> WResponse:
    found = _consent_context()
    if isinstance(found, WResponse):
        return found
    client, req, params, user = found
    texts = [SCOPE_TEXT.get(s, f"Use “{s}”") for s in req.scopes]
    return _page(
        "consent.html", client_name=client.name, scope_texts=texts, username=user.username, return_to=_return_to(params)
    )


@bp.route("/consent", methods=["POST"], endpoint="consent")
def consent_submit() -> WResponse:
    refused = _check_csrf()
    if refused is not None:
        return refused
    found = _consent_context()
    if isinstance(found, WResponse):
        return found
    client, req, params, user = found
    decision = request.form.get("decision")
    if decision == "allow":
        consent.grant_consent(user.id, client.id, req.scopes, request.remote_addr, g.get("request_id"))
        _set_marker("consented", params)
        return redirect(_return_to(params), code=303)
    if decision == "deny":
        consent.deny_consent(user.id, client.id, req.scopes, request.remote_addr, g.get("request_id"))
        return _respond(
            req.redirect_uri,
            req.response_mode,
            {"error": "access_denied", "error_description": "the user denied access", "state": req.state},
        )
    return error_page("Choose Allow or Deny.")


# --- /logout ---------------------------------------------------------------------------------------------


LOGOUT_PARAMS = ("id_token_hint", "post_logout_redirect_uri", "state", "client_id", "ui_locales")


@bp.route("/logout", methods=["GET", "POST"], endpoint="logout")
def logout() -> WResponse:
    """OIDC RP-Initiated Logout 1.0 §2-§3: verify the hint, accept only a registered post-logout URI, end the
    session, and confirm with the user when the request does not prove which RP asks."""
    values = request.form if request.method == "POST" else request.args
    if any(len(values.getlist(name)) > 1 for name in LOGOUT_PARAMS):
        return error_page("The sign-out request is malformed.")
    hint_token = values.get("id_token_hint")
    hint = decode_id_token(hint_token, allow_expired=True) if hint_token else None
    if hint_token and hint is None:
        return error_page("The sign-out request is not valid.")
    client_id = values.get("client_id") or (hint or {}).get("aud")
    if hint and values.get("client_id") and values.get("client_id") != hint.get("aud"):
        return error_page("The sign-out request is not valid.")
    target = values.get("post_logout_redirect_uri")
    client = find_client(client_id) if isinstance(client_id, str) else None
    if target and (client is None or target not in client.post_logout_redirect_uris):
        return error_page("The sign-out request names an address this application did not register.")
    current = _current_login()
    confirmed = request.method == "POST" and values.get("confirm") == "yes"
    if confirmed:
        refused = _check_csrf()
        if refused is not None:
            return refused
    matches_session = hint is not None and current is not None and hint.get("sub") == current[1].id
    if current is not None and not (matches_session or confirmed):
        carry = [(n, values[n]) for n in LOGOUT_PARAMS if values.get(n)]
        return _page("logout.html", username=current[1].username, carry=carry)
    if current is not None:
        sessions.end_session(current[0].id)
        audit.record(
            "session.ended",
            actor=current[1].id,
            client_id=client.id if client else None,
            ip=request.remote_addr,
            request_id=g.get("request_id"),
            sid=current[0].id,
        )
        db.session.commit()
    session.clear()
    if target:
        state = values.get("state")
        response = redirect(_with_params(target, {"state": state} if state else {}), code=303)
    else:
        response = _page("signed_out.html")
    response.delete_cookie(session_cookie_name(), path="/")
    response.headers["Cache-Control"] = "no-store"
    return response
