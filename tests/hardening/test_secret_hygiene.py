"""Secret hygiene (SPEC §10, issue 5): no secret the product handles ever reaches a log line, the CLI's output
(apart from the one-time print of a new API key) or the audit table.

One installation is driven through the real ``idp`` command and a live ``idp serve`` process with JSON logs, along
every flow and its failures: client credentials (RFC 6749 §4.4) with a right, a wrong and a swapped key, and with
``private_key_jwt`` (RFC 7523 §2.2) including a replay; the code flow (RFC 6749 §4.1, RFC 7636, OIDC Core §3.1)
with a wrong password and a password pasted into the username field, consent allowed and denied, code
redemption and reuse, refresh rotation and reuse (RFC 9700 §4.14), userinfo (OIDC Core §5.3), introspection
(RFC 7662), revocation (RFC 7009), RP-initiated logout; API-key revocation and key rotation. Every secret it made
or saw is collected and looked for, whole and in pieces, in everything written.
"""

from __future__ import annotations

import html
import json
import os
import re
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
import sqlalchemy as sa
from joserfc import jwt
from joserfc.jwk import RSAKey

from idp.services.keystore import KeyStore
from tests.conftest import LiveServer
from tests.keys.conftest import make_rotatable
from tests.oidc_support import (
    FULL_SCOPE,
    TIMEOUT,
    Authorization,
    LiveBrowser,
    Page,
    authorization_url,
    bearer,
    form_fields,
    live_redeem,
    live_refresh,
    new_verifier,
    s256,
    sign_in,
)
from tests.pages.support import LOGOUT_URI, REDIRECT_URI, WebApp

API = "https://api.example.com"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Long enough that a random string cannot contain one by chance; short enough to catch a truncated secret.
FRAGMENT = 16
_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]*)"')


class Secrets:
    """Everything the test must never find in the logs, the CLI output or the audit table."""

    def __init__(self) -> None:
        self.whole: dict[str, str] = {}
        self.random_parts: dict[str, str] = {}

    def add(self, label: str, value: str, random_part: str | None = None) -> str:
        """Remember ``value``; ``random_part`` (default: all of it) is also looked for in 16-character pieces."""
        assert value, label
        self.whole[f"{label} #{len(self.whole)}"] = value
        self.random_parts[f"{label} #{len(self.random_parts)}"] = random_part or value
        return value

    def api_key(self, label: str, key: str) -> str:
        return self.add(label, key, key.rsplit("_", 1)[-1])

    def jwt(self, label: str, token: str) -> str:
        return self.add(label, token, token.rsplit(".", 1)[-1])

    def tokens(self, label: str, body: dict[str, Any]) -> dict[str, Any]:
        for name in ("access_token", "id_token"):
            if name in body:
                self.jwt(f"{label} {name}", body[name])
        if "refresh_token" in body:
            self.add(f"{label} refresh_token", body["refresh_token"])
        return body

    def found_in(self, text: str) -> list[str]:
        """Labels of the secrets in ``text``, ignoring case (a case-folded password is still the password)."""
        text = text.lower()
        leaks = [label for label, value in self.whole.items() if value.lower() in text]
        for label, value in self.random_parts.items():
            value = value.lower()
            pieces = {value[i : i + FRAGMENT] for i in range(0, max(1, len(value) - FRAGMENT + 1), 4)}
            if len(value) >= FRAGMENT and any(piece in text for piece in pieces):
                leaks.append(f"{label} (a piece)")
        return leaks


class RecordingBrowser(LiveBrowser):
    """A live browser that remembers every CSRF token its pages carried and every cookie value it held."""

    def __init__(self, base_url: str, found: Secrets) -> None:
        super().__init__(base_url)
        self.found = found

    def _note(self, page: Page) -> Page:
        for token in _CSRF.findall(page.text):
            self.found.add("csrf token", html.unescape(token), html.unescape(token).rsplit(".", 1)[-1])
        for cookie in self.session.cookies:
            if cookie.value and cookie.value not in self.found.whole.values():
                self.found.add(f"cookie {cookie.name}", cookie.value)
        return page

    def get(self, url: str) -> Page:
        return self._note(super().get(url))

    def post(self, url: str, data: dict[str, str]) -> Page:
        return self._note(super().post(url, data))


class Operator:
    """The real ``idp`` command in its own process; keeps everything it wrote except one-time key prints."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = {**os.environ, **env}
        self.written: list[str] = []

    def __call__(self, *args: str, stdin: str | None = None, prints_a_secret: bool = False) -> Any:
        result = subprocess.run(
            [sys.executable, "-m", "idp.cli", *args, "--json"],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, (args, result.stderr[-2000:])
        self.written.append(result.stderr)
        if not prints_a_secret:
            self.written.append(result.stdout)
        return json.loads(result.stdout)


def token_post(server: LiveServer, data: dict[str, str], auth: tuple[str, str] | None = None) -> requests.Response:
    return requests.post(f"{server.url}/token", data=data, auth=auth, timeout=TIMEOUT)


def wait_for_events(engine: sa.Engine, name: str, count: int) -> None:
    """Hot-path events (``token.issued`` of client credentials, ``client.auth_failed``) are written by the
    server's background thread about a second later."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            found = connection.scalar(sa.text("SELECT count(*) FROM audit_events WHERE event = :e"), {"e": name})
        if found >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} {name} events were written")


