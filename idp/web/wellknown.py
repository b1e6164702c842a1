"""Discovery and JWKS, served from prepared bytes with a strong ETag (SPEC §5, §8; RFC 9110 §13.1.2)."""

from __future__ import annotations

import json

from flask import Blueprint, Response, current_app, jsonify, request

from idp.protocol.discovery import provider_metadata
from idp.services.keyring import Keyring, strong_etag
from idp.services.keystore import KeyringError
from idp.web.i18n import SUPPORTED

bp = Blueprint("wellknown", __name__)


def _cacheable(body: bytes, etag: str) -> Response:
    """200 with the body, or 304 when the client's ``If-None-Match`` already names ``etag``."""
    max_age = current_app.config["IDP_JWKS_MAX_AGE"]
    headers = {"Cache-Control": f"public, max-age={max_age}", "ETag": etag}
    if request.if_none_match.contains_weak(etag.strip('"')):
        return Response(status=304, headers=headers)
    return Response(body, status=200, headers=headers, content_type="application/json")


def _discovery_bytes() -> tuple[bytes, str]:
    cached = current_app.extensions.get("idp.discovery")
    if cached is None:
        metadata = provider_metadata(current_app.config["IDP_ISSUER"], ui_locales=SUPPORTED)
        body = json.dumps(metadata, separators=(",", ":")).encode()
        cached = current_app.extensions["idp.discovery"] = (body, strong_etag(body))
    return cached


@bp.get("/.well-known/openid-configuration")
@bp.get("/.well-known/oauth-authorization-server")
def discovery() -> Response:
    """OpenID Connect Discovery 1.0 §4 and RFC 8414 §3: the same document at both addresses."""
    return _cacheable(*_discovery_bytes())


@bp.get("/jwks")
def jwks() -> Response | tuple[Response, int]:
    """The public parts of the next, active and retired keys (RFC 7517 §5)."""
    keyring: Keyring = current_app.extensions["idp.keyring"]
    try:
        view = keyring.current()
    except KeyringError:
        return jsonify({"error": "temporarily_unavailable"}), 503
    return _cacheable(view.jwks_body, view.jwks_etag)
