"""Rate limits that throttle guessing, never legitimate traffic (SPEC §10), with Flask-Limiter.

Only failures are counted. What is checked, and when, follows from what a guess can win:

- **Login** (``POST /login``): passwords are guessable, so both limits are *tested before* the password is
  verified and a request over either one is refused even with the right password; otherwise a 429 on wrong
  guesses and a 303 on the right one would still be an oracle. A failure is *deducted after* the verification
  (Flask-Limiter ``deduct_when``). Per username (any IP) the window is short, so an attacker who stops leaves the
  real user waiting at most that window; per IP it stops one address spraying one password over many usernames.
  Test and deduction are two storage calls, so concurrent requests may each pass the test: the overshoot is at
  most the server's concurrency.
- **Client authentication** (``/token``, ``/introspect``, ``/revoke``): API keys are 256-bit secrets and
  assertions are signed, so there is nothing to guess. The counters are hit only *after* a failure (one atomic
  hit per counter, which also says whether the counter is now over), so the successful path makes no storage call
  at all, and a caller that knows a client id (they are not secret) or shares its NAT address cannot lock a
  working service out. Unregistered client ids share one counter, so no client-chosen string (an API key pasted
  into the id field, say) becomes a storage key.
- **Ceiling** (``IDP_RATE_LIMIT_CLIENT_CEILING``, off by default): successful clients are counted at ``/token``
  only when an operator sets it.

Storage is Redis when ``IDP_REDIS_URL`` is set (shared by every node), else process memory. An unreachable Redis
never becomes a 500: Flask-Limiter falls back to in-memory counters (per node) and retries Redis with backoff.
Keys hold client ids, IPs and a keyed digest of the username; never a password, API key or token.
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable
from typing import TypeVar, cast

from flask import Response, current_app, g, request
from flask_limiter import RateLimitExceeded

from idp.extensions import limiter
from idp.metrics import RATE_LIMITED
from idp.protocol.errors import TooManyRequests
from idp.services.client_auth import find_client
from idp.services.errors import Invalid
from idp.services.users import normalize_username

F = TypeVar("F", bound=Callable[..., object])
UNREGISTERED_CLIENT = "unregistered"
REDIS_TIMEOUT_SECONDS = 0.5


def _setting(name: str) -> Callable[[], str]:
    return lambda: str(current_app.config[name])


def client_ip() -> str:
    """``request.remote_addr`` as ProxyFix left it (only IDP_TRUSTED_PROXIES hops of ``X-Forwarded-For``)."""
    return request.remote_addr or "unknown"


def _username_key() -> str:
    """The submitted username as the login check sees it (RFC 8265 case-folded), as an HMAC under the app secret:
    people type passwords into the username field, and such a typo must not sit in Redis in clear."""
    raw = request.form.get("username", "")[:255]
    try:
        name = normalize_username(raw)
    except Invalid:
        name = raw
    secret = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(secret, name.encode(), "sha256").hexdigest()[:32]


def _login_failed(_response: Response) -> bool:
    return bool(g.get("idp_login_failed"))


_LOGIN_BY_IP = limiter.shared_limit(
    _setting("IDP_RATE_LIMIT_LOGIN_IP"), scope="login-ip", key_func=client_ip, deduct_when=_login_failed
)
_LOGIN_BY_USERNAME = limiter.shared_limit(
    _setting("IDP_RATE_LIMIT_LOGIN_USER"), scope="login-user", key_func=_username_key, deduct_when=_login_failed
)


def login_throttle(view: F) -> F:
    """Decorate the login form's POST view: refuse it (:class:`RateLimitExceeded`) while its IP or username is
    over the limit; count the request when the view calls :func:`login_failed`."""
    return cast(F, _LOGIN_BY_IP(_LOGIN_BY_USERNAME(view)))


def login_failed() -> None:
    """Count this request as a failed login (deducted when the response is sent)."""
    g.idp_login_failed = True


def _claimed_client() -> str:
    return str(g.get("idp_claimed_client") or UNREGISTERED_CLIENT)


@limiter.shared_limit(_setting("IDP_RATE_LIMIT_CLIENT_AUTH"), scope="client-auth-ip", key_func=client_ip)
@limiter.shared_limit(_setting("IDP_RATE_LIMIT_CLIENT_AUTH"), scope="client-auth-client", key_func=_claimed_client)
def _count_client_auth_failure() -> None:
    """Calling this hits both counters (the decorators do it, raising when one is over)."""


def _throttle_notice_key() -> str:
    return f"{_claimed_client()} {client_ip()}"


@limiter.shared_limit("1 per minute", scope="client-auth-throttled", key_func=_throttle_notice_key)
def _count_throttle_notice() -> None:
    """Calling this hits the once-a-minute counter of throttle notices (raising when it is over)."""


def first_refusal_in_a_minute() -> bool:
    """After :func:`client_auth_failed` refused a request: whether it is the first refusal of this client id
    (``unregistered`` for all unknown ids) from this address in a minute, the one that is audited."""
    try:
        _count_throttle_notice()
    except RateLimitExceeded:
        return False
    return True


def client_auth_failed(claimed_client_id: str | None) -> None:
    """RFC 6749 §2.3 failure at the token, introspection or revocation endpoint: count it per client id and per
    IP; raise :class:`TooManyRequests` (429) when either is over its limit."""
    known = bool(claimed_client_id) and find_client(claimed_client_id or "") is not None
    g.idp_claimed_client = claimed_client_id if known else UNREGISTERED_CLIENT
    try:
        _count_client_auth_failure()
    except RateLimitExceeded:
        RATE_LIMITED.labels("client-auth").inc()
        seconds = retry_after()
        raise TooManyRequests(
            seconds, f"too many failed client authentications; retry after {seconds} seconds"
        ) from None


@limiter.shared_limit(_setting("IDP_RATE_LIMIT_CLIENT_CEILING"), scope="token-ceiling", key_func=_claimed_client)
def _count_token_request() -> None:
    """Calling this hits the client's ceiling counter (the decorator does it, raising when it is over)."""


