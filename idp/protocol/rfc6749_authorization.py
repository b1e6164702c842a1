"""Validation of an authorization request (RFC 6749 §4.1.1, §3.1.2; OIDC Core §3.1.2.1-2; RFC 7636 §4.3;
RFC 8252 §7.3; RFC 9700 §2.1, §4.1).

An ordered pipeline: the client, then the redirect URI. Until both are known to be good, every error is
:class:`FatalRequestError` (shown to the user, never a redirect, so idp cannot be used as an open redirector).
After that, errors are :class:`RedirectError` and travel back to the client with ``state`` and ``iss``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

from idp.protocol import oidc_core, rfc7636
from idp.protocol.errors import InvalidScope
from idp.protocol.rfc6749 import MAX_PARAM, parse_scope

RESPONSE_MODES = ("query", "form_post")
# The parameters this endpoint defines (RFC 6749 §4.1.1, OIDC Core §3.1.2.1, RFC 7636 §4.3): each may appear
# once. Any other parameter is ignored (RFC 6749 §3.1), repeated or not.
PARAMETERS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "response_mode",
    "nonce",
    "display",
    "prompt",
    "max_age",
    "ui_locales",
    "claims_locales",
    "id_token_hint",
    "login_hint",
    "acr_values",
    "claims",
    "code_challenge",
    "code_challenge_method",
    "request",
    "request_uri",
    "registration",
)
UNSUPPORTED = {
    "request": "request_not_supported",
    "request_uri": "request_uri_not_supported",
    "registration": "registration_not_supported",
}
_LOOPBACK_IPS = ("127.0.0.1", "::1")


class AuthorizationClient(Protocol):
    """What the pipeline needs to know of a client (the storage layer provides it)."""

    @property
    def id(self) -> str: ...
    @property
    def grant_types(self) -> tuple[str, ...]: ...
    @property
    def scopes(self) -> tuple[str, ...]: ...
    @property
    def redirect_uris(self) -> tuple[str, ...]: ...
    @property
    def require_nonce(self) -> bool: ...


class FatalRequestError(Exception):
    """Client or redirect URI is wrong: the user sees an error page (400), nothing goes to any URI."""


@dataclass
class RedirectError(Exception):
    """RFC 6749 §4.1.2.1: an error sent back to the validated redirect URI."""

    error: str
    description: str
    redirect_uri: str
    state: str | None
    response_mode: str = "query"


@dataclass(frozen=True)
class AuthorizationRequest:
    client_id: str
    redirect_uri: str
    scopes: list[str]
    state: str | None
    nonce: str | None
    code_challenge: str
    response_mode: str
    prompts: frozenset[str] = field(default_factory=frozenset)
    max_age: int | None = None
    id_token_hint: str | None = None
    login_hint: str | None = None


def redirect_uri_matches(requested: str, registered: Sequence[str]) -> bool:
    """Exact string match (RFC 9700 §2.1), except that a loopback IP redirect may use any port (RFC 8252 §7.3):
    the requested URI must then equal a registered loopback IP URI with only the port put in or changed."""
    if requested in registered:
        return True
    try:
        parts = urlsplit(requested)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme != "http" or parts.hostname not in _LOOPBACK_IPS or port is None:
        return False
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    for candidate in registered:
        try:
            other = urlsplit(candidate)
            other_port = other.port
        except ValueError:
            continue
        if other.scheme != "http" or other.hostname != parts.hostname:
            continue
        other_netloc = f"{host}:{other_port}" if other_port is not None else host
        if other.netloc == other_netloc and candidate.replace(other_netloc, f"{host}:{port}", 1) == requested:
            return True
    return False


def _blank_as_omitted(params: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """RFC 6749 §3.1: a parameter sent without a value is treated as if it were omitted."""
    kept = {name: [v for v in values if v] for name, values in params.items()}
    return {name: values for name, values in kept.items() if values}


def _single(params: Mapping[str, list[str]], name: str) -> str | None:
    """The one value of a defined parameter; ``ValueError`` if it is repeated (RFC 6749 §3.1) or malformed."""
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise ValueError(f"parameter {name} is repeated")
    if len(values[0]) > MAX_PARAM:
        raise ValueError(f"parameter {name} is longer than {MAX_PARAM} characters")
    if "\x00" in values[0]:
        raise ValueError(f"parameter {name} is malformed")
    return values[0]


def validate(
    params: Mapping[str, list[str]], find_client: Callable[[str], AuthorizationClient | None]
) -> tuple[AuthorizationClient, AuthorizationRequest]:
    """Run the pipeline; return the client and the checked request, or raise one of the two errors."""
    params = _blank_as_omitted(params)
    client, redirect_uri = _front_channel(params, find_client)
    state = _lenient_single(params, "state")
    mode_value = _lenient_single(params, "response_mode")
    response_mode = mode_value if mode_value in RESPONSE_MODES else "query"

    def fail(error: str, description: str) -> RedirectError:
        return RedirectError(error, description, redirect_uri, state, response_mode)

    if mode_value is not None and mode_value not in RESPONSE_MODES:
        raise fail("invalid_request", "response_mode must be query or form_post")
    try:
        values = {name: _single(params, name) for name in PARAMETERS}
    except ValueError as exc:
        raise fail("invalid_request", str(exc)) from None
    _check_response_type(values, client, fail)
    _check_unsupported(values, fail)
    scopes = _scopes(values["scope"], client, fail)
    challenge = _pkce_challenge(values, fail)
    if client.require_nonce and not values["nonce"]:
        raise fail("invalid_request", "nonce is required for this client")
    try:
        prompts = oidc_core.parse_prompt(values["prompt"])
        max_age = oidc_core.parse_max_age(values["max_age"])
    except ValueError as exc:
        raise fail("invalid_request", str(exc)) from None
    return client, AuthorizationRequest(
        client_id=client.id,
        redirect_uri=redirect_uri,
        scopes=scopes,
        state=state,
        nonce=values["nonce"],
        code_challenge=challenge,
        response_mode=response_mode,
        prompts=prompts,
        max_age=max_age,
        id_token_hint=values["id_token_hint"],
        login_hint=values["login_hint"],
    )


def _front_channel(
    params: Mapping[str, list[str]], find_client: Callable[[str], AuthorizationClient | None]
) -> tuple[AuthorizationClient, str]:
    """RFC 6749 §4.1.2.1: the client and its redirect URI; nothing before this may redirect anywhere."""
    try:
        client_id = _single(params, "client_id")
        redirect_uri = _single(params, "redirect_uri")
    except ValueError as exc:
        raise FatalRequestError(str(exc)) from None
    if not client_id:
        raise FatalRequestError("the request has no client_id")
    client = find_client(client_id)
    if client is None:
        raise FatalRequestError("the client is not registered")
    if not redirect_uri:
        raise FatalRequestError("the request has no redirect_uri")
    if not redirect_uri_matches(redirect_uri, client.redirect_uris):
        raise FatalRequestError("the redirect_uri is not registered for this client")
    return client, redirect_uri


def _check_response_type(
    values: Mapping[str, str | None], client: AuthorizationClient, fail: Callable[[str, str], RedirectError]
) -> None:
    """RFC 6749 §4.1.1: ``code`` only (RFC 9700 §2.1.2: no implicit or hybrid flows)."""
    response_type = values["response_type"]
    if not response_type:
        raise fail("invalid_request", "response_type is required")
    if response_type != "code":
        raise fail("unsupported_response_type", "only response_type=code is supported")
    if "authorization_code" not in client.grant_types:
        raise fail("unauthorized_client", "the client is not registered for the authorization code flow")


def _check_unsupported(values: Mapping[str, str | None], fail: Callable[[str, str], RedirectError]) -> None:
    """OIDC Core §3.1.2.6: request objects and ``registration`` are refused by name, not silently ignored
    (discovery says ``request_parameter_supported: false``)."""
    for name, error in UNSUPPORTED.items():
        if values[name] is not None:
            raise fail(error, f"the {name} parameter is not supported")


def _pkce_challenge(values: Mapping[str, str | None], fail: Callable[[str, str], RedirectError]) -> str:
    """RFC 7636 §4.3 with RFC 9700 §2.1.1: a challenge is required and only ``S256`` is accepted."""
    challenge, method = values["code_challenge"], values["code_challenge_method"]
    if not challenge:
        raise fail("invalid_request", "code_challenge is required (PKCE, S256)")
    if method != "S256":
        raise fail("invalid_request", "code_challenge_method must be S256")
    if not rfc7636.is_valid_challenge(challenge):
        raise fail("invalid_request", "code_challenge is malformed")
    return challenge


def _lenient_single(params: Mapping[str, list[str]], name: str) -> str | None:
    """``state`` and ``response_mode`` are needed to report errors, even about their own repetition or length.
    ``state`` goes back exactly as received (RFC 6749 §4.1.2.1), never cut short: a client compares it whole."""
    values = params.get(name)
    if not values:
        return None
    return values[0]


def _scopes(value: str | None, client: AuthorizationClient, fail: Callable[[str, str], RedirectError]) -> list[str]:
    try:
        requested = parse_scope(value)
    except InvalidScope:
        raise fail("invalid_scope", "scope is malformed") from None
    if requested is None:
        raise fail("invalid_scope", "scope is required")
    refused = [s for s in requested if s not in client.scopes]
    if refused:
        raise fail("invalid_scope", f"scope not allowed for this client: {' '.join(refused)[:200]}")
    return requested
