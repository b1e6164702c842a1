"""Micro-benchmark of ``idp.verify``: ``TokenVerifier.verify`` calls per second against this machine's raw RSA-2048
verify rate, measured in the same run (target: at least 0.5 of it).

Standalone, no idp server: an RSA-2048 key made in-process, discovery and JWKS served by a loopback
``http.server`` thread, RFC 9068 access tokens minted with ``cryptography``. The verifier fetches the JWKS once;
what is timed is the per-request work a resource server does (parse, header checks, RS256 signature, claims,
scopes). Both rates are single-threaded; rounds alternate and the best of each is kept. About 10 s.

    .venv/bin/python bench/verify.py [--seconds 2.0] [--rounds 2]
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from idp.verify import TokenVerifier

AUDIENCE = "https://api.example"
KID = "bench-key"
TOKENS = 256
TARGET = 0.5


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwks_of(key: RSAPrivateKey) -> dict[str, Any]:
    numbers = key.public_key().public_numbers()
    n, e = numbers.n.to_bytes(256, "big"), numbers.e.to_bytes(3, "big")
    return {"keys": [{"kty": "RSA", "kid": KID, "use": "sig", "alg": "RS256", "n": b64url(n), "e": b64url(e)}]}


def serve_issuer(key: RSAPrivateKey) -> tuple[ThreadingHTTPServer, str]:
    """A loopback issuer answering discovery and ``/jwks`` (RFC 8414 §3, RFC 7517 §5)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    issuer = f"http://127.0.0.1:{server.server_address[1]}"
    documents = {
        "/.well-known/openid-configuration": {"issuer": issuer, "jwks_uri": f"{issuer}/jwks"},
        "/jwks": jwks_of(key),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(documents[self.path]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "public, max-age=300")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server.RequestHandlerClass = Handler
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, issuer


def mint(key: RSAPrivateKey, issuer: str, count: int) -> list[str]:
    """RFC 9068 access tokens as idp issues them: ``typ=at+jwt``, the §2.2 claims, a scope."""
    header = b64url(json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": KID}).encode())
    now = int(time.time())
    tokens = []
    for _ in range(count):
        claims = {
            "iss": issuer,
            "sub": "svc_" + secrets.token_hex(8),
            "aud": AUDIENCE,
            "client_id": "svc_" + secrets.token_hex(8),
            "scope": "items:read items:write",
            "iat": now,
            "exp": now + 600,
            "jti": secrets.token_urlsafe(16),
        }
        signing_input = header + "." + b64url(json.dumps(claims, separators=(",", ":")).encode())
        signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        tokens.append(signing_input + "." + b64url(signature))
    return tokens


def rate(seconds: float, batch: Any) -> float:
    """Calls per second of ``batch()`` (which makes ``TOKENS`` calls) over about ``seconds``."""
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        batch()
        count += TOKENS
    return count / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each timed round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each measurement (best is kept)")
    args = parser.parse_args()

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server, issuer = serve_issuer(key)
    try:
        tokens = mint(key, issuer, TOKENS)
        verifier = TokenVerifier(issuer, AUDIENCE)
        verifier.verify(tokens[0], ["items:read"])  # discovery and JWKS, once
        public = key.public_key()
        pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
        raw_inputs = [
            (t.rpartition(".")[0].encode("ascii"), base64.urlsafe_b64decode(t.rpartition(".")[2] + "=="))
            for t in tokens
        ]

        def verify_all() -> None:
            for token in tokens:
                verifier.verify(token, ["items:read"])

        def raw_all() -> None:
            for signing_input, signature in raw_inputs:
                public.verify(signature, signing_input, pkcs1, sha256)

        verify_rates, raw_rates = [], []
        for _ in range(args.rounds):
            raw_rates.append(rate(args.seconds, raw_all))
            verify_rates.append(rate(args.seconds, verify_all))
        assert verifier.jwks_fetches == 1, "the JWKS was fetched more than once"
    finally:
        server.shutdown()
        server.server_close()

    verify_rate, raw_rate = max(verify_rates), max(raw_rates)
    ratio = verify_rate / raw_rate
    print("idp.verify micro-benchmark (RS256, RSA-2048, one thread)")
    print(f"  TokenVerifier.verify : {verify_rate:>10,.0f} verifications/s")
    print(f"  raw RSA-2048 verify  : {raw_rate:>10,.0f} verify/s")
    print(f"  ratio                : {ratio:>10.2f} (target >= {TARGET})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
