"""Local verification of idp access tokens for resource servers (SPEC §11).

A service checks each RFC 9068 access token itself, against the issuer's published keys, and never calls the
issuer per request:

- the ``jwks_uri`` comes from OpenID Connect Discovery 1.0 §4 (``{issuer}/.well-known/openid-configuration``),
  whose ``issuer`` must equal the configured one exactly (§4.3);
- the JWKS (RFC 7517) is cached for its ``Cache-Control: max-age`` (RFC 9111 §5.2.2.1), refetched early only for
  an unknown ``kid`` and never more than once per ``refetch_interval`` (30 s); while a refetch fails, the keys
  already held keep working;
- only ``RS256`` (RFC 7518 §3.3) is accepted; ``jku``, ``x5u``, ``jwk`` and ``x5c`` headers (RFC 7515 §4.1.2-6)
  are never followed: a token carrying one is rejected, as is one with ``crit`` (§4.1.11);
- RFC 9068 §4: ``typ`` is ``at+jwt`` (or ``application/at+jwt``, compared case-insensitively), ``iss`` is the
  issuer, ``aud`` contains our audience, ``exp``/``nbf``/``iat`` hold within a small leeway, and the claims of
  §2.2 are present;
- failures raise :class:`InvalidToken` (401) or :class:`InsufficientScope` (403), which render the RFC 6750 §3
  ``WWW-Authenticate`` challenge.

This module imports nothing from the rest of idp: only the standard library and ``cryptography``. Framework
helpers live in :mod:`idp.verify_flask` and :mod:`idp.verify_fastapi`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import http.client
import ipaddress
import json
import logging
import math
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Collection, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey, RSAPublicNumbers

__all__ = [
    "InsufficientScope",
    "InvalidToken",
    "KeysUnavailable",
    "MissingToken",
    "TokenVerifier",
    "VerificationError",
    "bearer_token",
]

log = logging.getLogger("idp.verify")

ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})  # RFC 9068 §4, compared case-insensitively
REQUIRED_CLAIMS = ("iss", "exp", "aud", "sub", "client_id", "iat", "jti")  # RFC 9068 §2.2
FORBIDDEN_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c", "crit"})
MAX_TOKEN_LENGTH = 16 * 1024
MAX_DOCUMENT_BYTES = 1024 * 1024
MIN_RSA_BITS = 2048
NO_KEYS_RETRY_SECONDS = 1.0  # with nothing cached, a failed fetch is retried this soon
WAIT_FACTOR = 3  # a fetch is discovery + JWKS, each within ``timeout``: a waiter gives up after 3 timeouts
MAX_TIMEOUT = 300.0
READ_CHUNK = 64 * 1024
HEADER_CACHE_SIZE = 64

_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 §2.1
_QDTEXT_UNSAFE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")  # RFC 6750 §3: no '"', no '\', printable ASCII
_PADDING = padding.PKCS1v15()
_SHA256 = hashes.SHA256()


# --- errors (RFC 6750 §3) ------------------------------------------------------------------------------------


class VerificationError(Exception):
    """A request's bearer token was not accepted; renders the RFC 6750 §3 ``WWW-Authenticate`` challenge.

    ``description`` is meant for the caller: it names the failed check, never a key, a URL or a token.
    """

    status_code = 401
    error: str | None = None

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description

    def challenge_params(self) -> dict[str, str]:
        """The auth-params of the challenge; none without an error code (RFC 6750 §3.1, missing token)."""
        return {"error": self.error, "error_description": self.description} if self.error else {}

    def www_authenticate(self, realm: str | None = None) -> str:
        """The ``WWW-Authenticate`` header value, e.g. ``Bearer error="invalid_token", error_description="..."``."""
        params = {"realm": realm} if realm else {}
        params.update(self.challenge_params())
        if not params:
            return "Bearer"
        return "Bearer " + ", ".join(f'{name}="{_QDTEXT_UNSAFE.sub("", value)}"' for name, value in params.items())


class MissingToken(VerificationError):
    """The request carries no bearer token: RFC 6750 §3.1 says to answer 401 without an error code."""


class InvalidToken(VerificationError):
    """RFC 6750 §3.1 ``invalid_token`` (401): malformed, expired, wrongly signed, or meant for someone else."""

    error = "invalid_token"


class KeysUnavailable(InvalidToken):
    """The issuer's keys could not be fetched and none are cached; the cause is logged, never shown."""


