"""The browser-facing endpoints: ``/authorize``, ``/login``, ``/consent`` and ``/logout`` (SPEC §5, §10).

``/authorize`` is a pipeline (client → redirect URI → request → session → consent → code). When it needs the
user, it sends the browser to ``/login`` or ``/consent`` carrying the original request as ``return_to``; those
pages send it back to ``/authorize``, which validates everything again. No authorization state lives anywhere
but in that URL, the server-side login session and a one-time marker in the signed Flask session (so that
``prompt=login``/``max_age`` are satisfied by the login they caused, and ``prompt=consent`` by the consent).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from flask import Blueprint, Response, current_app, g, redirect, render_template, request, session
from flask_limiter import RateLimitExceeded
from flask_wtf.csrf import CSRFError, validate_csrf
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response as WResponse
from wtforms.validators import ValidationError

from idp.extensions import db
from idp.metrics import RATE_LIMITED
from idp.models import LoginSession, User
from idp.protocol import oidc_core
from idp.protocol.rfc6749_authorization import (
    AuthorizationRequest,
    FatalRequestError,
    RedirectError,
    validate,
)
from idp.protocol.uris import CSP_HOST
from idp.services import codes, consent, limits, sessions
from idp.services.client_auth import ClientInfo, find_client
from idp.services.login import authenticate_user
from idp.services.tokens import decode_id_token
from idp.web.i18n import Translator, negotiate

bp = Blueprint("pages", __name__)

SCOPES_WITH_TEXT = frozenset({"openid", "profile", "email", "offline_access"})
PAGE_CSP = (
    "default-src 'self'; frame-ancestors 'none'; form-action 'self' https: http://127.0.0.1:* http://localhost:*; "
    "base-uri 'none'"
)
MAX_RETURN_TO = 16 * 1024
FRESH_MARKER_SECONDS = 300
_CSP_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")


# --- helpers ---------------------------------------------------------------------------------------------


def _https() -> bool:
    return bool(current_app.config["IDP_ISSUER"].startswith("https://"))


def session_cookie_name() -> str:
    """SPEC §10: ``__Host-`` prefixed (Secure, host-only, Path=/) under https."""
    return "__Host-idp_session" if _https() else "idp_session"


def _set_session_cookie(response: WResponse, value: str) -> None:
    response.set_cookie(
        session_cookie_name(),
        value,
        max_age=current_app.config["IDP_SESSION_TTL"],
        httponly=True,
        samesite="Lax",
        path="/",
        secure=_https(),
    )


def _delete_session_cookie(response: WResponse) -> None:
    """With the attributes it was set with: a browser ignores a ``__Host-`` cookie without ``Secure``, so a bare
    deletion would leave the cookie in place."""
    response.delete_cookie(session_cookie_name(), path="/", secure=_https(), httponly=True, samesite="Lax")


def _current_login() -> tuple[LoginSession, User] | None:
    return sessions.find_session(request.cookies.get(session_cookie_name()))


def _requested_ui_locales() -> str | None:
    """OIDC Core §3.1.2.1 ``ui_locales`` of this request: given directly (``/authorize``, ``/logout``) or carried
    inside ``return_to`` (``/login``, ``/consent``)."""
    direct = request.values.get("ui_locales")
    if direct:
        return direct
    carried = _parse_return_to(request.values.get("return_to"))
    return (carried or {}).get("ui_locales", [None])[0]


def translator() -> Translator:
    """The catalog of this request's language (idp/web/i18n.py)."""
    return Translator(negotiate(_requested_ui_locales(), request.accept_languages))


def _page(template: str, status: int = 200, **context: Any) -> Response:
    t = translator()
    brand = current_app.extensions["idp.branding"]
    body = render_template(template, t=t, lang=t.locale, brand=brand, **context)
    response = Response(body, status=status, content_type="text/html; charset=utf-8")
    response.headers["Cache-Control"] = "no-store"
    return response


