"""What the ``idp.verify`` tests share: a counting front for the live server, tokens from it, and forged tokens.

The live server runs with ``IDP_ISSUER`` set to the address of :class:`IssuerFront`, a small HTTP server in this
process that forwards ``GET``s to the live server and counts them per path. Discovery then names the front's
``/jwks``, so every fetch a verifier makes passes through it and is counted, and the front can be made to drop
connections to play an unreachable issuer. Tokens are obtained from the live server's ``/token``; forged tokens
are built here with ``cryptography`` (the real signing key read from the keys directory, or an attacker's).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from idp.verify import TokenVerifier
from tests.conftest import LiveServer
from tests.keys.conftest import kid_in, load_pem, manifest_entries

API = "https://api.example.com"
OTHER_API = "https://other.example.com"
SCOPES = "items:read items:write"
TIMEOUT = 10
FORWARDED_HEADERS = ("Content-Type", "Cache-Control", "ETag")


class IssuerFront:
    """A counting HTTP front for the live server; ``failing`` makes it drop every connection unanswered."""

    def __init__(self) -> None:
        self.upstream = ""
        self.failing = False
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        front = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with front._lock:
                    front.requests[self.path] += 1
                if front.failing:
                    self.close_connection = True  # the client sees the connection reset, no response
                    return
                try:
                    with urllib.request.urlopen(front.upstream + self.path, timeout=TIMEOUT) as upstream:
                        status, headers, body = upstream.status, upstream.headers, upstream.read()
                except urllib.error.HTTPError as exc:
                    status, headers, body = exc.code, exc.headers, exc.read()
                self.send_response(status)
                for name in FORWARDED_HEADERS:
                    if headers.get(name):
                        self.send_header(name, headers[name])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def jwks_fetches(self) -> int:
        with self._lock:
            return self.requests["/jwks"]

    @property
    def discovery_fetches(self) -> int:
        with self._lock:
            return self.requests["/.well-known/openid-configuration"]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass(frozen=True)
class Idp:
    """A live server behind its front: ``issuer`` is the front's URL, ``server.url`` the server's own."""

    server: LiveServer
    front: IssuerFront
    keys_dir: Path

    @property
    def issuer(self) -> str:
        return self.front.url

    def verifier(self, audience: str | list[str] = API, **options: Any) -> TokenVerifier:
        return TokenVerifier(self.issuer, audience, **options)

    def token(self, client_id: str, key: str, **params: str) -> str:
        """A client-credentials access token from the live server (``scope``, ``resource`` as given)."""
        response = requests.post(
            f"{self.server.url}/token",
            data={"grant_type": "client_credentials", **params},
            auth=(client_id, key),
            timeout=TIMEOUT,
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def signing_key(self) -> tuple[str, RSAPrivateKey]:
        """The active key's ``kid`` and private key, read from the keys directory (as the server reads it)."""
        kid = kid_in("active", self.keys_dir)
        (record,) = [e for e in manifest_entries(self.keys_dir) if e["kid"] == kid]
        return kid, load_pem(self.keys_dir / record["file"])


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def segments(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())


def rs256(key: RSAPrivateKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """RFC 7515 §5.1 with RFC 7518 §3.3: a compact JWS signed RSASSA-PKCS1-v1_5 SHA-256."""
    signing_input = segments({"alg": "RS256", **header}, claims)
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + b64url(signature)


def hs256(secret: bytes, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """RFC 7518 §3.2 HMAC SHA-256: the algorithm-confusion attack when ``secret`` is a public key."""
    signing_input = segments({**header, "alg": "HS256"}, claims)
    return signing_input + "." + b64url(hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest())


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, read without verifying it."""
    header, payload, _ = token.split(".")
    return (
        json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))),
        json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))),
    )


def attacker_key() -> RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)
