"""Branding by configuration: product name, accent colour and logo (``IDP_BRAND_*``, SPEC §3).

The pages allow nothing but ``'self'`` (CSP ``default-src 'self'``, no inline style), so the colour reaches them
inside the one stylesheet (``static/idp.css`` with the brand's colour variables appended) and the logo as a file,
both served here from bytes prepared at start-up, each under a versioned URL with a long cache lifetime (a new
value is a new URL).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, Flask, Response, abort, current_app

from idp.config import LOGO_TYPES, MAX_LOGO_BYTES, ConfigError, hex_channels, logo_type

bp = Blueprint("branding", __name__)

CACHE_SECONDS = 86400
# An SVG opened on its own is a document of our origin: no script, no fetch, nothing but its own inline style.
LOGO_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"


@dataclass(frozen=True)
class Brand:
    """What the templates show: ``name``, and the versioned URLs of the stylesheet and the logo (or ``None``)."""

    name: str
    stylesheet: bytes
    stylesheet_url: str
    logo: bytes | None
    logo_type: str | None
    logo_url: str | None


def _darker(colour: str, factor: float = 0.8) -> str:
    """The hover and focus shade: each channel scaled towards black, which only raises the contrast."""
    return "#" + "".join(f"{round(c * factor):02x}" for c in hex_channels(colour))


def _version(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def build_brand(name: str, colour: str, logo_path: str | None) -> Brand:
    """Prepare the stylesheet and logo once; ``colour`` and ``logo_path`` were validated by idp/config.py."""
    base = (Path(__file__).resolve().parent.parent / "static" / "idp.css").read_bytes()
    stylesheet = base + f"\n:root {{ --accent: {colour}; --accent-dark: {_darker(colour)}; }}\n".encode()
    logo, kind = _read_logo(logo_path) if logo_path else (None, None)
    return Brand(
        name=name,
        stylesheet=stylesheet,
        stylesheet_url=f"/style.css?v={_version(stylesheet)}",
        logo=logo,
        logo_type=kind,
        logo_url=f"/branding/logo?v={_version(logo)}" if logo else None,
    )


def _read_logo(path: str) -> tuple[bytes, str]:
    """The logo's bytes, read once and no more than the limit; checked again, since the file could have changed
    since start-up validation looked at it."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_LOGO_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"IDP_BRAND_LOGO: cannot read {path}: {exc.strerror}") from None
    kind = logo_type(data[:1024])
    if len(data) > MAX_LOGO_BYTES or kind is None:
        raise ConfigError(f"IDP_BRAND_LOGO: {path} changed while idp started; it is no longer a valid logo")
    return data, kind


def configure(app: Flask) -> None:
    app.extensions["idp.branding"] = build_brand(
        app.config["IDP_BRAND_NAME"], app.config["IDP_BRAND_COLOR"], app.config["IDP_BRAND_LOGO"]
    )
    app.register_blueprint(bp)


def _brand() -> Brand:
    brand: Brand = current_app.extensions["idp.branding"]
    return brand


def _cached(body: bytes, content_type: str) -> Response:
    response = Response(body, content_type=content_type)
    response.headers["Cache-Control"] = f"public, max-age={CACHE_SECONDS}"
    return response


@bp.get("/style.css")
def stylesheet() -> Response:
    return _cached(_brand().stylesheet, "text/css; charset=utf-8")


@bp.get("/branding/logo")
def logo() -> Response:
    brand = _brand()
    if brand.logo is None or brand.logo_type is None:
        abort(404)
    response = _cached(brand.logo, LOGO_TYPES[brand.logo_type])
    response.headers["Content-Security-Policy"] = LOGO_CSP
    return response