def error_page(message_key: str, status: int = 400, **values: str) -> Response:
    """The error page (SPEC §9) with one message of the catalog; ``values`` fill its placeholders."""
    return _page("error.html", status=status, message=translator()(message_key, **values))


def _request_params() -> dict[str, list[str]]:
    source = request.form if request.method == "POST" else request.args
    return {name: source.getlist(name) for name in source}


def _return_to(params: dict[str, list[str]]) -> str:
    return "/authorize?" + urlencode([(k, v) for k, values in params.items() for v in values])


def _parse_return_to(value: str | None) -> dict[str, list[str]] | None:
    """Only ever a relative ``/authorize?…`` URL of our own, so the login page cannot be an open redirector.
    Callers send the browser to the URL rebuilt from these parameters, never to ``value`` itself."""
    if not value or len(value) > MAX_RETURN_TO or not value.startswith("/authorize?"):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or parts.path != "/authorize":
        return None
    return parse_qs(parts.query, keep_blank_values=True)


def _request_key(params: dict[str, list[str]]) -> str:
    canonical = urlencode(sorted((k, v) for k, values in params.items() for v in values))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _set_marker(name: str, params: dict[str, list[str]], sid: str) -> None:
    """Remember that this browser just signed in (or consented) for exactly this request in login session ``sid``."""
    session[name] = {"key": _request_key(params), "sid": sid, "at": int(time.time())}


def _has_marker(name: str, params: dict[str, list[str]], sid: str) -> bool:
    marker = session.get(name)
    return (
        isinstance(marker, dict)
        and marker.get("key") == _request_key(params)
        and marker.get("sid") == sid
        and isinstance(marker.get("at"), int)
        and time.time() - marker["at"] <= FRESH_MARKER_SECONDS
    )


def _check_csrf() -> Response | None:
    try:
        validate_csrf(request.form.get("csrf_token"))
    except (ValidationError, CSRFError):
        return error_page("error.csrf")
    return None


def _with_params(uri: str, params: dict[str, str]) -> str:
    parts = urlsplit(uri)
    query = parts.query + ("&" if parts.query else "") + urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def _csp_source(uri: str) -> str:
    """The CSP source expression (CSP3 §2.3.1) that allows a form to post to ``uri``: its origin for http(s),
    its scheme for a private-use URI, ``'none'`` when the URI does not fit the grammar (nothing is injected)."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        host = parts.netloc.rpartition("@")[2]
        return f"{parts.scheme}://{host}" if CSP_HOST.match(host) else "'none'"
    return f"{parts.scheme}:" if _CSP_SCHEME.match(parts.scheme) else "'none'"


def _respond(redirect_uri: str, response_mode: str, params: dict[str, str | None]) -> WResponse:
    """RFC 6749 §4.1.2 with RFC 9207 ``iss``; ``form_post`` per OAuth 2.0 Form Post Response Mode §2, whose
    page may run only its own nonce'd script and post only to the client."""
    values = {k: v for k, v in params.items() if v is not None}
    values["iss"] = current_app.config["IDP_ISSUER"]
    if response_mode == "form_post":
        nonce = secrets.token_urlsafe(16)
        page = _page("form_post.html", action=redirect_uri, fields=list(values.items()), nonce=nonce)
        page.headers["Content-Security-Policy"] = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; form-action {_csp_source(redirect_uri)}; "
            "frame-ancestors 'none'; base-uri 'none'"
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


def _to_page(endpoint: str, params: dict[str, list[str]], req: AuthorizationRequest | None = None) -> WResponse:
    """Send the browser to the login or consent page, carrying the request. One that would not fit in
    ``return_to`` is refused at the client's redirect URI, rather than losing the user on the way back."""
    return_to = _return_to(params)
    if req is not None and len(return_to) > MAX_RETURN_TO:
        raise _fail(req, "invalid_request", "the authorization request is too large")
    response = redirect(
        f"/{endpoint}?" + urlencode({"return_to": return_to}), code=303 if request.method == "POST" else 302
    )
    response.headers["Cache-Control"] = "no-store"
    return response


# --- /authorize ------------------------------------------------------------------------------------------


