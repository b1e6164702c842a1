"""The client-credentials lane of ``POST /token`` (RFC 6749 §4.4), served without Flask's request machinery.

Nearly all production traffic at the token endpoint is services renewing client-credentials tokens. For that one
request Flask's per-request machinery (request and app contexts, URL matching, before/after hooks, a ``Response``
object) costs about as much CPU as the RSA signature itself (README "Performance" has the profile). This WSGI
middleware answers exactly one request shape without it: ``POST /token``, no query string, a form body, HTTP Basic
(``client_secret_basic``), ``grant_type=client_credentials`` and no ``Origin`` header. It calls the very functions
the Flask view calls (:func:`idp.protocol.rfc6749.parse_form`, :func:`idp.services.client_auth.authenticate`,
:func:`idp.services.tokens.client_credentials`), which have no side effect until a token is signed.

Everything else, and every request that does not end in a token (any :class:`OAuthError`, any unexpected
exception), is handed to the Flask application with its body replayed, so the Flask view remains the one
definition of every error answer, audit record, rate limit and hook. Tests compare the two lanes' answers.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from idp.metrics import observe_request, timer
from idp.protocol.rfc6749 import parse_form, parse_scope, single_params
from idp.services import tokens
from idp.services.client_auth import authenticate, extract_credentials

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
FORM = "application/x-www-form-urlencoded"
_DIGITS = re.compile(r"[0-9]{1,9}")  # ASCII only: str.isdigit() also accepts "²", which int() refuses
_compact_json = json.JSONEncoder(separators=(",", ":")).encode  # built once: json.dumps builds one per call


class ClientCredentialsLane:
    """WSGI middleware in front of ``app.wsgi_app``; see the module docstring for what it answers."""

    def __init__(self, app: Flask, flask_wsgi: WSGIApp, request_id: Callable[[str], str]) -> None:
        self.app = app
        self.flask_wsgi = flask_wsgi
        self.request_id = request_id
        self.issuer: str = app.config["IDP_ISSUER"]
        self.token_endpoint = f"{self.issuer}/token"
        self.max_body: int = app.config["MAX_CONTENT_LENGTH"]
        self.headers = [
            ("Content-Type", "application/json"),
            ("Cache-Control", "no-store"),
            ("Pragma", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
            ("Vary", "Origin"),  # as the Flask view answers: /token is a CORS endpoint (idp/web/cors.py)
        ]
        if self.issuer.startswith("https://"):
            self.headers.append(("Strict-Transport-Security", "max-age=31536000; includeSubDomains"))

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not self._is_candidate(environ):
            return self.flask_wsgi(environ, start_response)
        elapsed = timer()
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        answer = self._answer(environ, body)
        if answer is None:
            environ["wsgi.input"] = io.BytesIO(body)
            return self.flask_wsgi(environ, start_response)
        request_id, payload = answer
        observe_request("/token", "POST", 200, elapsed())
        start_response(
            "200 OK",
            [*self.headers, ("Content-Length", str(len(payload))), ("X-Request-ID", request_id)],
        )
        return [payload]

    def _is_candidate(self, environ: dict[str, Any]) -> bool:
        """Only the exact shape this lane answers; a body of unknown or excessive length goes to Flask (413)."""
        length = environ.get("CONTENT_LENGTH") or ""
        return (
            environ.get("PATH_INFO") == "/token"
            and environ.get("REQUEST_METHOD") == "POST"
            and not environ.get("QUERY_STRING")
            and "HTTP_ORIGIN" not in environ
            and environ.get("HTTP_AUTHORIZATION", "")[:6].lower() == "basic "
            and environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower() == FORM
            and _DIGITS.fullmatch(length) is not None
            and int(length) <= self.max_body
        )

    def _answer(self, environ: dict[str, Any], body: bytes) -> tuple[str, bytes] | None:
        """The token response, or ``None`` when the Flask view must answer instead."""
        try:
            multi = single_params(parse_form(body))
            form = {name: values[0] for name, values in multi.items()}
            if form.get("grant_type") != "client_credentials":
                return None
            request_id = self.request_id(environ.get("HTTP_X_REQUEST_ID", ""))
            audiences = multi.get("resource", []) + ([form["audience"]] if "audience" in form else [])
            with self.app.app_context():
                credentials = extract_credentials(environ["HTTP_AUTHORIZATION"], form)
                client = authenticate(credentials, self.token_endpoint, self.issuer)
                response = tokens.client_credentials(
                    client,
                    parse_scope(form.get("scope")),
                    audiences,
                    ip=environ.get("REMOTE_ADDR"),
                    request_id=request_id,
                )
        except Exception as exc:  # every refusal and failure is the Flask view's to answer
            log.debug("client-credentials lane hands a request to the Flask view (%s)", type(exc).__name__)
            return None
        return request_id, _compact_json(response).encode()
