"""The one-way digest under which idp stores machine-generated secrets: API keys (SPEC §6), authorization codes
and refresh tokens (SPEC §7), login-session cookies (SPEC §10).

Every one of these is at least 256 random bits, so SHA-256 alone cannot be reversed or brute-forced; a slow
password hash would only slow the request path.
"""

from __future__ import annotations

import hashlib


def sha256_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