@pytest.fixture
def env(settings: dict[str, str]) -> dict[str, str]:
    """JSON logs, and key rotation allowed as soon as the workers' reload interval has passed."""
    make_rotatable(KeyStore(settings["IDP_KEYS_DIR"]))
    return {**settings, "IDP_LOG_FORMAT": "json", "IDP_JWKS_MAX_AGE": "0"}


@pytest.fixture
def engine(env: dict[str, str]) -> Iterator[sa.Engine]:
    created = sa.create_engine(env["IDP_DATABASE_URL"])
    yield created
    created.dispose()


def test_no_secret_reaches_logs_cli_output_or_the_audit_table(env: dict[str, str], engine: sa.Engine) -> None:
    found = Secrets()
    found.add("IDP_SECRET_KEY", env["IDP_SECRET_KEY"])
    idp = Operator(env)

    # --- the operator registers clients, keys and a user --------------------------------------------------
    svc = idp("clients", "create", "--name", "svc", "--grant-type", "client_credentials", "--audience", API,
              "--scope", "read write", prints_a_secret=True)  # fmt: skip
    svc_key = found.api_key("svc first key", svc["client_secret"])
    spare = idp("api-keys", "create", svc["client_id"], "--name", "spare", prints_a_secret=True)
    spare_key = found.api_key("svc spare key", spare["key"])
    web = idp("clients", "create", "--name", "Web App", "--grant-type", "authorization_code",
              "--grant-type", "refresh_token", "--redirect-uri", REDIRECT_URI,
              "--post-logout-redirect-uri", LOGOUT_URI, "--scope", FULL_SCOPE, prints_a_secret=True)  # fmt: skip
    webapp = WebApp(web["client_id"], found.api_key("web app key", web["client_secret"]), REDIRECT_URI)
    signer_key = RSAKey.generate_key(2048, auto_kid=True)
    found.add("client private key d", str(signer_key.as_dict(private=True)["d"]))
    jwks_file = Path(env["IDP_INSTANCE_DIR"]).parent / "signer-jwks.json"
    jwks_file.write_text(json.dumps({"keys": [signer_key.as_dict(private=False)]}))
    signer = idp("clients", "create", "--name", "signer", "--grant-type", "client_credentials",
                 "--token-endpoint-auth-method", "private_key_jwt", "--jwks-file", str(jwks_file),
                 "--audience", API, "--scope", "read")  # fmt: skip
    first_password = found.add("first password", secrets.token_urlsafe(18))
    password = found.add("password", secrets.token_urlsafe(18))
    idp("users", "create", "--username", "alice", "--email", "alice@example.com", "--password-stdin",
        stdin=first_password + "\n")  # fmt: skip
    idp("users", "set-password", "alice", "--password-stdin", stdin=password + "\n")

    server = LiveServer(env)
    try:
        # --- services: client credentials, right and wrong -----------------------------------------------
        cc = {"grant_type": "client_credentials"}
        ok = token_post(server, cc, (svc["client_id"], svc_key))
        assert ok.status_code == 200, ok.text
        cc_token = found.jwt("cc access token", ok.json()["access_token"])
        wrong_key = found.api_key("wrong key", svc_key[:-43] + secrets.token_urlsafe(32))
        assert token_post(server, cc, (svc["client_id"], wrong_key)).status_code == 401
        assert token_post(server, cc, (spare_key, svc["client_id"])).status_code == 401  # id and key swapped
        spare_used = token_post(server, cc, (svc["client_id"], spare_key))
        assert spare_used.status_code == 200, spare_used.text
        found.tokens("cc (spare key)", spare_used.json())
        # The registered method is client_secret_basic: the key in the body is refused, and audited.
        posted = token_post(server, {**cc, "client_id": svc["client_id"], "client_secret": spare_key})
        assert posted.status_code == 401

        now = int(time.time())
        claims = {"iss": signer["client_id"], "sub": signer["client_id"], "aud": f"{server.url}/token",
                  "iat": now, "exp": now + 60, "jti": uuid.uuid4().hex}  # fmt: skip
        assertion = found.jwt("client assertion", jwt.encode({"alg": "RS256"}, claims, signer_key))
        with_assertion = {**cc, "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}
        signed = token_post(server, with_assertion)
        assert signed.status_code == 200, signed.text
        found.tokens("private_key_jwt", signed.json())
        assert token_post(server, with_assertion).status_code == 401  # replayed

        svc_auth = (svc["client_id"], svc_key)
        introspect = f"{server.url}/introspect"
        assert requests.post(introspect, data={"token": cc_token}, auth=svc_auth, timeout=TIMEOUT).json()["active"]
        revoked = requests.post(f"{server.url}/revoke", data={"token": cc_token}, auth=svc_auth, timeout=TIMEOUT)
        assert revoked.status_code == 200
        assert not requests.post(introspect, data={"token": cc_token}, auth=svc_auth, timeout=TIMEOUT).json()["active"]

        # --- a person: wrong password, a password typed as username, then sign-in and consent -------------
        browser = RecordingBrowser(server.url, found)
        wrong_password = found.add("wrong password", secrets.token_urlsafe(18))

        def authorize(**extra: str) -> Authorization:
            verifier, state = found.add("pkce verifier", new_verifier()), secrets.token_urlsafe(12)
            url = authorization_url(webapp, s256(verifier), FULL_SCOPE, state, "nonce-1", **extra)
            location = sign_in(browser, url, password=password)
            callback = parse_qs(urlsplit(location).query)
            assert callback["state"] == [state], location
            return Authorization(found.add("code", callback["code"][0]), verifier, state, "nonce-1", callback)

        login_url = browser.get(authorization_url(webapp, s256(new_verifier()), FULL_SCOPE, "s", "n")).location
        assert login_url is not None
        for username, typed in (("alice", wrong_password), (password, "x")):
            form = form_fields(browser.get(login_url).text)
            refused = browser.post("/login", {**form, "username": username, "password": typed})
            assert refused.status == 200 and "Incorrect username or password." in refused.text

        first = authorize()
        tokens = found.tokens("code flow", live_redeem(server.url, webapp, first).json())
        renewed = live_refresh(server.url, webapp, tokens["refresh_token"])
        assert renewed.status_code == 200, renewed.text
        renewed_tokens = found.tokens("refreshed", renewed.json())
        userinfo = f"{server.url}/userinfo"
        assert requests.get(userinfo, headers=bearer(renewed_tokens["access_token"]), timeout=TIMEOUT).ok
        web_auth = (webapp.client_id, webapp.key or "")
        active = requests.post(introspect, data={"token": renewed_tokens["access_token"]}, auth=web_auth,
                               timeout=TIMEOUT)  # fmt: skip
        assert active.json()["active"] is True
        reused = live_refresh(server.url, webapp, tokens["refresh_token"])
        assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
        gone = requests.get(userinfo, headers=bearer(renewed_tokens["access_token"]), timeout=TIMEOUT)
        assert gone.status_code == 401

        second = authorize()
        second_tokens = found.tokens("second code", live_redeem(server.url, webapp, second).json())
        again = live_redeem(server.url, webapp, second)
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"

        third_tokens = found.tokens("third code", live_redeem(server.url, webapp, authorize()).json())
        for token in (third_tokens["access_token"], third_tokens["refresh_token"]):
            answer = requests.post(f"{server.url}/revoke", data={"token": token}, auth=web_auth, timeout=TIMEOUT)
            assert answer.status_code == 200

        deny_url = authorization_url(webapp, s256(new_verifier()), FULL_SCOPE, "deny-state", "n", prompt="consent")
        consent_url = browser.get(deny_url).location
        assert consent_url is not None and urlsplit(consent_url).path == "/consent"
        form = form_fields(browser.get(consent_url).text)
        denied = browser.post("/consent", {**form, "decision": "deny"})
        assert denied.location is not None and "error=access_denied" in denied.location

        hint = {"id_token_hint": second_tokens["id_token"], "post_logout_redirect_uri": LOGOUT_URI, "state": "bye"}
        signed_out = browser.get("/logout?" + urlencode(hint))
        assert signed_out.status == 303 and signed_out.location == f"{LOGOUT_URI}?state=bye"

        # --- the operator again ---------------------------------------------------------------------------
        idp("api-keys", "revoke", spare["id"])
        idp("keys", "rotate")
        idp("users", "disable", "alice")
        wait_for_events(engine, "client.auth_failed", 4)
        wait_for_events(engine, "token.issued", 7)
        idp("audit", "tail", "--limit", "10000")
    finally:
        server.stop()

    with engine.connect() as connection:
        rows = [dict(r._mapping) for r in connection.execute(sa.text("SELECT * FROM audit_events ORDER BY id"))]
    recorded = {r["event"] for r in rows}
    assert recorded >= {
        "client.created", "api_key.created", "user.created", "user.password_changed", "token.issued",
        "client.auth_failed", "token.revoked", "login.failed", "login.succeeded", "consent.granted",
        "consent.denied", "refresh_token.reused", "authorization_code.reused", "grant.revoked",
        "session.ended", "api_key.revoked", "key.rotated", "user.disabled",
    }  # fmt: skip
    server_log = server.log()
    log_lines = [json.loads(line) for line in server_log.splitlines() if line.strip()]
    assert {line["audit"]["event"] for line in log_lines if "audit" in line} >= recorded - {
        "client.created", "api_key.created", "user.created", "user.password_changed", "api_key.revoked",
        "key.rotated", "user.disabled", "key.created",
    }  # fmt: skip
    assert "Traceback" not in server_log and all(line["level"] != "error" for line in log_lines)

    everything = {
        "server log": server_log,
        "cli output": "\n".join(idp.written),
        "audit table": json.dumps(rows, default=str),
    }
    leaks = {where: found.found_in(text) for where, text in everything.items()}
    assert leaks == {where: [] for where in everything}
    assert len(found.whole) >= 40  # the flows above really produced the secrets looked for
