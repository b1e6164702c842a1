"""The example services of ``examples/`` against a live idp, as their README walks through (SPEC §11).

The client is registered with the real ``idp clients create`` command; tokens come from the live server's
``/token``; each example runs in its framework's test client (Flask's, Starlette's ``TestClient``) with a verifier
pointed at the live issuer. Answers follow RFC 6750 §3: a bare ``Bearer`` challenge without a token, 401
``invalid_token`` for a bad one, 403 ``insufficient_scope`` naming the missing scope.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from fastapi.testclient import TestClient

from idp.verify import TokenVerifier
from tests.conftest import REPO, Cli
from tests.verify.support import Idp

AUDIENCE = "https://api.example"


def load(example: str) -> ModuleType:
    """``examples/<example>/app.py`` as a module (the examples are not a package)."""
    name = f"example_{example}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "examples" / example / "app.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def flask_api(verifier: TokenVerifier) -> Any:
    return load("flask_api").create_app(verifier).test_client()


def fastapi_api(verifier: TokenVerifier) -> Any:
    return TestClient(load("fastapi_api").create_app(verifier))


EXAMPLES: dict[str, Callable[[TokenVerifier], Any]] = {"flask_api": flask_api, "fastapi_api": fastapi_api}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_example_has_a_readme_walk_through() -> None:
    for example in EXAMPLES:
        readme = (REPO / "examples" / example / "README.md").read_text()
        assert "idp clients create" in readme and "--audience https://api.example" in readme
        assert "curl" in readme and "/items" in readme


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_answers_200_401_and_403_with_rfc_6750_challenges(example: str, idp: Idp, cli: Cli) -> None:
    created = cli(
        "clients", "create", "--name", "items-client", "--grant-type", "client_credentials",
        "--scope", "items:read items:write", "--audience", AUDIENCE, "--audience", "https://other.example", "--json",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    client_id, secret = json.loads(created.stdout)["client_id"], json.loads(created.stdout)["client_secret"]
    read_token = idp.token(client_id, secret, scope="items:read")
    write_token = idp.token(client_id, secret, scope="items:write")
    foreign_token = idp.token(client_id, secret, scope="items:read", resource="https://other.example")
    api = EXAMPLES[example](idp.verifier(audience=AUDIENCE))

    assert api.get("/public").status_code == 200

    for headers in ({}, {"Authorization": f"Basic {secret}"}):
        missing = api.get("/items", headers=headers)
        assert missing.status_code == 401
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        assert secret not in missing.text

    for token in ("not-a-jwt", foreign_token, read_token[:-4] + "AAAA"):
        refused = api.get("/items", headers=bearer(token))
        assert refused.status_code == 401, refused.text
        assert refused.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token", error_description="')

    listed = api.get("/items", headers=bearer(read_token))
    assert listed.status_code == 200, listed.text
    assert json.loads(listed.text)["caller"] == client_id

    forbidden = api.post("/items", json={"name": "second"}, headers=bearer(read_token))
    assert forbidden.status_code == 403
    assert forbidden.headers["WWW-Authenticate"] == (
        'Bearer error="insufficient_scope", error_description="the token lacks a required scope", scope="items:write"'
    )
    assert api.get("/items", headers=bearer(write_token)).status_code == 403

    added = api.post("/items", json={"name": "second"}, headers=bearer(write_token))
    assert added.status_code == 201, added.text
    assert json.loads(added.text)["name"] == "second"
    assert idp.front.jwks_fetches == 1  # every request above verified locally
