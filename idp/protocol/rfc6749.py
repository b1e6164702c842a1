"""Request parsing shared by the token, introspection and revocation endpoints (RFC 6749 §2.3.1, §3.2, §3.3).

Pure functions over already-decoded request data; no flask import. Sizes are bounded by the request-body limit
(``MAX_CONTENT_LENGTH``) and by each consumer, so an oversized ``client_id`` is simply an unknown client
(``invalid_client``), not a malformed request.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote_to_bytes

from idp.protocol.errors import InvalidClient, InvalidRequest, InvalidScope

# Parameters that RFC 8707 §2 allows to repeat; every other parameter may appear once (RFC 6749 §3.2).
REPEATABLE = frozenset({"resource"})
# Longest value the front-channel (authorization) endpoint accepts; the back-channel endpoints read a form body,
# bounded as a whole by MAX_CONTENT_LENGTH.
MAX_PARAM = 4096
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")


_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
MAX_FIELDS = 64


def parse_form(body: bytes) -> list[tuple[str, str]]:
    """Strict ``application/x-www-form-urlencoded`` (RFC 6749 Appendix B; WHATWG URL §5): a malformed
    percent-escape, invalid UTF-8 or more than ``MAX_FIELDS`` fields is ``invalid_request``, never a guess."""
    if _BAD_ESCAPE.search(body):
        raise InvalidRequest("the form body has a malformed percent-escape")
    try:
        text = body.decode("ascii")
        return parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError:
        raise InvalidRequest("the form body is not valid UTF-8 in ASCII percent-encoding") from None
    except ValueError:
        raise InvalidRequest("the form body has too many fields") from None


def single_params(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Group form pairs; refuse repeats of non-repeatable parameters (RFC 6749 §3.2). A parameter sent without
    a value is treated as omitted (RFC 6749 §3.1, which §3.2 applies to the token endpoint)."""
    params: dict[str, list[str]] = {}
    for name, value in pairs:
        if "\x00" in value or "\x00" in name:
            raise InvalidRequest("parameters must not contain NUL")
        if not value:
            continue
        if name in params and name not in REPEATABLE:
            raise InvalidRequest(f"parameter {name[:40]} is repeated")
        params.setdefault(name, []).append(value)
    return params


def parse_scope(value: str | None) -> list[str] | None:
    """RFC 6749 §3.3: space-delimited scope tokens; ``None`` when absent. A malformed scope is ``invalid_scope``
    (§5.2: "invalid, unknown, or malformed")."""
    if value is None:
        return None
    tokens = [t for t in value.split(" ") if t]
    if not tokens or not all(_SCOPE_TOKEN.match(t) for t in tokens):
        raise InvalidScope("scope is malformed")
    return list(dict.fromkeys(tokens))


@dataclass(frozen=True)
class BasicCredentials:
    client_id: str
    client_secret: str


def parse_basic(header: str) -> BasicCredentials:
    """RFC 6749 §2.3.1 + RFC 7617: Base64 of ``urlencode(id) ":" urlencode(secret)``.

    A malformed header is ``invalid_client`` (401): the client tried to authenticate and failed.
    """
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise InvalidClient("malformed Authorization header")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise InvalidClient("malformed Basic credentials") from None
    raw_id, sep, raw_secret = decoded.partition(":")
    if not sep or not raw_id:
        raise InvalidClient("malformed Basic credentials")
    try:
        client_id = unquote_to_bytes(raw_id).decode("utf-8")
        secret = unquote_to_bytes(raw_secret).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidClient("malformed Basic credentials") from None
    return BasicCredentials(client_id, secret)
