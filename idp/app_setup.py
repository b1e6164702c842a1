"""The named steps of :func:`idp.create_app`, each binding one concern to the app."""

from __future__ import annotations

import ipaddress
import itertools
import logging
import os
import re
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Request, Response, g, jsonify, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from sqlalchemy import event
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from idp.config import ConfigError, load_settings
from idp.extensions import db, migrate
from idp.logging_setup import setup_logging
from idp.models.base import UTCDateTime
from idp.services.keyring import Keyring
from idp.services.keystore import KeyringError


def _migrations_dir() -> str:
    """The Alembic scripts: ``migrations/`` of a source checkout (editable install), else the copy a regular
    install puts under ``<prefix>/share/idp/migrations`` (pyproject ``data-files``)."""
    checkout = Path(__file__).resolve().parent.parent / "migrations"
    installed = Path(sys.prefix) / "share" / "idp" / "migrations"
    return str(checkout if (checkout / "env.py").is_file() else installed)


MIGRATIONS_DIR = _migrations_dir()
SECRET_KEY_FILE = "secret_key"  # noqa: S105 - a file name, not a secret
RETRY_AFTER_SECONDS = 5
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")  # matched whole (fullmatch): no trailing newline

log = logging.getLogger(__name__)


def read_secret_key(instance_dir: str) -> str | None:
    path = Path(instance_dir) / SECRET_KEY_FILE
    try:
        return path.read_text("ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def configure_settings(app: Flask, config: Mapping[str, Any] | None) -> None:
    settings = load_settings(config)
    app.config.update(settings)
    secret = settings["IDP_SECRET_KEY"] or read_secret_key(settings["IDP_INSTANCE_DIR"])
    # Commands that run before `idp init` (and init itself) get a throwaway key; `idp serve` refuses to start
    # without a persistent one (see cli.serve), so sessions never silently die with a restart.
    app.config["SECRET_KEY"] = secret or secrets.token_urlsafe(32)
    app.config["IDP_SECRET_KEY_PERSISTENT"] = secret is not None
    app.session_interface = LazySessionInterface()
    app.config["SQLALCHEMY_DATABASE_URI"] = settings["IDP_DATABASE_URL"]
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"pool_pre_ping": True}
    if not settings["IDP_DATABASE_URL"].startswith("sqlite"):
        # Sized for the worker's threads; a request that waits longer than the timeout for a connection gets a
        # retryable 503 (configure_errors), not a hang.
        app.config["SQLALCHEMY_ENGINE_OPTIONS"].update(
            pool_size=settings["IDP_DATABASE_POOL_SIZE"], max_overflow=0, pool_timeout=5
        )
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    if settings["IDP_ISSUER"].startswith("https://"):
        app.config["SESSION_COOKIE_SECURE"] = True
        app.config["SESSION_COOKIE_NAME"] = "__Host-idp"
    else:
        app.config["SESSION_COOKIE_NAME"] = "idp"


class LazySessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, minus the signing-serializer set-up on requests that carry no session
    cookie (every API call): they get an empty session, exactly what the parent class would give them."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)


def configure_logging(app: Flask) -> None:
    setup_logging(app.config["IDP_LOG_FORMAT"])


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    # WAL: readers never wait for the writer. synchronous=NORMAL: a commit is durable against a crash of the
    # process (kill -9 loses nothing); only an OS crash or power cut can lose the last commits (README).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Alembic autogenerate: write our UTC column type as a plain ``sa.DateTime(timezone=True)`` so migration
    files never import application code."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def configure_database(app: Flask) -> None:
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    db.init_app(app)
    migrate.init_app(
        app, db, directory=MIGRATIONS_DIR, compare_type=True, render_as_batch=True, render_item=_render_item
    )
    if url.startswith("sqlite"):
        with app.app_context():
            event.listen(db.engine, "connect", _sqlite_pragmas)


def configure_keyring(app: Flask) -> None:
    keyring = Keyring(app.config["IDP_KEYS_DIR"])
    app.extensions["idp.keyring"] = keyring
    try:
        keyring.load()
    except KeyringError as exc:
        # CLI commands run before `idp init`; `idp serve` and /readyz refuse an unusable keyring.
        log.debug("keyring not loaded: %s", exc)


class RequestIds:
    """Unique request ids without a random draw per request: a random per-process prefix (drawn again in every
    forked worker) and a counter. They correlate log lines; they are not secrets."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._prefix = secrets.token_hex(5)
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):x}"


_request_ids = RequestIds()


def request_id_for(incoming: str) -> str:
    """The caller's ``X-Request-ID`` when it is a sane token, else a fresh one."""
    return incoming if _REQUEST_ID.fullmatch(incoming) else _request_ids.next()


def configure_requests(app: Flask) -> None:
    from idp.web.pages import PAGE_CSP

    hsts = app.config["IDP_ISSUER"].startswith("https://")

    @app.before_request
    def assign_request_id() -> None:
        g.request_id = request_id_for(request.headers.get("X-Request-ID", ""))

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if response.mimetype == "text/html":
            response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("Referrer-Policy", "no-referrer")
        if hsts:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        return response


KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def configure_metrics(app: Flask) -> None:
    """Request count and latency per matched route (idp/metrics.py); ``/metrics`` serves them."""
    from idp.metrics import observe_request, timer
    from idp.web.metrics import bp

    app.register_blueprint(bp)

    @app.before_request
    def start_timer() -> None:
        g.metrics_elapsed = timer()

    @app.after_request
    def count_request(response: Response) -> Response:
        elapsed = g.get("metrics_elapsed")
        if elapsed is not None:
            endpoint = request.url_rule.rule if request.url_rule else "other"
            method = request.method if request.method in KNOWN_METHODS else "other"
            observe_request(endpoint, method, response.status_code, elapsed())
        return response


def configure_token_lane(app: Flask) -> None:
    """Serve successful client-credentials requests without Flask's request machinery (idp/web/token_lane.py)."""
    from idp.web.token_lane import ClientCredentialsLane

    if app.config["IDP_RATE_LIMIT_CLIENT_CEILING"]:
        return  # the optional per-client ceiling counts successes, in the Flask view (idp/services/limits.py)
    app.wsgi_app = ClientCredentialsLane(app, app.wsgi_app, request_id_for)  # type: ignore[method-assign]


def configure_errors(app: Flask) -> None:
    """Every HTTP error is a small JSON body, never a traceback (SPEC §9)."""

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        code = exc.code or 500
        names = {404: "not_found"}
        body = {"error": names.get(code, "server_error" if code >= 500 else "invalid_request")}
        if code == 413:
            body["error_description"] = "request body too large"
        elif code == 405:
            body["error_description"] = "method not allowed"
        response = jsonify(body)
        if code == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response, code

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(PoolTimeoutError)
    def database_unavailable(exc: Exception) -> tuple[Response, int, dict[str, str]]:
        """The database is down or out of connections: a retryable 503 (RFC 9110 §15.6.4), never a 500. The
        pool pre-pings connections, so service resumes by itself when the database is back."""
        log.error("database unavailable: %s", type(exc).__name__)
        body = {"error": "temporarily_unavailable", "error_description": "the database is unavailable; retry later"}
        return jsonify(body), 503, {"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"}

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> tuple[Response, int]:
        log.exception("unhandled error")
        return jsonify({"error": "server_error"}), 500


def configure_blueprints(app: Flask) -> None:
    from flask_wtf.csrf import generate_csrf

    from idp.web import branding
    from idp.web.health import bp as health_bp
    from idp.web.i18n import strong
    from idp.web.oauth import bp as oauth_bp
    from idp.web.pages import bp as pages_bp
    from idp.web.userinfo import bp as userinfo_bp
    from idp.web.wellknown import bp as wellknown_bp

    app.register_blueprint(health_bp)
    app.register_blueprint(wellknown_bp)
    app.register_blueprint(oauth_bp)
    app.register_blueprint(pages_bp)
    app.register_blueprint(userinfo_bp)
    branding.configure(app)
    app.jinja_env.globals["csrf_token"] = generate_csrf
    app.jinja_env.filters["strong"] = strong


def configure_limits(app: Flask) -> None:
    """Bind Flask-Limiter: Redis when IDP_REDIS_URL is set, else memory; which requests count, and when, is
    idp/services/limits.py."""
    from idp.extensions import limiter
    from idp.services.limits import storage_settings

    app.config.update(storage_settings(app.config["IDP_REDIS_URL"], app.config["IDP_RATE_LIMIT_KEY_PREFIX"]))
    limiter.init_app(app)


def configure_cors(app: Flask) -> None:
    """CORS headers on the endpoints browsers may call cross-origin (SPEC §10; idp/web/cors.py)."""
    from idp.web.cors import add_cors_headers

    app.after_request(add_cors_headers)


def configure_proxy_fix(app: Flask) -> None:
    """Trust ``X-Forwarded-For`` and ``X-Forwarded-Proto`` from exactly IDP_TRUSTED_PROXIES hops, so
    ``remote_addr`` (audit records, rate-limit keys) is the client's address, not the proxy's. The last step:
    it must wrap every other WSGI layer (the token lane records the address too)."""
    hops = app.config["IDP_TRUSTED_PROXIES"]
    if hops:
        inner = _only_ip_addresses(app.wsgi_app)
        app.wsgi_app = ProxyFix(inner, x_for=hops, x_proto=hops)  # type: ignore[method-assign]


def _only_ip_addresses(wsgi_app: Any) -> Any:
    """Behind ProxyFix: a forwarded "address" that is not an IP address (a misconfigured hop count, a node reached
    directly) is not believed, so it can neither dodge per-IP limits with made-up values nor overflow a column."""

    def checked(environ: dict[str, Any], start_response: Any) -> Any:
        try:
            ipaddress.ip_address(environ.get("REMOTE_ADDR") or "")
        except ValueError:
            environ["REMOTE_ADDR"] = environ.get("werkzeug.proxy_fix.orig", {}).get("REMOTE_ADDR")
        return wsgi_app(environ, start_response)

    return checked


__all__ = ["MIGRATIONS_DIR", "ConfigError"]