class InsufficientScope(VerificationError):
    """RFC 6750 §3.1 ``insufficient_scope`` (403): a valid token without every required scope."""

    status_code = 403
    error = "insufficient_scope"

    def __init__(self, description: str, required_scopes: Iterable[str]) -> None:
        super().__init__(description)
        self.required_scopes = tuple(required_scopes)

    def challenge_params(self) -> dict[str, str]:
        return {**super().challenge_params(), "scope": " ".join(self.required_scopes)}


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header (RFC 6750 §2.1; the scheme is case-insensitive).

    No header, or another scheme, is :class:`MissingToken`; a ``Bearer`` header with a malformed value is
    :class:`InvalidToken`.
    """
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        raise MissingToken("a bearer token is required")
    token = token.strip()
    if not _B64TOKEN.fullmatch(token):
        raise InvalidToken("the Authorization header is malformed")
    return token


# --- the verifier -------------------------------------------------------------------------------------------


class TokenVerifier:
    """Verifies the access tokens ``issuer`` issues for ``audience``; one instance per process, shared by threads.

    ``audience`` is this service's identifier (a string) or several accepted ones. ``leeway`` is the clock skew
    in seconds allowed on ``exp``, ``nbf`` and ``iat``. ``timeout`` bounds each HTTP request as a whole (an issuer
    that answers slowly, a few bytes at a time, is cut off at it), and a thread that needs a key another thread is
    fetching waits at most ``WAIT_FACTOR`` times ``timeout`` before it answers "try again later". The JWKS is kept
    for its ``max-age`` (``default_max_age`` when the response names none), at most ``max_cache_ttl``, and is
    never fetched more than once per ``refetch_interval`` seconds.
    """

    def __init__(
        self,
        issuer: str,
        audience: str | Collection[str],
        *,
        leeway: float = 30.0,
        timeout: float = 5.0,
        refetch_interval: float = 30.0,
        default_max_age: float = 300.0,
        max_cache_ttl: float = 86400.0,
    ) -> None:
        if not _acceptable_url(issuer, issuer):
            raise ValueError("issuer must be an https URL (http only on a loopback host)")
        if not (isinstance(timeout, int | float) and math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT):
            raise ValueError(f"timeout must be a number of seconds above 0 and at most {MAX_TIMEOUT}")
        audiences = frozenset([audience] if isinstance(audience, str) else audience)
        if not audiences or not all(isinstance(a, str) and a for a in audiences):
            raise ValueError("audience must be a non-empty string or a collection of them")
        self.issuer = issuer
        self.audiences = audiences
        self.leeway = leeway
        self.timeout = timeout
        self.refetch_interval = refetch_interval
        self.default_max_age = default_max_age
        self.max_cache_ttl = max_cache_ttl
        self.jwks_fetches = 0  # attempts, successful or not: for metrics and tests
        self._lock = threading.Lock()
        # (keys by kid, monotonic time until which they are fresh), replaced as one tuple so readers need no lock.
        self._cache: tuple[Mapping[str, RSAPublicKey], float] = ({}, 0.0)
        self._next_fetch_at = 0.0
        self._jwks_uri: str | None = None
        self._header_kids: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"TokenVerifier(issuer={self.issuer!r}, audience={sorted(self.audiences)!r})"

    def authenticate(self, authorization: str | None, required_scopes: Iterable[str] = ()) -> dict[str, Any]:
        """Verify the token of an ``Authorization`` header value; see :func:`bearer_token` and :meth:`verify`."""
        return self.verify(bearer_token(authorization), required_scopes)

    def verify(self, token: str, required_scopes: Iterable[str] = ()) -> dict[str, Any]:
        """The claims of ``token`` when it is a valid access token for us carrying every required scope
        (``required_scopes``: scope names, or one space-separated string).

        Raises :class:`InvalidToken` (401) or :class:`InsufficientScope` (403).
        """
        header_b64, payload_b64, signature = _split(token)
        key = self._public_key(self._kid(header_b64))
        try:
            key.verify(signature, f"{header_b64}.{payload_b64}".encode("ascii"), _PADDING, _SHA256)
        except InvalidSignature:
            raise InvalidToken("the token's signature is invalid") from None
        claims = _json_object(payload_b64, "claims", reject_duplicates=False)
        self._check_claims(claims)
        _check_scopes(claims, required_scopes)
        return claims

    def _kid(self, header_b64: str) -> str:
        """The ``kid`` of an accepted header. Every token of one issuer key has the same header bytes, so the
        checked result is remembered per encoded header (a few entries) rather than parsed per request."""
        kid = self._header_kids.get(header_b64)
        if kid is None:
            kid = _check_header(_json_object(header_b64, "header parameters", reject_duplicates=True))
            if len(self._header_kids) >= HEADER_CACHE_SIZE:
                self._header_kids.clear()
            self._header_kids[header_b64] = kid
        return kid

    # --- claims (RFC 9068 §4, RFC 7519 §4.1) ------------------------------------------------------------------

    def _check_claims(self, claims: dict[str, Any]) -> None:
        missing = [name for name in REQUIRED_CLAIMS if name not in claims]
        if missing:
            raise InvalidToken(f"the token lacks the {missing[0]} claim")
        if claims["iss"] != self.issuer:
            raise InvalidToken("the token was issued by another issuer")
        audience = claims["aud"]
        audiences = [audience] if isinstance(audience, str) else audience
        if not isinstance(audiences, list) or self.audiences.isdisjoint(a for a in audiences if isinstance(a, str)):
            raise InvalidToken("the token is meant for another audience")
        now = time.time()
        if _number(claims, "exp") <= now - self.leeway:
            raise InvalidToken("the token has expired")
        if "nbf" in claims and _number(claims, "nbf") > now + self.leeway:
            raise InvalidToken("the token is not valid yet")
        if _number(claims, "iat") > now + self.leeway:
            raise InvalidToken("the token was issued in the future")
        if "scope" in claims and not isinstance(claims["scope"], str):
            raise InvalidToken("the token's scope claim is malformed")

    # --- keys (OIDC Discovery §4, RFC 7517 §5) ---------------------------------------------------------------

    def _public_key(self, kid: str) -> RSAPublicKey:
        """The key for ``kid``: from the cache while fresh; when stale, one thread refreshes while the others keep
        using the key they hold; an unknown ``kid`` waits for (or triggers) a refetch."""
        keys, fresh_until = self._cache
        key = keys.get(kid)
        if key is not None:
            if time.monotonic() < fresh_until or not self._lock.acquire(blocking=False):
                return key
        elif not self._lock.acquire(timeout=WAIT_FACTOR * self.timeout):
            # Another thread's fetch (discovery + JWKS, each bounded by ``timeout``) has not finished.
            raise KeysUnavailable("the token cannot be verified now; try again later")
        try:
            self._refresh_if_due(kid)
        finally:
            self._lock.release()
        keys = self._cache[0]
        if not keys:
            raise KeysUnavailable("the token cannot be verified now; try again later")
        key = keys.get(kid)
        if key is None:
            raise InvalidToken("the token's key is not published by the issuer")
        return key

    def _refresh_if_due(self, kid: str) -> None:
        """Under the lock: fetch unless another thread just did, or the last attempt is too recent."""
        keys, fresh_until = self._cache
        now = time.monotonic()
        if kid in keys and now < fresh_until:
            return
        if now < self._next_fetch_at:
            return
        self.jwks_fetches += 1
        try:
            fetched, max_age = self._fetch_jwks()
        except _FetchError as exc:
            log.warning("idp.verify: fetching the issuer's keys failed: %s", exc)
            self._jwks_uri = None  # rediscover next time: the jwks_uri may have moved
            self._next_fetch_at = time.monotonic() + (self.refetch_interval if keys else NO_KEYS_RETRY_SECONDS)
            return
        ttl = min(max(max_age, self.refetch_interval), self.max_cache_ttl)
        self._cache = (fetched, now + ttl)  # max-age counts from the request, the pause from the answer
        self._next_fetch_at = time.monotonic() + self.refetch_interval

    def _fetch_jwks(self) -> tuple[dict[str, RSAPublicKey], float]:
        if self._jwks_uri is None:
            self._jwks_uri = self._discover()
        document, max_age = self._get_json(self._jwks_uri)
        published = document.get("keys")
        if not isinstance(published, list):
            raise _FetchError(f"{self._jwks_uri}: no keys array")
        keys = {jwk["kid"]: key for jwk in published if (key := _rs256_key(jwk)) is not None}
        if not keys:
            raise _FetchError(f"{self._jwks_uri}: no usable RS256 key")
        return keys, max_age

    def _discover(self) -> str:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document, _ = self._get_json(url)
        if document.get("issuer") != self.issuer:
            raise _FetchError(f"{url}: the issuer in the document is not the configured one")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not _acceptable_url(jwks_uri, self.issuer):
            raise _FetchError(f"{url}: jwks_uri missing or not https")
        return jwks_uri

    def _get_json(self, url: str) -> tuple[dict[str, Any], float]:
        """GET ``url`` (http/https only) and parse a JSON object; the freshness lifetime from its headers. The
        socket timeout bounds each wait for bytes; the deadline bounds the whole exchange."""
        request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "idp.verify"})  # noqa: S310 - scheme checked
        deadline = _Deadline(self.timeout)
        try:
            with _http_opener(deadline).open(request, timeout=self.timeout) as response:
                body = _read_until(response, MAX_DOCUMENT_BYTES + 1, deadline.at)
                max_age = _freshness(response.headers, self.default_max_age)
        except urllib.error.HTTPError as exc:
            raise _FetchError(f"{url}: HTTP {exc.code}") from None
        except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError, timeouts, resets, bad replies
            reason = "no complete answer in time" if deadline.expired else type(exc).__name__
            raise _FetchError(f"{url}: {reason}") from None
        finally:
            deadline.cancel()
        if body is None:
            raise _FetchError(f"{url}: no complete answer in time")
        if len(body) > MAX_DOCUMENT_BYTES:
            raise _FetchError(f"{url}: document too large")
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            raise _FetchError(f"{url}: not JSON") from None
        if not isinstance(document, dict):
            raise _FetchError(f"{url}: not a JSON object")
        return document, max_age


class _FetchError(Exception):
    """Why a discovery or JWKS fetch failed; logged for the operator, never shown to a caller."""


def _read_until(response: http.client.HTTPResponse, limit: int, deadline: float) -> bytes | None:
    """Up to ``limit`` bytes of the body, or ``None`` when the deadline passes first (``read1`` returns what one
    receive brings, so a trickle of bytes cannot stretch one read past the socket timeout)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        if time.monotonic() > deadline:
            return None
        chunk = response.read1(min(READ_CHUNK, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


# --- pure helpers -------------------------------------------------------------------------------------------


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """RFC 7515 §4: a JOSE header with a repeated name is rejected, so no reader can see another ``alg``."""
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member")
    return result


def _json_object(segment: str, what: str, *, reject_duplicates: bool) -> dict[str, Any]:
    """A base64url JSON object. Claims with a repeated name keep the last one, as RFC 7519 §4 allows: they
    are read only after the signature has been verified."""
    try:
        value = json.loads(_b64decode(segment), object_pairs_hook=_no_duplicates if reject_duplicates else None)
    except (ValueError, binascii.Error, RecursionError):  # RecursionError: deeply nested arrays or objects
        raise InvalidToken(f"the token's {what} are not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidToken(f"the token's {what} are not a JSON object")
    return value


def _split(token: str) -> tuple[str, str, bytes]:
    """RFC 7515 §7.1 compact serialization: the encoded header and payload, and the decoded signature."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not _COMPACT_JWS.fullmatch(token):
        raise InvalidToken("the token is not a signed JWT")
    header_b64, payload_b64, signature_b64 = token.split(".")
    try:
        signature = _b64decode(signature_b64)
    except binascii.Error:
        raise InvalidToken("the token is not a signed JWT") from None
    return header_b64, payload_b64, signature


def _check_header(header: dict[str, Any]) -> str:
    """RS256 only, no key-locating or critical headers, ``typ`` at+jwt (RFC 9068 §4); the ``kid``."""
    if header.get("alg") != "RS256":
        raise InvalidToken("the token's algorithm is not accepted")
    if not FORBIDDEN_HEADERS.isdisjoint(header):
        raise InvalidToken("the token carries a header parameter that is not accepted")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
        raise InvalidToken("the token is not an access token")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("the token names no key")
    return kid


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"the token's {name} claim is not a number")
    return float(value)


def _check_scopes(claims: dict[str, Any], required_scopes: Iterable[str]) -> None:
    """RFC 9068 §2.2.3 / RFC 6749 §3.3: ``scope`` is space-separated; every required scope must be in it."""
    required = required_scopes.split() if isinstance(required_scopes, str) else list(required_scopes)
    if not required:
        return
    granted = set(str(claims.get("scope", "")).split())
    if not granted.issuperset(required):
        raise InsufficientScope("the token lacks a required scope", required)


def _rs256_key(jwk: Any) -> RSAPublicKey | None:
    """An RSA signing key usable for RS256 (RFC 7518 §6.3.1), or None for anything else in the set."""
    if not isinstance(jwk, dict) or jwk.get("kty") != "RSA" or not isinstance(jwk.get("kid"), str):
        return None
    if jwk.get("use", "sig") != "sig" or jwk.get("alg", "RS256") != "RS256":
        return None
    try:
        n = int.from_bytes(_b64decode(jwk["n"]), "big")
        e = int.from_bytes(_b64decode(jwk["e"]), "big")
        key = RSAPublicNumbers(e, n).public_key()
    except (KeyError, TypeError, ValueError, binascii.Error):
        return None
    return key if key.key_size >= MIN_RSA_BITS else None


def _freshness(headers: Mapping[str, str], default: float) -> float:
    """Seconds the response stays fresh: ``max-age`` less ``Age`` (RFC 9111 §4.2); 0 for ``no-store``/``no-cache``."""
    max_age: float = default
    for directive in (headers.get("Cache-Control") or "").split(","):
        name, _, value = directive.strip().partition("=")
        name = name.lower()
        if name in ("no-store", "no-cache"):
            return 0.0
        if name == "max-age" and value.strip('"').isdigit():
            max_age = float(value.strip('"'))
    age = headers.get("Age") or "0"
    return max(0.0, max_age - (float(age) if age.isdigit() else 0.0))


def _acceptable_url(url: str, issuer: str) -> bool:
    """https, or plain http only when the issuer itself is http on a loopback host (development)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.hostname)
    return parts.scheme == "http" and urlsplit(issuer).scheme == "http" and _is_loopback(parts.hostname)


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Discovery and JWKS are fetched from the addresses named, not wherever a redirect points."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Deadline:
    """The end of one fetch. Every connection the fetch opens is shut down when it passes, in whatever phase it
    is (TCP connect, TLS handshake, status line, headers, body): a socket timeout alone bounds only each wait for
    bytes, so an issuer sending a byte now and then could hold the fetching thread for hours. Name resolution
    (``getaddrinfo``) cannot be interrupted and stays outside."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.expired = False
        self._timers: list[threading.Timer] = []

    def arm(self, connection: http.client.HTTPConnection) -> None:
        timer = threading.Timer(max(0.0, self.at - time.monotonic()), self._shut_down, (connection,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _shut_down(self, connection: http.client.HTTPConnection) -> None:
        self.expired = True
        sock = getattr(connection, "idp_socket", None) or connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        for timer in self._timers:
            timer.cancel()


def _connection(base: type[http.client.HTTPConnection], deadline: _Deadline) -> type[http.client.HTTPConnection]:
    """``base`` whose connections are armed with ``deadline``; the socket is remembered because urllib drops the
    connection's reference to it once the headers are read, while the body is still to come."""

    class Connection(base):  # type: ignore[valid-type,misc]
        def connect(self) -> None:
            deadline.arm(self)
            super().connect()
            self.idp_socket = self.sock

    return Connection


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_connection(http.client.HTTPConnection, self.deadline), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = _connection(http.client.HTTPSConnection, self.deadline)
        return self.do_open(connection, req, context=self._context)  # type: ignore[attr-defined]


def _http_opener(deadline: _Deadline) -> urllib.request.OpenerDirector:
    """An opener that speaks only http and https (no file:, ftp: or data:), follows no redirect, and gives up at
    ``deadline``."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        _HTTPHandler(deadline),
        _HTTPSHandler(deadline),
        urllib.request.HTTPDefaultErrorHandler(),
        _NoRedirect(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener
