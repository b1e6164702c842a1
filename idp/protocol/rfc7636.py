"""Proof Key for Code Exchange (RFC 7636), S256 only (RFC 9700 §2.1.1: `plain` is not accepted)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

# §4.2: BASE64URL(SHA256(verifier)) is always 43 characters without padding.
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
# §4.1: code-verifier = 43*128unreserved
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")


def is_valid_challenge(challenge: str) -> bool:
    """Whole-string match: ``$`` would also accept a trailing newline."""
    return _CHALLENGE.fullmatch(challenge) is not None


def is_valid_verifier(verifier: str) -> bool:
    return _VERIFIER.fullmatch(verifier) is not None


def s256(verifier: str) -> str:
    """§4.2: code_challenge = BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verify(verifier: str, challenge: str) -> bool:
    """§4.6, compared in constant time."""
    if not is_valid_verifier(verifier):
        return False
    return hmac.compare_digest(s256(verifier), challenge)
