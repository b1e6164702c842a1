"""Client credentials end to end against a real ``idp serve`` process, driven by third-party clients.

requests-oauthlib and Authlib obtain tokens with ``client_secret_basic`` and ``client_secret_post``; PyJWT's
``PyJWKClient`` verifies them against ``/jwks`` like a resource server would. API keys are managed from this
process (service layer or CLI) while the server runs, as an operator would.

One installation and server serve the whole module: each test registers its own clients and keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session as AuthlibSession
from flask import Flask
from oauthlib.oauth2 import BackendApplicationClient
from requests_oauthlib import OAuth2Session

from idp.services.api_keys import create_api_key, revoke_api_key
from tests.conftest import Cli, LiveServer, fresh_installation, isolated_environment
from tests.oauth_support import API, CC, OTHER_API, Service, service

REVOCATION_BOUND = 5.0  # SPEC §6 / issue 3: a revoked key stops working on every node within 5 s
TIMEOUT = 10


@pytest.fixture(scope="module")
def module_installation(
    tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path, template_keys: Path
) -> dict[str, str]:
    return fresh_installation(tmp_path_factory.mktemp("installation"), migrated_sqlite, template_keys)


@pytest.fixture
def settings(module_installation: dict[str, str]) -> dict[str, str]:
    """The installation the module's server runs on, so that ``app`` and ``cli`` manage its clients and keys."""
    return module_installation


@pytest.fixture(scope="module")
def live_server(module_installation: dict[str, str]) -> Iterator[LiveServer]:
    with isolated_environment(Path(module_installation["IDP_INSTANCE_DIR"]).parent):
        server = LiveServer(module_installation)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _plain_http_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The live server listens on http://127.0.0.1; both client libraries insist on https otherwise."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")


def fetch_with_requests_oauthlib(server: LiveServer, svc: Service, method: str, **params: Any) -> dict[str, Any]:
    session = OAuth2Session(client=BackendApplicationClient(client_id=svc.client_id))
    with session:
        return dict(
            session.fetch_token(
                token_url=f"{server.url}/token",
                client_id=svc.client_id,
                client_secret=svc.key,
                include_client_id=method == "client_secret_post",  # False: HTTP Basic
                timeout=TIMEOUT,
                **params,
            )
        )


def fetch_with_authlib(server: LiveServer, svc: Service, method: str, **params: Any) -> dict[str, Any]:
    with AuthlibSession(svc.client_id, svc.key, token_endpoint_auth_method=method) as session:
        return dict(
            session.fetch_token(f"{server.url}/token", grant_type="client_credentials", timeout=TIMEOUT, **params)
        )


FETCHERS: dict[str, Callable[..., dict[str, Any]]] = {
    "requests-oauthlib": fetch_with_requests_oauthlib,
    "authlib": fetch_with_authlib,
}


def verify(server: LiveServer, token: str, audience: str) -> dict[str, Any]:
    """What a resource server does: the key from ``/jwks`` by ``kid``, RS256 only, ``aud`` and ``iss`` checked."""
    signing_key = jwt.PyJWKClient(f"{server.url}/jwks", timeout=TIMEOUT).get_signing_key_from_jwt(token)
    return dict(jwt.decode(token, signing_key.key, algorithms=["RS256"], audience=audience, issuer=server.url))


def post_token(server: LiveServer, client_id: str, key: str) -> requests.Response:
    return requests.post(f"{server.url}/token", data=CC, auth=(client_id, key), timeout=TIMEOUT)


def wait_until_refused(server: LiveServer, client_id: str, key: str) -> float:
    """Seconds until the key gets 401 ``invalid_client``; polls for a bounded time."""
    start = time.monotonic()
    while time.monotonic() - start < REVOCATION_BOUND + 3:
        response = post_token(server, client_id, key)
        if response.status_code == 401:
            assert response.json()["error"] == "invalid_client"
            assert response.headers["WWW-Authenticate"].startswith("Basic ")
            return time.monotonic() - start
        assert response.status_code == 200, response.text
        time.sleep(0.1)
    pytest.fail("the revoked key still works after the bound")


@pytest.mark.parametrize("library", FETCHERS)
@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_client_libraries_obtain_verifiable_rfc9068_tokens(
    app: Flask, live_server: LiveServer, library: str, method: str
) -> None:
    svc = service(token_endpoint_auth_method=method, access_token_ttl=300)
    response = FETCHERS[library](live_server, svc, method)
    assert response["token_type"].lower() == "bearer"
    assert response["expires_in"] == 300
    assert "refresh_token" not in response
    token = response["access_token"]

    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "RS256"
    assert header["kid"] == app.extensions["idp.keyring"].current().active_kid
    claims = verify(live_server, token, API)
    assert claims["iss"] == live_server.url
    assert claims["sub"] == claims["client_id"] == svc.client_id
    assert claims["aud"] == API
    assert claims["scope"] == "read write"
    assert claims["exp"] == claims["iat"] + 300
    assert abs(claims["iat"] - time.time()) < 60