def _validated(params: dict[str, list[str]]) -> tuple[ClientInfo, AuthorizationRequest] | WResponse:
    """Run the authorization-request pipeline; its refusals become the error page or the error redirect."""
    try:
        client, req = validate(params, find_client)
    except FatalRequestError as exc:
        return error_page("error.invalid_authorization", detail=str(exc))
    except RedirectError as exc:
        return _redirect_error(exc)
    assert isinstance(client, ClientInfo)
    return client, req


@bp.route("/authorize", methods=["GET", "POST"])
def authorize() -> WResponse:
    """RFC 6749 §4.1.1 / OIDC Core §3.1.2: validate, then log in, consent and answer with a code."""
    if request.method == "POST" and request.mimetype != "application/x-www-form-urlencoded":
        return error_page("error.malformed_authorization")
    params = _request_params()
    checked = _validated(params)
    if isinstance(checked, WResponse):
        return checked
    client, req = checked
    try:
        return _decide(client, req, params)
    except RedirectError as exc:
        return _redirect_error(exc)


def _fail(req: AuthorizationRequest, error: str, description: str) -> RedirectError:
    return RedirectError(error, description, req.redirect_uri, req.state, req.response_mode)


def _decide(client: ClientInfo, req: AuthorizationRequest, params: dict[str, list[str]]) -> WResponse:
    """OIDC Core §3.1.2.3-§3.1.2.5: authenticate (``prompt``, ``max_age``, ``id_token_hint``), then consent, then
    answer with a code. Each page the browser is sent to brings it back here."""
    current = _current_login()
    fresh = current is not None and _has_marker("fresh_login", params, current[0].id)
    current = _session_for_hint(req, current, fresh)
    auth_age = time.time() - current[0].auth_time.timestamp() if current else None
    if oidc_core.needs_login(current is not None, auth_age, req.prompts, req.max_age, fresh):
        if "none" in req.prompts:
            raise _fail(req, "login_required", "the user is not signed in")
        return _to_page("login", params, req)
    assert current is not None
    login, user = current
    if not (
        client.skip_consent
        or _has_marker("consented", params, login.id)
        or ("consent" not in req.prompts and consent.has_consent(user.id, client.id, req.scopes))
    ):
        if "none" in req.prompts:
            raise _fail(req, "consent_required", "the user has not consented to this client")
        return _to_page("consent", params, req)
    code = codes.issue_code(req, login, current_app.config["IDP_AUTH_CODE_TTL"])
    session.pop("fresh_login", None)
    session.pop("consented", None)
    return _respond(req.redirect_uri, req.response_mode, {"code": code, "state": req.state})


def _session_for_hint(
    req: AuthorizationRequest, current: tuple[LoginSession, User] | None, fresh: bool
) -> tuple[LoginSession, User] | None:
    """OIDC Core §3.1.2.1 ``id_token_hint``: the client expects this user, so another user's session does not
    count. Expired hints are fine (the hint names a user; it grants nothing). If that other user is signed in and
    may not be asked (``prompt=none``), or was just asked and signed in as someone else, the answer is
    ``login_required``; otherwise the user is asked to sign in."""
    if req.id_token_hint is None:
        return current
    hint = decode_id_token(req.id_token_hint, allow_expired=True)
    if hint is None:
        raise _fail(req, "invalid_request", "id_token_hint is not a valid ID token of this issuer")
    if current is None or hint["sub"] == current[1].id:
        return current
    if "none" in req.prompts or fresh:
        raise _fail(req, "login_required", "the signed-in user is not the one in id_token_hint")
    return None


# --- /login ----------------------------------------------------------------------------------------------


def _client_name(params: dict[str, list[str]] | None) -> str | None:
    client_id = (params or {}).get("client_id", [None])[0]
    client = find_client(client_id) if client_id else None
    return client.name if client else None


def _login_page(params: dict[str, list[str]] | None, username: str, error: str | None) -> Response:
    """The login form; ``error`` is an already translated message."""
    return _page(
        "login.html",
        return_to=_return_to(params) if params is not None else "",
        client_name=_client_name(params),
        username=username,
        error=error,
    )


