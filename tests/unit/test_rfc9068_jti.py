"""An access token's ``jti`` (RFC 9068 §2.2, RFC 7519 §4.1.7): 128 random bits, base64url without padding."""

from __future__ import annotations

import base64
import re

from idp.protocol.rfc9068 import new_jti


def test_a_jti_is_128_bits_in_base64url() -> None:
    jti = new_jti()
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", jti)
    assert len(base64.urlsafe_b64decode(jti + "==")) == 16


def test_jtis_do_not_repeat() -> None:
    assert len({new_jti() for _ in range(10_000)}) == 10_000