@pytest.mark.parametrize("library", FETCHERS)
def test_requested_scope_and_resource_shape_the_token(app: Flask, live_server: LiveServer, library: str) -> None:
    svc = service()
    params = {"scope": ["read"]} if library == "requests-oauthlib" else {"scope": "read"}
    response = FETCHERS[library](live_server, svc, "client_secret_basic", resource=OTHER_API, **params)
    claims = verify(live_server, response["access_token"], OTHER_API)
    assert claims["aud"] == OTHER_API
    assert claims["scope"] == "read"


def test_token_response_headers_and_unique_jtis(app: Flask, live_server: LiveServer) -> None:
    svc = service()
    jtis = set()
    for _ in range(10):
        response = post_token(live_server, svc.client_id, svc.key)
        assert response.status_code == 200, response.text
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Pragma"] == "no-cache"
        assert response.headers["Content-Type"].startswith("application/json")
        jtis.add(verify(live_server, response.json()["access_token"], API)["jti"])
    assert len(jtis) == 10


def test_error_responses_from_the_server_carry_the_pinned_headers(app: Flask, live_server: LiveServer) -> None:
    svc = service()
    refused = post_token(live_server, svc.client_id, "idp_0123456789abcdef_" + "A" * 43)
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"
    assert refused.headers["WWW-Authenticate"].startswith("Basic ")
    assert refused.headers["Cache-Control"] == "no-store"
    wrong_method = requests.get(f"{live_server.url}/token", timeout=TIMEOUT)
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "invalid_request"
    hostile = requests.post(
        f"{live_server.url}/token", data={**CC, "client_id": "' OR 1=1 --", "client_secret": "x"}, timeout=TIMEOUT
    )
    assert hostile.status_code == 401


@pytest.mark.parametrize("via", ["service", "cli"])
def test_two_keys_work_and_a_revoked_one_stops_within_the_bound(
    app: Flask, live_server: LiveServer, cli: Cli, via: str
) -> None:
    svc = service()
    second = create_api_key(svc.client_id, "rotation")
    for key in (svc.key, second.key):  # both keys work, and the server has them cached now
        assert post_token(live_server, svc.client_id, key).status_code == 200

    if via == "service":
        revoke_api_key(svc.key_id)
    else:
        result = cli("api-keys", "revoke", svc.key_id)
        assert result.exit_code == 0, result.output
    elapsed = wait_until_refused(live_server, svc.client_id, svc.key)

    assert elapsed <= REVOCATION_BOUND + 0.5
    assert post_token(live_server, svc.client_id, second.key).status_code == 200


def test_expired_key_is_invalid_client(app: Flask, live_server: LiveServer) -> None:
    svc = service()
    short = create_api_key(svc.client_id, "short-lived", expires_in=2)
    assert post_token(live_server, svc.client_id, short.key).status_code == 200  # valid, and now cached
    assert short.row.expires_at is not None
    time.sleep(max(0.0, short.row.expires_at.timestamp() - time.time()) + 0.2)
    refused = post_token(live_server, svc.client_id, short.key)
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"
    assert refused.headers["WWW-Authenticate"].startswith("Basic ")
    assert post_token(live_server, svc.client_id, svc.key).status_code == 200


def test_revoked_access_token_introspects_inactive(app: Flask, live_server: LiveServer) -> None:
    svc, resource_server = service(), service(name="resource-server")
    token = post_token(live_server, svc.client_id, svc.key).json()["access_token"]
    rs_auth = (resource_server.client_id, resource_server.key)

    def introspect() -> dict[str, Any]:
        response = requests.post(f"{live_server.url}/introspect", data={"token": token}, auth=rs_auth, timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        return dict(response.json())

    assert introspect()["active"] is True
    foreign = requests.post(f"{live_server.url}/revoke", data={"token": token}, auth=rs_auth, timeout=TIMEOUT)
    assert foreign.status_code == 400
    assert introspect()["active"] is True
    own = requests.post(
        f"{live_server.url}/revoke", data={"token": token}, auth=(svc.client_id, svc.key), timeout=TIMEOUT
    )
    assert own.status_code == 200
    assert introspect() == {"active": False}
