"""OAuth 2.0 error responses (RFC 6749 §5.2, RFC 6750 §3.1, RFC 7009 §2.2.1, RFC 8707 §2).

Raise these; the web layer turns them into the JSON body, status and headers.
"""

from __future__ import annotations


class OAuthError(Exception):
    """An error the client is told about: ``error`` code, HTTP status, optional description and headers."""

    error = "invalid_request"
    status = 400

    def __init__(self, description: str | None = None) -> None:
        super().__init__(description or self.error)
        self.description = description

    def body(self) -> dict[str, str]:
        body = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return body

    def headers(self) -> dict[str, str]:
        return {}


class InvalidRequest(OAuthError):
    error = "invalid_request"


class InvalidClient(OAuthError):
    """RFC 6749 §5.2: 401 with a ``WWW-Authenticate`` challenge for the scheme the client should use."""

    error = "invalid_client"
    status = 401

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Basic realm="idp", charset="UTF-8"'}


class InvalidGrant(OAuthError):
    error = "invalid_grant"


class UnauthorizedClient(OAuthError):
    error = "unauthorized_client"


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"


class InvalidScope(OAuthError):
    error = "invalid_scope"


class InvalidTarget(OAuthError):
    """RFC 8707 §2: the requested resource (audience) is not allowed for this client."""

    error = "invalid_target"


class UnsupportedTokenType(OAuthError):
    error = "unsupported_token_type"


class ServerUnavailable(OAuthError):
    error = "temporarily_unavailable"
    status = 503

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


class TooManyRequests(OAuthError):
    """RFC 6585 §4: 429 with ``Retry-After``. The code is the registered ``temporarily_unavailable`` (IANA OAuth
    Extensions Error Registry), which client libraries read as "retry later" rather than "fix your request"."""

    error = "temporarily_unavailable"
    status = 429

    def __init__(self, retry_after: int, description: str) -> None:
        super().__init__(description)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}
