"""Which browser origins may call idp cross-origin (SPEC §10): the origins of registered redirect URIs.

An origin is the RFC 6454 §6.1 serialisation ``scheme://host[:port]`` (lower-case, default port omitted), which
is exactly what a browser sends in ``Origin``, so the check is one exact string comparison: no prefix, suffix or
pattern that ``https://app.example.com.evil.test`` or another port could slip through. The loopback any-port rule
of RFC 8252 §7.3 is for native apps' redirects, which make no CORS requests; it does not widen this set.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import select

from idp.extensions import db
from idp.models import Client
from idp.services.cache import TTLCache

CACHE_SECONDS = 5.0  # like the client cache (idp/services/client_auth.py): a new client is seen within 5 s
DEFAULT_PORTS = {"http": 80, "https": 443}


def web_origin(uri: str) -> str | None:
    """The origin of an http(s) URI, or ``None`` for anything else (private-use schemes, malformed URIs)."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in DEFAULT_PORTS or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != DEFAULT_PORTS[scheme] else "")


def _load(_key: str) -> frozenset[str]:
    uris = db.session.scalars(select(Client.redirect_uris))
    return frozenset(origin for row in uris for uri in row or () if (origin := web_origin(uri)) is not None)


def allowed_origins() -> frozenset[str]:
    """The origins of every client's redirect URIs, read at most once per ``CACHE_SECONDS`` per app."""
    cache: TTLCache[str, frozenset[str]] = current_app.extensions.setdefault(
        "idp.cors_origins", TTLCache(CACHE_SECONDS, max_entries=1)
    )
    return cache.get("origins", _load)


def is_allowed(origin: str | None) -> bool:
    return bool(origin) and origin in allowed_origins()
