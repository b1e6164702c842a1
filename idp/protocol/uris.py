"""URI rules for registration: redirect URIs (RFC 6749 §3.1.2, RFC 8252 §7, RFC 9700 §2.1), audiences
(RFC 8707 §2) and logos (RFC 7591 §2 ``logo_uri``)."""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit

from idp.config import is_loopback_host

MAX_URI_LENGTH = 2048
# A host[:port] that can stand in a CSP source expression (CSP3 §2.3.1) as it is: an ASCII name or an IP literal.
CSP_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$")


class InvalidURI(ValueError):
    pass


def _parse(uri: str, what: str) -> SplitResult:
    if not uri or len(uri) > MAX_URI_LENGTH or any(c.isspace() or ord(c) < 0x20 for c in uri):
        raise InvalidURI(f"{what} {uri[:80]!r} is not a valid URI")
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise InvalidURI(f"{what} {uri[:80]!r} is not a valid URI") from None
    if not parts.scheme:
        raise InvalidURI(f"{what} {uri[:80]!r} is not an absolute URI")
    if parts.fragment or "#" in uri:
        raise InvalidURI(f"{what} {uri[:80]!r} must not contain a fragment")
    return parts


def validate_redirect_uri(uri: str, what: str = "redirect URI") -> str:
    """https anywhere; http only on a loopback host (RFC 8252 §7.3); private-use schemes with a dot (§7.1)."""
    parts = _parse(uri, what)
    scheme = parts.scheme.lower()
    if scheme == "https":
        if not parts.hostname:
            raise InvalidURI(f"{what} {uri[:80]!r} has no host")
    elif scheme == "http":
        if not is_loopback_host(parts.hostname):
            raise InvalidURI(f"{what} {uri[:80]!r} uses http on a non-loopback host; use https")
    elif "." not in scheme or scheme in ("javascript", "data", "file", "vbscript"):
        raise InvalidURI(f"{what} {uri[:80]!r} must use https, loopback http or a private-use scheme")
    return uri


def validate_audience(uri: str) -> str:
    """An audience is an absolute URI without a fragment (RFC 8707 §2)."""
    _parse(uri, "audience")
    return uri


def validate_logo_uri(uri: str) -> str:
    """RFC 7591 §2 ``logo_uri``, shown on the consent page: https (http only on loopback, for development), a
    host and no user information, so it fits the page's ``img-src`` as a plain origin."""
    parts = _parse(uri, "logo URI")
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not parts.hostname:
        raise InvalidURI(f"logo URI {uri[:80]!r} must be an https URL")
    if scheme == "http" and not is_loopback_host(parts.hostname):
        raise InvalidURI(f"logo URI {uri[:80]!r} uses http on a non-loopback host; use https")
    if "@" in parts.netloc:
        raise InvalidURI(f"logo URI {uri[:80]!r} must not contain user information")
    if not CSP_HOST.match(parts.netloc):
        # The consent page allows images from exactly this origin; one CSP cannot name is refused here rather
        # than silently left off the page (IDN hosts: register the punycode form).
        raise InvalidURI(f"logo URI {uri[:80]!r} must have a plain ASCII host name or IP address")
    return uri