def token_request(client_id: str) -> None:
    """The optional per-client ceiling on authenticated token requests; no storage call when it is not set."""
    if not current_app.config["IDP_RATE_LIMIT_CLIENT_CEILING"]:
        return
    g.idp_claimed_client = client_id
    try:
        _count_token_request()
    except RateLimitExceeded:
        RATE_LIMITED.labels("token-ceiling").inc()
        seconds = retry_after()
        raise TooManyRequests(seconds, f"token request ceiling reached; retry after {seconds} seconds") from None


def retry_after() -> int:
    """Whole seconds until every limit this request broke lets a request through again (RFC 9110 §10.2.3)."""
    now = time.time()
    try:
        resets = [limit.window.reset_time for limit in limiter.current_limits if limit.breached]
    except Exception:  # the storage failed between the check and this read: the breach itself stands
        resets = []
    return max([1, *(math.ceil(reset - now) for reset in resets)])


def storage_settings(redis_url: str | None, key_prefix: str) -> dict[str, object]:
    """Flask-Limiter's configuration for our storage (``RATELIMIT_*`` keys of ``app.config``)."""
    if redis_url and redis_url.startswith("unix://"):
        redis_url = "redis+" + redis_url  # the `limits` spelling of a Redis Unix socket
    return {
        "RATELIMIT_STORAGE_URI": redis_url or "memory://",
        "RATELIMIT_STORAGE_OPTIONS": (
            {
                "key_prefix": key_prefix,
                "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
                "socket_timeout": REDIS_TIMEOUT_SECONDS,
            }
            if redis_url
            else {}
        ),
        # Exact: a request is refused while N failures lie within the last window, and Retry-After is when the
        # oldest of them leaves it. (Fixed windows let 2N through across a boundary; the sliding-window counter
        # approximates, and lets a few through early.) The entries kept per key are at most N.
        "RATELIMIT_STRATEGY": "moving-window",
        "RATELIMIT_SWALLOW_ERRORS": True,
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
        # Count a failure on every counter it concerns, even when the first is already over.
        "RATELIMIT_FAIL_ON_FIRST_BREACH": False,
        # X-RateLimit-* headers would cost a storage read per response; we set Retry-After on refusals only.
        "RATELIMIT_HEADERS_ENABLED": False,
    }