@bp.route("/login", methods=["GET"])
def login_form() -> WResponse:
    params = _parse_return_to(request.args.get("return_to"))
    return _login_page(params, (params or {}).get("login_hint", [""])[0][:255], None)


@bp.route("/login", methods=["POST"], endpoint="login")
@limits.login_throttle
def login_submit() -> WResponse:
    """SPEC §10: identical answers for unknown user and wrong password; new session id at every login; 303 to
    the rebuilt ``/authorize`` URL (never the submitted string, which could hold a header break)."""
    refused = _check_csrf()
    if refused is not None:
        return refused
    params = _parse_return_to(request.form.get("return_to"))
    username = request.form.get("username", "")[:255]
    origin = {"ip": request.remote_addr, "request_id": g.get("request_id")}
    user = authenticate_user(username, request.form.get("password", ""), **origin)
    if user is None:
        limits.login_failed()
        return _login_page(params, username, translator()("login.incorrect"))
    previous = _current_login()
    login, cookie = sessions.start_session(
        user, ["pwd"], current_app.config["IDP_SESSION_TTL"], previous[0] if previous else None, **origin
    )
    db.session.commit()
    session.clear()  # a new Flask session (and CSRF token) for the new login
    if params is not None:
        _set_marker("fresh_login", params, login.id)
    response = redirect(_return_to(params) if params is not None else "/login/done", code=303)
    _set_session_cookie(response, cookie)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(RateLimitExceeded)
def too_many_logins(_error: RateLimitExceeded) -> Response:
    """SPEC §10: over the failed-login limit for this IP or username, the login page again, 429 with
    ``Retry-After`` (RFC 6585 §4); the password was not checked. Unknown usernames are throttled alike."""
    RATE_LIMITED.labels("login").inc()
    seconds = limits.retry_after()
    response = _login_page(
        _parse_return_to(request.form.get("return_to")),
        request.form.get("username", "")[:255],
        translator()("login.throttled", seconds=str(seconds)),
    )
    response.status_code = 429
    response.headers["Retry-After"] = str(seconds)
    return response


@bp.route("/login/done", methods=["GET"])
def login_done() -> WResponse:
    return _page("signed_in.html")


# --- /consent --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ConsentRequest:
    client: ClientInfo
    request: AuthorizationRequest
    params: dict[str, list[str]]
    login: LoginSession
    user: User


def _consent_context() -> _ConsentRequest | WResponse:
    """The authorization request the consent page is about, validated again, and the signed-in user."""
    params = _parse_return_to(request.values.get("return_to"))
    if params is None:
        return error_page("error.invalid_consent")
    checked = _validated(params)
    if isinstance(checked, WResponse):
        return checked
    client, req = checked
    current = _current_login()
    if current is None:
        return _to_page("login", params)
    return _ConsentRequest(client, req, params, current[0], current[1])


@bp.route("/consent", methods=["GET"])
def consent_form() -> WResponse:
    found = _consent_context()
    if isinstance(found, WResponse):
        return found
    t = translator()
    texts = [t(f"scope.{s}") if s in SCOPES_WITH_TEXT else t("scope.other", scope=s) for s in found.request.scopes]
    logo_source = _csp_source(found.client.logo_uri) if found.client.logo_uri else "'none'"
    shows_logo = logo_source != "'none'"
    page = _page(
        "consent.html",
        client_name=found.client.name,
        client_logo=found.client.logo_uri if shows_logo else None,
        scope_texts=texts,
        username=found.user.username,
        return_to=_return_to(found.params),
    )
    if shows_logo:
        # The client's logo is the one thing a page loads from elsewhere: its origin only, images only.
        page.headers["Content-Security-Policy"] = f"{PAGE_CSP}; img-src 'self' {logo_source}"
    return page


@bp.route("/consent", methods=["POST"], endpoint="consent")
def consent_submit() -> WResponse:
    """OIDC Core §3.1.2.4: remember an ``allow`` per (user, client, scopes); ``deny`` → ``access_denied``."""
    refused = _check_csrf()
    if refused is not None:
        return refused
    found = _consent_context()
    if isinstance(found, WResponse):
        return found
    req, user_id, ip = found.request, found.user.id, request.remote_addr
    decision = request.form.get("decision")
    if decision == "allow":
        consent.grant_consent(user_id, found.client.id, req.scopes, ip, g.get("request_id"))
        _set_marker("consented", found.params, found.login.id)
        return redirect(_return_to(found.params), code=303)
    if decision == "deny":
        consent.deny_consent(user_id, found.client.id, req.scopes, ip, g.get("request_id"))
        return _respond(
            req.redirect_uri,
            req.response_mode,
            {"error": "access_denied", "error_description": "the user denied access", "state": req.state},
        )
    return error_page("error.no_decision")


# --- /logout ---------------------------------------------------------------------------------------------


LOGOUT_PARAMS = ("id_token_hint", "post_logout_redirect_uri", "state", "client_id", "ui_locales")


class InvalidLogoutRequest(Exception):
    """RP-Initiated Logout §4: a request the OP cannot trust is answered with an error page, never a redirect.
    Its argument is the message's catalog key."""


@dataclass(frozen=True)
class _LogoutRequest:
    hint: dict[str, Any] | None
    client: ClientInfo | None
    target: str | None
    state: str | None


def _logout_request(values: MultiDict[str, str]) -> _LogoutRequest:
    """RP-Initiated Logout §2-§3: a hint must be our own ID token (expired is fine) for the named client, and a
    ``post_logout_redirect_uri`` must be registered for that client."""
    if any(len(values.getlist(name)) > 1 for name in LOGOUT_PARAMS):
        raise InvalidLogoutRequest("error.malformed_logout")
    hint_token = values.get("id_token_hint")
    hint = decode_id_token(hint_token, allow_expired=True) if hint_token else None
    if hint_token and hint is None:
        raise InvalidLogoutRequest("error.invalid_logout")
    named = values.get("client_id")
    if hint is not None and named and named != hint["aud"]:
        raise InvalidLogoutRequest("error.invalid_logout")
    client_id = named or (hint["aud"] if hint is not None else None)
    client = find_client(client_id) if client_id else None
    target = values.get("post_logout_redirect_uri")
    if target and (client is None or target not in client.post_logout_redirect_uris):
        raise InvalidLogoutRequest("error.unregistered_logout_uri")
    return _LogoutRequest(hint, client, target, values.get("state"))


def _end_login(current: tuple[LoginSession, User], client: ClientInfo | None) -> None:
    login, user = current
    sessions.end_session(
        login.id, user.id, client.id if client else None, ip=request.remote_addr, request_id=g.get("request_id")
    )
    db.session.commit()


@bp.route("/logout", methods=["GET", "POST"], endpoint="logout")
def logout() -> WResponse:
    """OIDC RP-Initiated Logout 1.0 §2-§3: verify the request, end the session, and ask the user first unless the
    hint names the signed-in user (so a cross-site link cannot sign anyone out)."""
    values = request.form if request.method == "POST" else request.args
    try:
        req = _logout_request(values)
    except InvalidLogoutRequest as exc:
        return error_page(str(exc))
    confirmed = request.method == "POST" and values.get("confirm") == "yes"
    if confirmed:
        refused = _check_csrf()
        if refused is not None:
            return refused
    current = _current_login()
    if current is not None:
        if not confirmed and (req.hint is None or req.hint["sub"] != current[1].id):
            carry = [(n, values[n]) for n in LOGOUT_PARAMS if values.get(n)]
            return _page("logout.html", username=current[1].username, carry=carry)
        _end_login(current, req.client)
    session.clear()
    if req.target:
        response = redirect(_with_params(req.target, {"state": req.state} if req.state else {}), code=303)
    else:
        response = _page("signed_out.html")
    _delete_session_cookie(response)
    response.headers["Cache-Control"] = "no-store"
    return response
